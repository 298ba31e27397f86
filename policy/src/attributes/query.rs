//! Query-string handling as Go's `net/url` and apimachinery do it: `ParseQuery`,
//! `ListOptions` decoding and `fields.ParseSelector`.

/// Parses a raw query string like Go's `url.ParseQuery`: pairs split on `&`, a pair
/// containing `;` is dropped, `+` is a space, a pair with a bad `%` escape is dropped.
/// Bytes that are not UTF-8 after decoding become U+FFFD. Order is kept; repeated
/// keys give repeated pairs.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for pair in query.split('&') {
        if pair.is_empty() || pair.contains(';') {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if let (Some(k), Some(v)) = (query_unescape(key), query_unescape(value)) {
            out.push((k, v));
        }
    }
    out
}

fn query_unescape(s: &str) -> Option<String> {
    if !s.contains(['%', '+']) {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                let h = bytes.get(i + 1).copied().and_then(hex)?;
                let l = bytes.get(i + 2).copied().and_then(hex)?;
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The first value of `key`, as Go's `Values.Get` and the query-parameter codec use.
pub(crate) fn first_value<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Go's `strings.EqualFold(value, target)` (Unicode simple case folding) for an
/// ASCII `target`.
///
/// Folding is compared rune by rune. An ASCII letter's simple-fold orbit holds its
/// other ASCII case and, for two letters only, one more rune: `k` also matches
/// U+212A KELVIN SIGN and `s` also matches U+017F LATIN SMALL LETTER LONG S
/// (Unicode `CaseFolding.txt`, status C; Go's `unicode.SimpleFold`). The dotted and
/// dotless Turkish `İ`/`ı` fold only under the Turkic mappings (status T), which
/// neither Go nor this function applies. So for an ASCII target this is exact.
pub(crate) fn go_equal_fold_ascii(value: &str, target: &str) -> bool {
    debug_assert!(target.is_ascii());
    rune_by_rune(value, target, |c, t| {
        let t = t.to_ascii_lowercase();
        match c {
            '\u{212A}' => t == b'k',
            '\u{017F}' => t == b's',
            c if c.is_ascii() => (c as u8).to_ascii_lowercase() == t,
            _ => false,
        }
    })
}

/// Go's `strings.ToLower(value) == target` for an ASCII, lower-case `target`.
///
/// `unicode.ToLower` maps two non-ASCII runes to ASCII: U+212A KELVIN SIGN to `k`
/// and U+0130 LATIN CAPITAL LETTER I WITH DOT ABOVE to `i` (Go's `CaseRanges`);
/// every other rune that lower-cases to an ASCII letter is that letter's upper case.
pub(crate) fn go_to_lower_is(value: &str, target: &str) -> bool {
    debug_assert!(target.is_ascii() && !target.bytes().any(|b| b.is_ascii_uppercase()));
    rune_by_rune(value, target, |c, t| match c {
        '\u{212A}' => t == b'k',
        '\u{0130}' => t == b'i',
        c if c.is_ascii() => (c as u8).to_ascii_lowercase() == t,
        _ => false,
    })
}

/// Whether `value` has as many runes as the ASCII `target` has bytes and each
/// pair satisfies `matches`.
fn rune_by_rune(value: &str, target: &str, matches: impl Fn(char, u8) -> bool) -> bool {
    let mut value = value.chars();
    target
        .bytes()
        .all(|t| value.next().is_some_and(|c| matches(c, t)))
        && value.next().is_none()
}

/// A boolean query parameter as the parameter codec decodes it
/// (`Convert_Slice_string_To_bool` in
/// `k8s.io/apimachinery/pkg/runtime/conversion.go`): false only for `0` and for a
/// value `strings.EqualFold` finds equal to `false`. So `watch=` and `watch=yes`
/// are true, and `watch=FALſE` (with U+017F) is false.
pub(crate) fn go_param_bool(value: &str) -> bool {
    !(value == "0" || go_equal_fold_ascii(value, "false"))
}

/// Whether decoding the query into `metav1.ListOptions` would succeed: the field
/// selector must parse, and the integer parameters must be integers.
///
/// The label selector grammar is not re-implemented: a request with an invalid label
/// selector is rejected by the API server with 400 before it is served, so whether its
/// name was taken from a field selector cannot change what it may read.
pub(crate) fn list_options_decode(params: &[(String, String)]) -> bool {
    for key in ["timeoutSeconds", "limit"] {
        if let Some(v) = first_value(params, key) {
            if !v.is_empty() && v.parse::<i64>().is_err() {
                return false;
            }
        }
    }
    match first_value(params, "fieldSelector") {
        Some(selector) => parse_field_selector(selector).is_some(),
        None => true,
    }
}

/// The value a field selector requires for `metadata.name` (`=` or `==`), if any.
pub(crate) fn field_selector_exact_name(selector: &str) -> Option<String> {
    parse_field_selector(selector)?
        .into_iter()
        .find(|t| t.field == "metadata.name" && t.equal)
        .map(|t| t.value)
}

#[derive(Debug, PartialEq, Eq)]
struct Term {
    field: String,
    equal: bool,
    value: String,
}

/// `fields.ParseSelector`: terms split on unescaped `,`, sorted (so the first
/// `metadata.name` term in sorted order wins, as in Go), each `lhs op rhs` with
/// `op` the first of `!=`, `==`, `=` found scanning left to right.
fn parse_field_selector(selector: &str) -> Option<Vec<Term>> {
    let mut parts = split_terms(selector);
    parts.sort_unstable();
    let mut terms = Vec::new();
    for part in parts {
        if part.is_empty() {
            continue;
        }
        let (lhs, op, rhs) = split_term(part)?;
        terms.push(Term {
            field: lhs.to_owned(),
            equal: op != "!=",
            value: unescape_value(rhs)?,
        });
    }
    Some(terms)
}

fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in selector.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for op in ["!=", "==", "="] {
            if rest.starts_with(op) {
                return Some((&term[..i], op, &term[i + op.len()..]));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return None;
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return None,
            _ => out.push(c),
        }
    }
    (!in_slash).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_query_follows_go() {
        assert_eq!(
            parse_query("a=1&b=x+y&c=%41&bad=%zz&semi=1;2&&d"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), "A".into()),
                ("d".into(), "".into()),
            ]
        );
    }

    /// Go's `strings.EqualFold(value, target)` and
    /// `strings.ToLower(value) == target`.
    #[test]
    fn equal_fold_and_to_lower_are_go_s() {
        #[rustfmt::skip]
        let rows: &[(&str, &str, bool, bool)] = &[
            ("false", "false", true, true),
            ("FaLsE", "false", true, true),
            ("fal\u{17F}e", "false", true, false), // LONG S: folds to s, already lower case
            ("FAL\u{17F}E", "false", true, false),
            ("\u{212A}ind", "kind", true, true),   // KELVIN SIGN: folds and lowers to k
            ("\u{130}d", "id", false, true),       // ToLower(U+0130) is i; no simple fold
            ("\u{131}d", "id", false, false),      // Turkic mapping only
            ("fals", "false", false, false),
            ("falsee", "false", false, false),
            ("f\u{E4}lse", "false", false, false),
            ("0", "0", true, true),
            ("00", "0", false, false),
            ("", "", true, true),
        ];
        for &(value, target, fold, lower) in rows {
            assert_eq!(
                go_equal_fold_ascii(value, target),
                fold,
                "fold {value:?} {target:?}"
            );
            assert_eq!(
                go_to_lower_is(value, target),
                lower,
                "lower {value:?} {target:?}"
            );
        }
        assert!(go_equal_fold_ascii("\u{212A}IND", "KIND"));
    }

    /// The exceptions the two functions list are all there are: apart from U+212A,
    /// U+017F and U+0131 (which folds only under the Turkic mappings), no non-ASCII
    /// character has an ASCII letter as its single-character upper or lower case.
    #[test]
    fn no_other_rune_cases_to_ascii() {
        let single_ascii = |mut it: Box<dyn Iterator<Item = char>>| match (it.next(), it.next()) {
            (Some(c), None) => c.is_ascii(),
            _ => false,
        };
        let others: Vec<char> = (0x80..=0x10FFFFu32)
            .filter_map(char::from_u32)
            .filter(|&c| {
                single_ascii(Box::new(c.to_lowercase())) || single_ascii(Box::new(c.to_uppercase()))
            })
            .collect();
        assert_eq!(others, ['\u{131}', '\u{17F}', '\u{212A}']);
    }

    #[test]
    fn field_selector_name() {
        assert_eq!(
            field_selector_exact_name("metadata.name=foo").as_deref(),
            Some("foo")
        );
        assert_eq!(
            field_selector_exact_name("metadata.name==foo").as_deref(),
            Some("foo")
        );
        assert_eq!(field_selector_exact_name("metadata.name!=foo"), None);
        assert_eq!(
            field_selector_exact_name("spec.nodeName=n,metadata.name=foo").as_deref(),
            Some("foo")
        );
        assert_eq!(
            field_selector_exact_name(r"metadata.name=a\,b").as_deref(),
            Some("a,b")
        );
        // An unescaped `=` in a value, a dangling escape, a term without operator: invalid.
        assert_eq!(field_selector_exact_name("metadata.name=a=b"), None);
        assert_eq!(field_selector_exact_name(r"metadata.name=a\"), None);
        assert_eq!(field_selector_exact_name("metadata.name"), None);
    }

    #[test]
    fn list_options_failures() {
        assert!(list_options_decode(&parse_query(
            "limit=500&timeoutSeconds=10"
        )));
        assert!(!list_options_decode(&parse_query("limit=abc")));
        assert!(!list_options_decode(&parse_query("fieldSelector=foo")));
    }
}
