//! The policy objects read from YAML: native Kubernetes RBAC ([`k8s`]) and Rancher's
//! role model ([`rancher`]), plus where each came from.

pub(crate) mod k8s;
pub(crate) mod rancher;

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// Where an object was read from: the source name given to the builder (a file path,
/// a store key) and the 1-based index of the YAML document in it, plus the 1-based
/// item index inside a `kind: List` document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// The source name (e.g. a file path), `<built-in>` for Paddock's built-in roles.
    pub origin: String,
    /// The 1-based document index within the source.
    pub document: usize,
    /// The 1-based item index within a `kind: List` document.
    pub item: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.origin == crate::builtin::ORIGIN {
            write!(f, "{}, document {}", self.origin, self.document)?;
        } else {
            write!(f, "file {}, document {}", self.origin, self.document)?;
        }
        if let Some(item) = self.item {
            write!(f, ", item {item}")?;
        }
        Ok(())
    }
}

/// The part of `metav1.ObjectMeta` that policy uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ObjectMeta {
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) namespace: String,
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) annotations: BTreeMap<String, String>,
}
