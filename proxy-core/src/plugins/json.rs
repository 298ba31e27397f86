//! JSON written straight into a line buffer, for the logs' writer threads:
//! no intermediate values, keys written as the static bytes they are, and
//! strings copied whole unless they hold a byte JSON must escape. Measured
//! with callgrind, an audit event through `serde_json` cost about 18,000
//! instructions, most of them escaping keys and formatting numbers.

use std::time::Duration;

/// Appends `value` as a JSON string (quoted, escaped per RFC 8259 §7).
#[inline]
pub(crate) fn push_str(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    push_str_contents(out, value);
    out.push(b'"');
}

/// Appends `value` escaped, without the quotes: for a string written in
/// parts.
pub(crate) fn push_str_contents(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    // Most strings (paths, names, user agents) have no byte to escape:
    // checked eight bytes at a time without branching, then copied whole.
    if !any_needs_escape(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
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

/// Whether some byte of `bytes` must be escaped.
fn any_needs_escape(bytes: &[u8]) -> bool {
    any_word(bytes, |word| {
        has_less(word, 0x20) | has_byte(word, b'"') | has_byte(word, b'\\')
    })
}

/// Whether `found` holds for some eight-byte word of `bytes`: a test for
/// any byte of a kind, a word at a time without branching. The last word
/// overlaps the one before it rather than being checked byte by byte. A
/// string shorter than a word is read as two overlapping halves (four
/// bytes or fewer: bytes repeated), never copied into a padded word:
/// that copy was a `memcpy` call, more than the test itself.
pub(crate) fn any_word(bytes: &[u8], found: impl Fn(u64) -> bool) -> bool {
    let word = |chunk: &[u8]| u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
    let n = bytes.len();
    if n < 8 {
        let half =
            |chunk: &[u8]| u64::from(u32::from_le_bytes(chunk.try_into().expect("four bytes")));
        let word = match n {
            0 => return false,
            1..=3 => {
                // First, middle and last byte, each repeated.
                let [a, b, c] = [bytes[0], bytes[n / 2], bytes[n - 1]];
                u64::from_le_bytes([a, a, a, b, b, c, c, c])
            }
            _ => half(&bytes[..4]) | half(&bytes[n - 4..]) << 32,
        };
        return found(word);
    }
    let mut any = found(word(&bytes[bytes.len() - 8..]));
    for chunk in bytes.chunks_exact(8) {
        any |= found(word(chunk));
    }
    any
}

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);

/// Whether a byte of `word` is below `n` (at most 0x80). From "Bit
/// Twiddling Hacks": exact for the word as a whole, though not byte by
/// byte, and bytes of UTF-8 sequences never match.
pub(crate) fn has_less(word: u64, n: u8) -> bool {
    word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH != 0
}

/// Whether a byte of `word` is `byte`.
pub(crate) fn has_byte(word: u64, byte: u8) -> bool {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGH != 0
}

/// Whether a byte of `word` is not ASCII.
pub(crate) fn has_high(word: u64) -> bool {
    word & HIGH != 0
}

/// Appends `value` in decimal (`itoa`: two digits per step from a table,
/// where a loop of `% 10` cost about 70 instructions a number).
pub(crate) fn push_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Appends `duration` in seconds with six decimals, as `{:.6}` of
/// [`Duration::as_secs_f64`] prints it, without formatting a float.
pub(crate) fn push_seconds(out: &mut Vec<u8>, duration: Duration) {
    let micros = rounded_micros(duration);
    push_u64(out, micros / 1_000_000);
    out.push(b'.');
    push_padded(out, micros % 1_000_000, 6);
}

/// Appends `duration` in milliseconds with three decimals, as `{:.3}` of
/// the float in milliseconds prints it.
pub(crate) fn push_millis(out: &mut Vec<u8>, duration: Duration) {
    let micros = rounded_micros(duration);
    push_u64(out, micros / 1000);
    out.push(b'.');
    push_padded(out, micros % 1000, 3);
}

/// Microseconds, rounded to the nearest.
fn rounded_micros(duration: Duration) -> u64 {
    u64::try_from((duration.as_nanos() + 500) / 1000).unwrap_or(u64::MAX)
}

/// Appends the `width` last decimal digits of `value`, zero-padded
/// (`width` at most 20).
pub(crate) fn push_padded(out: &mut Vec<u8>, mut value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut at = width;
    while at >= 2 {
        let pair = usize::try_from(value % 100).expect("below 100") * 2;
        digits[at - 2..at].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        value /= 100;
        at -= 2;
    }
    if at == 1 {
        digits[0] = b'0' + (value % 10) as u8;
    }
    out.extend_from_slice(&digits[..width]);
}

/// "00" to "99", two digits written per division.
const DIGIT_PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// An object being written: `{` on open, commas between members, `}` on
/// [`close`](Self::close).
pub(crate) struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    /// Writes `{`.
    #[inline]
    pub(crate) fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, empty: true }
    }

    /// Writes `"key":` and returns the buffer for the value. `key` is
    /// written as it is: a literal that needs no escaping.
    #[inline]
    pub(crate) fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        // `"key":` assembled on the stack and appended at once: for a
        // literal key its length is known, so that is a few stores and
        // one append, where three appends cost about twice as much.
        const ROOM: usize = 48;
        let n = key.len();
        if n + 3 > ROOM {
            push_str(self.out, key);
            self.out.push(b':');
            return self.out;
        }
        let mut member = [b'"'; ROOM];
        member[1..=n].copy_from_slice(key.as_bytes());
        member[n + 2] = b':';
        self.out.extend_from_slice(&member[..n + 3]);
        self.out
    }

    /// Writes `members` as they are: literal `"key":value` pairs, comma
    /// separated, that need no escaping.
    #[inline]
    pub(crate) fn literal(&mut self, members: &'static str) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.extend_from_slice(members.as_bytes());
    }

    /// `"key":"value"` for a `value` that needs no escaping (a name of
    /// Paddock's own).
    #[inline]
    pub(crate) fn literal_str(&mut self, key: &str, value: &'static str) {
        let out = self.key(key);
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
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
    #[inline]
    pub(crate) fn str(&mut self, key: &str, value: &str) {
        push_str(self.key(key), value);
    }

    /// `"key":<value>`.
    #[inline]
    pub(crate) fn u64(&mut self, key: &str, value: u64) {
        push_u64(self.key(key), value);
    }

    /// Writes `}`.
    #[inline]
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
            // Past eight bytes: the escapes found in a word at a time.
            "/api/v1/namespaces/default/pods/a-long-name-with-no-escapes",
            "0123456\"89abcdef\\0123456\n",
            "eight by\u{1f}tes and more é ᛒ 🦀 \u{7f}\u{80}\u{ff}",
        ] {
            let mut out = Vec::new();
            push_str(&mut out, text);
            let parsed: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(parsed, text);
        }
    }

    /// Every length up to three words, with one byte to escape at every
    /// position (the padded short word, the overlapping last word), or
    /// none.
    #[test]
    fn escapes_are_found_at_every_position() {
        for len in 0..24 {
            for special in [None, Some('"'), Some('\\'), Some('\n'), Some('\u{1}')] {
                for at in 0..len.max(1) {
                    let text: String = (0..len)
                        .map(|i| special.filter(|_| i == at).unwrap_or('a'))
                        .collect();
                    let mut out = Vec::new();
                    push_str(&mut out, &text);
                    let parsed: String =
                        serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{text:?}: {e}"));
                    assert_eq!(parsed, text);
                    assert_eq!(out.len() == text.len() + 2, special.is_none() || len == 0);
                }
            }
        }
    }

    #[test]
    fn durations_print_as_the_rounded_float_does() {
        for nanos in [
            0,
            1,
            499,
            501,
            999,
            1_499,
            123_456_789,
            1_000_000_000,
            61_234_567_890,
        ] {
            let duration = Duration::from_nanos(nanos);
            let mut seconds = Vec::new();
            push_seconds(&mut seconds, duration);
            assert_eq!(
                seconds,
                format!("{:.6}", duration.as_secs_f64()).into_bytes()
            );
            let mut millis = Vec::new();
            push_millis(&mut millis, duration);
            let expected = format!("{:.3}", duration.as_secs_f64() * 1000.0);
            assert_eq!(millis, expected.into_bytes());
        }
    }

    #[test]
    fn numbers_and_objects() {
        let mut out = Vec::new();
        let mut object = Object::open(&mut out);
        object.u64("zero", 0);
        object.u64("max", u64::MAX);
        object.str("s", "x\"y");
        push_seconds(object.key("f"), Duration::from_micros(1500));
        push_str_array(object.escaped_key("a\"b"), ["1", "2"]);
        // Longer than the room a key is assembled in.
        let long = "k".repeat(60);
        object.u64(&long, 7);
        object.close();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"zero": 0, "max": u64::MAX, "s": "x\"y", "f": 0.0015, "a\"b": ["1", "2"], long: 7})
        );
    }
}
