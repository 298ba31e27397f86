//! Request attributes: a port of Kubernetes' `RequestInfoFactory.NewRequestInfo`
//! (`k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`), quirks included.
//!
//! The proxy must authorise exactly what the API server will see, so this module
//! decodes the path before splitting it (as Go's `URL.Path` is decoded) and keeps
//! every oddity of the original: `HEAD` is `get`, `OPTIONS` has the empty verb,
//! `watch=yes` is a watch, `/api/v1/namespaces/ns` has namespace *and* name `ns`.

mod query;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use compact_str::CompactString;

pub use self::query::parse_query;
use self::query::{
    field_selector_exact_name, first_value, go_param_bool, go_to_lower_is, list_options_decode,
};

/// The attributes of one Kubernetes API request, as RBAC sees them.
///
/// Built by [`RequestAttributes::from_request`] from an HTTP request, or by
/// [`RequestAttributes::resource_request`] / [`RequestAttributes::non_resource_request`]
/// for questions such as `can-i`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RequestAttributes {
    /// Whether this is a request for an API resource (`/api/...`, `/apis/...` with
    /// enough parts); otherwise it is a non-resource URL such as `/healthz`.
    pub is_resource_request: bool,
    /// The RBAC verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, `proxy`, the empty string for unknown methods; for
    /// non-resource requests the lower-cased HTTP method (`get`, `head`, `post`...).
    /// Not a closed set: questions such as `can-i` may ask about any verb.
    pub verb: CompactString,
    /// `api` or `apis`; set as soon as the first path part is one of them, even for
    /// paths that end up as non-resource requests (`/apis/apps/v1`); `""` otherwise.
    pub api_prefix: &'static str,
    /// The API group, `""` for the core group.
    pub api_group: CompactString,
    /// The API version, e.g. `v1`.
    pub api_version: CompactString,
    /// The namespace, `""` for cluster-scoped and all-namespace requests.
    pub namespace: CompactString,
    /// The resource, e.g. `pods`.
    pub resource: CompactString,
    /// The subresource, e.g. `log`, `exec`, `status`; `""` when there is none.
    pub subresource: CompactString,
    /// The object name; `""` for collections (unless a `metadata.name` field selector
    /// names one object on a list or watch).
    pub name: CompactString,
    /// The percent-decoded request path, with any `/k8s/clusters/<id>` prefix removed.
    pub path: CompactString,
    /// The first `fieldSelector` of a list, watch or deletecollection (not recorded for
    /// the legacy `/watch/` prefix), as Kubernetes records it for selector-aware
    /// authorisation.
    pub field_selector: Option<String>,
    /// The first `labelSelector` of a list, watch or deletecollection (same rules as
    /// [`RequestAttributes::field_selector`]).
    pub label_selector: Option<String>,
    /// `follow` was requested on a `log` subresource (`kubectl logs -f`): the response
    /// streams until the container ends.
    pub follow: bool,
}

/// Why request attributes could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttributesError {
    /// The path has a `%` not followed by two hex digits (Go's URL parser answers 400).
    #[error("invalid percent-encoding in request path")]
    InvalidPercentEncoding,
    /// The decoded path is not valid UTF-8.
    #[error("request path does not decode to UTF-8")]
    NonUtf8Path,
    /// A `/watch/` or `/proxy/` prefix with nothing after it; kube-apiserver answers 500
    /// "failed to create RequestInfo".
    #[error("unable to determine kind and namespace from url {path}")]
    SpecialVerbWithoutResource {
        /// The decoded path.
        path: String,
    },
}

const SPECIAL_VERBS: [&str; 2] = ["proxy", "watch"];
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];
const WEBSOCKET_CREATE_SUBRESOURCES: [&str; 3] = ["exec", "attach", "portforward"];
const LONG_RUNNING_SUBRESOURCES: [&str; 4] = ["exec", "attach", "portforward", "proxy"];

fn decode_path(raw: &str) -> Result<Cow<'_, str>, AttributesError> {
    if !raw.contains('%') {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                _ => return Err(AttributesError::InvalidPercentEncoding),
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| AttributesError::NonUtf8Path)
}

/// The most path parts resolution reads: `api`/`apis`, group, version, a
/// special verb, `namespaces` and its name, then resource, name and
/// subresource. Later parts only count towards lengths, and lengths are
/// only compared with 3 or less after at most six parts are consumed, so
/// keeping this many answers every comparison as the full list would.
const MAX_PARTS: usize = 9;

/// The path's `/`-separated parts (Go's `strings.Split(strings.Trim(path,
/// "/"), "/")`), the first [`MAX_PARTS`] of them, in `parts`: one request's
/// path is split without allocating.
fn split_path<'p>(path: &'p str, parts: &mut [&'p str; MAX_PARTS]) -> usize {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return 0;
    }
    // A byte loop rather than `str::split`, whose searcher costs a
    // `memchr` call per part (about 130 instructions each, 6 on a typical
    // path). `/` is ASCII, so every index found is a char boundary.
    let mut len = 0;
    let mut start = 0;
    for (i, &byte) in trimmed.as_bytes().iter().enumerate() {
        if byte == b'/' {
            parts[len] = &trimmed[start..i];
            len += 1;
            if len == MAX_PARTS {
                return len;
            }
            start = i + 1;
        }
    }
    parts[len] = &trimmed[start..];
    len + 1
}

fn verb_from_method(method: &str) -> &'static str {
    match method {
        "POST" => "create",
        "GET" | "HEAD" => "get",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "",
    }
}

impl RequestAttributes {
    /// Resolves the attributes of an HTTP request, like kube-apiserver does.
    ///
    /// `method` is the HTTP method as sent (case-sensitive, like Go's), `path` the raw
    /// (still percent-encoded) path exactly as the API server will receive it, `query`
    /// the raw query string without `?`. A proxy removes its own routing prefix before
    /// calling this, once, and forwards that same path: what is authorized is what is
    /// forwarded.
    pub fn from_request(
        method: &str,
        path: &str,
        query: Option<&str>,
    ) -> Result<RequestAttributes, AttributesError> {
        let decoded = decode_path(path)?;
        let mut info = RequestAttributes {
            path: CompactString::new(&decoded),
            ..RequestAttributes::default()
        };

        let mut buffer = [""; MAX_PARTS];
        let len = split_path(&decoded, &mut buffer);
        let mut parts = &buffer[..len];
        if parts.len() < 3 || !matches!(parts[0], "api" | "apis") {
            info.verb = CompactString::from_str_to_lowercase(method);
            return Ok(info);
        }
        info.api_prefix = if parts[0] == "api" { "api" } else { "apis" };
        parts = &parts[1..];
        if info.api_prefix != "api" {
            if parts.len() < 3 {
                info.verb = CompactString::from_str_to_lowercase(method);
                return Ok(info);
            }
            info.api_group = parts[0].into();
            parts = &parts[1..];
        }
        info.is_resource_request = true;
        info.api_version = parts[0].into();
        parts = &parts[1..];

        let mut via_watch_prefix = false;
        // Every verb resolution settles on is one of these, stored without copying.
        let mut verb: &'static str = verb_from_method(method);
        if let Some(&special) = SPECIAL_VERBS.iter().find(|&&v| v == parts[0]) {
            if parts.len() < 2 {
                return Err(AttributesError::SpecialVerbWithoutResource {
                    path: info.path.into(),
                });
            }
            via_watch_prefix = special == "watch";
            verb = special;
            parts = &parts[1..];
        }

        if parts[0] == "namespaces" && parts.len() > 1 {
            info.namespace = parts[1].into();
            if parts.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&parts[2]) {
                parts = &parts[2..];
            }
        }

        if parts.len() >= 3 && verb != "proxy" {
            info.subresource = parts[2].into();
        }
        if parts.len() >= 2 {
            info.name = parts[1].into();
        }
        if !parts.is_empty() {
            info.resource = parts[0].into();
        }

        let params = query.map(parse_query).unwrap_or_default();
        if info.name.is_empty() && verb == "get" {
            // Errors decoding ListOptions fall back to `list` without a name, but a raw
            // `watch` parameter is honoured either way.
            let decoded = list_options_decode(&params);
            verb = if watch_requested(&params, decoded) {
                "watch"
            } else {
                "list"
            };
            if decoded {
                if let Some(name) = first_value(&params, "fieldSelector")
                    .and_then(field_selector_exact_name)
                    .filter(|n| is_valid_path_segment_name(n))
                {
                    info.name = name.into();
                }
            }
        }
        if info.name.is_empty() && verb == "delete" {
            verb = "deletecollection";
        }
        info.verb = CompactString::const_new(verb);
        if matches!(verb, "list" | "watch" | "deletecollection") && !via_watch_prefix {
            info.field_selector = first_value(&params, "fieldSelector").map(str::to_owned);
            info.label_selector = first_value(&params, "labelSelector").map(str::to_owned);
        }
        if info.subresource == "log" {
            info.follow = first_value(&params, "follow").is_some_and(go_param_bool);
        }
        Ok(info)
    }

    /// Attributes for a resource request, for questions like `kubectl auth can-i`.
    /// Set the namespace, name and subresource with the `with_*` methods.
    pub fn resource_request(verb: &str, api_group: &str, resource: &str) -> RequestAttributes {
        RequestAttributes {
            is_resource_request: true,
            verb: verb.into(),
            api_prefix: if api_group.is_empty() { "api" } else { "apis" },
            api_group: api_group.into(),
            resource: resource.into(),
            ..RequestAttributes::default()
        }
    }

    /// Attributes for a non-resource URL such as `/healthz` (verb is usually `get`).
    pub fn non_resource_request(verb: &str, path: &str) -> RequestAttributes {
        RequestAttributes {
            verb: verb.into(),
            path: path.into(),
            ..RequestAttributes::default()
        }
    }

    /// Sets the namespace.
    #[must_use]
    pub fn with_namespace(mut self, namespace: &str) -> RequestAttributes {
        self.namespace = namespace.into();
        self
    }

    /// Sets the object name.
    #[must_use]
    pub fn with_name(mut self, name: &str) -> RequestAttributes {
        self.name = name.into();
        self
    }

    /// Sets the subresource.
    #[must_use]
    pub fn with_subresource(mut self, subresource: &str) -> RequestAttributes {
        self.subresource = subresource.into();
        self
    }

    /// Sets the verb.
    #[must_use]
    pub fn with_verb(mut self, verb: &str) -> RequestAttributes {
        self.verb = verb.into();
        self
    }

    /// Whether the request may legitimately run for a long time and must be exempt from
    /// request timeouts: watches, the `proxy` verb, the `exec`, `attach`, `portforward`
    /// and `proxy` subresources, and `log` with `follow`.
    ///
    /// kube-apiserver exempts every `log` request; a log without `follow` ends on its
    /// own, so Paddock keeps the timeout for it.
    pub fn is_long_running(&self) -> bool {
        if !self.is_resource_request {
            return false;
        }
        let verb = self.verb == "watch" || self.verb == "proxy";
        // Most requests name no subresource: asked several times a
        // request, this spares them five string comparisons.
        if self.subresource.is_empty() {
            return verb;
        }
        verb || LONG_RUNNING_SUBRESOURCES.contains(&self.subresource.as_str())
            || (self.subresource == "log" && self.follow)
    }

    /// Whether a WebSocket upgrade of this request needs `create` as well as `get`: a
    /// `GET` on `pods/exec`, `pods/attach` or `pods/portforward` in the core group, as
    /// kube-apiserver 1.35 checks (`AuthorizePodWebsocketUpgradeCreatePermission`).
    pub fn websocket_needs_create(&self) -> bool {
        self.is_resource_request
            && self.verb == "get"
            && self.api_group.is_empty()
            && self.resource == "pods"
            && WEBSOCKET_CREATE_SUBRESOURCES.contains(&self.subresource.as_str())
    }

    /// The attribute sets that must *all* be allowed for this request. For an ordinary
    /// request that is the request itself; for a WebSocket upgrade (`upgrade` true) of
    /// exec/attach/portforward it is the `get` and a `create` on the same subresource.
    ///
    /// Borrowed in the common case of a single check: deciding a request copies nothing.
    pub fn authorization_checks(&self, websocket_upgrade: bool) -> Cow<'_, [RequestAttributes]> {
        if websocket_upgrade && self.websocket_needs_create() {
            Cow::Owned(vec![self.clone(), self.clone().with_verb("create")])
        } else {
            Cow::Borrowed(std::slice::from_ref(self))
        }
    }

    /// `resource` or `resource/subresource`, as RBAC rules name it.
    pub fn combined_resource(&self) -> Cow<'_, str> {
        if self.subresource.is_empty() {
            Cow::Borrowed(&self.resource)
        } else {
            Cow::Owned(format!("{}/{}", self.resource, self.subresource))
        }
    }
}

/// Whether the request asks for a watch, as `NewRequestInfo`
/// (`k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`) reads it. When the
/// query decodes into `ListOptions`, `watch` went through the parameter codec
/// ([`go_param_bool`], `strings.EqualFold`); when decoding failed, the raw value is
/// compared after `strings.ToLower` with `false` and `0`. The two differ: with
/// U+017F, `watch=falſe` is not a watch in the first case and is one in the second.
fn watch_requested(params: &[(String, String)], decoded: bool) -> bool {
    first_value(params, "watch").is_some_and(|v| {
        if decoded {
            go_param_bool(v)
        } else {
            !(go_to_lower_is(v, "false") || go_to_lower_is(v, "0"))
        }
    })
}

/// `path.IsValidPathSegmentName`: not `.` or `..`, no `/` or `%`.
fn is_valid_path_segment_name(name: &str) -> bool {
    name != "." && name != ".." && !name.contains('/') && !name.contains('%')
}
