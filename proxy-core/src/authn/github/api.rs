//! GitHub's REST API as the provider needs it: `/user`, `/user/emails`,
//! `/user/orgs`, `/user/teams`, with `per_page=100`, `Link: rel="next"`
//! pagination that also stops at an empty page, rate limits honoured, and
//! failing closed: one failed page fails the whole answer, so a partial
//! group list never reaches a policy decision.

use std::{
    future::Future,
    pin::Pin,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

pub use crate::authn::https::{HttpClient, HttpError};

use http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{de::DeserializeOwned, Deserialize};
use url::Url;

/// At most this many pages of one list (10,000 entries at 100 a page).
const MAX_PAGES: u32 = 100;
/// A rate limit that lifts within this long is waited for inline.
const MAX_INLINE_WAIT: Duration = Duration::from_secs(3);

/// Why GitHub could not be asked, or what it refused.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 401: the token is invalid, expired or revoked.
    #[error("GitHub rejected the token (401)")]
    Unauthorized,
    /// 404: the user or resource is gone (or the token may not see it).
    #[error("GitHub answered 404 for {path}")]
    NotFound {
        /// The path asked for.
        path: String,
    },
    /// 403 without a rate limit: the token may not do this.
    #[error("GitHub refused {path} (403)")]
    Forbidden {
        /// The path asked for.
        path: String,
    },
    /// Rate limited: retry after this many seconds.
    #[error("GitHub rate limit reached, retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until the limit lifts.
        retry_after_secs: u64,
    },
    /// GitHub is unreachable, timed out or answered 5xx.
    #[error("GitHub is unavailable: {detail}")]
    Unavailable {
        /// What failed.
        detail: String,
    },
    /// GitHub answered something this client does not understand.
    #[error("unexpected answer from GitHub: {detail}")]
    Invalid {
        /// What was wrong.
        detail: String,
    },
}

impl ApiError {
    /// Whether the user lost access for good (401, 404): their sessions
    /// should end. Everything else is transient.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Unauthorized | Self::NotFound { .. })
    }
}

impl<'c> oauth2::AsyncHttpClient<'c> for HttpClient {
    type Error = HttpError;
    type Future =
        Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

/// `GET /user`, as far as Paddock reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiUser {
    /// Numeric id.
    pub id: u64,
    /// Login.
    pub login: String,
    /// Profile name.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct ApiEmail {
    email: String,
    #[serde(default)]
    primary: bool,
    #[serde(default)]
    verified: bool,
}

/// An organisation of `GET /user/orgs`.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiOrg {
    /// Numeric id.
    pub id: u64,
    /// Login (`acme`).
    pub login: String,
}

/// A team of `GET /user/teams`.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiTeam {
    /// Numeric id.
    pub id: u64,
    /// Slug (`platform-team`).
    pub slug: String,
    /// The organisation it belongs to.
    pub organization: ApiOrg,
}

/// Who a token belongs to and their memberships, all pages read.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The user.
    pub user: ApiUser,
    /// The verified primary e-mail address, when there is one.
    pub email: Option<String>,
    /// Every organisation.
    pub orgs: Vec<ApiOrg>,
    /// Every team.
    pub teams: Vec<ApiTeam>,
}

/// The REST API of one GitHub (Enterprise) installation.
#[derive(Debug, Clone)]
pub struct GithubApi {
    http: HttpClient,
    base: Url,
    /// Unix time before which the last answer said the limit is exhausted.
    blocked_until: std::sync::Arc<AtomicU64>,
}

impl GithubApi {
    /// The API at `base` (`https://api.github.com/`, `https://HOST/api/v3/`).
    pub fn new(http: HttpClient, base: Url) -> Self {
        Self {
            http,
            base,
            blocked_until: std::sync::Arc::default(),
        }
    }

    /// Reads the token owner's profile: user, verified primary e-mail,
    /// every organisation and every team. Fails if any request fails.
    pub async fn profile(&self, token: &SecretString) -> Result<Profile, ApiError> {
        let user: ApiUser = self.get(self.url("user", false), token).await?.0;
        let emails: Vec<ApiEmail> = self.list("user/emails", token).await?;
        let (orgs, teams) = self.groups(token).await?;
        let email = emails
            .into_iter()
            .find(|e| e.primary && e.verified)
            .map(|e| e.email);
        Ok(Profile {
            user,
            email,
            orgs,
            teams,
        })
    }

    /// Every organisation and team of the token's owner, for a refresh.
    pub async fn groups(
        &self,
        token: &SecretString,
    ) -> Result<(Vec<ApiOrg>, Vec<ApiTeam>), ApiError> {
        let orgs = self.list("user/orgs", token).await?;
        let teams = self.list("user/teams", token).await?;
        Ok((orgs, teams))
    }

    /// `GET /user` only.
    pub async fn user(&self, token: &SecretString) -> Result<ApiUser, ApiError> {
        Ok(self.get(self.url("user", false), token).await?.0)
    }

    fn url(&self, path: &str, paged: bool) -> Url {
        let mut url = self.base.join(path).expect("relative path");
        if paged {
            url.query_pairs_mut().append_pair("per_page", "100");
        }
        url
    }

    /// Every page of a list: `per_page=100`, following `Link: rel="next"`
    /// (only to the same API), asking for the next page by number when a
    /// full page came without any `Link`, and stopping at an empty page.
    async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        token: &SecretString,
    ) -> Result<Vec<T>, ApiError> {
        let mut items = Vec::new();
        let mut url = self.url(path, true);
        for page in 1..=MAX_PAGES {
            let (batch, headers): (Vec<T>, HeaderMap) = self.get(url.clone(), token).await?;
            if batch.is_empty() {
                return Ok(items);
            }
            let full = batch.len() >= 100;
            items.extend(batch);
            let link = headers
                .get(header::LINK)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            url = match link {
                Some(link) => match next_link(&link) {
                    Some(next) => {
                        let next = Url::parse(&next).map_err(|e| ApiError::Invalid {
                            detail: format!("Link next is not a URL: {e}"),
                        })?;
                        if !self.same_api(&next) {
                            return Err(ApiError::Invalid {
                                detail: format!(
                                    "Link next leaves the API: {}",
                                    next.origin().ascii_serialization()
                                ),
                            });
                        }
                        next
                    }
                    None => return Ok(items),
                },
                None if full => {
                    let mut next = self.url(path, true);
                    next.query_pairs_mut()
                        .append_pair("page", &(page + 1).to_string());
                    next
                }
                None => return Ok(items),
            };
        }
        Err(ApiError::Invalid {
            detail: format!("{path} has more than {MAX_PAGES} pages"),
        })
    }

    fn same_api(&self, url: &Url) -> bool {
        url.origin() == self.base.origin() && url.path().starts_with(self.base.path())
    }

    /// One GET, waiting out a short rate limit (at most twice).
    async fn get<T: DeserializeOwned>(
        &self,
        url: Url,
        token: &SecretString,
    ) -> Result<(T, HeaderMap), ApiError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.get_once(&url, token).await {
                Err(ApiError::RateLimited { retry_after_secs })
                    if attempt < 3 && Duration::from_secs(retry_after_secs) <= MAX_INLINE_WAIT =>
                {
                    tracing::info!(retry_after_secs, "GitHub rate limit; waiting");
                    tokio::time::sleep(Duration::from_secs(retry_after_secs.max(1))).await;
                }
                other => return other,
            }
        }
    }

    async fn get_once<T: DeserializeOwned>(
        &self,
        url: &Url,
        token: &SecretString,
    ) -> Result<(T, HeaderMap), ApiError> {
        let now = unix_now();
        let blocked = self.blocked_until.load(Ordering::Relaxed);
        if blocked > now {
            return Err(ApiError::RateLimited {
                retry_after_secs: blocked - now,
            });
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
            .map_err(|_| ApiError::Unauthorized)?;
        authorization.set_sensitive(true);
        let request = Request::get(url.as_str())
            .header(header::AUTHORIZATION, authorization)
            .header(header::ACCEPT, "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .header(header::USER_AGENT, "paddock")
            .body(Vec::new())
            .map_err(|e| ApiError::Invalid {
                detail: e.to_string(),
            })?;
        let path = url.path().to_owned();
        let response = self
            .http
            .send(request)
            .await
            .map_err(|e| ApiError::Unavailable {
                detail: format!("{path}: {e}"),
            })?;
        let status = response.status();
        let headers = response.headers().clone();
        if let Some(limit) = rate_limit(status, &headers, unix_now()) {
            if let ApiError::RateLimited { retry_after_secs } = &limit {
                self.blocked_until
                    .store(unix_now() + retry_after_secs, Ordering::Relaxed);
            }
            return Err(limit);
        }
        match status {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED => return Err(ApiError::Unauthorized),
            StatusCode::NOT_FOUND => return Err(ApiError::NotFound { path }),
            StatusCode::FORBIDDEN => return Err(ApiError::Forbidden { path }),
            s if s.is_server_error() => {
                return Err(ApiError::Unavailable {
                    detail: format!("{path} answered {s}"),
                })
            }
            s => {
                return Err(ApiError::Invalid {
                    detail: format!("{path} answered {s}"),
                })
            }
        }
        let value = serde_json::from_slice(response.body()).map_err(|e| ApiError::Invalid {
            detail: format!("{path}: {e}"),
        })?;
        Ok((value, headers))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// A rate-limit answer (403 or 429 with `x-ratelimit-remaining: 0`, or
/// with `retry-after`) and how long to wait.
fn rate_limit(status: StatusCode, headers: &HeaderMap, now: u64) -> Option<ApiError> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let Some(after) = number("retry-after") {
        return Some(ApiError::RateLimited {
            retry_after_secs: after,
        });
    }
    if number("x-ratelimit-remaining") == Some(0) {
        let reset = number("x-ratelimit-reset").unwrap_or(now + 60);
        return Some(ApiError::RateLimited {
            retry_after_secs: reset.saturating_sub(now).max(1),
        });
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Some(ApiError::RateLimited {
            retry_after_secs: 60,
        });
    }
    None
}

/// The `rel="next"` target of a `Link` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim();
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| target.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_are_found_among_others() {
        let link = r#"<https://api.github.com/user/teams?per_page=100&page=1>; rel="prev", <https://api.github.com/user/teams?per_page=100&page=3>; rel="next", <https://api.github.com/user/teams?per_page=100&page=5>; rel="last""#;
        assert_eq!(
            next_link(link).as_deref(),
            Some("https://api.github.com/user/teams?per_page=100&page=3")
        );
        assert_eq!(next_link(r#"<https://x/?page=1>; rel="first""#), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn rate_limits_are_read_from_either_header() {
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-remaining", HeaderValue::from(0));
        headers.insert("x-ratelimit-reset", HeaderValue::from(1_000_030));
        assert!(matches!(
            rate_limit(StatusCode::FORBIDDEN, &headers, 1_000_000),
            Some(ApiError::RateLimited {
                retry_after_secs: 30
            })
        ));
        headers.insert("retry-after", HeaderValue::from(7));
        assert!(matches!(
            rate_limit(StatusCode::TOO_MANY_REQUESTS, &headers, 1_000_000),
            Some(ApiError::RateLimited {
                retry_after_secs: 7
            })
        ));
        assert!(rate_limit(StatusCode::FORBIDDEN, &HeaderMap::new(), 0).is_none());
        assert!(rate_limit(StatusCode::OK, &headers, 0).is_none());
    }
}
