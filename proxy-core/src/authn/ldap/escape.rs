//! Escaping of values put into LDAP filters (RFC 4515) and DNs (RFC 4514).
//!
//! Every value that came from a user or from the directory is escaped
//! exactly once, at the point where the filter or DN is built. Passwords are
//! never escaped: they are not part of any filter.

use std::fmt::Write as _;

/// Escapes `value` for use as an assertion value in a search filter
/// (RFC 4515 §3): `*`, `(`, `)`, `\` and NUL become `\2a`, `\28`, `\29`,
/// `\5c`, `\00`. Other characters, UTF-8 included, are kept.
///
/// ```
/// use proxy_core::authn::ldap::escape::filter_value;
/// assert_eq!(filter_value("*)(uid=*"), r"\2a\29\28uid=\2a");
/// ```
pub fn filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '*' => out.push_str(r"\2a"),
            '(' => out.push_str(r"\28"),
            ')' => out.push_str(r"\29"),
            '\\' => out.push_str(r"\5c"),
            '\0' => out.push_str(r"\00"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes raw bytes (an `objectGUID`, an `objectSid`) for a filter
/// assertion value: every byte as `\xx`.
pub fn filter_bytes(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value {
        let _ = write!(out, "\\{b:02x}");
    }
    out
}

/// Escapes `value` for use as an attribute value in a distinguished name
/// (RFC 4514 §2.4): `"` `+` `,` `;` `<` `>` `\` anywhere, `#` or a space at
/// the start, a space at the end, and NUL as `\00`.
///
/// ```
/// use proxy_core::authn::ldap::escape::dn_value;
/// assert_eq!(dn_value("Doe, John + Co"), r"Doe\, John \+ Co");
/// ```
pub fn dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str(r"\#"),
            ' ' if i == 0 || i == last => out.push_str(r"\ "),
            '\0' => out.push_str(r"\00"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_specials_are_hex_escaped() {
        assert_eq!(filter_value("a*b"), r"a\2ab");
        assert_eq!(filter_value("(x)"), r"\28x\29");
        assert_eq!(filter_value(r"back\slash"), r"back\5cslash");
        assert_eq!(filter_value("nul\0byte"), r"nul\00byte");
        assert_eq!(
            filter_value("plain.user@example.org"),
            "plain.user@example.org"
        );
    }

    #[test]
    fn filter_injection_attempts_become_literals() {
        for attack in [
            "*)(uid=*",
            "admin)(|(uid=*",
            "*",
            "x)(objectClass=*))(|(a=b",
        ] {
            let escaped = filter_value(attack);
            assert!(!escaped.contains(['*', '(', ')']), "{attack} -> {escaped}");
        }
    }

    #[test]
    fn escaped_values_always_make_a_single_equality_filter() {
        let nasty = [
            "*)(uid=*",
            "admin)(|(uid=*",
            r"\",
            "(",
            ")",
            "\0",
            "a\0b*c(d)e\\f",
            "Jürgen (QA), Tier 2 + Co",
            "",
        ];
        for value in nasty {
            let filter = format!("(uid={})", filter_value(value));
            use ldap3::asn1::ASNTag as _;
            let parsed = ldap3::parse_filter(&filter);
            assert!(parsed.is_ok(), "{filter}");
            // Context 3 = equalityMatch: never a substring/presence filter.
            assert_eq!(parsed.unwrap().into_structure().id, 3, "{filter}");
        }
    }

    #[test]
    fn filter_keeps_utf8_and_escapes_once() {
        assert_eq!(filter_value("Jürgen"), "Jürgen");
        // An already escaped value is escaped again: the backslash is data.
        assert_eq!(filter_value(r"\2a"), r"\5c2a");
    }

    #[test]
    fn filter_escapes_distinguished_names_from_the_directory() {
        assert_eq!(
            filter_value(r"cn=Doe\, John (QA),ou=people,dc=example,dc=org"),
            r"cn=Doe\5c, John \28QA\29,ou=people,dc=example,dc=org"
        );
    }

    #[test]
    fn bytes_are_all_escaped() {
        assert_eq!(filter_bytes(&[0xd4, 0x00, 0x2a]), r"\d4\00\2a");
        assert_eq!(filter_bytes(&[]), "");
    }

    #[test]
    fn dn_specials_are_backslash_escaped() {
        assert_eq!(dn_value("Doe, John (QA)"), r"Doe\, John (QA)");
        assert_eq!(dn_value("a+b"), r"a\+b");
        assert_eq!(dn_value(r#"say "hi"; <x>"#), r#"say \"hi\"\; \<x\>"#);
        assert_eq!(dn_value(r"back\slash"), r"back\\slash");
        assert_eq!(dn_value("a=b"), r"a\=b");
        assert_eq!(dn_value("nul\0"), r"nul\00");
    }

    #[test]
    fn dn_leading_and_trailing_specials() {
        assert_eq!(dn_value("#hash"), r"\#hash");
        assert_eq!(dn_value("mid#hash"), "mid#hash");
        assert_eq!(dn_value(" padded "), r"\ padded\ ");
        assert_eq!(dn_value("in side"), "in side");
        assert_eq!(dn_value(" "), r"\ ");
        assert_eq!(dn_value(""), "");
    }
}
