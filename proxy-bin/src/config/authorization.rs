//! `authorization:`: a mode name, or a map with the mode and the policy
//! settings; and the one function that says which policy `serve` enforces.

use std::{fmt, path::PathBuf, sync::Arc};

use proxy_core::{authz::policy::PolicySource, store::StoreView};
use serde::{de, Deserialize, Deserializer};

use super::Errors;

/// `authorization:` — a mode name (`policy`, the default; `deny-all`,
/// `allow-authenticated`) or a map with `mode` and the policy settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AuthorizationConfig {
    /// How requests are authorized.
    pub(crate) mode: AuthorizationMode,
    /// Directory of RBAC / Rancher policy YAML (mode `policy`), reloaded on change.
    pub(crate) policy_dir: Option<PathBuf>,
    /// The management cluster's id: where global roles' own rules apply.
    pub(crate) management_cluster: Option<String>,
}

/// The map form of `authorization:`. A key it does not know is reported
/// with its path and the keys it does (`authorization.polcyDir: unknown
/// field ...`), rather than as a mismatch of the string-or-map as a whole.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AuthorizationMap {
    #[serde(default)]
    mode: AuthorizationMode,
    policy_dir: Option<PathBuf>,
    management_cluster: Option<String>,
}

impl<'de> Deserialize<'de> for AuthorizationConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = AuthorizationConfig;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a mode (policy, allow-authenticated, deny-all) or a map with mode, policyDir and managementCluster",
                )
            }

            fn visit_str<E: de::Error>(self, mode: &str) -> Result<Self::Value, E> {
                Ok(AuthorizationConfig {
                    mode: mode.parse().map_err(E::custom)?,
                    ..AuthorizationConfig::default()
                })
            }

            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let map =
                    AuthorizationMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(AuthorizationConfig {
                    mode: map.mode,
                    policy_dir: map.policy_dir,
                    management_cluster: map.management_cluster,
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The authorization mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum AuthorizationMode {
    /// Deny every proxied request.
    DenyAll,
    /// Allow any authenticated caller everything.
    AllowAuthenticated,
    /// Kubernetes RBAC and Rancher's role model: the built-in roles, the
    /// role bindings made through the store (the bootstrap admin's among
    /// them) and, when set, the files of `policyDir`. The default.
    #[default]
    Policy,
}

impl std::str::FromStr for AuthorizationMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "deny-all" => Ok(Self::DenyAll),
            "allow-authenticated" => Ok(Self::AllowAuthenticated),
            "policy" => Ok(Self::Policy),
            other => Err(format!(
                "unknown authorization mode {other:?} (expected deny-all, allow-authenticated or policy)"
            )),
        }
    }
}

/// `authorization:`, checked: in mode `policy` the files compiled.
#[derive(Debug, Clone)]
pub(crate) struct CheckedAuthorization {
    /// How requests are authorized.
    pub(crate) mode: AuthorizationMode,
    /// The policy directory, which compiled.
    pub(crate) policy_dir: Option<PathBuf>,
    /// The management cluster's id.
    pub(crate) management_cluster: Option<String>,
}

impl CheckedAuthorization {
    /// The policy `serve` enforces in mode `policy`: the built-in roles,
    /// the files of `policyDir`, and the role bindings and projects of
    /// `store` (the data directory's). `paddock policy` asks the same one.
    pub(crate) fn policy_source(&self, store: Option<Arc<StoreView>>) -> PolicySource {
        PolicySource {
            dir: self.policy_dir.clone(),
            store,
            management_cluster: Some(self.management_cluster()),
        }
    }

    /// The management cluster's id: as configured, else the proxy's default
    /// (`local`, Rancher's), so global roles' own rules apply where the
    /// admin API is authorized.
    pub(crate) fn management_cluster(&self) -> String {
        self.management_cluster
            .clone()
            .unwrap_or_else(|| policy::DEFAULT_MANAGEMENT_CLUSTER.to_owned())
    }
}

impl AuthorizationConfig {
    /// Checks the section; the policy is compiled as `serve` will compile
    /// it: `policyDir` (mode `policy`) together with the role bindings and
    /// projects of `store`, the data directory's existing store.
    pub(super) fn check(
        &self,
        store: Option<Arc<StoreView>>,
        errors: &mut Errors,
    ) -> Option<CheckedAuthorization> {
        let checked = CheckedAuthorization {
            mode: self.mode,
            policy_dir: self.policy_dir.clone(),
            management_cluster: self.management_cluster.clone(),
        };
        if let Some(id) = &self.management_cluster {
            if let Err(message) = super::clusters::validate_cluster_id(id) {
                errors.push("authorization.managementCluster", message);
                return None;
            }
        }
        match (self.mode, &self.policy_dir) {
            (AuthorizationMode::Policy, Some(dir)) => {
                if !dir.is_dir() {
                    errors.push(
                        "authorization.policyDir",
                        format!("{} is not a readable directory", dir.display()),
                    );
                    return None;
                }
                errors.ok(
                    "authorization.policyDir",
                    checked.policy_source(store).load(),
                )?;
            }
            (_, Some(_)) => {
                errors.push("authorization.mode", "policyDir needs mode: policy");
                return None;
            }
            (_, None) => {
                // The store's bindings alone: the admin API's policy in
                // every mode, and the whole policy in mode `policy`.
                if store.is_some() {
                    let source = PolicySource {
                        store,
                        management_cluster: Some(checked.management_cluster()),
                        ..PolicySource::default()
                    };
                    errors.ok("dataDir", source.load())?;
                }
            }
        }
        Some(checked)
    }
}
