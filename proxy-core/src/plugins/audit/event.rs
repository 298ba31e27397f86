//! The `audit.k8s.io/v1` `Event`, as kube-apiserver writes it
//! (`staging/src/k8s.io/apiserver/pkg/apis/audit/v1/types.go`): one JSON
//! object per line, so tools that read kube-apiserver's audit log read
//! Paddock's.

use std::{collections::BTreeMap, time::SystemTime};

use serde::Serialize;

use super::policy::{Level, Stage};

/// One audit event.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Event {
    pub(crate) kind: &'static str,
    pub(crate) api_version: &'static str,
    pub(crate) level: Level,
    #[serde(rename = "auditID")]
    pub(crate) audit_id: String,
    pub(crate) stage: Stage,
    #[serde(rename = "requestURI")]
    pub(crate) request_uri: String,
    pub(crate) verb: String,
    pub(crate) user: UserInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) impersonated_user: Option<UserInfo>,
    #[serde(rename = "sourceIPs", skip_serializing_if = "Vec::is_empty")]
    pub(crate) source_ips: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) object_ref: Option<ObjectReference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) response_status: Option<ResponseStatus>,
    #[serde(serialize_with = "micros")]
    pub(crate) request_received_timestamp: SystemTime,
    #[serde(serialize_with = "micros")]
    pub(crate) stage_timestamp: SystemTime,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) annotations: BTreeMap<&'static str, String>,
}

/// `authentication.k8s.io/v1` `UserInfo`.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct UserInfo {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) uid: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) extra: BTreeMap<String, Vec<String>>,
}

/// The object a resource request is about.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ObjectReference {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) resource: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) api_group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) subresource: String,
}

/// The `metav1.Status` of the response: the code alone on success; status,
/// reason and message too on a failure Paddock answered itself.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct ResponseStatus {
    pub(crate) metadata: Empty,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    pub(crate) code: u16,
}

/// `{}`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Empty {}

/// RFC 3339 in UTC with microseconds, as kube-apiserver writes
/// `metav1.MicroTime`: `2026-12-01T15:10:45.123456Z`.
fn micros<S: serde::Serializer>(at: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    let at = time::OffsetDateTime::from(*at);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    let text = at.format(&format).map_err(serde::ser::Error::custom)?;
    serializer.serialize_str(&text)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;

    /// A small event with the given id.
    pub(crate) fn sample(id: &str) -> Event {
        Event {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level: Level::Metadata,
            audit_id: id.to_owned(),
            stage: Stage::ResponseComplete,
            request_uri: "/api/v1/pods".to_owned(),
            verb: "list".to_owned(),
            user: UserInfo::default(),
            impersonated_user: None,
            source_ips: Vec::new(),
            user_agent: None,
            object_ref: None,
            response_status: None,
            request_received_timestamp: SystemTime::UNIX_EPOCH,
            stage_timestamp: SystemTime::UNIX_EPOCH,
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn serializes_like_kube_apiserver() {
        let mut event = sample("a-1");
        event.request_received_timestamp =
            SystemTime::UNIX_EPOCH + Duration::from_nanos(1_764_601_845_123_456_789);
        event.stage_timestamp = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_601_846);
        event.response_status = Some(ResponseStatus {
            code: 403,
            status: Some("Failure"),
            reason: Some("Forbidden".to_owned()),
            message: Some("no".to_owned()),
            ..ResponseStatus::default()
        });
        event
            .annotations
            .insert("authorization.k8s.io/decision", "forbid".to_owned());
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
                "auditID": "a-1", "stage": "ResponseComplete", "requestURI": "/api/v1/pods",
                "verb": "list", "user": {},
                "responseStatus": {"metadata": {}, "status": "Failure", "message": "no",
                                   "reason": "Forbidden", "code": 403},
                "requestReceivedTimestamp": "2025-12-01T15:10:45.123456Z",
                "stageTimestamp": "2025-12-01T15:10:46.000000Z",
                "annotations": {"authorization.k8s.io/decision": "forbid"},
            })
        );
    }
}
