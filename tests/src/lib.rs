//! Support for Paddock's integration tests and benchmarks: a faithful fake
//! kube-apiserver, a test certificate authority, an HTTPS client, helpers
//! to run the real `paddock` binary, the real `kubectl` and a kube-rs client.

pub mod browser;
pub mod client;
pub mod conformance;
pub mod connect_proxy;
pub mod etcd;
pub mod exec;
pub mod fake_apiserver;
pub mod github_emulator;
pub mod kube_client;
pub mod kubectl;
pub mod metrics;
pub mod netns;
pub mod oidc;
pub mod paddock;
pub mod proxy;
pub mod samba;
pub mod sidecar;
pub mod slapd;
pub mod tls;
pub mod webhook;

use std::sync::Arc;

/// The rustls crypto provider every test component uses, explicitly (never
/// a process-wide default).
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
