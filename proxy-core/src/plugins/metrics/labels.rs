//! Label values, kept bounded: every value is either one of a fixed set of
//! `&'static str`s or taken from a [`Bounded`] set that stops growing at a
//! cap. A caller choosing a path must not be able to create series.

use std::{
    collections::HashSet,
    sync::{Arc, PoisonError, RwLock},
};

use http::Method;
use policy::RequestAttributes;

/// The value a label takes when the real one is not (or cannot be) kept.
pub(super) const OTHER: &str = "other";

/// A set of label values that grows up to `cap` values, then answers
/// [`OTHER`] for anything new. Values are shared (`Arc<str>`), so a hit
/// allocates nothing.
#[derive(Debug)]
pub(super) struct Bounded {
    values: RwLock<HashSet<Arc<str>>>,
    cap: usize,
    empty: Arc<str>,
    other: Arc<str>,
}

impl Bounded {
    pub(super) fn new(cap: usize) -> Self {
        let empty: Arc<str> = Arc::from("");
        let other: Arc<str> = Arc::from(OTHER);
        Self {
            values: RwLock::new(HashSet::from([empty.clone(), other.clone()])),
            cap,
            empty,
            other,
        }
    }

    /// `value` if it is known; [`OTHER`] if not.
    pub(super) fn get(&self, value: &str) -> Arc<str> {
        if value.is_empty() {
            return self.empty.clone();
        }
        let values = self.values.read().unwrap_or_else(PoisonError::into_inner);
        values
            .get(value)
            .cloned()
            .unwrap_or_else(|| self.other.clone())
    }

    /// `value`, remembered if there is room; [`OTHER`] once the set is full.
    pub(super) fn learn(&self, value: &str) -> Arc<str> {
        let known = self.get(value);
        if &*known == value {
            return known;
        }
        let mut values = self.values.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = values.get(value) {
            return known.clone();
        }
        if values.len() >= self.cap {
            return self.other.clone();
        }
        let value: Arc<str> = Arc::from(value);
        values.insert(value.clone());
        value
    }
}

/// The verb label: the RBAC verb for resource requests, the lower-case
/// method for the others (as Kubernetes' attributes say), [`OTHER`] for
/// anything outside these fixed sets.
pub(super) fn verb(attributes: Option<&RequestAttributes>, method: &Method) -> &'static str {
    const VERBS: [&str; 13] = [
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
        "proxy",
        "head",
        "post",
        "put",
        "options",
    ];
    let verb = match attributes {
        Some(attributes) => attributes.verb.as_str(),
        None => method.as_str(),
    };
    VERBS
        .iter()
        .find(|known| known.eq_ignore_ascii_case(verb))
        .copied()
        .unwrap_or(OTHER)
}

/// The kinds of long-running request, as `paddock_long_running_requests`
/// labels them.
pub(super) const STREAM_KINDS: [&str; 6] =
    ["watch", "exec", "attach", "portforward", "log", "proxy"];

/// Which kind of long-running request this is, if it is one: the requests
/// kube-apiserver counts as long-running (a watch, the `proxy` verb, the
/// `exec`, `attach`, `portforward` and `proxy` subresources, `log` with
/// `follow`).
pub(super) fn stream_kind(attributes: &RequestAttributes) -> Option<&'static str> {
    if !attributes.is_long_running() {
        return None;
    }
    let kind = match (attributes.verb.as_str(), attributes.subresource.as_str()) {
        ("watch", _) => "watch",
        (_, "exec") => "exec",
        (_, "attach") => "attach",
        (_, "portforward") => "portforward",
        (_, "log") => "log",
        _ => "proxy",
    };
    Some(kind)
}
