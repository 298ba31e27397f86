//! Fuzzes request-attribute resolution: arbitrary method, path and query must never
//! panic, and what resolves must be self-consistent.
//!
//! Run: `cd proxy-core/fuzz && cargo fuzz run request_attributes -- -max_total_time=600`
//! (or, on a stable toolchain without cargo-fuzz, see proxy-core/fuzz/README.md).

#![no_main]

use libfuzzer_sys::fuzz_target;
use policy::RequestAttributes;

const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "get",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.splitn(3, '\n');
    let path = parts.next().unwrap_or_default();
    let query = parts.next();
    let custom_method = parts.next().unwrap_or_default();
    let method = METHODS
        .get(usize::from(selector) % 9)
        .copied()
        .unwrap_or(custom_method);

    let Ok(attrs) = RequestAttributes::from_request(method, path, query) else {
        return;
    };
    if !attrs.is_resource_request {
        assert!(attrs.resource.is_empty() && attrs.namespace.is_empty() && attrs.name.is_empty());
        assert!(attrs.subresource.is_empty() && attrs.api_group.is_empty());
    } else {
        assert!(matches!(attrs.api_prefix, "api" | "apis"));
    }
    // every attribute is one path segment
    for part in [
        &attrs.resource,
        &attrs.subresource,
        &attrs.namespace,
        &attrs.name,
        &attrs.api_group,
    ] {
        assert!(!part.contains('/'));
    }
    if attrs.verb == "deletecollection" {
        assert!(attrs.name.is_empty());
    }
    let checks = attrs.authorization_checks(true);
    assert!(!checks.is_empty() && checks.len() <= 2);
    let _ = attrs.is_long_running();
    // resolving the decoded path again is stable for paths without `%`
    if !path.contains('%') {
        let again =
            RequestAttributes::from_request(method, &attrs.path, query).expect("resolves twice");
        assert_eq!(again.resource, attrs.resource);
        assert_eq!(again.name, attrs.name);
    }
});
