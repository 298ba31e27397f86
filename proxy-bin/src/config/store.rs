//! `store:` — where users, tokens (hashes) and bindings live: the embedded
//! file in the data directory (the default), or etcd, shared by several
//! replicas.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use proxy_core::{
    accounts::{Accounts, AccountsError, AccountsOptions, PEPPER_FILE},
    authn::tokens::Pepper,
    store::{EtcdOptions, EtcdStore, EtcdTls},
};
use serde::Deserialize;

use super::Errors;

/// `store:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct StoreConfig {
    /// `embedded` (default) or `etcd`.
    #[serde(default)]
    pub(crate) backend: Backend,
    /// etcd client URLs (`https://etcd-0:2379`, ...).
    #[serde(default)]
    pub(crate) endpoints: Vec<String>,
    /// CA bundle (PEM) that signed the etcd members' certificates.
    pub(crate) ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's `--client-cert-auth`.
    pub(crate) cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub(crate) key_file: Option<PathBuf>,
    /// Key prefix in etcd (default `/paddock/`).
    pub(crate) prefix: Option<String>,
    /// The token pepper (64 hex characters), shared by every replica; by
    /// default `<dataDir>/token-pepper`, created on first start.
    pub(crate) token_pepper_file: Option<PathBuf>,
}

/// `store.backend`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Backend {
    /// One redb file in the data directory; one server process.
    #[default]
    Embedded,
    /// etcd; any number of replicas.
    Etcd,
}

/// The store settings, checked: files read, endpoints parsed.
#[derive(Debug, Clone)]
pub(crate) struct CheckedStore {
    /// etcd, or `None` for the embedded store.
    pub(crate) etcd: Option<EtcdOptions>,
    /// Where the pepper is read (and created when missing).
    pub(crate) pepper_file: Option<PathBuf>,
}

/// Why the accounts could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// No etcd member answered: the service it needs is unavailable (exit 69).
    #[error("{0}")]
    Unreachable(String),
    /// Anything else.
    #[error(transparent)]
    Other(#[from] AccountsError),
}

impl CheckedStore {
    /// Opens the configured store and the token pepper, and the accounts
    /// over them. Blocking.
    pub(crate) fn open_accounts(
        &self,
        data_dir: &Path,
        options: AccountsOptions,
    ) -> Result<Accounts, OpenError> {
        let Some(etcd) = &self.etcd else {
            return match &self.pepper_file {
                None => Ok(Accounts::open(data_dir, options)?),
                Some(file) => {
                    let store = proxy_core::store::EmbeddedStore::open_in_dir(
                        data_dir,
                        proxy_core::store::EmbeddedOptions::default(),
                    )
                    .map_err(AccountsError::Store)?;
                    Ok(Accounts::new(
                        Arc::new(store),
                        &pepper(file)?,
                        data_dir,
                        options,
                    )?)
                }
            };
        };
        let store = EtcdStore::connect(etcd.clone()).map_err(|e| match e {
            proxy_core::store::StoreError::Unreachable { .. } => OpenError::Unreachable(format!(
                "store: {e} (store.endpoints); is etcd running and reachable from here?"
            )),
            other => OpenError::Other(AccountsError::Store(other)),
        })?;
        let file = self
            .pepper_file
            .clone()
            .unwrap_or_else(|| data_dir.join(PEPPER_FILE));
        Ok(Accounts::new(
            Arc::new(store),
            &pepper(&file)?,
            data_dir,
            options,
        )?)
    }
}

fn pepper(file: &Path) -> Result<Pepper, AccountsError> {
    Pepper::load_or_create(file).map_err(|e| AccountsError::Pepper {
        path: file.display().to_string(),
        detail: e.to_string(),
    })
}

impl StoreConfig {
    pub(super) fn check(&self, errors: &mut Errors) -> Option<CheckedStore> {
        let before = errors.len();
        if let Some(file) = &self.token_pepper_file {
            if file.exists() {
                if let Some(text) = errors.read_text("store.tokenPepperFile", file) {
                    let mut bytes = [0u8; 32];
                    if hex::decode_to_slice(text.trim(), &mut bytes).is_err() {
                        errors.push(
                            "store.tokenPepperFile",
                            format!("{} does not hold 64 hex characters", file.display()),
                        );
                    }
                }
            } else if self.backend == Backend::Etcd {
                errors.push(
                    "store.tokenPepperFile",
                    format!(
                        "{} does not exist: with several replicas every one must read the same \
                         pepper; create it once (`openssl rand -hex 32 > {}`) and mount it on all",
                        file.display(),
                        file.display()
                    ),
                );
            }
        }
        if self.backend == Backend::Embedded {
            for (set, key) in [
                (!self.endpoints.is_empty(), "store.endpoints"),
                (self.ca_file.is_some(), "store.caFile"),
                (self.cert_file.is_some(), "store.certFile"),
                (self.key_file.is_some(), "store.keyFile"),
                (self.prefix.is_some(), "store.prefix"),
            ] {
                if set {
                    errors.push(key, "only with store.backend: etcd");
                }
            }
            return (errors.len() == before).then(|| CheckedStore {
                etcd: None,
                pepper_file: self.token_pepper_file.clone(),
            });
        }
        if self.endpoints.is_empty() {
            errors.push(
                "store.endpoints",
                "required with store.backend: etcd (the members' client URLs)",
            );
        }
        let mut https = 0;
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            let path = format!("store.endpoints[{i}]");
            match url::Url::parse(endpoint) {
                Ok(u)
                    if matches!(u.scheme(), "http" | "https")
                        && u.host().is_some()
                        && u.port().is_some()
                        && matches!(u.path(), "" | "/")
                        && u.query().is_none()
                        && u.username().is_empty() =>
                {
                    if u.scheme() == "https" {
                        https += 1;
                    }
                }
                _ => errors.push(
                    path,
                    format!("{endpoint:?} is not a URL like https://etcd-0.example:2379"),
                ),
            }
        }
        if https != 0 && https != self.endpoints.len() {
            errors.push(
                "store.endpoints",
                "mixes http:// and https:// endpoints; use one scheme",
            );
        }
        let tls = https > 0;
        if tls && self.ca_file.is_none() {
            errors.push(
                "store.caFile",
                "required with https:// endpoints (the CA of the etcd members' certificates)",
            );
        }
        if !tls {
            for (set, key) in [
                (self.ca_file.is_some(), "store.caFile"),
                (self.cert_file.is_some(), "store.certFile"),
            ] {
                if set && !self.endpoints.is_empty() {
                    errors.push(key, "only with https:// endpoints");
                }
            }
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            errors.push(
                if self.cert_file.is_some() {
                    "store.keyFile"
                } else {
                    "store.certFile"
                },
                "store.certFile and store.keyFile go together",
            );
        }
        let ca_pem = self
            .ca_file
            .as_ref()
            .and_then(|f| errors.read("store.caFile", f));
        let cert = self
            .cert_file
            .as_ref()
            .and_then(|f| errors.read("store.certFile", f));
        let key = self
            .key_file
            .as_ref()
            .and_then(|f| errors.read("store.keyFile", f));
        let prefix = self.prefix.as_deref().unwrap_or("/paddock/");
        if !prefix.starts_with('/') || prefix.len() < 2 || prefix.contains("//") {
            errors.push(
                "store.prefix",
                format!("{prefix:?} is not a key prefix like /paddock/"),
            );
        }
        if errors.len() != before {
            return None;
        }
        let mut options = EtcdOptions::new(self.endpoints.clone()).prefix(prefix);
        if let Some(ca_pem) = ca_pem {
            options = options.tls(EtcdTls {
                ca_pem,
                identity: cert
                    .zip(key)
                    .map(|(c, k)| (c, Arc::new(secrecy::SecretBox::new(Box::new(k))))),
            });
        }
        Some(CheckedStore {
            etcd: Some(options),
            pepper_file: self.token_pepper_file.clone(),
        })
    }
}
