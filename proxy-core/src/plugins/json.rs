//! JSON written straight into a line buffer, for the logs' writer threads:
//! no intermediate values, keys written as the static bytes they are, and
//! strings copied whole unless they hold a byte JSON must escape. Measured
//! with callgrind, an audit event through `serde_json` cost about 18,000
//! instructions, most of them escaping keys and formatting numbers.

use std::io::Write as _;

/// Appends `value` as a JSON string (quoted, escaped per RFC 8259 §7).
pub(crate) fn push_str(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    push_str_contents(out, value);
    out.push(b'"');
}

/// Appends `value` escaped, without the quotes: for a string written in
/// parts.
pub(crate) fn push_str_contents(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends `value` in decimal.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends `value` with exactly `decimals` digits after the point (for
/// durations: seconds with 6, milliseconds with 3).
pub(crate) fn push_fixed(out: &mut Vec<u8>, value: f64, decimals: usize) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{value:.decimals$}");
}

/// An object being written: `{` on open, commas between members, `}` on
/// [`close`](Self::close).
pub(crate) struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    /// Writes `{`.
    pub(crate) fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, empty: true }
    }

    /// Writes `"key":` and returns the buffer for the value. `key` is
    /// written as it is: a literal that needs no escaping.
    pub(crate) fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    /// Writes a member whose key comes from elsewhere: escaped.
    pub(crate) fn escaped_key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        push_str(self.out, key);
        self.out.push(b':');
        self.out
    }

    /// Writes `"key":` and the value `value` appends; when `value` returns
    /// false the member is taken back out, as if never written.
    pub(crate) fn try_member(
        &mut self,
        key: &str,
        value: impl FnOnce(&mut Vec<u8>) -> bool,
    ) -> bool {
        let (len, empty) = (self.out.len(), self.empty);
        if value(self.key(key)) {
            return true;
        }
        self.out.truncate(len);
        self.empty = empty;
        false
    }

    /// `"key":"value"`, the value escaped.
    pub(crate) fn str(&mut self, key: &str, value: &str) {
        push_str(self.key(key), value);
    }

    /// `"key":<value>`.
    pub(crate) fn u64(&mut self, key: &str, value: u64) {
        push_u64(self.key(key), value);
    }

    /// Writes `}`.
    pub(crate) fn close(self) {
        self.out.push(b'}');
    }
}

/// Appends `["a","b",...]`.
pub(crate) fn push_str_array<'s>(out: &mut Vec<u8>, values: impl IntoIterator<Item = &'s str>) {
    out.push(b'[');
    for (i, value) in values.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(out, value);
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_through_a_json_parser() {
        for text in [
            "",
            "plain",
            "quote \" backslash \\ slash /",
            "line\nfeed\r\ttab \u{1} \u{1f} \u{7f}",
            "é ᛒ 🦀",
        ] {
            let mut out = Vec::new();
            push_str(&mut out, text);
            let parsed: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(parsed, text);
        }
    }

    #[test]
    fn numbers_and_objects() {
        let mut out = Vec::new();
        let mut object = Object::open(&mut out);
        object.u64("zero", 0);
        object.u64("max", u64::MAX);
        object.str("s", "x\"y");
        push_fixed(object.key("f"), 0.0015, 6);
        push_str_array(object.escaped_key("a\"b"), ["1", "2"]);
        object.close();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"zero": 0, "max": u64::MAX, "s": "x\"y", "f": 0.0015, "a\"b": ["1", "2"]})
        );
    }
}
