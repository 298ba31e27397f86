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

use futures_util::future::Either;
use http::{header, Request};
use tower::{Layer, Service};

use crate::{
    authn::{
        AuthenticatorChain, AuthnAttempt, AuthnError, AuthnOutcome, BoxFuture, Credential, Identity,
    },
    context::{self, ConnectionInfo, RequestContext},
    endpoints::path::{Access, Caller, Endpoint},
    error::ProxyError,
    plugin::{Phases, Plugins, RequestPhase},
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
    type Future = Either<S::Future, BoxFuture<'static, ProxyResult>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let context = context::of(&request);
        let access = request.extensions().get::<Endpoint>().map(Endpoint::access);
        if access.is_none() {
            // The session cookie is a credential for Paddock's own endpoints
            // only. A browser sends it on every navigation, so honouring it on
            // cluster paths would let a page served through the API server's
            // service or pod proxy run on Paddock's origin as the signed-in
            // user (and call Paddock's API as them). kubectl never sends
            // cookies; nothing of a caller's is forwarded either way.
            request.headers_mut().remove(header::COOKIE);
        }
        // A cluster request always needs a caller.
        let caller = access.map_or(Caller::Required, |access| access.caller);
        let credentials = match caller {
            Caller::None => Ok(Vec::new()),
            Caller::Optional | Caller::Required => {
                let client_cert = request
                    .extensions()
                    .get::<Arc<ConnectionInfo>>()
                    .and_then(|c| c.client_cert.as_ref());
                Credential::from_request(request.headers(), client_cert)
            }
        };
        // Paddock's own endpoints keep their cookies (the GitHub flow's
        // state); nothing of theirs is forwarded.
        request.headers_mut().remove(header::AUTHORIZATION);
        // Nearly always known at once (a token table, a cache hit): then,
        // unless a plugin hooking the request phase may wait, the request
        // goes on in place, without a boxed future or a clone of the
        // layers below.
        let lookup = Lookup::new(caller, credentials).now(&self.chain);
        let lookup = match lookup {
            Ok(authenticated) if self.plugins.request_phases_in_place() => {
                let mut answered = admitted(&context, access, authenticated).map(|()| None);
                if answered.is_ok() && self.plugins.hook(Phases::REQUEST) {
                    let (mut parts, body) = request.into_parts();
                    let phase = RequestPhase::Request;
                    answered = self
                        .plugins
                        .run_request_phase_now(phase, &context, &mut parts);
                    request = Request::from_parts(parts, body);
                }
                return match answered {
                    Ok(None) => Either::Left(self.inner.call(request)),
                    Ok(Some(response)) => Either::Right(Box::pin(std::future::ready(Ok(response)))),
                    Err(error) => Either::Right(Box::pin(std::future::ready(Err(error)))),
                };
            }
            lookup => lookup,
        };
        // Take the ready inner service, leave a fresh clone behind (tower's idiom).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let chain = self.chain.clone();
        let plugins = self.plugins.clone();
        Either::Right(Box::pin(async move {
            let authenticated = match lookup {
                Ok(authenticated) => authenticated,
                Err(waiting) => waiting.wait(&chain).await,
            };
            admitted(&context, access, authenticated)?;
            let (mut parts, body) = request.into_parts();
            let phase = RequestPhase::Request;
            if let Some(response) = plugins
                .run_request_phase(phase, &context, &mut parts)
                .await?
            {
                return Ok(response);
            }
            inner.call(Request::from_parts(parts, body)).await
        }))
    }
}

/// Who is calling, as far as a request's [`Caller`] asks: decided from
/// the caller kind and the credentials alone, or to be asked of the chain.
enum Lookup {
    /// Known without asking (`None` for nobody or an anonymous caller).
    Known(Result<Option<Arc<Identity>>, ProxyError>),
    /// The chain decides; a refusal is an error only if `required`
    /// (otherwise the caller is anonymous).
    Ask {
        credentials: Vec<Credential>,
        required: bool,
    },
}

impl Lookup {
    fn new(caller: Caller, credentials: Result<Vec<Credential>, ProxyError>) -> Self {
        match (caller, credentials) {
            (Caller::None, _) => Self::Known(Ok(None)),
            (Caller::Required, Ok(credentials)) => Self::Ask {
                credentials,
                required: true,
            },
            // Unreadable credentials.
            (Caller::Required, Err(error)) => Self::Known(Err(error)),
            // Expired cookies and the like make an anonymous caller.
            (Caller::Optional, Ok(credentials)) if !credentials.is_empty() => Self::Ask {
                credentials,
                required: false,
            },
            (Caller::Optional, _) => Self::Known(Ok(None)),
        }
    }

    /// The answer when the chain can give it without waiting; the lookup
    /// back when it must wait ([`Self::wait`]).
    fn now(
        self,
        chain: &AuthenticatorChain,
    ) -> Result<Result<Option<Arc<Identity>>, ProxyError>, Self> {
        match self {
            Self::Known(known) => Ok(known),
            Self::Ask {
                credentials,
                required,
            } => match chain.authenticate_now(&credentials) {
                Some(result) => Ok(Self::outcome(result, required)),
                None => Err(Self::Ask {
                    credentials,
                    required,
                }),
            },
        }
    }

    /// The answer, waiting for the authenticators that must.
    async fn wait(self, chain: &AuthenticatorChain) -> Result<Option<Arc<Identity>>, ProxyError> {
        match self {
            Self::Known(known) => known,
            Self::Ask {
                credentials,
                required,
            } => Self::outcome(chain.authenticate(&credentials).await, required),
        }
    }

    fn outcome(
        result: Result<Arc<Identity>, ProxyError>,
        required: bool,
    ) -> Result<Option<Arc<Identity>>, ProxyError> {
        if required {
            result.map(Some)
        } else {
            Ok(result.ok())
        }
    }
}

/// Records who is calling in the context once they are admitted to this
/// request; a refusal leaves its [`AuthnAttempt`] for the plugins.
fn admitted(
    context: &RequestContext,
    access: Option<Access>,
    authenticated: Result<Option<Arc<Identity>>, ProxyError>,
) -> Result<(), ProxyError> {
    let Some(identity) = recorded(context, authenticated)? else {
        return Ok(());
    };
    if let Err(error) = admit(&identity, context, access) {
        context.set_authn_attempt(AuthnAttempt {
            provider: Some(identity.provider.clone()),
            outcome: AuthnOutcome::Denied,
        });
        return Err(error);
    }
    tracing::debug!(auth.user = %identity.user, auth.provider = %identity.provider, "authenticated");
    context.set_identity(identity);
    Ok(())
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

#[cfg(test)]
mod tests {
    use tower::{Layer, ServiceExt};

    use super::*;
    use crate::{authn::tests::Later, body::ResponseBody};

    /// The same answers with and without plugins, whether the chain knows
    /// the caller at once (a token table) or after waiting: who reaches
    /// the layers below, the refusal, and no credential left in the headers.
    #[tokio::test]
    async fn answers_alike_at_once_and_after_waiting() {
        let tokens =
            crate::authn::token_file::TokenFileAuthenticator::from_csv("now,alice,1\n").unwrap();
        let waited = Arc::new(Identity {
            user: "waited".into(),
            ..Identity::default()
        });
        let chain = AuthenticatorChain::new()
            .with(tokens)
            .with(Later("later", waited));
        let below = tower::service_fn(|request: Request<()>| async move {
            assert!(request.headers().get(header::AUTHORIZATION).is_none());
            let user = context::of(&request).identity().unwrap().user.clone();
            Ok::<_, ProxyError>(
                http::Response::builder()
                    .header("x-user", user)
                    .body(ResponseBody::empty())
                    .unwrap(),
            )
        });
        for plugins in [
            Plugins::default(),
            Plugins::new(vec![Arc::new(
                crate::plugins::access_log::AccessLog::with_output(
                    Default::default(),
                    std::io::sink(),
                ),
            )]),
        ] {
            let layer = AuthenticateLayer::new(chain.clone(), plugins.clone()).layer(below);
            for (token, expected) in [
                ("now", Ok("alice")),
                ("later", Ok("waited")),
                ("unknown", Err("invalid")),
                // Unreadable: refused before any authenticator is asked.
                ("", Err("malformed")),
            ] {
                let mut request = Request::get("/api")
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .body(())
                    .unwrap();
                let context =
                    RequestContext::new(String::new(), http::Method::GET, "/api".into(), None);
                request.extensions_mut().insert(Arc::new(context));
                let answer = layer.clone().oneshot(request).await;
                match expected {
                    Ok(user) => assert_eq!(answer.unwrap().headers()["x-user"], user, "{token}"),
                    Err("invalid") => assert!(
                        matches!(answer, Err(ProxyError::InvalidCredentials)),
                        "{token}"
                    ),
                    Err(_) => assert!(
                        matches!(answer, Err(ProxyError::MalformedCredentials { .. })),
                        "{token:?}: {answer:?}"
                    ),
                }
            }
        }
    }
}
