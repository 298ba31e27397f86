//! Fuzzes the sidecar's TokenReview parser (the body kube-apiserver, or
//! anyone who reaches the webhook, POSTs): arbitrary bytes must never panic,
//! and what parses is a review with a non-empty token.
//!
//! Run: `cd proxy-core/fuzz && cargo fuzz run token_review -- -max_total_time=600`
//! (the same property runs in `cargo test` as a proptest:
//! `proxy-core/src/sidecar/review.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy_core::sidecar::review;
use secrecy::ExposeSecret;

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = review::parse(data) {
        assert!(!parsed.token.expose_secret().is_empty());
        let answer = review::answer(parsed.version, Err("fuzz".to_owned()));
        assert_eq!(answer["apiVersion"], parsed.version.api_version());
    }
});
