use super::*;

#[test]
fn escapes_extra_keys_like_client_go() {
    // client-go TestImpersonationRoundTripper / TestHeaderEscapeRoundTrip vectors.
    let cases = [
        ("test.example.com/thing.thing", "test.example.com%2Fthing.thing"),
        (
            "test.example.com/thing.thing%20another.thing",
            "test.example.com%2Fthing.thing%2520another.thing",
        ),
        ("percent%20encoded", "percent%2520encoded"),
        ("almost%zzpercent%xxencoded", "almost%25zzpercent%25xxencoded"),
        ("@=:", "%40%3D%3A"),
        ("example.com/ᛒᚥᛏᛖᚥᚢとロビン", "example.com%2F%E1%9B%92%E1%9A%A5%E1%9B%8F%E1%9B%96%E1%9A%A5%E1%9A%A2%E3%81%A8%E3%83%AD%E3%83%93%E3%83%B3"),
        ("plain-key_1.x", "plain-key_1.x"),
        ("a b", "a%20b"),
        // Beyond client-go, which loses the case on the way.
        ("Abc", "%41bc"),
        ("example.com/Team-ID", "example.com%2F%54eam-%49%44"),
    ];
    for (key, escaped) in cases {
        assert_eq!(header_key_escape(key), escaped, "{key}");
        // What the API server decodes is what we encoded, case and all.
        assert_eq!(
            policy::decode_extra_key(&escaped.to_lowercase()),
            key,
            "{key}"
        );
        let name = extra_header_name(key).unwrap();
        let suffix = name.as_str().strip_prefix(EXTRA_PREFIX).unwrap();
        assert_eq!(policy::decode_extra_key(suffix), key, "{key}");
    }
}

#[test]
fn one_line_per_group_and_extra_value_uid_only_when_set() {
    let identity = Identity {
        user: "alice".into(),
        groups: vec!["a,b".into(), "dev".into(), "system:admins".into()],
        extra: [("Scopes".to_owned(), vec!["x".to_owned(), "y".to_owned()])].into(),
        ..Identity::default()
    };
    let mut headers = HeaderMap::new();
    headers.insert(USER, HeaderValue::from_static("stale"));
    insert_headers(&mut headers, &identity).unwrap();
    assert_eq!(headers.get_all(USER).iter().collect::<Vec<_>>(), ["alice"]);
    assert!(!headers.contains_key(UID));
    assert_eq!(
        headers.get_all(GROUP).iter().collect::<Vec<_>>(),
        ["a,b", "dev", "system:admins"]
    );
    assert_eq!(
        headers
            .get_all("impersonate-extra-%53copes")
            .iter()
            .collect::<Vec<_>>(),
        ["x", "y"]
    );

    let with_uid = Identity {
        uid: Some("42".into()),
        ..identity
    };
    let mut headers = HeaderMap::new();
    insert_headers(&mut headers, &with_uid).unwrap();
    assert_eq!(headers[UID], "42");
}

#[test]
fn refuses_identities_headers_cannot_carry() {
    let identity = Identity {
        user: "bad\nuser".into(),
        ..Identity::default()
    };
    assert!(insert_headers(&mut HeaderMap::new(), &identity).is_err());
}

#[test]
fn reads_requested_impersonation() {
    let mut headers = HeaderMap::new();
    assert_eq!(requested(&headers), None);
    headers.insert(USER, HeaderValue::from_static("bob"));
    headers.append(GROUP, HeaderValue::from_static("g1"));
    headers.append(GROUP, HeaderValue::from_static("g,2"));
    headers.append(
        "impersonate-extra-example.com%2fkey",
        HeaderValue::from_static("v1"),
    );
    headers.append(
        "impersonate-extra-Example.com%2Fkey",
        HeaderValue::from_static("v2"),
    );
    let request = requested(&headers).unwrap();
    assert_eq!(request.user.as_deref(), Some("bob"));
    assert_eq!(request.groups, ["g1", "g,2"]);
    assert_eq!(
        request.extra,
        [(
            "example.com/key".to_owned(),
            vec!["v1".to_owned(), "v2".to_owned()]
        )]
    );
    let identity = impersonated_identity(&request, "token-file").unwrap();
    assert_eq!(identity.groups, ["g1", "g,2", "system:authenticated"]);
    assert_eq!(identity.extra["example.com/key"], ["v1", "v2"]);
}

#[test]
fn an_empty_user_alone_is_a_request_that_impersonates_nothing() {
    let mut headers = HeaderMap::new();
    headers.insert(USER, HeaderValue::from_static(""));
    let request = requested(&headers).unwrap();
    assert_eq!(request.validate(), Ok(false));
    headers.insert(GROUP, HeaderValue::from_static("g"));
    assert!(requested(&headers).unwrap().validate().is_err());
}

/// The cached encoding sends exactly what the uncached one does, on the
/// first request of an identity and on later ones, and each identity its
/// own headers.
#[test]
fn cached_headers_are_the_same_headers() {
    let alice = Arc::new(Identity {
        user: "alice".into(),
        uid: Some("1001".into()),
        groups: vec!["dev".into(), "system:authenticated".into()],
        extra: [("Scopes".to_owned(), vec!["x".to_owned(), "y".to_owned()])].into(),
        ..Identity::default()
    });
    let bob = Arc::new(Identity {
        user: "bob".into(),
        groups: vec!["ops".into()],
        ..Identity::default()
    });
    for identity in [&alice, &bob, &alice, &bob] {
        let mut expected = HeaderMap::new();
        expected.insert(USER, HeaderValue::from_static("stale"));
        expected.insert("accept", HeaderValue::from_static("*/*"));
        let mut cached = expected.clone();
        insert_headers(&mut expected, identity).unwrap();
        insert_cached_headers(&mut cached, identity).unwrap();
        assert_eq!(cached, expected, "{}", identity.user);
        assert_eq!(
            cached.get_all(GROUP).iter().count(),
            groups_to_send(identity).len()
        );
    }
    // A new identity for the same user (the credential's cache entry was
    // replaced): its own headers, not the old ones.
    drop(bob);
    let bob = Arc::new(Identity {
        user: "bob".into(),
        groups: vec!["admins".into()],
        ..Identity::default()
    });
    let mut headers = HeaderMap::new();
    insert_cached_headers(&mut headers, &bob).unwrap();
    let groups: Vec<_> = headers.get_all(GROUP).iter().collect();
    assert_eq!(groups, ["admins"]);
}

/// A trailing `system:authenticated` is left to the API server where its
/// defaulting puts it back in the same place, and sent everywhere else: read
/// with the API server's rules, the headers give the user and groups that
/// sending every group gives.
#[test]
fn the_api_server_sees_the_identity_s_groups_with_fewer_headers() {
    let identity = |user: &str, groups: &[&str]| Identity {
        user: user.to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        ..Identity::default()
    };
    let sa = "system:authenticated";
    let cases = [
        (identity("alice", &["dev", "ops", sa]), vec!["dev", "ops"]),
        // Alone it is sent: no group at all would mean "default them".
        (identity("alice", &[sa]), vec![sa]),
        (identity("system:serviceaccount:ns:robot", &[sa]), vec![sa]),
        (
            identity(
                "system:serviceaccount:ns:robot",
                &["system:serviceaccounts", "system:serviceaccounts:ns", sa],
            ),
            vec!["system:serviceaccounts", "system:serviceaccounts:ns"],
        ),
        // The API server would add system:unauthenticated instead.
        (identity("system:anonymous", &["dev", sa]), vec!["dev", sa]),
        // It would add nothing.
        (
            identity("alice", &["system:unauthenticated", sa]),
            vec!["system:unauthenticated", sa],
        ),
        (identity("alice", &[sa, "dev", sa]), vec![sa, "dev", sa]),
        // Not last: appending it would reorder the groups.
        (identity("alice", &[sa, "dev"]), vec![sa, "dev"]),
    ];
    for (identity, sent) in cases {
        let mut headers = HeaderMap::new();
        insert_headers(&mut headers, &identity).unwrap();
        assert_eq!(
            headers.get_all(GROUP).iter().collect::<Vec<_>>(),
            sent,
            "{identity:?}"
        );
        let mut every_group = HeaderMap::new();
        every_group.insert(USER, value(&identity.user).unwrap());
        for group in &identity.groups {
            every_group.append(GROUP, value(group).unwrap());
        }
        let seen = |headers: &HeaderMap| {
            let subject = requested(headers)
                .and_then(|request| request.impersonated_subject())
                .unwrap();
            (subject.user, subject.groups)
        };
        assert_eq!(seen(&headers), seen(&every_group), "{identity:?}");
    }
}

/// What the single pass reads is what lookups by name would: the first
/// `Impersonate-User` and `-Uid` values, an empty uid as none, and only
/// names that are impersonation headers (not ones that merely start alike).
#[test]
fn reads_the_first_user_and_uid_and_nothing_else() {
    let mut headers = HeaderMap::new();
    headers.append("impersonate-userx", HeaderValue::from_static("mallory"));
    headers.append("x-impersonate-user", HeaderValue::from_static("mallory"));
    headers.append("impersonate-extra", HeaderValue::from_static("none"));
    assert_eq!(requested(&headers), None);
    headers.append(USER, HeaderValue::from_static("bob"));
    headers.append(USER, HeaderValue::from_static("carol"));
    headers.append(UID, HeaderValue::from_static(""));
    headers.append(UID, HeaderValue::from_static("7"));
    let request = requested(&headers).unwrap();
    assert_eq!(request.user.as_deref(), Some("bob"));
    assert_eq!(request.uid, None);
    assert!(request.groups.is_empty() && request.extra.is_empty());
}
