//! Small non-cryptographic helpers shared by the caches and counters: FNV-1a for spreading keys
//! over buckets and slots (a collision only shares a bucket, never an answer), hex, and the
//! percent-encoding of form bodies and query parameters.

/// FNV-1a over `bytes`, starting from the offset basis mixed with `seed`.
pub fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    // Into a buffer of the right size (`encode_string` would assert the size it computes).
    let mut out = vec![0u8; bytes.len().saturating_mul(2)];
    match base16ct::lower::encode(bytes, &mut out) {
        Ok(_) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (form bodies, query values).
pub fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(0, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(0, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(fnv1a(1, b"a"), fnv1a(0, b"a"));
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0, 10, 255]), "000aff");
    }
}
