//! Embeds Paddock as a library: a proxy that authenticates with a static
//! token table, allows authenticated callers, and adds a plugin that refuses
//! every write, the way a "read-only break-glass" endpoint would.
//!
//! Run it in front of any API server your kubeconfig can reach:
//!
//! ```sh
//! cargo run -p paddock-examples --example read_only_proxy -- ~/.kube/config
//! ```
//!
//! Then, with the CA it prints:
//!
//! ```sh
//! curl --cacert paddock-example-data/tls/ca.crt -H 'Authorization: Bearer demo-token' \
//!      https://127.0.0.1:9443/api/v1/namespaces        # forwarded as user "demo"
//! curl --cacert paddock-example-data/tls/ca.crt -H 'Authorization: Bearer demo-token' \
//!      -X DELETE https://127.0.0.1:9443/api/v1/namespaces/x   # 403 from the plugin
//! ```

use std::sync::Arc;

use http::{request, Method, StatusCode};
use proxy_core::{
    authn::token_file::TokenFileAuthenticator,
    authz::AllowAuthenticated,
    context::RequestContext,
    error::ProxyError,
    future::ReadyOrBoxed,
    plugin::{Flow, Phases, Plugin},
    server::tls::ServerTls,
    status::Status,
    upstream::ClusterConfig,
    Proxy,
};

/// Answers every non-read request itself, before it leaves Paddock.
struct ReadOnly;

impl Plugin for ReadOnly {
    fn name(&self) -> &'static str {
        "read-only"
    }

    // Only this phase: the others are not offered, and cost nothing.
    fn phases(&self) -> Phases {
        Phases::UPSTREAM_REQUEST
    }

    // Nothing to wait for: the request goes on in place.
    fn request_phases_are_immediate(&self) -> bool {
        true
    }

    fn on_upstream_request<'a>(
        &'a self,
        context: &'a RequestContext,
        request: &'a mut request::Parts,
    ) -> ReadyOrBoxed<'a, Result<Flow, ProxyError>> {
        let read = matches!(request.method, Method::GET | Method::HEAD | Method::OPTIONS);
        let flow = if read {
            Flow::Continue
        } else {
            let user = context.identity().map_or("-", |i| i.user.as_str());
            Flow::Respond(
                Status::failure(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    format!(
                        "this endpoint is read-only ({user} tried {})",
                        request.method
                    ),
                )
                .into_response(),
            )
        };
        ReadyOrBoxed::ready(Ok(flow))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let kubeconfig = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: read_only_proxy KUBECONFIG"))?;
    let cluster = ClusterConfig::from_kubeconfig("default", kubeconfig.as_ref(), None)?;
    let proxy = Proxy::builder()
        .authenticator(TokenFileAuthenticator::from_csv(
            "demo-token,demo,1,viewers",
        )?)
        .authorizer(Arc::new(AllowAuthenticated))
        .cluster(cluster, true)
        .plugin(ReadOnly)
        .build()?;
    let data_dir = std::path::Path::new("paddock-example-data");
    let tls = ServerTls::self_signed(data_dir, &[])?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:9443").await?;
    eprintln!(
        "listening on https://127.0.0.1:9443, CA in {}",
        data_dir.join("tls/ca.crt").display()
    );
    proxy
        .serve(listener, tls.server_config()?, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
