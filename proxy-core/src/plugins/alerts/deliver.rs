//! Receivers and what they are sent: the payload shapes, and the thread
//! that POSTs them off the request path (bounded queues, one per receiver
//! besides the shared one, retries with a doubling backoff, drops counted).

use std::{
    collections::BTreeMap,
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use http::Uri;
use serde_json::{json, Value};
use tokio::{sync::mpsc, task::JoinSet, time::MissedTickBehavior};

use super::{
    engine::{Alert, Engine, Notification, Status},
    AlertsError,
};
use crate::{
    health::rfc3339,
    net::OutboundProxy,
    plugins::{
        outbound::{self, HttpClient},
        queue::QueueCounters,
    },
};

/// The shape of what a receiver is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// One alert per POST: `{"version":"1","source":"paddock","status",
    /// "alert":{"name","severity","summary","labels","startsAt","endsAt"}}`.
    Generic,
    /// A Slack incoming webhook's `{"text": …}` (Mattermost, Rocket.Chat and
    /// Teams' Slack-compatible hooks read it too).
    Slack,
    /// Alertmanager's own API, `POST /api/v2/alerts`: a JSON array of
    /// alerts (`labels`, `annotations`, `startsAt`, `endsAt`,
    /// `generatorURL`). Firing alerts are sent again every
    /// [`resend`](super::AlertsOptions::resend), as Prometheus does, so
    /// Alertmanager keeps them firing; they carry no `endsAt` (a one-off
    /// carries its expiry), a resolved one its resolution time.
    Alertmanager,
    /// What Alertmanager's `webhook_config` sends its receivers (`version`
    /// `4`, `groupKey`, `status`, `alerts[]` with `fingerprint`), for
    /// receivers written for Alertmanager.
    AlertmanagerWebhook,
}

/// One receiver of alerts. Its `Debug` shows only the receiver's scheme,
/// host and port: webhook URLs carry their secret in the path (Slack's).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AlertReceiver {
    /// A name for logs and Alertmanager's `receiver` field.
    pub name: String,
    /// `https://…`; `http://` only to a loopback address.
    pub url: Uri,
    /// The payload shape.
    pub format: Format,
    /// The CA bundle (PEM) that signs the receiver's certificate; the
    /// system's roots when `None`.
    pub ca_pem: Option<Vec<u8>>,
    /// Time one POST may take (default 10 s).
    pub timeout: Duration,
    /// Retries of a failed POST before it is dropped (default 3).
    pub retries: u32,
    /// Wait before the first retry, doubled for each next (default 1 s).
    pub initial_backoff: Duration,
    /// The HTTP proxy POSTs go through (default: none; the binary's is
    /// `HTTPS_PROXY`/`NO_PROXY`).
    pub proxy: OutboundProxy,
}

impl fmt::Debug for AlertReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertReceiver")
            .field("name", &self.name)
            .field("receiver", &outbound::redacted(&self.url))
            .field("format", &self.format)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "[PEM]"))
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("initial_backoff", &self.initial_backoff)
            .field("proxy", &self.proxy)
            .finish()
    }
}

impl AlertReceiver {
    /// A receiver at `url` with the defaults; checks the URL.
    pub fn new(name: impl Into<String>, url: &str, format: Format) -> Result<Self, AlertsError> {
        let url = outbound::receiver_url(url, "alerts name users, addresses and clusters")
            .map_err(AlertsError::Url)?;
        Ok(Self {
            name: name.into(),
            url,
            format,
            ca_pem: None,
            timeout: Duration::from_secs(10),
            retries: 3,
            initial_backoff: Duration::from_secs(1),
            proxy: OutboundProxy::default(),
        })
    }

    /// Checks the TLS setup (the CA bundle) without starting anything.
    pub fn check(&self) -> Result<(), AlertsError> {
        self.client().map(drop)
    }

    pub(super) fn client(&self) -> Result<HttpClient, AlertsError> {
        outbound::client(self.ca_pem.as_deref(), self.timeout, &self.proxy)
            .map_err(AlertsError::Tls)
    }

    /// The body this receiver gets for `alert`.
    pub(super) fn payload(&self, alert: &Alert, external_url: &str) -> Value {
        match self.format {
            Format::Generic => generic(alert),
            Format::Slack => slack(alert),
            Format::Alertmanager => Value::Array(vec![alertmanager_alert(alert, external_url)]),
            Format::AlertmanagerWebhook => alertmanager_webhook(alert, &self.name, external_url),
        }
    }
}

/// What the delivery thread and the plugin count.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Notifications waiting in the queues (the shared one and each
    /// receiver's), and those lost: a queue was full, or a receiver never
    /// took it.
    pub(super) queue: Arc<QueueCounters>,
    /// POSTs a receiver accepted.
    pub(super) delivered: AtomicU64,
}

fn labels(alert: &Alert) -> BTreeMap<&str, String> {
    let mut labels: BTreeMap<&str, String> =
        alert.labels.iter().map(|(k, v)| (*k, v.clone())).collect();
    labels.insert("alertname", alert.name.to_owned());
    labels.insert("severity", alert.severity.to_owned());
    labels
}

fn time(at: Option<SystemTime>) -> Value {
    at.map_or(Value::Null, |at| Value::String(rfc3339(at)))
}

fn generic(alert: &Alert) -> Value {
    json!({
        "version": "1",
        "source": "paddock",
        "status": alert.status.as_str(),
        "alert": {
            "name": alert.name,
            "severity": alert.severity,
            "summary": alert.summary,
            "labels": alert.labels,
            "startsAt": time(Some(alert.starts_at)),
            "endsAt": time(alert.ends_at),
        },
    })
}

fn slack(alert: &Alert) -> Value {
    let text = match alert.status {
        Status::Firing => format!("[FIRING] {}: {}", alert.name, alert.summary),
        Status::Resolved => format!("[RESOLVED] {}: {}", alert.name, alert.summary),
    };
    json!({ "text": text })
}

/// Alertmanager's zero time, which its webhook sends as a firing alert's
/// `endsAt`.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn alertmanager_alert(alert: &Alert, external_url: &str) -> Value {
    let mut value = json!({
        "labels": labels(alert),
        "annotations": {"summary": alert.summary},
        "startsAt": rfc3339(alert.starts_at),
        "generatorURL": external_url,
    });
    if let Some(ends) = alert.ends_at {
        value["endsAt"] = Value::String(rfc3339(ends));
    }
    value
}

fn alertmanager_webhook(alert: &Alert, receiver: &str, external_url: &str) -> Value {
    let labels = labels(alert);
    let ends = match alert.status {
        Status::Resolved => time(alert.ends_at),
        Status::Firing => Value::String(ZERO_TIME.to_owned()),
    };
    let annotations = json!({"summary": alert.summary});
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{}\"}}", alert.name),
        "truncatedAlerts": 0,
        "status": alert.status.as_str(),
        "receiver": receiver,
        "groupLabels": {"alertname": alert.name},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": [{
            "status": alert.status.as_str(),
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339(alert.starts_at),
            "endsAt": ends,
            "generatorURL": external_url,
            "fingerprint": fingerprint(&labels),
        }],
    })
}

/// Alertmanager's fingerprint of a label set (`model.LabelSet.Fingerprint`
/// in prometheus/common): FNV-1a 64 over the sorted names and values, each
/// followed by the byte 255, as 16 hex digits.
fn fingerprint(labels: &BTreeMap<&str, String>) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut hash = OFFSET;
    let mut add = |bytes: &[u8]| {
        for byte in bytes.iter().chain(&[255u8]) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for (name, value) in labels {
        add(name.as_bytes());
        add(value.as_bytes());
    }
    format!("{hash:016x}")
}

/// How often the thread does the time-driven work.
const TICK: Duration = Duration::from_secs(1);

/// The delivery thread's work: takes notifications from the queue, does
/// the engine's time-driven work every [`TICK`], and hands each
/// notification to the queue of every receiver that takes it. Each
/// receiver has a queue of `lane_size` and a task of its own that POSTs
/// from it, so a slow or dead receiver (up to `retries + 1` timeouts and
/// the backoff per notification) delays neither the others nor the ticks
/// (resolutions, Alertmanager's resends); what its full queue refuses is
/// dropped and counted. Ends, once the receivers' queues are drained, when
/// the plugin (the queue's sender) is gone.
pub(super) async fn run(
    mut queue: mpsc::Receiver<Notification>,
    receivers: Vec<(AlertReceiver, HttpClient)>,
    engine: Arc<Mutex<Engine>>,
    counters: Arc<Counters>,
    external_url: String,
    lane_size: usize,
) {
    let external_url: Arc<str> = external_url.into();
    let mut senders = JoinSet::new();
    let lanes: Vec<(Format, mpsc::Sender<Notification>)> = receivers
        .into_iter()
        .map(|(receiver, client)| {
            let (lane, taken) = mpsc::channel(lane_size.max(1));
            let format = receiver.format;
            let (counters, external_url) = (counters.clone(), external_url.clone());
            senders.spawn(send_all(taken, receiver, client, counters, external_url));
            (format, lane)
        })
        .collect();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let due = tokio::select! {
            notification = queue.recv() => match notification {
                Some(notification) => {
                    counters.queue.taken(1);
                    vec![notification]
                }
                None => break,
            },
            _ = tick.tick() => engine
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .tick(Instant::now(), SystemTime::now()),
        };
        for notification in due {
            for (format, lane) in &lanes {
                if notification.resend && *format != Format::Alertmanager {
                    continue;
                }
                // Full: this receiver is behind; the others are not held up.
                counters.queue.offer(|| lane.try_send(notification.clone()));
            }
        }
    }
    drop(lanes);
    while senders.join_next().await.is_some() {}
}

/// One receiver's task: POSTs what its queue holds, one at a time.
async fn send_all(
    mut lane: mpsc::Receiver<Notification>,
    receiver: AlertReceiver,
    client: HttpClient,
    counters: Arc<Counters>,
    external_url: Arc<str>,
) {
    while let Some(notification) = lane.recv().await {
        counters.queue.taken(1);
        let body = Bytes::from(
            serde_json::to_vec(&receiver.payload(&notification.alert, &external_url))
                .unwrap_or_default(),
        );
        if post(&receiver, &client, body).await {
            counters.delivered.fetch_add(1, Ordering::Relaxed);
        } else {
            counters.queue.lost(1);
        }
    }
}

/// POSTs `body`, retrying with a doubling backoff; false when it never got
/// through. One log line per failed notification, not per attempt.
async fn post(receiver: &AlertReceiver, client: &HttpClient, body: Bytes) -> bool {
    let mut backoff = receiver.initial_backoff;
    let mut last_error = String::new();
    for attempt in 0..=receiver.retries {
        if attempt > 0 {
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
        match outbound::post_json(client, &receiver.url, body.clone(), receiver.timeout).await {
            Ok(()) => return true,
            Err(error) => last_error = error,
        }
    }
    tracing::warn!(
        alerts.receiver = %receiver.name,
        url = %outbound::redacted(&receiver.url),
        error = %last_error,
        "alert not delivered: dropped"
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_match_alertmanager() {
        // prometheus/common model: LabelSet{}.Fingerprint() is the FNV-1a
        // offset basis; one label hashes name, 255, value, 255.
        assert_eq!(fingerprint(&BTreeMap::new()), "cbf29ce484222325");
        let one = BTreeMap::from([("alertname", "x".to_owned())]);
        let mut expected: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in b"alertname\xffx\xff" {
            expected ^= u64::from(*byte);
            expected = expected.wrapping_mul(0x0100_0000_01b3);
        }
        assert_eq!(fingerprint(&one), format!("{expected:016x}"));
    }

    #[test]
    fn the_url_s_secret_stays_out_of_debug() {
        let receiver = AlertReceiver::new(
            "slack",
            "https://hooks.slack.com/services/T0/B0/secretXXXX",
            Format::Slack,
        )
        .unwrap();
        let shown = format!("{receiver:?}");
        assert!(!shown.contains("secretXXXX"), "{shown}");
        assert!(AlertReceiver::new("x", "http://alerts.example.com/", Format::Generic).is_err());
    }
}
