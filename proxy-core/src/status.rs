//! Kubernetes `metav1.Status` responses: the error format every Kubernetes
//! client (kubectl, client-go, kube-rs) knows how to print.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;

use crate::body::ResponseBody;

/// A `metav1.Status` failure, serialised exactly as the API server does.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    kind: &'static str,
    api_version: &'static str,
    metadata: Metadata,
    status: &'static str,
    /// Human-readable description; kubectl prints it after `Error from server (<reason>):`.
    pub message: String,
    /// Machine-readable reason, e.g. `Unauthorized`, `Forbidden`.
    pub reason: &'static str,
    /// HTTP status code, repeated in the body.
    pub code: u16,
}

#[derive(Debug, Clone, Default, Serialize)]
struct Metadata {}

impl Status {
    /// A failure with the given HTTP code, `reason` and message.
    pub fn failure(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind: "Status",
            api_version: "v1",
            metadata: Metadata {},
            status: "Failure",
            message: message.into(),
            reason,
            code: code.as_u16(),
        }
    }

    /// The JSON response carrying this status.
    pub fn into_response(self) -> Response<ResponseBody> {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = Response::new(ResponseBody::full(Bytes::from(body)));
        *response.status_mut() = code;
        // For the plugins' on_response (the audit log's responseStatus):
        // reading it back from the body would mean buffering the body.
        response.extensions_mut().insert(self);
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn serialises_like_the_api_server() {
        let response =
            Status::failure(StatusCode::FORBIDDEN, "Forbidden", "no policy").into_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": "no policy", "reason": "Forbidden", "code": 403
            })
        );
    }
}
