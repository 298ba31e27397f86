//! Binary identifiers of directory objects: Active Directory's `objectGUID`
//! (mixed-endian) and `objectSid`.

/// Formats a 16-byte `objectGUID` as the usual GUID string: the first three
/// groups are little-endian, the last two big-endian (MS-DTYP §2.3.4).
/// `None` when `bytes` is not 16 bytes long.
///
/// ```
/// use proxy_core::authn::ldap::guid::guid_to_string;
/// let bytes = [0xd4, 0x00, 0x9a, 0x49, 0x03, 0x9b, 0x26, 0x42,
///              0x80, 0x4e, 0x24, 0x67, 0xdc, 0x76, 0x10, 0xaf];
/// assert_eq!(guid_to_string(&bytes).unwrap(), "499a00d4-9b03-4226-804e-2467dc7610af");
/// ```
pub fn guid_to_string(bytes: &[u8]) -> Option<String> {
    let b: &[u8; 16] = bytes.try_into().ok()?;
    Some(format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
        b[14], b[15]
    ))
}

/// Parses a GUID string (as made by [`guid_to_string`], either case) back
/// into the 16 bytes AD stores, for searching by `objectGUID`.
pub fn guid_from_string(guid: &str) -> Option<[u8; 16]> {
    let parts: Vec<&str> = guid.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    if parts.len() != 5 || parts.iter().zip(lens).any(|(p, l)| p.len() != l) {
        return None;
    }
    let hex: String = parts.concat();
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut raw = [0u8; 16];
    for (i, out) in raw.iter_mut().enumerate() {
        *out = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some([
        raw[3], raw[2], raw[1], raw[0], raw[5], raw[4], raw[7], raw[6], raw[8], raw[9], raw[10],
        raw[11], raw[12], raw[13], raw[14], raw[15],
    ])
}

/// Formats a binary `objectSid` (MS-DTYP §2.4.2) as `S-1-5-21-…`. `None` when
/// the bytes are not a well-formed SID.
pub fn sid_to_string(bytes: &[u8]) -> Option<String> {
    let (&revision, rest) = bytes.split_first()?;
    let (&count, rest) = rest.split_first()?;
    let authority = rest.get(..6)?;
    let subs = rest.get(6..)?;
    if subs.len() != usize::from(count) * 4 {
        return None;
    }
    let authority = authority
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let mut out = format!("S-{revision}-{authority}");
    for sub in subs.chunks_exact(4) {
        let v = u32::from_le_bytes([sub[0], sub[1], sub[2], sub[3]]);
        out.push('-');
        out.push_str(&v.to_string());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GUID read from a Samba AD DC's `objectGUID`: LDAP base64
    /// `1ACaSQObJkKATiRn3HYQrw==`.
    const SAMBA_GUID: [u8; 16] = [
        0xd4, 0x00, 0x9a, 0x49, 0x03, 0x9b, 0x26, 0x42, 0x80, 0x4e, 0x24, 0x67, 0xdc, 0x76, 0x10,
        0xaf,
    ];

    #[test]
    fn samba_test_vector() {
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode("1ACaSQObJkKATiRn3HYQrw==")
            .unwrap();
        assert_eq!(decoded, SAMBA_GUID);
        assert_eq!(
            guid_to_string(&decoded).unwrap(),
            "499a00d4-9b03-4226-804e-2467dc7610af"
        );
    }

    #[test]
    fn round_trip_and_case() {
        assert_eq!(
            guid_from_string("499a00d4-9b03-4226-804e-2467dc7610af").unwrap(),
            SAMBA_GUID
        );
        assert_eq!(
            guid_from_string("499A00D4-9B03-4226-804E-2467DC7610AF").unwrap(),
            SAMBA_GUID
        );
    }

    #[test]
    fn wrong_lengths_are_rejected() {
        assert_eq!(guid_to_string(&SAMBA_GUID[..15]), None);
        assert_eq!(guid_to_string(&[0; 17]), None);
        assert_eq!(
            guid_from_string("499a00d4-9b03-4226-804e-2467dc7610a"),
            None
        );
        assert_eq!(guid_from_string("499a00d49b034226804e2467dc7610af"), None);
        assert_eq!(
            guid_from_string("zz9a00d4-9b03-4226-804e-2467dc7610af"),
            None
        );
        assert_eq!(
            guid_from_string("+99a00d4-9b03-4226-804e-2467dc7610af"),
            None
        );
    }

    #[test]
    fn sids() {
        // S-1-5-32-545 (BUILTIN\Users).
        let builtin_users = [1, 2, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0, 0x21, 0x02, 0, 0];
        assert_eq!(sid_to_string(&builtin_users).unwrap(), "S-1-5-32-545");
        // S-1-5-21-1-2-3-1102.
        let mut domain = vec![1, 5, 0, 0, 0, 0, 0, 5];
        for v in [21u32, 1, 2, 3, 1102] {
            domain.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(sid_to_string(&domain).unwrap(), "S-1-5-21-1-2-3-1102");
        assert_eq!(sid_to_string(&builtin_users[..15]), None);
        assert_eq!(sid_to_string(&[]), None);
    }
}
