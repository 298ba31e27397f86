//! Route: Paddock's own endpoints under `/paddock/`, cluster `<id>` under
//! `/k8s/clusters/<id>/...` (prefix removed), the default cluster at `/`.
//! A cluster request gets its target and its [`RequestAttributes`]: what the
//! API server will resolve it to, for policy and for the long-running
//! exemption. A request for one of Paddock's own endpoints gets its parsed
//! [`Endpoint`], and goes on to be authenticated like any other; the
//! endpoints layer answers it.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use http::{uri::PathAndQuery, Request, Uri};
use policy::RequestAttributes;
use tower::{Layer, Service};

use crate::{
    authn::BoxFuture,
    context,
    endpoints::path::Endpoint,
    error::ProxyError,
    request::{ProxyResponse, ProxyResult},
    upstream::{Cluster, Router},
};

/// The prefix of per-cluster paths.
pub(crate) const CLUSTER_PREFIX: &str = "/k8s/clusters/";

/// Adds [`Route`].
#[derive(Debug, Clone)]
pub(crate) struct RouteLayer {
    router: Arc<Router>,
}

impl RouteLayer {
    /// Routes to the clusters of `router`; paths under `/paddock/` to
    /// Paddock's own endpoints.
    pub(crate) fn new(router: Arc<Router>) -> Self {
        Self { router }
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = Route<S>;

    fn layer(&self, inner: S) -> Route<S> {
        Route {
            inner,
            router: self.router.clone(),
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Route<S> {
    inner: S,
    router: Arc<Router>,
}

/// Where a path goes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    /// Paddock's own endpoints.
    Paddock,
    /// A cluster by id (`None`: the default cluster), and the path it sees.
    Cluster(Option<&'a str>, &'a str),
}

/// Splits a request path into its target.
pub(crate) fn target(path: &str) -> Target<'_> {
    if path == "/paddock" || path.starts_with("/paddock/") {
        return Target::Paddock;
    }
    match path.strip_prefix(CLUSTER_PREFIX) {
        Some(rest) => {
            let (id, rest) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
            Target::Cluster(Some(id), if rest.is_empty() { "/" } else { rest })
        }
        None => Target::Cluster(None, path),
    }
}

impl<S, B> Service<Request<B>> for Route<S>
where
    S: Service<Request<B>, Response = ProxyResponse, Error = ProxyError>,
    S::Future: Send + 'static,
{
    type Response = ProxyResponse;
    type Error = ProxyError;
    type Future = futures_util::future::Either<S::Future, BoxFuture<'static, ProxyResult>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        use futures_util::future::Either;
        // Parsed once: the relative path is what is forwarded and what the
        // attributes (and so policy) are resolved from.
        let (cluster, relative) = match target(request.uri().path()) {
            Target::Paddock => {
                return match Endpoint::parse(request.method(), request.uri().path()) {
                    Ok(endpoint) => {
                        request.extensions_mut().insert(endpoint);
                        Either::Left(self.inner.call(request))
                    }
                    Err(error) => Either::Right(Box::pin(std::future::ready(Err(error)))),
                };
            }
            Target::Cluster(None, _) => (self.router.resolve(None), None),
            // Owned: the path borrows from the URI being replaced.
            Target::Cluster(id, path) => (self.router.resolve(id), Some(path.to_owned())),
        };
        let cluster: Arc<Cluster> = match cluster {
            Ok(cluster) => cluster,
            Err(error) => return Either::Right(Box::pin(std::future::ready(Err(error)))),
        };
        let rewritten = match relative {
            Some(path) => rewrite_path(request.uri_mut(), &path),
            None => Ok(()),
        };
        let attributes = match rewritten.and_then(|()| {
            RequestAttributes::from_request(
                request.method().as_str(),
                request.uri().path(),
                request.uri().query(),
            )
            .map_err(|e| ProxyError::BadRequest {
                message: e.to_string(),
            })
        }) {
            Ok(attributes) => attributes,
            Err(error) => return Either::Right(Box::pin(std::future::ready(Err(error)))),
        };
        let context = context::of(&request);
        context.set_attributes(attributes);
        context.set_target(cluster);
        Either::Left(self.inner.call(request))
    }
}

/// Replaces the path of `uri`, keeping its query.
fn rewrite_path(uri: &mut Uri, path: &str) -> Result<(), ProxyError> {
    if uri.path() == path {
        return Ok(());
    }
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query =
        Some(
            PathAndQuery::try_from(path_and_query).map_err(|_| ProxyError::BadRequest {
                message: "invalid request path".to_owned(),
            })?,
        );
    *uri = Uri::from_parts(parts).map_err(|_| ProxyError::BadRequest {
        message: "invalid request URI".to_owned(),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_targets() {
        assert_eq!(target("/paddock/healthz"), Target::Paddock);
        assert_eq!(target("/paddock"), Target::Paddock);
        assert_eq!(target("/paddockx"), Target::Cluster(None, "/paddockx"));
        assert_eq!(
            target("/api/v1/pods"),
            Target::Cluster(None, "/api/v1/pods")
        );
        assert_eq!(
            target("/k8s/clusters/prod/api/v1/pods"),
            Target::Cluster(Some("prod"), "/api/v1/pods")
        );
        assert_eq!(
            target("/k8s/clusters/prod"),
            Target::Cluster(Some("prod"), "/")
        );
        assert_eq!(
            target("/k8s/clusters/prod/"),
            Target::Cluster(Some("prod"), "/")
        );
    }

    /// The path forwarded and the path policy decides on are one and the
    /// same, however many cluster prefixes a caller stacks up.
    #[tokio::test]
    async fn authorizes_the_path_it_forwards() {
        use crate::upstream::ClusterConfig;
        use tower::ServiceExt;

        let mut router = Router::new();
        let cluster = Cluster::new(
            &ClusterConfig::new("a", "https://127.0.0.1:1"),
            1,
            crate::events::Events::default(),
        )
        .unwrap();
        router.add(cluster, true);
        let seen = tower::service_fn(|request: Request<()>| async move {
            let context = context::of(&request);
            let attributes = context.attributes().unwrap();
            assert_eq!(attributes.path, request.uri().path());
            Ok::<_, ProxyError>(
                http::Response::builder()
                    .header("x-path", request.uri().path())
                    .header("x-resource", attributes.is_resource_request.to_string())
                    .body(crate::body::ResponseBody::empty())
                    .unwrap(),
            )
        });
        let route = RouteLayer::new(Arc::new(router)).layer(seen);
        for (path, forwarded, resource) in [
            ("/k8s/clusters/a/api/v1/secrets", "/api/v1/secrets", "true"),
            (
                "/k8s/clusters/a/k8s/clusters/a/api/v1/secrets",
                "/k8s/clusters/a/api/v1/secrets",
                "false",
            ),
            ("/api/v1/secrets", "/api/v1/secrets", "true"),
        ] {
            let mut request = Request::get(path).body(()).unwrap();
            request
                .extensions_mut()
                .insert(Arc::new(context::RequestContext::new(
                    String::new(),
                    http::Method::GET,
                    path.to_owned(),
                    None,
                )));
            let response = route.clone().oneshot(request).await.unwrap();
            assert_eq!(response.headers()["x-path"], forwarded, "{path}");
            assert_eq!(response.headers()["x-resource"], resource, "{path}");
        }
    }

    #[test]
    fn rewrites_keeping_the_query() {
        let mut uri: Uri = "/k8s/clusters/a/api?watch=1&x=%2F".parse().unwrap();
        rewrite_path(&mut uri, "/api").unwrap();
        assert_eq!(uri, "/api?watch=1&x=%2F");
    }
}
