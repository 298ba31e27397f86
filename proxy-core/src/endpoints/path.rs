//! Which of Paddock's own endpoints a request is for, parsed once from its
//! method and path by the route layer, and who may call it. The
//! authenticate layer reads [`Endpoint::access`]; the endpoints dispatch on
//! the same value, so what is admitted is what is served.

use http::Method;

use crate::error::ProxyError;

/// One of Paddock's own endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `GET /paddock/healthz`.
    Healthz,
    /// `GET /paddock/readyz`.
    Readyz,
    /// `GET /paddock/login`: the browser sign-in page.
    LoginPage,
    /// `POST /paddock/login`: its password form.
    LoginForm,
    /// `POST /paddock/logout`: the browser's sign-out button.
    LogoutForm,
    /// `GET /paddock/`: the browser landing page.
    Landing,
    /// `GET /paddock/v1/github/login`.
    #[cfg(feature = "github")]
    GithubLogin,
    /// `GET /paddock/v1/github/callback`.
    #[cfg(feature = "github")]
    GithubCallback,
    /// `GET /paddock/v1/oidc/<name>/login`.
    #[cfg(feature = "oidc")]
    OidcLogin(String),
    /// `GET /paddock/v1/oidc/<name>/callback`.
    #[cfg(feature = "oidc")]
    OidcCallback(String),
    /// `POST /paddock/v1/login`.
    Login,
    /// `POST /paddock/v1/logout`.
    Logout,
    /// `GET /paddock/v1/me`.
    Me,
    /// `POST /paddock/v1/password`.
    Password,
    /// `GET /paddock/v1/kubeconfig`.
    Kubeconfig,
    /// `GET /paddock/v1/clusters/<id>/health`: the cluster's last health
    /// check.
    ClusterHealth(String),
    /// `GET /paddock/v1/connect`: an agent opens its tunnel.
    Connect,
    /// `GET /paddock/v1/clusters/<id>/replica`: a sidecar's feed.
    Replica(String),
    /// `/paddock/v1/users…`, `/paddock/v1/tokens…`, `/paddock/v1/principals`,
    /// `/paddock/v1/bindings…`, `/paddock/v1/projects…`,
    /// `/paddock/v1/clusters…`: the path segments
    /// after `v1/`.
    Admin(Vec<String>),
}

/// Whether an endpoint needs to know its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller {
    /// Nobody is authenticated (health, login): credentials are not read.
    None,
    /// The caller is authenticated when their credentials are valid, and
    /// anonymous otherwise (the landing page redirects to sign-in).
    Optional,
    /// A caller without valid credentials gets 401.
    Required,
}

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Access {
    /// Whether the caller is authenticated.
    pub(crate) caller: Caller,
    /// A cluster-scoped token (a downloaded kubeconfig's) is admitted. Such
    /// a token may only say who it is (`me`), end itself (`logout`) and
    /// download a kubeconfig for its own cluster.
    pub(crate) cluster_scoped: bool,
    /// A user who must change their password first is admitted.
    pub(crate) password_change_pending: bool,
}

impl Access {
    const PUBLIC: Access = Access {
        caller: Caller::None,
        cluster_scoped: true,
        password_change_pending: true,
    };

    const fn caller(caller: Caller) -> Access {
        Access {
            caller,
            cluster_scoped: false,
            password_change_pending: false,
        }
    }

    const fn scoped_ok(mut self) -> Access {
        self.cluster_scoped = true;
        self
    }

    const fn pending_ok(mut self) -> Access {
        self.password_change_pending = true;
        self
    }
}

impl Endpoint {
    /// Parses a request for a path under `/paddock`.
    pub(crate) fn parse(method: &Method, path: &str) -> Result<Endpoint, ProxyError> {
        let segments: Vec<&str> = path
            .strip_prefix("/paddock")
            .unwrap_or(path)
            .trim_start_matches('/')
            .trim_end_matches('/')
            .split('/')
            .collect();
        let read = method == Method::GET || method == Method::HEAD;
        let post = method == Method::POST;
        let endpoint = match segments.as_slice() {
            [""] if path == "/paddock/" && read => Endpoint::Landing,
            ["healthz"] if read => Endpoint::Healthz,
            ["readyz"] if read => Endpoint::Readyz,
            ["login"] if read => Endpoint::LoginPage,
            ["login"] if post => Endpoint::LoginForm,
            ["logout"] if post => Endpoint::LogoutForm,
            [] | [""] | ["healthz" | "readyz" | "login" | "logout"] if path != "/paddock" => {
                return Err(method_not_allowed(method))
            }
            #[cfg(feature = "github")]
            ["v1", "github", "login"] if method == Method::GET => Endpoint::GithubLogin,
            #[cfg(feature = "github")]
            ["v1", "github", "callback"] if method == Method::GET => Endpoint::GithubCallback,
            #[cfg(feature = "oidc")]
            ["v1", "oidc", name, "login"] if method == Method::GET => {
                Endpoint::OidcLogin((*name).to_owned())
            }
            #[cfg(feature = "oidc")]
            ["v1", "oidc", name, "callback"] if method == Method::GET => {
                Endpoint::OidcCallback((*name).to_owned())
            }
            ["v1", "login"] if post => Endpoint::Login,
            ["v1", "logout"] if post => Endpoint::Logout,
            ["v1", "me"] if method == Method::GET => Endpoint::Me,
            ["v1", "password"] if post => Endpoint::Password,
            ["v1", "kubeconfig"] if method == Method::GET => Endpoint::Kubeconfig,
            ["v1", "clusters", id, "health"] if read && !id.is_empty() => {
                Endpoint::ClusterHealth((*id).to_owned())
            }
            ["v1", "clusters", _, "health"] => return Err(method_not_allowed(method)),
            ["v1", "connect"] if method == Method::GET => Endpoint::Connect,
            ["v1", "login" | "logout" | "me" | "password" | "kubeconfig" | "connect"] => {
                return Err(method_not_allowed(method))
            }
            ["v1", "clusters", id, "replica"] if read && !id.is_empty() => {
                Endpoint::Replica((*id).to_owned())
            }
            ["v1", rest @ ..]
                if matches!(
                    rest,
                    [
                        "users" | "tokens" | "bindings" | "projects" | "clusters",
                        ..
                    ] | ["principals"]
                ) =>
            {
                Endpoint::Admin(rest.iter().map(|s| (*s).to_owned()).collect())
            }
            _ => {
                return Err(ProxyError::NotFound {
                    message: format!("{path} is not a Paddock endpoint"),
                })
            }
        };
        Ok(endpoint)
    }

    /// Part of the JSON API under `/paddock/v1/` (the browser's forms and
    /// the GitHub redirect flow are not).
    pub(crate) fn is_json_api(&self) -> bool {
        matches!(
            self,
            Endpoint::Login
                | Endpoint::Logout
                | Endpoint::Me
                | Endpoint::Password
                | Endpoint::Kubeconfig
                | Endpoint::ClusterHealth(_)
                | Endpoint::Replica(_)
                | Endpoint::Admin(_)
        )
    }

    /// Who may call this endpoint.
    pub(crate) fn access(&self) -> Access {
        match self {
            Endpoint::Healthz | Endpoint::Readyz | Endpoint::LoginPage | Endpoint::LoginForm => {
                Access::PUBLIC
            }
            #[cfg(feature = "github")]
            Endpoint::GithubLogin | Endpoint::GithubCallback => Access::PUBLIC,
            #[cfg(feature = "oidc")]
            Endpoint::OidcLogin(_) | Endpoint::OidcCallback(_) => Access::PUBLIC,
            // Logging in needs no caller; a session cookie that comes along
            // must not make the login fail.
            Endpoint::Login => Access::PUBLIC,
            // Agents are not users: their registration token is checked by
            // the endpoint against the cluster's hash, and nothing else.
            // Sidecars neither: the feed endpoint checks the cluster's
            // registration token the same way.
            Endpoint::Connect | Endpoint::Replica(_) => Access::PUBLIC,
            // Shows a "change your password first" page to such a user.
            Endpoint::Landing => Access::caller(Caller::Optional).pending_ok(),
            Endpoint::LogoutForm => Access::caller(Caller::Optional).scoped_ok().pending_ok(),
            Endpoint::Logout | Endpoint::Me => {
                Access::caller(Caller::Required).scoped_ok().pending_ok()
            }
            Endpoint::Password => Access::caller(Caller::Required).pending_ok(),
            // The endpoint refuses other clusters than the token's own.
            Endpoint::Kubeconfig => Access::caller(Caller::Required).scoped_ok(),
            Endpoint::ClusterHealth(_) | Endpoint::Admin(_) => Access::caller(Caller::Required),
        }
    }
}

fn method_not_allowed(method: &Method) -> ProxyError {
    ProxyError::BadRequest {
        message: format!("method {method} is not allowed here"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_endpoint_once() {
        let cases = [
            (Method::GET, "/paddock/", Endpoint::Landing),
            (Method::GET, "/paddock/healthz", Endpoint::Healthz),
            (Method::HEAD, "/paddock/readyz", Endpoint::Readyz),
            (Method::POST, "/paddock/login", Endpoint::LoginForm),
            (Method::POST, "/paddock/v1/login", Endpoint::Login),
            (Method::GET, "/paddock/v1/me", Endpoint::Me),
            (Method::GET, "/paddock/v1/kubeconfig", Endpoint::Kubeconfig),
            (
                Method::GET,
                "/paddock/v1/clusters/prod/health",
                Endpoint::ClusterHealth("prod".into()),
            ),
            (
                Method::DELETE,
                "/paddock/v1/tokens/t-1",
                Endpoint::Admin(vec!["tokens".into(), "t-1".into()]),
            ),
            (
                Method::GET,
                "/paddock/v1/clusters/prod/replica",
                Endpoint::Replica("prod".into()),
            ),
            (
                Method::POST,
                "/paddock/v1/bindings",
                Endpoint::Admin(vec!["bindings".into()]),
            ),
            (
                Method::DELETE,
                "/paddock/v1/projects/p-1/namespaces/web",
                Endpoint::Admin(vec![
                    "projects".into(),
                    "p-1".into(),
                    "namespaces".into(),
                    "web".into(),
                ]),
            ),
        ];
        for (method, path, expected) in cases {
            assert_eq!(Endpoint::parse(&method, path).unwrap(), expected, "{path}");
        }
        for (method, path) in [
            (Method::POST, "/paddock/healthz"),
            (Method::GET, "/paddock/v1/login"),
            (Method::GET, "/paddock/v1/nothing"),
            (Method::GET, "/paddock"),
            (Method::GET, "/paddock/v2/me"),
            (Method::POST, "/paddock/v1/clusters/prod/health"),
            (Method::GET, "/paddock/v1/clusters//health"),
        ] {
            assert!(Endpoint::parse(&method, path).is_err(), "{method} {path}");
        }
    }

    #[test]
    fn scoped_tokens_reach_only_me_logout_and_kubeconfig() {
        let scoped: Vec<&str> = [
            "/paddock/v1/me",
            "/paddock/v1/kubeconfig",
            "/paddock/v1/users",
            "/paddock/v1/tokens",
            "/paddock/v1/principals",
            "/paddock/v1/bindings",
            "/paddock/v1/projects",
            "/paddock/v1/clusters/prod/health",
            "/paddock/",
        ]
        .into_iter()
        .filter(|path| {
            let access = Endpoint::parse(&Method::GET, path).unwrap().access();
            access.caller != Caller::None && access.cluster_scoped
        })
        .collect();
        assert_eq!(scoped, ["/paddock/v1/me", "/paddock/v1/kubeconfig"]);
        let logout = Endpoint::parse(&Method::POST, "/paddock/v1/logout").unwrap();
        assert!(logout.access().cluster_scoped);
        let tokens = Endpoint::parse(&Method::POST, "/paddock/v1/tokens").unwrap();
        assert!(!tokens.access().cluster_scoped);
    }
}
