//! Mounts Paddock inside another server: a plain hyper server that answers
//! its own `/hello` route and hands every other request to Paddock's
//! request path, `proxy.service()`, instead of letting Paddock own the
//! listener with `Proxy::serve`. Callers authenticate with a static token.
//!
//! Run it, optionally in front of an API server your kubeconfig can reach
//! (without one, only `/hello` and Paddock's own `/paddock/` endpoints
//! answer):
//!
//! ```sh
//! cargo run -p paddock-examples --example mount -- ~/.kube/config
//! ```
//!
//! The example listens on plain HTTP on the loopback interface to stay
//! short; a real host server terminates TLS before handing requests on.

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use proxy_core::{
    authn::token_file::TokenFileAuthenticator, authz::AllowAuthenticated, body::ResponseBody,
    context::ConnectionInfo, upstream::ClusterConfig, Proxy, ProxyService,
};
use tower::ServiceExt;

/// The host server's routing: its own `/hello`, everything else to Paddock.
async fn route(
    paddock: ProxyService,
    mut request: Request<Incoming>,
    client: SocketAddr,
) -> Result<Response<ResponseBody>, Infallible> {
    if request.uri().path() == "/hello" {
        return Ok(Response::new(ResponseBody::full(
            "hello from the host server\n",
        )));
    }
    // Paddock logs, and throttles logins, by the client's address.
    request.extensions_mut().insert(Arc::new(ConnectionInfo {
        remote_addr: Some(client),
        ..ConnectionInfo::default()
    }));
    paddock.oneshot(request).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let mut builder = Proxy::builder()
        .authenticator(TokenFileAuthenticator::from_csv(
            "demo-token,demo,1,viewers",
        )?)
        .authorizer(Arc::new(AllowAuthenticated));
    if let Some(kubeconfig) = std::env::args().nth(1) {
        let cluster = ClusterConfig::from_kubeconfig("default", kubeconfig.as_ref(), None)?;
        builder = builder.cluster(cluster, true);
    }
    let proxy = builder.build()?;

    // The service takes any body with `Bytes` data, not only hyper's: here
    // an in-process health check with an empty body.
    let health = proxy
        .service()
        .oneshot(Request::get("/paddock/healthz").body(Empty::<Bytes>::new())?)
        .await?;
    anyhow::ensure!(health.status() == StatusCode::OK, "unhealthy: {health:?}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:9080").await?;
    eprintln!("listening on http://127.0.0.1:9080");
    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = &mut shutdown => return Ok(()),
        };
        let paddock: ProxyService = proxy.service();
        let service =
            hyper::service::service_fn(move |request| route(paddock.clone(), request, client));
        tokio::spawn(async move {
            // With upgrades, so `kubectl exec` and port-forward work too.
            let served = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                eprintln!("connection from {client}: {error}");
            }
        });
    }
}

// Then, in another shell:
//
//     curl http://127.0.0.1:9080/hello                    # the host server's own route
//     curl http://127.0.0.1:9080/paddock/healthz          # Paddock's endpoint: ok
//     curl http://127.0.0.1:9080/api/v1/namespaces        # 401 from Paddock
//     curl -H 'Authorization: Bearer demo-token' \
//          http://127.0.0.1:9080/api/v1/namespaces        # forwarded as user "demo"
