//! The webhook sink: batches of events POSTed as an `audit.k8s.io/v1`
//! `EventList`, as kube-apiserver's batch webhook backend sends them
//! (`staging/src/k8s.io/apiserver/plugin/pkg/audit/webhook/webhook.go`,
//! `plugin/pkg/audit/buffered/buffered.go`).
//!
//! One background thread with its own event loop takes what is queued (up
//! to a batch), POSTs it, and on failure retries with a doubling backoff;
//! a batch that still fails is dropped and counted. Meanwhile new events
//! wait in the bounded queue, where [`OnFull`](super::OnFull) applies: the
//! memory held is the queue plus one batch, however slow the receiver
//! (the unbounded retries that let a throttled receiver exhaust an API
//! server's memory, kubernetes/kubernetes#85489, cannot happen here).
//!
//! When the sink is dropped (shutdown), what is queued gets one attempt per
//! batch, no retry, and [`DRAIN_TIME`] in all; what is not delivered by
//! then is dropped, counted and logged once. Draining with full retries
//! held shutdown for minutes behind a receiver that was down.

use std::{
    fmt,
    sync::{mpsc::Receiver, Arc, OnceLock},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::Uri;

use tokio_util::sync::CancellationToken;

use super::sink::Report;
use crate::{net::OutboundProxy, plugins::queue::QueueCounters};

/// How long, at most, the queue is still delivered once the sink is
/// dropped: shutdown waits this long for a receiver that does not answer.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// The sink's end, as its thread sees it: [`close`](Self::close)d when
/// the last clone of the sink is dropped.
#[derive(Debug, Default)]
pub(super) struct Closing {
    closed: CancellationToken,
    deadline: OnceLock<Instant>,
}

impl Closing {
    /// The sink is gone: no more retries, [`DRAIN_TIME`] from now.
    pub(super) fn close(&self) {
        let _ = self.deadline.set(Instant::now() + DRAIN_TIME);
        self.closed.cancel();
    }

    fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Resolves once the sink is closed.
    async fn closed(&self) {
        self.closed.cancelled().await;
    }

    /// Resolves once the drain time after closing is over.
    async fn drained(&self) {
        self.closed().await;
        if let Some(&deadline) = self.deadline.get() {
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// Where and how a webhook sink delivers. Its `Debug` shows only the
/// receiver's scheme, host and port: a webhook URL often carries its secret
/// in the path (Slack's) or in user info.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebhookSink {
    /// `https://…`; `http://` only to a loopback address (a local
    /// collector), since events name users and what they did.
    pub url: Uri,
    /// The CA bundle (PEM) that signs the receiver's certificate; the
    /// system's roots when `None`.
    pub ca_pem: Option<Vec<u8>>,
    /// Events per POST at most (default 400, as kube-apiserver).
    pub batch_size: usize,
    /// Time one POST may take (default 10 s).
    pub timeout: Duration,
    /// Retries of a failed batch before it is dropped (default 3).
    pub retries: u32,
    /// Wait before the first retry, doubled for each next one (default
    /// 10 s, as kube-apiserver).
    pub initial_backoff: Duration,
    /// The HTTP proxy POSTs go through (default: none; the binary's is
    /// `HTTPS_PROXY`/`NO_PROXY`).
    pub proxy: OutboundProxy,
}

/// Why a webhook sink could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The URL is not usable.
    #[error("{0}")]
    Url(String),
    /// The CA bundle or TLS setup failed.
    #[error("{0}")]
    Tls(String),
    /// The thread or its event loop could not start.
    #[error("cannot start the webhook sender: {0}")]
    Start(#[from] std::io::Error),
}

impl fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSink")
            .field("receiver", &receiver(&self.url))
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "[PEM]"))
            .field("batch_size", &self.batch_size)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("initial_backoff", &self.initial_backoff)
            .field("proxy", &self.proxy)
            .finish()
    }
}

fn receiver(url: &Uri) -> String {
    super::super::outbound::redacted(url)
}

impl WebhookSink {
    /// A sink POSTing to `url` with the defaults; checks the URL.
    pub fn new(url: &str) -> Result<Self, WebhookError> {
        let url = super::super::outbound::receiver_url(url, "events name users and what they did")
            .map_err(WebhookError::Url)?;
        Ok(Self {
            url,
            ca_pem: None,
            batch_size: 400,
            timeout: Duration::from_secs(10),
            retries: 3,
            initial_backoff: Duration::from_secs(10),
            proxy: OutboundProxy::default(),
        })
    }

    /// Checks the TLS setup (the CA bundle) without starting anything: what
    /// [`AuditSink::webhook`](super::AuditSink::webhook) would refuse.
    pub fn check(&self) -> Result<(), WebhookError> {
        self.client().map(drop)
    }

    /// The HTTP client, checked before the thread starts.
    pub(super) fn client(&self) -> Result<HttpClient, WebhookError> {
        super::super::outbound::client(self.ca_pem.as_deref(), self.timeout, &self.proxy)
            .map_err(WebhookError::Tls)
    }
}

pub(super) use super::super::outbound::HttpClient;

/// `events` (each one's JSON) as an `audit.k8s.io/v1` `EventList`.
fn event_list(events: &[Bytes]) -> Bytes {
    let length = events.iter().map(Bytes::len).sum::<usize>() + events.len() + 128;
    let mut body = Vec::with_capacity(length);
    body.extend_from_slice(
        br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":["#,
    );
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(event);
    }
    body.extend_from_slice(b"]}");
    Bytes::from(body)
}

/// The sender thread's loop: batch, POST, retry, drop; ends when every
/// sender is gone and the queue is empty.
pub(super) fn deliver_events(
    queue: Receiver<Bytes>,
    webhook: WebhookSink,
    client: HttpClient,
    counters: Arc<QueueCounters>,
    closing: &Closing,
    runtime: tokio::runtime::Runtime,
) {
    let mut report = Report::default();
    // Lost once the sink was closed: logged once, at the end.
    let mut abandoned = 0;
    let mut batch = Vec::with_capacity(webhook.batch_size.min(1024));
    // Blocking receives on this thread are fine: its event loop has nothing
    // else to run while there is nothing to send.
    while let Ok(event) = queue.recv() {
        batch.push(event);
        while batch.len() < webhook.batch_size.max(1) {
            match queue.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        counters.taken(batch.len() as u64);
        let body = event_list(&batch);
        let delivered = runtime.block_on(async {
            tokio::select! {
                biased;
                () = closing.drained() => false,
                delivered = deliver(&webhook, &client, body, &mut report, closing) => delivered,
            }
        });
        if !delivered {
            counters.lost(batch.len() as u64);
            if closing.is_closed() {
                abandoned += batch.len();
            }
        }
        batch.clear();
        report.dropped(&counters);
    }
    if abandoned > 0 {
        tracing::warn!(
            dropped = abandoned,
            receiver = receiver(&webhook.url),
            "audit events not delivered before shutdown"
        );
    }
}

/// POSTs one batch, retrying with backoff until the sink is closed; false
/// when it never got through.
async fn deliver(
    webhook: &WebhookSink,
    client: &HttpClient,
    body: Bytes,
    report: &mut Report,
    closing: &Closing,
) -> bool {
    let mut backoff = webhook.initial_backoff;
    for attempt in 0..=webhook.retries {
        if attempt > 0 {
            tokio::select! {
                biased;
                () = closing.closed() => return false,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = backoff.saturating_mul(2);
        }
        let sent =
            super::super::outbound::post_json(client, &webhook.url, body.clone(), webhook.timeout)
                .await;
        match sent {
            Ok(()) => return true,
            Err(error) => report.error(&receiver(&webhook.url), &error),
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use http::{Request, StatusCode};
    use http_body_util::{BodyExt, Full};
    use hyper::{server::conn::http1, service::service_fn};
    use hyper_util::rt::TokioIo;
    use tokio::sync::{mpsc, oneshot};

    use super::*;
    use crate::plugins::audit::{event::tests::send_sample, AuditSink, OnFull, QueueOptions};

    /// A receiver on loopback: each POST's `EventList` goes to the channel,
    /// then `answer` decides the status (and may make it wait).
    async fn receiver<F, Fut>(answer: F) -> (String, mpsc::UnboundedReceiver<Value>)
    where
        F: Fn() -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = StatusCode> + Send,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/audit", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (tx, answer) = (tx.clone(), answer.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let (tx, answer) = (tx.clone(), answer.clone());
                        async move {
                            let body = request.into_body().collect().await?.to_bytes();
                            let _ = tx.send(serde_json::from_slice::<Value>(&body).unwrap());
                            let mut response = http::Response::new(Full::new(Bytes::new()));
                            *response.status_mut() = answer().await;
                            Ok::<_, hyper::Error>(response)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (url, rx)
    }

    type Value = serde_json::Value;

    fn ids(list: &Value) -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["auditID"].as_str().unwrap().to_owned())
            .collect()
    }

    fn webhook(url: &str) -> WebhookSink {
        let mut webhook = WebhookSink::new(url).unwrap();
        webhook.initial_backoff = Duration::from_millis(1);
        webhook.retries = 2;
        webhook
    }

    /// Dropping the last clone waits for the sender thread (so nothing may
    /// hold another clone): off the runtime.
    async fn close(sink: AuditSink) {
        tokio::task::spawn_blocking(move || drop(sink))
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn posts_event_lists_in_batches() {
        let (url, mut lists) = receiver(|| async { StatusCode::OK }).await;
        let mut webhook = webhook(&url);
        webhook.batch_size = 2;
        let sink = AuditSink::webhook(webhook, QueueOptions::default()).unwrap();
        for id in 0..5 {
            send_sample(&sink, &id.to_string());
        }
        let counters = sink.counters();
        close(sink).await;
        let mut seen = Vec::new();
        while let Ok(list) = lists.try_recv() {
            assert_eq!(list["kind"], "EventList");
            assert_eq!(list["apiVersion"], "audit.k8s.io/v1");
            let batch = ids(&list);
            assert!((1..=2).contains(&batch.len()), "{list}");
            seen.extend(batch);
        }
        assert_eq!(seen, ["0", "1", "2", "3", "4"]);
        assert_eq!(counters.dropped(), 0);
        assert_eq!(counters.queued(), 0);
    }

    /// A receiver that always fails: each batch is tried 1 + retries
    /// times, then dropped and counted (while the sink is open: closing it
    /// ends the retries).
    #[tokio::test(flavor = "multi_thread")]
    async fn a_failing_receiver_costs_retries_then_drops() {
        let (url, mut lists) = receiver(|| async { StatusCode::INTERNAL_SERVER_ERROR }).await;
        let sink = AuditSink::webhook(webhook(&url), QueueOptions::default()).unwrap();
        let counters = sink.counters();
        send_sample(&sink, "lost");
        for _ in 0..3 {
            let list = tokio::time::timeout(Duration::from_secs(60), lists.recv()).await;
            assert_eq!(ids(&list.unwrap().unwrap()), ["lost"]);
        }
        close(sink).await;
        assert!(lists.try_recv().is_err(), "no fourth attempt");
        assert_eq!(counters.dropped(), 1);
    }

    /// A receiver that does not answer: while the sender waits on it, the
    /// queue holds at most its capacity and the rest is dropped and
    /// counted; once it answers, what was queued is delivered.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_slow_receiver_bounds_memory_and_counts_drops() {
        let (release, released) = oneshot::channel::<()>();
        let released = Arc::new(Mutex::new(Some(released)));
        let (url, mut lists) = receiver(move || {
            let gate = released.lock().unwrap().take();
            async move {
                if let Some(gate) = gate {
                    let _ = gate.await;
                }
                StatusCode::OK
            }
        })
        .await;
        let mut webhook = webhook(&url);
        webhook.timeout = Duration::from_secs(600);
        let sink = AuditSink::webhook(
            webhook,
            QueueOptions {
                capacity: 2,
                on_full: OnFull::Drop,
            },
        )
        .unwrap();
        send_sample(&sink, "first");
        // The sender is now stuck on the first POST.
        assert_eq!(ids(&lists.recv().await.unwrap()), ["first"]);
        for id in 0..10 {
            send_sample(&sink, &id.to_string());
        }
        assert_eq!(sink.dropped(), 8);
        assert_eq!(sink.queued(), 2);
        release.send(()).unwrap();
        let counters = sink.counters();
        close(sink).await;
        assert_eq!(ids(&lists.recv().await.unwrap()), ["0", "1"]);
        assert_eq!(counters.dropped(), 8);
    }

    /// Drops `sink` on a thread of its own; fails when that does not
    /// return within a generous bound (a hang, not a slow machine).
    fn close_within_bound(sink: AuditSink) {
        let (done, closed) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(sink);
            let _ = done.send(());
        });
        closed
            .recv_timeout(Duration::from_secs(120))
            .expect("dropping the sink hangs");
    }

    /// A receiver that is down at shutdown: the batch is not retried (an
    /// hour's backoff here), it is dropped and counted. Draining with
    /// retries held shutdown for the whole backoff.
    #[test]
    fn shutdown_does_not_wait_to_retry() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut webhook = WebhookSink::new(&format!("http://127.0.0.1:{port}/audit")).unwrap();
        webhook.initial_backoff = Duration::from_secs(3600);
        let sink = AuditSink::webhook(webhook, QueueOptions::default()).unwrap();
        let counters = sink.counters();
        send_sample(&sink, "lost");
        close_within_bound(sink);
        assert_eq!(counters.dropped(), 1);
        assert_eq!(counters.queued(), 0);
    }

    /// A receiver that takes the POST and never answers: shutdown waits
    /// [`DRAIN_TIME`], not the POST's timeout (ten minutes here), then
    /// counts every queued event as dropped.
    #[tokio::test(flavor = "multi_thread")]
    async fn shutdown_bounds_a_silent_receiver() {
        let (url, mut lists) = receiver(std::future::pending).await;
        let mut webhook = webhook(&url);
        webhook.timeout = Duration::from_secs(600);
        webhook.batch_size = 1;
        let sink = AuditSink::webhook(webhook, QueueOptions::default()).unwrap();
        let counters = sink.counters();
        for id in 0..3 {
            send_sample(&sink, &id.to_string());
        }
        // The first POST is on its way: the others wait in the queue.
        assert_eq!(ids(&lists.recv().await.unwrap()), ["0"]);
        tokio::task::spawn_blocking(move || close_within_bound(sink))
            .await
            .unwrap();
        assert_eq!(counters.dropped(), 3);
    }

    #[test]
    fn urls_must_be_https_or_loopback() {
        for ok in [
            "https://audit.example.com/events",
            "http://127.0.0.1:9880/audit",
            "http://localhost:9880/",
            "http://[::1]:9880/",
        ] {
            assert!(WebhookSink::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://audit.example.com/",
            "ftp://x/",
            "not a url",
            "https:///x",
        ] {
            assert!(WebhookSink::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_url_s_secret_stays_out_of_debug_and_errors() {
        let secret = "T000/B000/XXXXsecretXXXX";
        let sink =
            WebhookSink::new(&format!("https://hooks.example.com/services/{secret}")).unwrap();
        let shown = format!("{sink:?}");
        assert!(shown.contains("https://hooks.example.com"), "{shown}");
        assert!(!shown.contains(secret), "{shown}");
        let refused = WebhookSink::new(&format!("ftp://user:{secret}@x/")).unwrap_err();
        assert!(!refused.to_string().contains(secret), "{refused}");
    }
    #[test]
    fn the_proxy_s_credentials_stay_out_of_debug() {
        let mut sink = WebhookSink::new("https://hooks.example.com/events").unwrap();
        sink.proxy = OutboundProxy::new("http://alice:s3cret@proxy.corp:3128", "").unwrap();
        let shown = format!("{sink:?}");
        assert!(shown.contains("proxy.corp:3128"), "{shown}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("alice"),
            "{shown}"
        );
    }
}
