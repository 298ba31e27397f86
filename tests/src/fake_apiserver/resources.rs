//! Namespaces, pods, watches, logs and the review APIs kubectl uses.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::{json_value, status, streaming, Body, State, UserInfo};

/// A running pod with one container, as the API returns it.
pub(super) fn pod(namespace: &str, name: &str, resource_version: u64) -> Value {
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {
            "name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}"),
            "resourceVersion": resource_version.to_string(),
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "containers": [{"name": "main", "image": "busybox", "ports": [
                {"name": "http", "containerPort": super::PORT_FORWARD_PORT, "protocol": "TCP"},
            ]}],
            "nodeName": "node-1",
        },
        "status": {
            "phase": "Running",
            "containerStatuses": [{"name": "main", "ready": true, "restartCount": 0,
                                   "image": "busybox", "imageID": "", "started": true,
                                   "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}],
        },
    })
}

fn wants_table(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains("as=Table")))
}

fn query_flag(request: &Request<Incoming>, name: &str) -> Option<String> {
    request.uri().query().and_then(|q| {
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| v.to_owned())
        })
    })
}

fn is_watch(request: &Request<Incoming>) -> bool {
    query_flag(request, "watch").is_some_and(|v| !matches!(v.as_str(), "" | "0" | "false"))
}

fn pod_table(pods: &[Value], resource_version: u64) -> Value {
    let rows: Vec<Value> = pods
        .iter()
        .map(|pod| {
            json!({
                "cells": [pod["metadata"]["name"], "1/1", pod["status"]["phase"], 0, "5m"],
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                           "metadata": pod["metadata"]},
            })
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version.to_string()},
        "columnDefinitions": [
            {"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0},
            {"name": "Ready", "type": "string", "format": "", "description": "Ready containers", "priority": 0},
            {"name": "Status", "type": "string", "format": "", "description": "Phase", "priority": 0},
            {"name": "Restarts", "type": "integer", "format": "", "description": "Restarts", "priority": 0},
            {"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0},
        ],
        "rows": rows,
    })
}

pub(super) async fn pods(
    state: &Arc<State>,
    request: Request<Incoming>,
    segments: &[&str],
) -> Response<Body> {
    let namespace = (segments.len() > 3).then(|| segments[3].to_owned());
    let name = segments.get(5).map(|s| (*s).to_owned());
    let rv = state.next_resource_version();
    match (request.method().clone(), name) {
        (Method::GET, None) if is_watch(&request) => watch(state, &request, namespace),
        (Method::GET, None) => {
            let pods: Vec<Value> = state
                .pods
                .lock()
                .unwrap()
                .iter()
                .filter(|((ns, _), _)| namespace.as_ref().is_none_or(|n| n == ns))
                .map(|(_, pod)| pod.clone())
                .collect();
            if wants_table(&request) {
                json_value(StatusCode::OK, &pod_table(&pods, rv))
            } else {
                json_value(
                    StatusCode::OK,
                    &json!({"kind": "PodList", "apiVersion": "v1",
                            "metadata": {"resourceVersion": rv.to_string()}, "items": pods}),
                )
            }
        }
        (Method::GET, Some(name)) => {
            // Tests of in-flight requests ask for a slow answer.
            if let Some(ms) = query_flag(&request, "fakeDelayMs").and_then(|v| v.parse().ok()) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let key = (namespace.unwrap_or_default(), name.clone());
            match state.pods.lock().unwrap().get(&key) {
                Some(pod) if wants_table(&request) => {
                    json_value(StatusCode::OK, &pod_table(std::slice::from_ref(pod), rv))
                }
                Some(pod) => json_value(StatusCode::OK, pod),
                None => not_found("pods", &name),
            }
        }
        (Method::POST, None) => {
            let namespace = namespace.unwrap_or_default();
            let body = request.into_body().collect().await.map(|b| b.to_bytes());
            let Ok(body) = body else {
                return status(StatusCode::BAD_REQUEST, "BadRequest", "unreadable body");
            };
            let Ok(object) = serde_json::from_slice::<Value>(&body) else {
                return status(StatusCode::BAD_REQUEST, "BadRequest", "body is not JSON");
            };
            let Some(name) = object["metadata"]["name"].as_str().map(str::to_owned) else {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "metadata.name: Required value",
                );
            };
            let created = pod(&namespace, &name, rv);
            let key = (namespace.clone(), name.clone());
            if state.pods.lock().unwrap().contains_key(&key) {
                return status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    &format!("pods \"{name}\" already exists"),
                );
            }
            state.pods.lock().unwrap().insert(key, created.clone());
            let _ = state.watch_tx.send(super::WatchEvent {
                namespace,
                kind: "ADDED",
                object: created.clone(),
            });
            json_value(StatusCode::CREATED, &created)
        }
        (Method::DELETE, Some(name)) => {
            let namespace = namespace.unwrap_or_default();
            let removed = state
                .pods
                .lock()
                .unwrap()
                .remove(&(namespace.clone(), name.clone()));
            match removed {
                Some(pod) => {
                    let _ = state.watch_tx.send(super::WatchEvent {
                        namespace,
                        kind: "DELETED",
                        object: pod.clone(),
                    });
                    json_value(StatusCode::OK, &pod)
                }
                None => not_found("pods", &name),
            }
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "method not allowed",
        ),
    }
}

fn not_found(resource: &str, name: &str) -> Response<Body> {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{resource} \"{name}\" not found"),
    )
}

/// A pod watch: every event written and flushed as its own chunk; ends
/// after `timeoutSeconds` like the apiserver's.
fn watch(
    state: &Arc<State>,
    request: &Request<Incoming>,
    namespace: Option<String>,
) -> Response<Body> {
    let table = wants_table(request);
    let timeout = query_flag(request, "timeoutSeconds")
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs);
    let receiver = state.watch_tx.subscribe();
    let events = futures_util::stream::unfold(
        (receiver, namespace),
        move |(mut receiver, namespace)| async move {
            loop {
                match receiver.recv().await {
                    Ok(event) if namespace.as_ref().is_none_or(|n| *n == event.namespace) => {
                        let rv = event.object["metadata"]["resourceVersion"]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(1);
                        let object = if table {
                            pod_table(std::slice::from_ref(&event.object), rv)
                        } else {
                            event.object
                        };
                        let mut line = json!({"type": event.kind, "object": object}).to_string();
                        line.push('\n');
                        return Some((Bytes::from(line), (receiver, namespace)));
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    let mut response = Response::new(streaming(events, timeout));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Pods whose name starts with this have an endless log: `logs -f` streams
/// lines of [`FIREHOSE_CHUNK`] bytes as fast as the reader reads.
pub const FIREHOSE: &str = "firehose";
/// The size of one firehose log line, newline included.
pub const FIREHOSE_CHUNK: usize = 64 * 1024;

pub(super) fn logs(state: &Arc<State>, request: &Request<Incoming>, pod: &str) -> Response<Body> {
    let existing: Vec<String> = state
        .logs
        .lock()
        .unwrap()
        .get(pod)
        .cloned()
        .unwrap_or_default();
    let follow = query_flag(request, "follow").is_some_and(|v| v == "true" || v == "1");
    let mut text = String::new();
    for line in &existing {
        text.push_str(line);
        text.push('\n');
    }
    let body = if follow && pod.starts_with(FIREHOSE) {
        // As fast as the reader takes it, for ever: flow control tests and
        // throughput benchmarks.
        let chunk = Bytes::from(format!("{}\n", "x".repeat(FIREHOSE_CHUNK - 1)));
        streaming(futures_util::stream::repeat(chunk), None)
    } else if follow {
        let receiver = state.log_tx.subscribe();
        let first = futures_util::stream::iter((!text.is_empty()).then(|| Bytes::from(text)));
        let pod = pod.to_owned();
        let rest =
            futures_util::stream::unfold((receiver, pod), |(mut receiver, pod)| async move {
                loop {
                    match receiver.recv().await {
                        Ok((p, line)) if p == pod => {
                            return Some((Bytes::from(format!("{line}\n")), (receiver, pod)))
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            });
        use futures_util::StreamExt;
        streaming(first.chain(rest), None)
    } else {
        super::full(text)
    };
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

pub(super) async fn namespaces(
    state: &Arc<State>,
    request: Request<Incoming>,
    segments: &[&str],
) -> Response<Body> {
    let namespace = |name: &str| {
        json!({"kind": "Namespace", "apiVersion": "v1",
               "metadata": {"name": name, "uid": format!("uid-ns-{name}"), "resourceVersion": "1",
                            "creationTimestamp": "2026-01-01T00:00:00Z"},
               "status": {"phase": "Active"}})
    };
    let names = state.namespaces.lock().unwrap().clone();
    match (request.method(), segments.get(3)) {
        (&Method::GET, None) => json_value(
            StatusCode::OK,
            &json!({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                    "items": names.iter().map(|n| namespace(n)).collect::<Vec<_>>()}),
        ),
        (&Method::GET, Some(name)) if names.iter().any(|n| n == name) => {
            json_value(StatusCode::OK, &namespace(name))
        }
        (&Method::GET, Some(name)) => not_found("namespaces", name),
        (&Method::POST, None) => {
            let Ok(body) = request.into_body().collect().await.map(|b| b.to_bytes()) else {
                return status(StatusCode::BAD_REQUEST, "BadRequest", "unreadable body");
            };
            let object: Value = serde_json::from_slice(&body).unwrap_or_default();
            let Some(name) = object["metadata"]["name"].as_str() else {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "metadata.name: Required value",
                );
            };
            state.namespaces.lock().unwrap().push(name.to_owned());
            json_value(StatusCode::CREATED, &namespace(name))
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "method not allowed",
        ),
    }
}

pub(super) fn self_subject_review(version: &str, user: &UserInfo) -> Response<Body> {
    json_value(
        StatusCode::CREATED,
        &json!({
            "kind": "SelfSubjectReview",
            "apiVersion": format!("authentication.k8s.io/{version}"),
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": user},
        }),
    )
}

/// The fake has no RBAC of its own: it allows, and says who asked.
pub(super) async fn self_subject_access_review(
    request: Request<Incoming>,
    user: &UserInfo,
) -> Response<Body> {
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut review: Value = serde_json::from_slice(&body).unwrap_or_else(|_| json!({}));
    review["status"] =
        json!({"allowed": true, "reason": format!("fake apiserver allows {}", user.username)});
    json_value(StatusCode::CREATED, &review)
}
