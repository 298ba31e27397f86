//! Just enough of Kubernetes' protobuf encoding to read a
//! SelfSubjectAccessReview: kubectl sends built-in types as
//! `application/vnd.kubernetes.protobuf` (`k8s\0` + `runtime.Unknown`).

/// The magic prefix of Kubernetes protobuf bodies.
const MAGIC: &[u8] = b"k8s\0";

/// Length-delimited fields of one message, by field number. Other wire
/// types are skipped.
fn fields(mut bytes: &[u8]) -> Option<Vec<(u64, &[u8])>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        match key & 7 {
            0 => {
                varint(&mut bytes)?;
            }
            1 => bytes = bytes.get(8..)?,
            5 => bytes = bytes.get(4..)?,
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                let (value, rest) = (bytes.get(..len)?, bytes.get(len..)?);
                out.push((key >> 3, value));
                bytes = rest;
            }
            _ => return None,
        }
    }
    Some(out)
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn field(fields: &[(u64, &[u8])], number: u64) -> Option<String> {
    fields
        .iter()
        .find(|(n, _)| *n == number)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

/// The spec of a protobuf SelfSubjectAccessReview as the JSON the JSON
/// path understands: `{"resourceAttributes": {...}}` or
/// `{"nonResourceAttributes": {...}}`.
pub(super) fn review_spec(body: &[u8]) -> Option<serde_json::Value> {
    let unknown = fields(body.strip_prefix(MAGIC)?)?;
    let raw = unknown.iter().find(|(n, _)| *n == 2)?.1;
    let review = fields(raw)?;
    let spec = fields(review.iter().find(|(n, _)| *n == 2)?.1)?;
    if let Some((_, attributes)) = spec.iter().find(|(n, _)| *n == 1) {
        let a = fields(attributes)?;
        let names = [
            "namespace",
            "verb",
            "group",
            "version",
            "resource",
            "subresource",
            "name",
        ];
        let object: serde_json::Map<String, serde_json::Value> = names
            .iter()
            .zip(1..)
            .filter_map(|(name, number)| Some(((*name).to_owned(), field(&a, number)?.into())))
            .collect();
        return Some(serde_json::json!({ "resourceAttributes": object }));
    }
    let (_, attributes) = spec.iter().find(|(n, _)| *n == 2)?;
    let a = fields(attributes)?;
    Some(serde_json::json!({
        "nonResourceAttributes": { "path": field(&a, 1)?, "verb": field(&a, 2)? }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(fields: &[(u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (number, value) in fields {
            out.push((number << 3) | 2);
            out.push(u8::try_from(value.len()).unwrap());
            out.extend_from_slice(value);
        }
        out
    }

    #[test]
    fn decodes_a_resource_review() {
        let attributes = message(&[(1, b"dev-a"), (2, b"list"), (5, b"pods")]);
        let spec = message(&[(1, &attributes)]);
        let review = message(&[(1, b""), (2, &spec)]);
        let type_meta = message(&[
            (1, b"authorization.k8s.io/v1"),
            (2, b"SelfSubjectAccessReview"),
        ]);
        let mut body = MAGIC.to_vec();
        body.extend(message(&[(1, &type_meta), (2, &review)]));
        assert_eq!(
            review_spec(&body).unwrap(),
            serde_json::json!({"resourceAttributes": {"namespace": "dev-a", "verb": "list", "resource": "pods"}})
        );
    }

    #[test]
    fn refuses_garbage() {
        assert!(review_spec(b"{\"json\": true}").is_none());
        assert!(review_spec(b"k8s\0\x12\xff").is_none());
    }
}
