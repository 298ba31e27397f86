//! Authenticate: turns the caller's credentials into an [`Identity`], then
//! removes `Authorization` and `Cookie` so no caller credential can reach
//! the upstream. Paddock's own endpoints come through here too, each asking
//! for a caller as its [`Access`] says, so there is one way to find out who
//! is calling. The plugins' `on_request` phase runs at its end: the caller
//! is known, policy has not spoken yet.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use http::{header, Request};
use tower::{Layer, Service};

use crate::{
    authn::{
        AuthenticatorChain, AuthnAttempt, AuthnError, AuthnOutcome, BoxFuture, Credential, Identity,
    },
    context::{self, ConnectionInfo, RequestContext},
    endpoints::path::{Access, Caller, Endpoint},
    error::ProxyError,
    plugin::{Plugins, RequestPhase},
    request::{ProxyResponse, ProxyResult},
};

/// Adds [`Authenticate`].
#[derive(Debug, Clone)]
pub(crate) struct AuthenticateLayer {
    chain: AuthenticatorChain,
    plugins: Plugins,
}

impl AuthenticateLayer {
    /// Authenticates with `chain`, then runs `plugins`' `on_request`.
    pub(crate) fn new(chain: AuthenticatorChain, plugins: Plugins) -> Self {
        Self { chain, plugins }
    }
}

impl<S> Layer<S> for AuthenticateLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Authenticate<S> {
        Authenticate {
            inner,
            chain: self.chain.clone(),
            plugins: self.plugins.clone(),
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Authenticate<S> {
    inner: S,
    chain: AuthenticatorChain,
    plugins: Plugins,
}

impl<S, B> Service<Request<B>> for Authenticate<S>
where
    S: Service<Request<B>, Response = ProxyResponse, Error = ProxyError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = ProxyResponse;
    type Error = ProxyError;
    type Future = BoxFuture<'static, ProxyResult>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // Take the ready inner service, leave a fresh clone behind (tower's idiom).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let chain = self.chain.clone();
        let plugins = self.plugins.clone();
        Box::pin(async move {
            let context = context::of(&request);
            let access = request.extensions().get::<Endpoint>().map(Endpoint::access);
            // A cluster request always needs a caller.
            let caller = access.map_or(Caller::Required, |access| access.caller);
            let credentials = match caller {
                Caller::None => Ok(Vec::new()),
                Caller::Optional | Caller::Required => {
                    let client_cert = request
                        .extensions()
                        .get::<Arc<ConnectionInfo>>()
                        .and_then(|c| c.client_cert.clone());
                    Credential::from_request(request.headers(), client_cert.as_ref())
                }
            };
            let headers = request.headers_mut();
            headers.remove(header::AUTHORIZATION);
            if access.is_none() {
                // Paddock's own endpoints keep their cookies (the GitHub
                // flow's state); nothing of theirs is forwarded.
                headers.remove(header::COOKIE);
            }
            let identity = match caller {
                Caller::None => None,
                Caller::Required => {
                    Some(recorded(&context, authenticate(&chain, credentials).await)?)
                }
                // Expired cookies and the like make an anonymous caller.
                Caller::Optional => match credentials {
                    Ok(credentials) if !credentials.is_empty() => {
                        chain.authenticate(&credentials).await.ok()
                    }
                    _ => None,
                },
            };
            if let Some(identity) = identity {
                if let Err(error) = admit(&identity, &context, access) {
                    context.set_authn_attempt(AuthnAttempt {
                        provider: Some(identity.provider.clone()),
                        outcome: AuthnOutcome::Denied,
                    });
                    return Err(error);
                }
                tracing::debug!(auth.user = %identity.user, auth.provider = %identity.provider, "authenticated");
                context.set_identity(identity);
            }
            match plugins
                .run_request_phase(RequestPhase::Request, &context, request)
                .await?
            {
                Ok(request) => inner.call(request).await,
                Err(response) => Ok(response),
            }
        })
    }
}

/// Asks the chain, when the request's credentials could be read.
async fn authenticate(
    chain: &AuthenticatorChain,
    credentials: Result<Vec<Credential>, ProxyError>,
) -> Result<Arc<Identity>, ProxyError> {
    chain.authenticate(&credentials?).await
}

/// Leaves a refused credential's [`AuthnAttempt`] in the context for the
/// plugins.
fn recorded<T>(context: &RequestContext, result: Result<T, ProxyError>) -> Result<T, ProxyError> {
    if let Err(error) = &result {
        if let Some(attempt) = AuthnAttempt::refused(error) {
            context.set_authn_attempt(attempt);
        }
    }
    result
}

/// Whether what the credential allows covers this request: a cluster-scoped
/// token only its cluster (and the few endpoints [`Access`] lets it reach),
/// a user who must change their password only the endpoints that lead there.
/// The one place both rules are enforced, for proxied requests and Paddock's
/// own endpoints alike.
fn admit(
    identity: &Identity,
    context: &RequestContext,
    endpoint: Option<Access>,
) -> Result<(), ProxyError> {
    if let Some(scope) = &identity.cluster_scope {
        let admitted = match endpoint {
            Some(access) => access.cluster_scoped,
            None => context.cluster() == Some(scope.as_str()),
        };
        if !admitted {
            return Err(out_of_scope(
                scope,
                context.cluster().unwrap_or(&context.path),
            ));
        }
    }
    if identity.password_change_required
        && !endpoint.is_some_and(|access| access.password_change_pending)
    {
        return Err(AuthnError::PasswordChangeRequired {
            username: identity.username.clone(),
        }
        .into());
    }
    Ok(())
}

/// The refusal of a cluster-scoped token used for `target` (a cluster or
/// a path) outside its `scope`.
pub(crate) fn out_of_scope(scope: &str, target: &str) -> ProxyError {
    ProxyError::Forbidden {
        reason: format!("this token is valid only for cluster {scope}, not for {target}"),
    }
}
