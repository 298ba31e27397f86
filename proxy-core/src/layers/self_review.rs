//! Self review: Paddock answers `SelfSubjectAccessReview` itself, from the
//! same authorizer that decides proxied requests, so `kubectl auth can-i`
//! through Paddock tells the truth about what Paddock will allow (the
//! downstream API server only knows its own RBAC for the impersonated user).

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::future::Either;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use policy::RequestAttributes;
use serde::Deserialize;
use tower::{Layer, Service};

use crate::{
    authn::BoxFuture,
    authz::{Authorizer, AuthzRequest},
    body::{RequestBody, ResponseBody},
    context,
    error::ProxyError,
    request::{ProxyResponse, ProxyResult},
};

mod protobuf;

/// Largest review body Paddock reads (kubectl sends a few hundred bytes).
const MAX_REVIEW_BYTES: usize = 64 * 1024;

/// Adds [`SelfReview`].
#[derive(Clone)]
pub(crate) struct SelfReviewLayer {
    authorizer: Arc<dyn Authorizer>,
}

impl SelfReviewLayer {
    /// Answers reviews with `authorizer`.
    pub(crate) fn new(authorizer: Arc<dyn Authorizer>) -> Self {
        Self { authorizer }
    }
}

impl std::fmt::Debug for SelfReviewLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfReviewLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for SelfReviewLayer {
    type Service = SelfReview<S>;

    fn layer(&self, inner: S) -> SelfReview<S> {
        SelfReview {
            inner,
            authorizer: self.authorizer.clone(),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub(crate) struct SelfReview<S> {
    inner: S,
    authorizer: Arc<dyn Authorizer>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for SelfReview<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfReview")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

fn is_self_review(request: &Request<RequestBody>) -> bool {
    request.method() == Method::POST
        && context::of(request).attributes().is_some_and(|a| {
            a.is_resource_request
                && a.verb == "create"
                && a.api_group == "authorization.k8s.io"
                && a.resource == "selfsubjectaccessreviews"
        })
}

impl<S> Service<Request<RequestBody>> for SelfReview<S>
where
    S: Service<Request<RequestBody>, Response = ProxyResponse, Error = ProxyError>,
{
    type Response = ProxyResponse;
    type Error = ProxyError;
    type Future = Either<S::Future, BoxFuture<'static, ProxyResult>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        if !is_self_review(&request) {
            return Either::Left(self.inner.call(request));
        }
        let authorizer = self.authorizer.clone();
        Either::Right(Box::pin(review(request, authorizer)))
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review {
    api_version: Option<String>,
    spec: ReviewSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewSpec {
    resource_attributes: Option<ResourceAttributes>,
    non_resource_attributes: Option<NonResourceAttributes>,
}

#[derive(Debug, Default, Deserialize)]
struct ResourceAttributes {
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    verb: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    subresource: String,
    #[serde(default)]
    name: String,
}

#[derive(Debug, Default, Deserialize)]
struct NonResourceAttributes {
    #[serde(default)]
    path: String,
    #[serde(default)]
    verb: String,
}

async fn review(request: Request<RequestBody>, authorizer: Arc<dyn Authorizer>) -> ProxyResult {
    let context = context::of(&request);
    let identity = context
        .effective_identity()
        .cloned()
        .ok_or(ProxyError::MissingCredentials)?;
    let cluster = context.cluster().unwrap_or_default().to_owned();
    let bad = |message: String| ProxyError::BadRequest { message };
    let body = request
        .into_body()
        .read(MAX_REVIEW_BYTES)
        .await
        .map_err(|e| bad(format!("cannot read the review: {e}")))?;
    let json: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(json) => json,
        // kubectl sends built-in types as protobuf.
        Err(e) => protobuf::review_spec(&body)
            .map(|spec| serde_json::json!({ "spec": spec }))
            .ok_or_else(|| bad(format!("invalid SelfSubjectAccessReview: {e}")))?,
    };
    let review = Review::deserialize(&json)
        .map_err(|e| bad(format!("invalid SelfSubjectAccessReview: {e}")))?;
    let attributes = match (
        &review.spec.resource_attributes,
        &review.spec.non_resource_attributes,
    ) {
        (Some(r), None) => RequestAttributes::resource_request(&r.verb, &r.group, &r.resource)
            .with_namespace(&r.namespace)
            .with_name(&r.name)
            .with_subresource(&r.subresource),
        (None, Some(n)) => RequestAttributes::non_resource_request(&n.verb, &n.path),
        _ => {
            return Err(bad(
                "exactly one of resourceAttributes and nonResourceAttributes must be set"
                    .to_owned(),
            ))
        }
    };
    let decision = authorizer.authorize(&AuthzRequest {
        identity: &identity,
        cluster: &cluster,
        attributes: &attributes,
        // A review asks about an ordinary request, never an upgrade.
        upgrade: false,
    });
    let answer = serde_json::json!({
        "kind": "SelfSubjectAccessReview",
        "apiVersion": review.api_version.as_deref().unwrap_or("authorization.k8s.io/v1"),
        "metadata": { "creationTimestamp": null },
        "spec": json.get("spec"),
        "status": {
            "allowed": decision.allowed,
            "reason": decision.reason,
        },
    });
    let mut response = Response::new(ResponseBody::full(Bytes::from(answer.to_string())));
    *response.status_mut() = StatusCode::CREATED;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
