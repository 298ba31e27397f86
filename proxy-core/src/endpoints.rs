//! Paddock's own HTTP endpoints, all under `/paddock/` so they never shadow
//! a Kubernetes path: health and readiness now; login, kubeconfig and the
//! admin API as the providers that need them arrive.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::{
    authn::BoxFuture, body::ResponseBody, error::ProxyError, layers::ProxyResult, upstream::Router,
};

/// The `/paddock/` endpoints.
#[derive(Debug, Clone)]
pub struct Endpoints {
    router: Arc<Router>,
}

impl Endpoints {
    /// Endpoints reporting on the clusters of `router`.
    pub fn new(router: Arc<Router>) -> Self {
        Self { router }
    }

    /// Answers a request whose path starts with `/paddock`.
    pub fn handle(&self, request: Request<Incoming>) -> BoxFuture<'static, ProxyResult> {
        let result = match (request.method(), request.uri().path()) {
            (&Method::GET | &Method::HEAD, "/paddock/healthz") => Ok(text("ok\n")),
            (&Method::GET | &Method::HEAD, "/paddock/readyz") => Ok(self.readyz()),
            (_, "/paddock/healthz" | "/paddock/readyz") => Err(ProxyError::BadRequest {
                message: format!("method {} is not allowed here", request.method()),
            }),
            (_, path) => Err(ProxyError::NotFound {
                message: format!("{path} is not a Paddock endpoint"),
            }),
        };
        Box::pin(std::future::ready(result))
    }

    fn readyz(&self) -> Response<ResponseBody> {
        let mut clusters: Vec<&str> = self.router.ids().collect();
        clusters.sort_unstable();
        let body = serde_json::json!({ "status": "ok", "clusters": clusters });
        let mut response = Response::new(ResponseBody::full(Bytes::from(body.to_string())));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

fn text(body: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
