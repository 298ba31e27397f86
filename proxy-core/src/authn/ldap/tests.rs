use super::*;

#[test]
fn every_login_error_maps_to_401_or_503() {
    let invalid = LdapLoginError::invalid(InvalidReason::AccountLockedOut);
    assert!(matches!(
        AuthnError::from(invalid.clone()),
        AuthnError::Invalid
    ));
    // The client-facing text never carries the reason.
    assert_eq!(invalid.to_string(), "invalid username or password");
    for e in [
        LdapLoginError::Unavailable {
            provider: "corp".into(),
            message: "connect failed".into(),
        },
        LdapLoginError::Misconfigured {
            provider: "corp".into(),
            message: "service account refused".into(),
        },
    ] {
        assert!(
            matches!(AuthnError::from(e), AuthnError::Unavailable { ref provider } if provider == "corp")
        );
    }
}

#[test]
fn ad_diagnostics_without_a_known_code() {
    assert_eq!(InvalidReason::from_ad_diagnostic("no data here"), None);
    assert_eq!(
        InvalidReason::from_ad_diagnostic("AcceptSecurityContext error, data 999, v1"),
        None
    );
    assert_eq!(
        InvalidReason::from_ad_diagnostic("AcceptSecurityContext error, data 52E, v1"),
        Some(InvalidReason::WrongPassword)
    );
}
