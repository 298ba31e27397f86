//! Token secret generation and the at-rest hash.
//!
//! Format: `v1$<salt hex>$<hmac-sha256(pepper, salt || secret) hex>`. A fast
//! keyed hash is right here: the secret is 256 random bits, so there is nothing to
//! brute-force (RFC 6819 §5.1.4.1.3); the pepper, kept outside the
//! store, makes a leaked store useless for forging or checking tokens.

use std::fs;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::TryRngCore;
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;
use subtle::ConstantTimeEq;

const VERSION: &str = "v1";
const SALT_LEN: usize = 16;
/// Bytes of OS randomness in a token secret (256 bits).
pub const SECRET_BYTES: usize = 32;

/// Fills `buf` from the OS CSPRNG. Panics only if the OS has no randomness, in
/// which case nothing secure can be done anyway.
pub(crate) fn os_random(buf: &mut [u8]) {
    #[allow(clippy::expect_used)]
    OsRng
        .try_fill_bytes(buf)
        .expect("the operating system's random number generator failed");
}

/// A new token secret: 256 bits from the OS CSPRNG, base64url without padding
/// (43 characters).
pub(crate) fn new_secret() -> String {
    let mut b = [0u8; SECRET_BYTES];
    os_random(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// `len` characters drawn uniformly from `alphabet` (at most 256 symbols) with
/// the OS CSPRNG (rejection sampling, so no modulo bias).
pub(crate) fn os_random_string(alphabet: &[u8], len: usize) -> String {
    let n = alphabet.len();
    debug_assert!(n > 0 && n <= 256);
    let limit = 256 - 256 % n;
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        os_random(&mut buf);
        for &b in &buf {
            if usize::from(b) < limit && out.len() < len {
                out.push(char::from(alphabet[usize::from(b) % n]));
            }
        }
    }
    out
}

/// A new token id: `t-` and 12 characters from a vowel-free alphabet (~57 bits;
/// uniqueness is enforced by the store, this only has to make collisions rare).
pub(crate) fn new_token_id() -> String {
    format!("t-{}", os_random_string(ID_ALPHABET, 12))
}

/// Vowel-free (no accidental words), no look-alikes (Rancher's alphabet).
pub(crate) const ID_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The server-side secret mixed into every token hash. Keep it out of the store
/// (a file in the data directory with mode 0600, or a mounted secret), and give it
/// to whatever verifies tokens (the server, the authorized-cluster-endpoint
/// sidecar).
pub struct Pepper(SecretBox<[u8; 32]>);

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pepper(<redacted>)")
    }
}

impl Pepper {
    /// The key as 64 hex characters, for the one place it must travel: a
    /// cluster's verifier key ([`TokenHasher::cluster_key`]) sent to that
    /// cluster's sidecar and kept in its replica file (mode 0600).
    pub fn expose_hex(&self) -> String {
        hex::encode(self.0.expose_secret())
    }

    /// The key's bytes, for keys derived from it inside this crate.
    pub(crate) fn expose_bytes(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }

    /// Parses [`Pepper::expose_hex`]'s output.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut b).ok()?;
        Some(Self::from_bytes(b))
    }

    /// A new random pepper.
    pub fn generate() -> Self {
        let mut b = Box::new([0u8; 32]);
        os_random(&mut b[..]);
        Self(SecretBox::new(b))
    }

    /// A pepper from known bytes (tests, or a key management system).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(SecretBox::new(Box::new(bytes)))
    }

    /// Reads the pepper from `path` (64 hex characters), creating it with mode
    /// 0600 when it does not exist.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match fs::read_to_string(path) {
            Ok(s) => {
                let mut b = [0u8; 32];
                hex::decode_to_slice(s.trim(), &mut b).map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} does not hold 64 hex characters", path.display()),
                    )
                })?;
                Ok(Self::from_bytes(b))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let p = Self::generate();
                let mut opts = fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts.open(path)?;
                f.write_all(hex::encode(p.0.expose_secret()).as_bytes())?;
                f.sync_all()?;
                Ok(p)
            }
            Err(e) => Err(e),
        }
    }
}

/// Hashes and verifies token secrets with a pepper.
pub struct TokenHasher {
    // Keyed once; cloning the keyed state per use saves the key schedule.
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for TokenHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHasher(<redacted>)")
    }
}

impl TokenHasher {
    /// A hasher using `pepper`.
    pub fn new(pepper: &Pepper) -> Self {
        #[allow(clippy::expect_used)]
        let mac = Hmac::<Sha256>::new_from_slice(pepper.0.expose_secret())
            .expect("HMAC accepts any key length");
        Self { mac }
    }

    fn mac(&self, salt: &[u8], secret: &[u8]) -> [u8; 32] {
        let mut m = self.mac.clone();
        m.update(salt);
        m.update(secret);
        m.finalize().into_bytes().into()
    }

    /// The at-rest hash of `secret`, with a fresh random salt.
    pub fn hash(&self, secret: &str) -> String {
        let mut salt = [0u8; SALT_LEN];
        os_random(&mut salt);
        let mac = self.mac(&salt, secret.as_bytes());
        format!("{VERSION}${}${}", hex::encode(salt), hex::encode(mac))
    }

    /// Whether `secret` matches `stored`, compared in constant time. Unknown
    /// versions and malformed hashes never match.
    pub fn verify(&self, stored: &str, secret: &str) -> bool {
        let mut parts = stored.splitn(3, '$');
        let (Some(VERSION), Some(salt), Some(mac)) = (parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let mut salt_b = [0u8; SALT_LEN];
        let mut want = [0u8; 32];
        if hex::decode_to_slice(salt, &mut salt_b).is_err()
            || hex::decode_to_slice(mac, &mut want).is_err()
        {
            return false;
        }
        let got = self.mac(&salt_b, secret.as_bytes());
        got.ct_eq(&want).into()
    }

    /// The key a sidecar next to cluster `cluster_id` verifies that cluster's
    /// tokens with: `HMAC-SHA256(pepper, "paddock cluster verifier v1\0" ||
    /// cluster_id)`.
    ///
    /// Why a derived key and a second hash rather than the stored hash: the
    /// stored hash can only be checked with the global pepper, and the pepper
    /// must never leave the center (with it, anyone holding a copy of the
    /// store could check every token of every cluster). So when a token is
    /// issued for one cluster, the center also stores
    /// [`TokenRecord::cluster_verifier`](crate::store::TokenRecord::cluster_verifier),
    /// the same `v1` hash of the secret under this derived key, and only
    /// that cluster's sidecar receives the key. HMAC is a PRF: the key says
    /// nothing about the pepper or about any other cluster's key, and a
    /// sidecar that leaks it exposes only verifiers of tokens that were
    /// valid on that cluster anyway. The secrets are 256 random bits, so
    /// neither the verifiers nor the key help to guess one.
    pub fn cluster_key(&self, cluster_id: &str) -> Pepper {
        let mut m = self.mac.clone();
        m.update(b"paddock cluster verifier v1\0");
        m.update(cluster_id.as_bytes());
        Pepper::from_bytes(m.finalize().into_bytes().into())
    }

    /// Spends the time of one verification without a stored hash, so an unknown
    /// token id costs what a known one does.
    pub fn dummy_verify(&self, secret: &str) {
        let got = self.mac(&[0u8; SALT_LEN], secret.as_bytes());
        let _ = std::hint::black_box(got.ct_eq(&[0u8; 32]));
    }
}
