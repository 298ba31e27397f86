//! The access log: one structured line per request, never a credential.

use crate::plugin::{AccessRecord, Plugin};

/// Logs every finished request as one `tracing` event on target
/// `paddock::access`: method, path (no query), cluster, user, the
/// impersonated user when `--as` was used, decision, status, bytes, duration.
#[derive(Debug, Clone, Default)]
pub struct AccessLog;

impl Plugin for AccessLog {
    fn name(&self) -> &'static str {
        "access-log"
    }

    fn on_log(&self, record: &AccessRecord<'_>) {
        let context = record.context;
        let user = context.identity().map(|i| i.user.as_str()).unwrap_or("-");
        let acting_as = context
            .impersonated()
            .map(|i| i.user.as_str())
            .unwrap_or("-");
        let decision = match context.decision() {
            Some(d) if d.allowed => "allow",
            Some(_) => "deny",
            None => "-",
        };
        tracing::info!(
            target: "paddock::access",
            kind = "access",
            request.id = %context.id,
            http.method = %context.method,
            http.path = %context.path,
            cluster.id = context.cluster().unwrap_or("-"),
            auth.user = user,
            auth.acting_as = acting_as,
            authz.decision = decision,
            http.status = record.status.as_u16(),
            http.bytes = record.bytes,
            http.complete = record.complete,
            duration_ms = record.duration.as_secs_f64() * 1000.0,
            "request"
        );
    }
}
