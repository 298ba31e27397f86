//! Objects stored as the API server stores them: the
//! `rbac.authorization.k8s.io/v1` ClusterRoles, ClusterRoleBindings, Roles
//! and RoleBindings, and the core group's ConfigMaps and Secrets, with
//! create (409 `AlreadyExists`), get, replace (409 `Conflict` on a stale
//! `resourceVersion`; 422 on a changed `roleRef`, which is immutable),
//! delete, and list with an equality `labelSelector`, cluster-wide or per
//! namespace. The fake enforces no RBAC with them; writes can be refused
//! as a whole ([`super::FakeApiServer::forbid_rbac_writes`]), with the
//! Status kube-apiserver's authorizer answers, and lists can stall
//! mid-body ([`super::FakeApiServer::stall_rbac_lists`]).

use std::collections::BTreeMap;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::{json_value, status, streaming, Body, State};

/// The API group a request addresses: `rbac.authorization.k8s.io/v1`, or
/// the core group's `v1` (`""`).
#[derive(Debug, Clone, Copy)]
pub(super) enum Group {
    Rbac,
    Core,
}

impl Group {
    fn api_version(self) -> &'static str {
        match self {
            Self::Rbac => "rbac.authorization.k8s.io/v1",
            Self::Core => "v1",
        }
    }

    /// `resource` qualified as the API server's messages name it.
    fn qualified(self, resource: &str) -> String {
        match self {
            Self::Rbac => format!("{resource}.rbac.authorization.k8s.io"),
            Self::Core => resource.to_owned(),
        }
    }

    /// Resource name → kind, and whether it is namespaced.
    fn kind_of(self, resource: &str) -> Option<(&'static str, bool)> {
        match (self, resource) {
            (Self::Rbac, "clusterroles") => Some(("ClusterRole", false)),
            (Self::Rbac, "clusterrolebindings") => Some(("ClusterRoleBinding", false)),
            (Self::Rbac, "roles") => Some(("Role", true)),
            (Self::Rbac, "rolebindings") => Some(("RoleBinding", true)),
            (Self::Core, "configmaps") => Some(("ConfigMap", true)),
            (Self::Core, "secrets") => Some(("Secret", true)),
            _ => None,
        }
    }
}

/// Stored objects by (resource, namespace, name).
pub(super) type Objects = BTreeMap<(String, String, String), Value>;

/// Serves `/apis/rbac.authorization.k8s.io/v1/...` or `/api/v1/...`
/// (`segments` after `v1`).
pub(super) async fn serve(
    state: &State,
    request: Request<Incoming>,
    segments: &[&str],
    group: Group,
) -> Response<Body> {
    let (namespace, rest) = match segments {
        ["namespaces", ns, rest @ ..] => (Some((*ns).to_owned()), rest),
        rest => (None, rest),
    };
    let (resource, name) = match rest {
        [resource] => (*resource, None),
        [resource, name] => (*resource, Some((*name).to_owned())),
        _ => return not_found("the server could not find the requested resource"),
    };
    let Some((kind, namespaced)) = group.kind_of(resource) else {
        return not_found("the server could not find the requested resource");
    };
    if namespace.is_some() && !namespaced {
        return not_found("the server could not find the requested resource");
    }
    if let Some(ns) = &namespace {
        if !state.namespaces.lock().unwrap().contains(ns) {
            return not_found(&format!("namespaces \"{ns}\" not found"));
        }
    }
    let selector = request
        .uri()
        .query()
        .and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("labelSelector="))
                .map(|s| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8_lossy()
                        .into_owned()
                })
        })
        .unwrap_or_default();
    let method = request.method().clone();
    if method != Method::GET
        && state
            .rbac_read_only
            .load(std::sync::atomic::Ordering::SeqCst)
    {
        return forbidden(&method, resource, name.as_deref(), namespace.as_deref());
    }
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let ns = namespace.clone().unwrap_or_default();
    match (method, name) {
        (Method::GET, None) => list(
            state,
            group,
            resource,
            kind,
            namespace.as_deref(),
            &selector,
        ),
        (Method::GET, Some(name)) => {
            match state
                .rbac
                .lock()
                .unwrap()
                .get(&(resource.to_owned(), ns, name.clone()))
            {
                Some(object) => json_value(StatusCode::OK, object),
                None => not_found(&format!(
                    "{} \"{name}\" not found",
                    group.qualified(resource)
                )),
            }
        }
        (Method::POST, None) => {
            if namespaced && namespace.is_none() {
                return status(StatusCode::NOT_FOUND, "NotFound", "namespace required");
            }
            let Ok(mut object) = serde_json::from_slice::<Value>(&body) else {
                return status(StatusCode::BAD_REQUEST, "BadRequest", "invalid JSON");
            };
            let Some(name) = object["metadata"]["name"].as_str().map(str::to_owned) else {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "metadata.name: Required value",
                );
            };
            let key = (resource.to_owned(), ns.clone(), name.clone());
            let mut objects = state.rbac.lock().unwrap();
            if objects.contains_key(&key) {
                return status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    &format!("{} \"{name}\" already exists", group.qualified(resource)),
                );
            }
            stamp(state, &mut object, group, kind, namespace.as_deref());
            objects.insert(key, object.clone());
            json_value(StatusCode::CREATED, &object)
        }
        (Method::PUT, Some(name)) => {
            let Ok(mut object) = serde_json::from_slice::<Value>(&body) else {
                return status(StatusCode::BAD_REQUEST, "BadRequest", "invalid JSON");
            };
            let key = (resource.to_owned(), ns, name.clone());
            let mut objects = state.rbac.lock().unwrap();
            let Some(current) = objects.get(&key) else {
                return not_found(&format!(
                    "{} \"{name}\" not found",
                    group.qualified(resource)
                ));
            };
            let sent = object["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default();
            if !sent.is_empty() && sent != current["metadata"]["resourceVersion"] {
                return status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version and try again",
                );
            }
            if current.get("roleRef").is_some() && current["roleRef"] != object["roleRef"] {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "roleRef: Invalid value: cannot change roleRef",
                );
            }
            object["metadata"]["uid"] = current["metadata"]["uid"].clone();
            object["metadata"]["creationTimestamp"] =
                current["metadata"]["creationTimestamp"].clone();
            stamp(state, &mut object, group, kind, namespace.as_deref());
            objects.insert(key, object.clone());
            json_value(StatusCode::OK, &object)
        }
        (Method::DELETE, Some(name)) => {
            match state
                .rbac
                .lock()
                .unwrap()
                .remove(&(resource.to_owned(), ns, name.clone()))
            {
                Some(_) => json_value(
                    StatusCode::OK,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                            "details": {"name": name, "group": group.api_version().rsplit_once('/').map_or("", |(g, _)| g), "kind": resource}}),
                ),
                None => not_found(&format!(
                    "{} \"{name}\" not found",
                    group.qualified(resource)
                )),
            }
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "method not allowed",
        ),
    }
}

fn stamp(state: &State, object: &mut Value, group: Group, kind: &str, namespace: Option<&str>) {
    let rv = state.next_resource_version();
    object["apiVersion"] = group.api_version().into();
    object["kind"] = kind.into();
    let meta = &mut object["metadata"];
    meta["resourceVersion"] = rv.to_string().into();
    if meta["uid"].is_null() {
        meta["uid"] = format!("uid-{rv}").into();
        meta["creationTimestamp"] = "2026-01-01T00:00:00Z".into();
    }
    if let Some(ns) = namespace {
        meta["namespace"] = ns.into();
    }
}

fn list(
    state: &State,
    group: Group,
    resource: &str,
    kind: &str,
    namespace: Option<&str>,
    selector: &str,
) -> Response<Body> {
    let wanted: Vec<(&str, &str)> = selector
        .split(',')
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.split_once('='))
        .map(|(k, v)| (k.trim_end_matches('='), v))
        .collect();
    let items: Vec<Value> = state
        .rbac
        .lock()
        .unwrap()
        .iter()
        .filter(|((r, ns, _), _)| r == resource && namespace.is_none_or(|want| want == ns))
        .filter(|(_, o)| {
            wanted
                .iter()
                .all(|(k, v)| o["metadata"]["labels"][*k] == *v)
        })
        .map(|(_, o)| o.clone())
        .collect();
    let list = json!({
        "kind": format!("{kind}List"), "apiVersion": group.api_version(),
        "metadata": {"resourceVersion": state.next_resource_version().to_string()},
        "items": items,
    });
    if matches!(group, Group::Rbac)
        && state
            .rbac_lists_stall
            .load(std::sync::atomic::Ordering::SeqCst)
    {
        let text = list.to_string();
        let start = Bytes::from(text[..text.len() / 2].to_owned());
        let stalled =
            futures_util::stream::once(async { start }).chain(futures_util::stream::pending());
        let mut response = Response::new(streaming(stalled, None));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        return response;
    }
    json_value(StatusCode::OK, &list)
}

/// kube-apiserver's answer to a write its authorizer denied
/// (`k8s.io/apiserver/pkg/endpoints/handlers/responsewriters.ForbiddenStatusError`).
fn forbidden(
    method: &Method,
    resource: &str,
    name: Option<&str>,
    namespace: Option<&str>,
) -> Response<Body> {
    let verb = match *method {
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "get",
    };
    let group = "rbac.authorization.k8s.io";
    let object = match name {
        Some(name) => format!("{resource}.{group} \"{name}\""),
        None => format!("{resource}.{group}"),
    };
    let scope = match namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_owned(),
    };
    let message = format!(
        "{object} is forbidden: User \"{}\" cannot {verb} resource \"{resource}\" in API group \"{group}\" {scope}",
        super::PROXY_USER
    );
    json_value(
        StatusCode::FORBIDDEN,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": "Forbidden",
            "details": {"name": name.unwrap_or_default(), "group": group, "kind": resource},
            "code": 403,
        }),
    )
}

fn not_found(message: &str) -> Response<Body> {
    status(StatusCode::NOT_FOUND, "NotFound", message)
}
