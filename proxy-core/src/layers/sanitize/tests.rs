use super::*;
use http::{HeaderName, HeaderValue};

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

#[test]
fn strips_every_identity_header_family_in_any_case_and_with_underscores() {
    let families = [
        "Impersonate-User",
        "Impersonate-Group",
        "Impersonate-Uid",
        "Impersonate-Extra-Scopes",
        "Impersonate-Extra-Example.com%2fkey",
        "X-Remote-User",
        "X-Remote-Group",
        "X-Remote-Extra-Foo",
        "X-Forwarded-For",
        "Forwarded",
    ];
    for family in families {
        for name in [
            family.to_owned(),
            family.to_lowercase(),
            family.to_uppercase(),
            family.replace('-', "_"),
            family.to_lowercase().replace('-', "_"),
        ] {
            let mut map = headers(&[(&name, "caller-poison"), ("accept", "application/json")]);
            strip(&mut map);
            assert!(
                map.keys().all(|k| k != name.to_lowercase().as_str()),
                "{name} survived"
            );
            assert_eq!(map.len(), 1, "{name}: {map:?}");
        }
    }
}

#[test]
fn strips_hop_by_hop_and_connection_listed_headers() {
    let mut map = headers(&[
        ("connection", "keep-alive, x-custom-hop"),
        ("keep-alive", "timeout=5"),
        ("x-custom-hop", "1"),
        ("proxy-authorization", "Basic Zm9vOmJhcg=="),
        ("te", "trailers"),
        ("upgrade", "websocket"),
        ("host", "paddock.example"),
        ("accept", "*/*"),
        ("authorization", "Bearer kept-for-authn"),
    ]);
    strip(&mut map);
    let left: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
    assert_eq!(left, ["accept", "authorization"]);
}

#[test]
fn keeps_lookalike_names() {
    let mut map = headers(&[
        ("impersonatex-user", "a"),
        ("x-remotes", "b"),
        ("x-request-id", "c"),
        ("sec-websocket-protocol", "v5.channel.k8s.io"),
    ]);
    strip(&mut map);
    assert_eq!(map.len(), 4);
}

#[test]
fn records_upgrades_only_with_connection_upgrade() {
    let upgrade = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
    assert_eq!(upgrade_request(&upgrade).unwrap().0, "websocket");
    let no_connection = headers(&[("upgrade", "websocket")]);
    assert!(upgrade_request(&no_connection).is_none());
}

/// Stripping runs before authentication, so anyone can send an HTTP/2
/// request of thousands of headers: each name is looked at once (it was
/// one scan per removed name, about 10^8 checks for 12,000 kept names and
/// 12,000 removed ones).
#[test]
fn stripping_looks_at_each_name_once_however_many_there_are() {
    let mut map = HeaderMap::new();
    for i in 0..3000 {
        let kept = HeaderName::from_bytes(format!("a{i}").as_bytes()).unwrap();
        map.insert(kept, HeaderValue::from_static("v"));
    }
    for i in 0..3000 {
        let stripped = HeaderName::from_bytes(format!("x-remote-{i}").as_bytes()).unwrap();
        map.insert(stripped, HeaderValue::from_static("v"));
    }
    let asked = std::cell::Cell::new(0usize);
    strip_matching(&mut map, |name| {
        asked.set(asked.get() + 1);
        is_stripped(name)
    });
    assert_eq!(map.len(), 3000);
    assert!(map.keys().all(|name| name.as_str().starts_with('a')));
    assert_eq!(asked.get(), 6000);
}
