//! Authenticated encryption for what providers keep outside memory: the
//! state cookies of browser flows and users' provider tokens at rest.
//!
//! Two keys. The state cookie's is the provider's own (`encryptionKeyFile`,
//! or one generated in the data directory). Kept provider tokens are sealed
//! under a key derived from the token pepper ([`Sealer::for_provider_tokens`]):
//! they live in the shared store, so every replica must open what any replica
//! sealed, and the pepper is the one secret every replica already reads the
//! same (tokens verify nowhere else). The client secret would be shared too,
//! but its owners (the provider's admins) are not Paddock's, it rotates on
//! their schedule, and a leaked one would open every stored token; the
//! pepper never leaves Paddock, and whoever reads the store (a backup,
//! `etcdctl get`) without it learns nothing. Rotating the pepper already
//! ends every Paddock token; the kept provider tokens end with it (users'
//! groups then stay as they are until they log in again).

use base64::Engine;
use ring::{
    aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN},
    rand::{SecureRandom, SystemRandom},
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::tokens::Pepper;

/// Authenticated encryption (ChaCha20-Poly1305) for the state cookie and
/// for provider tokens at rest. Sealed values are base64url `nonce||ciphertext`.
pub struct Sealer {
    key: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

impl Sealer {
    /// A sealer keyed by SHA-256 of `secret`.
    pub fn new(secret: &SecretString) -> Self {
        Self::keyed(
            b"paddock github sealer v1\0",
            secret.expose_secret().as_bytes(),
        )
    }

    /// The sealer of kept provider tokens: keyed by SHA-256 of a label of
    /// its own and the token pepper, so every replica sharing the pepper
    /// derives the same key, and it is no other key derived from the pepper
    /// (the token hashes' HMAC, a cluster's verifier key).
    pub fn for_provider_tokens(pepper: &Pepper) -> Self {
        Self::keyed(b"paddock provider tokens v1\0", pepper.expose_bytes())
    }

    fn keyed(label: &[u8], secret: &[u8]) -> Self {
        let digest = Sha256::new()
            .chain_update(label)
            .chain_update(secret)
            .finalize();
        let key = UnboundKey::new(&CHACHA20_POLY1305, &digest).expect("32-byte key");
        Self {
            key: LessSafeKey::new(key),
            random: SystemRandom::new(),
        }
    }

    /// Encrypts `plaintext`, bound to `purpose` (a cookie cannot be replayed
    /// as a stored token, or the other way round).
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).expect("system randomness");
        let mut buffer = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose.as_bytes()),
                &mut buffer,
            )
            .expect("sealing cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buffer);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
    }

    /// Decrypts what [`Sealer::seal`] produced for the same `purpose`.
    pub fn open(&self, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sealed)
            .ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut buffer)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_purpose_and_untampered() {
        let sealer = Sealer::new(&SecretString::from("key"));
        let sealed = sealer.seal("a", b"hello");
        assert_eq!(sealer.open("a", &sealed).as_deref(), Some(&b"hello"[..]));
        assert_eq!(sealer.open("b", &sealed), None);
        let mut bytes = sealed.into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(sealer.open("a", &String::from_utf8(bytes).unwrap()), None);
        let other = Sealer::new(&SecretString::from("other key"));
        assert_eq!(other.open("a", &sealer.seal("a", b"x")), None);
        assert_eq!(sealer.open("a", "!!"), None);
    }

    #[test]
    fn the_provider_token_key_is_the_peppers_and_no_other() {
        let pepper = Pepper::from_bytes([7; 32]);
        let one = Sealer::for_provider_tokens(&pepper);
        let same = Sealer::for_provider_tokens(&Pepper::from_bytes([7; 32]));
        assert_eq!(
            same.open("t", &one.seal("t", b"x")).as_deref(),
            Some(&b"x"[..])
        );
        let other = Sealer::for_provider_tokens(&Pepper::from_bytes([8; 32]));
        assert_eq!(other.open("t", &one.seal("t", b"x")), None);
        let cookie = Sealer::new(&SecretString::from(pepper.expose_hex()));
        assert_eq!(cookie.open("t", &one.seal("t", b"x")), None);
    }
}
