//! `/api/v1/nodes` as kube-apiserver serves it: a `NodeList` paged by
//! `limit` and `continue` (`metadata.continue`, `remainingItemCount`), and
//! single nodes; each node's `Ready` condition says whether it is ready.

use std::collections::BTreeMap;

use http::StatusCode;
use serde_json::{json, Value};

use super::{json_value, status, Body, State};

fn node(name: &str, ready: bool) -> Value {
    let (condition, reason, message) = if ready {
        ("True", "KubeletReady", "kubelet is posting ready status")
    } else {
        (
            "Unknown",
            "NodeStatusUnknown",
            "Kubelet stopped posting node status.",
        )
    };
    json!({
        "kind": "Node", "apiVersion": "v1",
        "metadata": {"name": name, "uid": format!("uid-node-{name}"), "resourceVersion": "1",
                     "creationTimestamp": "2026-01-01T00:00:00Z",
                     "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
                {"type": "Ready", "status": condition, "reason": reason, "message": message,
                 "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            ],
            "nodeInfo": {"kubeletVersion": "v1.32.4-fake", "operatingSystem": "linux", "architecture": "amd64"},
        },
    })
}

/// `GET /api/v1/nodes[?limit=&continue=]` and `GET /api/v1/nodes/<name>`.
pub(super) fn get(state: &State, name: Option<&str>, query: &str) -> http::Response<Body> {
    let nodes: BTreeMap<String, bool> = state.nodes.lock().unwrap().clone();
    if let Some(name) = name {
        return match nodes.get(name) {
            Some(ready) => json_value(StatusCode::OK, &node(name, *ready)),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("nodes \"{name}\" not found"),
            ),
        };
    }
    let param = |key: &str| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_owned())
    };
    let limit = param("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    // The continue token is opaque to clients; here, the index to start at.
    let start = match param("continue") {
        Some(token) => match token.parse::<usize>() {
            Ok(start) => start,
            Err(_) => {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "continue key is not valid",
                )
            }
        },
        None => 0,
    };
    let all: Vec<Value> = nodes.iter().map(|(n, r)| node(n, *r)).collect();
    let end = limit.map_or(all.len(), |l| (start + l).min(all.len()));
    let page = all.get(start.min(all.len())..end).unwrap_or_default();
    let mut metadata = json!({"resourceVersion": "1"});
    if end < all.len() {
        metadata["continue"] = json!(end.to_string());
        metadata["remainingItemCount"] = json!(all.len() - end);
    }
    json_value(
        StatusCode::OK,
        &json!({"kind": "NodeList", "apiVersion": "v1", "metadata": metadata, "items": page}),
    )
}
