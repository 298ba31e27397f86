//! `/version`, legacy discovery and OpenAPI v3: enough for kubectl's
//! `api-resources`, `get` and `explain`.

use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::{json_value, status, Body};

pub(super) fn version() -> http::Response<Body> {
    json_value(
        StatusCode::OK,
        &json!({
            "major": "1", "minor": "32", "gitVersion": "v1.32.4-fake",
            "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.0", "compiler": "gc",
            "platform": "linux/amd64",
        }),
    )
}

/// Legacy `APIVersions`; kubectl falls back to it when the answer is not
/// the aggregated discovery type it offered first.
pub(super) fn api(_headers: &HeaderMap) -> http::Response<Body> {
    json_value(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
        }),
    )
}

const GROUPS: [(&str, &str); 4] = [
    ("apps", "v1"),
    ("authentication.k8s.io", "v1"),
    ("authorization.k8s.io", "v1"),
    ("rbac.authorization.k8s.io", "v1"),
];

pub(super) fn apis(_headers: &HeaderMap) -> http::Response<Body> {
    let groups: Vec<Value> = GROUPS
        .iter()
        .map(|(group, version)| {
            let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
            json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json_value(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
    )
}

fn resource(name: &str, namespaced: bool, kind: &str, verbs: &[&str], short: &[&str]) -> Value {
    json!({
        "name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
        "verbs": verbs, "shortNames": short,
    })
}

pub(super) fn core_v1() -> http::Response<Body> {
    let all = ["create", "delete", "get", "list", "watch"];
    json_value(
        StatusCode::OK,
        &json!({
            "kind": "APIResourceList", "groupVersion": "v1",
            "resources": [
                resource("configmaps", true, "ConfigMap", &all, &["cm"]),
                resource("namespaces", false, "Namespace", &all, &["ns"]),
                resource("pods", true, "Pod", &all, &["po"]),
                resource("pods/exec", true, "PodExecOptions", &["create", "get"], &[]),
                resource("pods/log", true, "Pod", &["get"], &[]),
                resource("pods/status", true, "Pod", &["get"], &[]),
                resource("secrets", true, "Secret", &all, &[]),
                resource("serviceaccounts", true, "ServiceAccount", &all, &["sa"]),
            ],
        }),
    )
}

pub(super) fn group_version(group: &str, version: &str) -> http::Response<Body> {
    let all = [
        "create", "delete", "get", "list", "patch", "update", "watch",
    ];
    let resources = match (group, version) {
        ("apps", "v1") => vec![resource(
            "deployments",
            true,
            "Deployment",
            &all,
            &["deploy"],
        )],
        ("rbac.authorization.k8s.io", "v1") => vec![
            resource("clusterroles", false, "ClusterRole", &all, &[]),
            resource(
                "clusterrolebindings",
                false,
                "ClusterRoleBinding",
                &all,
                &[],
            ),
        ],
        ("authentication.k8s.io", "v1") => vec![resource(
            "selfsubjectreviews",
            false,
            "SelfSubjectReview",
            &["create"],
            &[],
        )],
        ("authorization.k8s.io", "v1") => vec![resource(
            "selfsubjectaccessreviews",
            false,
            "SelfSubjectAccessReview",
            &["create"],
            &[],
        )],
        _ => {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            )
        }
    };
    json_value(
        StatusCode::OK,
        &json!({"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": format!("{group}/{version}"), "resources": resources}),
    )
}

pub(super) fn openapi_index() -> http::Response<Body> {
    json_value(
        StatusCode::OK,
        &json!({"paths": {
            "api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=F4KE0001"},
            "apis/apps/v1": {"serverRelativeURL": "/openapi/v3/apis/apps/v1?hash=F4KE0002"},
            "apis/rbac.authorization.k8s.io/v1":
                {"serverRelativeURL": "/openapi/v3/apis/rbac.authorization.k8s.io/v1?hash=F4KE0003"},
        }}),
    )
}

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn reference(name: &str, description: &str) -> Value {
    json!({"allOf": [{"$ref": format!("#/components/schemas/{name}")}], "default": {}, "description": description})
}

fn operation(kind: &str, action: &str) -> Value {
    json!({"get": {
        "description": format!("{action} {kind}"),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": "", "kind": kind, "version": "v1"},
        "responses": {"200": {"description": "OK"}},
    }})
}

/// A kind's schema for `kubectl apply`'s validation: the usual header
/// fields, `fields` taken as they come (their content is not checked).
fn kind_schema(group: &str, version: &str, kind: &str, fields: &[&str]) -> Value {
    let mut properties = serde_json::Map::new();
    properties.insert("apiVersion".into(), string("APIVersion of this object."));
    properties.insert("kind".into(), string("Kind of this object."));
    properties.insert(
        "metadata".into(),
        reference(
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "Standard object's metadata.",
        ),
    );
    for field in fields {
        properties.insert(
            (*field).into(),
            json!({"x-kubernetes-preserve-unknown-fields": true}),
        );
    }
    json!({
        "description": format!("{kind} ({group}/{version}, schema abridged by the fake)"),
        "type": "object",
        "properties": properties,
        "x-kubernetes-group-version-kind": [{"group": group, "kind": kind, "version": version}],
    })
}

/// A `patch` operation on `path` that takes `fieldValidation`: how kubectl
/// learns that the server validates fields itself (its query parameter
/// verifier looks for exactly this).
fn patchable(group: &str, version: &str, kind: &str) -> Value {
    json!({"patch": {
        "description": format!("partially update the specified {kind}"),
        "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}}],
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {"group": group, "kind": kind, "version": version},
        "responses": {"200": {"description": "OK"}},
    }})
}

fn object_meta() -> Value {
    json!({
        "description": "ObjectMeta is metadata that all persisted resources must have.",
        "type": "object",
        "properties": {
            "name": string("Name must be unique within a namespace."),
            "namespace": string("Namespace defines the space within which each name must be unique."),
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    })
}

/// The OpenAPI v3 document of a group other than the core one.
fn group_document(group: &str, kinds: &[(&str, &str, &[&str])]) -> http::Response<Body> {
    let mut schemas = serde_json::Map::new();
    let mut paths = serde_json::Map::new();
    for (kind, path, fields) in kinds {
        paths.insert(
            format!("/apis/{group}/v1/{path}"),
            patchable(group, "v1", kind),
        );
        let short = group.split('.').next().unwrap_or(group);
        schemas.insert(
            format!("io.k8s.api.{short}.v1.{kind}"),
            kind_schema(group, "v1", kind, fields),
        );
    }
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta".into(),
        object_meta(),
    );
    json_value(
        StatusCode::OK,
        &json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.32.4-fake"},
            "paths": paths,
            "components": {"schemas": schemas},
        }),
    )
}

pub(super) fn openapi_document(path: &str) -> http::Response<Body> {
    match path {
        "apis/apps/v1" => {
            return group_document(
                "apps",
                &[(
                    "Deployment",
                    "namespaces/{namespace}/deployments/{name}",
                    &["spec", "status"],
                )],
            )
        }
        "apis/rbac.authorization.k8s.io/v1" => {
            return group_document(
                "rbac.authorization.k8s.io",
                &[
                    (
                        "ClusterRole",
                        "clusterroles/{name}",
                        &["rules", "aggregationRule"],
                    ),
                    (
                        "ClusterRoleBinding",
                        "clusterrolebindings/{name}",
                        &["roleRef", "subjects"],
                    ),
                ],
            )
        }
        _ => {}
    }
    if path != "api/v1" {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "no such OpenAPI document",
        );
    }
    let meta = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
    json_value(
        StatusCode::OK,
        &json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.32.4-fake"},
            // kubectl explain finds a resource's kind through its paths' GET operations.
            "paths": {
                "/api/v1/namespaces/{namespace}/pods": operation("Pod", "list"),
                "/api/v1/namespaces/{namespace}/pods/{name}": operation("Pod", "get"),
                "/api/v1/namespaces": operation("Namespace", "list"),
                "/api/v1/namespaces/{name}": {
                    "get": operation("Namespace", "get")["get"],
                    "patch": patchable("", "v1", "Namespace")["patch"],
                },
                "/api/v1/namespaces/{namespace}/serviceaccounts/{name}": patchable("", "v1", "ServiceAccount"),
                "/api/v1/namespaces/{namespace}/secrets/{name}": patchable("", "v1", "Secret"),
            },
            "components": {"schemas": {
                "io.k8s.api.core.v1.Pod": {
                    "description": "Pod is a collection of containers that can run on a host. This resource is created by clients and scheduled onto hosts.",
                    "type": "object",
                    "properties": {
                        "apiVersion": string("APIVersion defines the versioned schema of this representation of an object."),
                        "kind": string("Kind is a string value representing the REST resource this object represents."),
                        "metadata": reference(meta, "Standard object's metadata."),
                        "spec": reference("io.k8s.api.core.v1.PodSpec", "Specification of the desired behavior of the pod."),
                    },
                    "x-kubernetes-group-version-kind": [{"group": "", "kind": "Pod", "version": "v1"}],
                },
                "io.k8s.api.core.v1.PodSpec": {
                    "description": "PodSpec is a description of a pod.",
                    "type": "object",
                    "required": ["containers"],
                    "properties": {
                        "containers": {"type": "array", "description": "List of containers belonging to the pod.",
                                       "items": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}], "default": {}}},
                        "nodeName": string("NodeName indicates in which node this pod is scheduled."),
                    },
                },
                "io.k8s.api.core.v1.Container": {
                    "description": "A single application container that you want to run within a pod.",
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": string("Name of the container specified as a DNS_LABEL."),
                        "image": string("Container image name."),
                    },
                },
                "io.k8s.api.core.v1.Namespace": {
                    "description": "Namespace provides a scope for Names.",
                    "type": "object",
                    "properties": {
                        "apiVersion": string("APIVersion defines the versioned schema of this representation of an object."),
                        "kind": string("Kind is a string value representing the REST resource this object represents."),
                        "metadata": reference(meta, "Standard object's metadata."),
                    },
                    "x-kubernetes-group-version-kind": [{"group": "", "kind": "Namespace", "version": "v1"}],
                },
                "io.k8s.api.core.v1.ServiceAccount": kind_schema("", "v1", "ServiceAccount", &["secrets", "imagePullSecrets", "automountServiceAccountToken"]),
                "io.k8s.api.core.v1.Secret": kind_schema("", "v1", "Secret", &["data", "stringData", "type", "immutable"]),
                meta: object_meta(),
            }},
        }),
    )
}
