//! Embeds Paddock with its management plugins: the Kubernetes-format audit
//! log, Prometheus metrics on a listener of their own, alert hooks, and the
//! cluster health checker. Alerts go to a small receiver started here that
//! prints them (or to the webhook URL given as second argument).
//!
//! Run it in front of any API server your kubeconfig can reach:
//!
//! ```sh
//! cargo run -p paddock-examples --example management_plugins -- ~/.kube/config
//! ```
//!
//! Then, with the CA it prints:
//!
//! ```sh
//! CA=paddock-example-data/tls/ca.crt
//! curl --cacert $CA -H 'Authorization: Bearer demo-token' https://127.0.0.1:9443/api/v1/namespaces
//! curl --cacert $CA -H 'Authorization: Bearer demo-token' \
//!      https://127.0.0.1:9443/paddock/v1/clusters/default/health   # the checker's last read
//! for i in 1 2 3; do curl -s --cacert $CA -H 'Authorization: Bearer wrong' \
//!      https://127.0.0.1:9443/api >/dev/null; done                 # an alert is printed
//! curl http://127.0.0.1:9091/metrics                               # paddock_* metrics
//! tail -n 3 paddock-example-data/audit.log                         # audit.k8s.io/v1 events
//! ```

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use proxy_core::{
    authn::token_file::TokenFileAuthenticator,
    authz::AllowAuthenticated,
    health::HealthOptions,
    plugins::{
        alerts::{AlertReceiver, AlertRules, Alerts, AlertsOptions, Burst, Format},
        audit::{Audit, AuditSink, FileSink, Policy, QueueOptions},
        metrics::{serve, Metrics},
    },
    server::tls::ServerTls,
    upstream::ClusterConfig,
    Proxy,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let mut args = std::env::args().skip(1);
    let kubeconfig = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: management_plugins KUBECONFIG [WEBHOOK_URL]"))?;
    let webhook = match args.next() {
        Some(url) => url,
        None => print_alerts().await?,
    };
    let data_dir = std::path::Path::new("paddock-example-data");
    std::fs::create_dir_all(data_dir)?;

    // Audit: every request at Metadata, to a file rotated by size.
    let file = AuditSink::file(
        FileSink::new(data_dir.join("audit.log")),
        QueueOptions::default(),
    )?;
    let audit = Audit::new(Policy::default(), file);

    // Alerts: a burst of refused credentials from one address, a cluster
    // that stops answering.
    let rules = AlertRules {
        failed_logins: Some(Burst {
            threshold: 3,
            window: Duration::from_secs(60),
        }),
        cluster_unreachable: true,
        ..AlertRules::default()
    };
    let receiver = AlertReceiver::new("console", &webhook, Format::Generic)?;
    let alerts = Alerts::new(rules, vec![receiver], AlertsOptions::default())?;

    // Metrics, with the other plugins' queues.
    let metrics = Metrics::new();
    metrics.queue("audit", audit.queue_stats());
    metrics.queue("alerts", alerts.queue_stats());

    let cluster = ClusterConfig::from_kubeconfig("default", kubeconfig.as_ref(), None)?;
    let proxy = Proxy::builder()
        .authenticator(TokenFileAuthenticator::from_csv(
            "demo-token,demo,1,viewers",
        )?)
        .authorizer(Arc::new(AllowAuthenticated))
        // For the demo only: any authenticated caller may read the health
        // view, which is administration.
        .admin_authorizer(Arc::new(AllowAuthenticated))
        .cluster(cluster, true)
        .cluster_health(HealthOptions::new(
            Duration::from_secs(10),
            Duration::from_secs(5),
        ))
        .plugin(audit)
        .plugin(alerts)
        .plugin(metrics.clone())
        .build()?;

    let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:9091").await?;
    tokio::spawn(serve(
        metrics_listener,
        metrics.registry(),
        std::future::pending(),
    ));
    let tls = ServerTls::self_signed(data_dir, &[])?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:9443").await?;
    eprintln!(
        "listening on https://127.0.0.1:9443, CA in {}; metrics on http://127.0.0.1:9091/metrics",
        data_dir.join("tls/ca.crt").display()
    );
    proxy
        .serve(listener, tls.server_config()?, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Starts a webhook receiver on loopback that prints each alert; returns
/// its URL.
async fn print_alerts() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/alerts", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        let body = request.into_body().collect().await?.to_bytes();
                        eprintln!("ALERT {}", String::from_utf8_lossy(&body));
                        Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::new())))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(url)
}
