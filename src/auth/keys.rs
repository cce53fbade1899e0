//! Verification keys: a JWKS parsed into keys the verifier may use, each tied to the algorithms
//! its type allows, and an optional HMAC secret. Keys are chosen from configuration, never from
//! the token (`jwk`, `jku`, `x5u` and `x5c` headers are refused elsewhere).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::Algorithm;
use serde_json::Value;

use crate::signatures::VerifyingKey;

/// A JWKS may carry at most this many keys; more is refused.
pub const MAX_KEYS: usize = 64;
/// RSA moduli shorter than this (bits) are refused.
pub const MIN_RSA_BITS: usize = 2048;

/// One verification key.
pub struct VerificationKey {
    pub kid: Option<String>,
    /// Algorithms this key verifies: narrowed by the JWK's own `alg` when it has one.
    pub algorithms: Vec<Algorithm>,
    pub key: VerifyingKey,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey").field("kid", &self.kid).field("algorithms", &self.algorithms).finish()
    }
}

/// The keys of one issuer.
#[derive(Debug, Default)]
pub struct KeySet {
    pub keys: Vec<VerificationKey>,
}

const RSA_ALGORITHMS: [Algorithm; 6] =
    [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];

impl KeySet {
    /// Parses a JWKS (`{"keys":[...]}`). Keys that are not signature keys (`use` other than `sig`,
    /// `key_ops` without `verify`, symmetric `oct` keys, unknown types or curves, short RSA moduli, malformed coordinates) are
    /// skipped; a set with no usable key is an error.
    pub fn from_jwks(jwks: &Value) -> Result<KeySet, String> {
        let Some(entries) = jwks.get("keys").and_then(Value::as_array) else {
            return Err("a JWKS is an object with a `keys` array".to_string());
        };
        if entries.len() > MAX_KEYS {
            return Err(format!("a JWKS may hold at most {MAX_KEYS} keys"));
        }
        let keys: Vec<VerificationKey> = entries.iter().filter_map(parse_key).collect();
        if keys.is_empty() {
            return Err("the JWKS has no usable signature key (RSA >= 2048 bits, EC P-256/P-384, Ed25519)".to_string());
        }
        Ok(KeySet { keys })
    }

    /// Keys that may verify `algorithm`, by `kid` when the token names one.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        algorithm: Algorithm,
    ) -> impl Iterator<Item = &'a VerificationKey> + 'a {
        self.keys.iter().filter(move |key| {
            key.algorithms.contains(&algorithm) && kid.is_none_or(|kid| key.kid.as_deref() == Some(kid))
        })
    }

    /// Whether any key has this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid.as_deref() == Some(kid))
    }
}

fn decoded(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

fn parse_key(entry: &Value) -> Option<VerificationKey> {
    // A key published for another purpose never verifies tokens: `use` must say `sig` and
    // `key_ops`, when present, must list `verify` (RFC 7517 4.2 and 4.3).
    if let Some(usage) = entry.get("use") {
        if usage != "sig" {
            return None;
        }
    }
    if let Some(operations) = entry.get("key_ops") {
        let verifies = operations.as_array().is_some_and(|ops| ops.iter().any(|op| op == "verify"));
        if !verifies {
            return None;
        }
    }
    let jwk: Jwk = serde_json::from_value(entry.clone()).ok()?;
    let (key, mut algorithms) = match &jwk.algorithm {
        AlgorithmParameters::RSA(params) => {
            let modulus = decoded(&params.n)?;
            let exponent = decoded(&params.e)?;
            let significant = modulus.iter().skip_while(|byte| **byte == 0).count();
            if significant * 8 < MIN_RSA_BITS || exponent.is_empty() {
                return None;
            }
            (VerifyingKey::rsa(&modulus, &exponent)?, RSA_ALGORITHMS.to_vec())
        }
        AlgorithmParameters::EllipticCurve(params) => {
            let (x, y) = (decoded(&params.x)?, decoded(&params.y)?);
            // The coordinates must be the curve's full size (RFC 7518 6.2.1.2) and on the curve.
            match entry.get("crv").and_then(Value::as_str)? {
                "P-256" if x.len() == 32 && y.len() == 32 => (VerifyingKey::p256(&x, &y)?, vec![Algorithm::ES256]),
                "P-384" if x.len() == 48 && y.len() == 48 => (VerifyingKey::p384(&x, &y)?, vec![Algorithm::ES384]),
                _ => return None,
            }
        }
        AlgorithmParameters::OctetKeyPair(params) => {
            // Ed25519 only: exactly 32 bytes that decompress to a point.
            if entry.get("crv").and_then(Value::as_str) != Some("Ed25519") {
                return None;
            }
            (VerifyingKey::ed25519(&decoded(&params.x)?)?, vec![Algorithm::EdDSA])
        }
        // Symmetric keys are never taken from a JWKS: HMAC needs a configured secret.
        AlgorithmParameters::OctetKey(_) => return None,
    };
    if let Some(declared) = entry.get("alg").and_then(Value::as_str) {
        let declared: Algorithm = declared.parse().ok()?;
        if !algorithms.contains(&declared) {
            return None;
        }
        algorithms = vec![declared];
    }
    Some(VerificationKey { kid: jwk.common.key_id.clone(), algorithms, key })
}

/// An HMAC key from a configured secret, for HS256/384/512.
pub fn hmac_key(secret: &[u8]) -> VerificationKey {
    VerificationKey {
        kid: None,
        algorithms: vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
        key: VerifyingKey::hmac(secret),
    }
}

#[cfg(test)]
pub(crate) mod testkeys {
    //! JWKs and signed tokens from the fixture keys in `tests/fixtures/keys` (see its README).
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::EncodingKey;

    pub fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    pub fn encoding_key(name: &str) -> EncodingKey {
        let pem = fixture(name);
        match name {
            n if n.starts_with("rsa") => EncodingKey::from_rsa_pem(&pem).unwrap(),
            n if n.starts_with("ec") => EncodingKey::from_ec_pem(&pem).unwrap(),
            _ => EncodingKey::from_ed_pem(&pem).unwrap(),
        }
    }

    /// The public JWK of a fixture private key.
    pub fn jwk(name: &str, algorithm: Algorithm, kid: &str) -> Value {
        if algorithm == Algorithm::EdDSA {
            // jsonwebtoken cannot export Ed25519 JWKs: the raw key is the last 32 bytes of the
            // SubjectPublicKeyInfo DER in the `.pub.pem` fixture.
            let pem = String::from_utf8(fixture(&name.replace(".pem", ".pub.pem"))).unwrap();
            let body: String = pem.lines().filter(|line| !line.starts_with("-----")).collect();
            let der = base64::engine::general_purpose::STANDARD.decode(body).unwrap();
            let x = URL_SAFE_NO_PAD.encode(&der[der.len() - 32..]);
            return serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "EdDSA", "kid": kid});
        }
        let jwk = Jwk::from_encoding_key(&encoding_key(name), algorithm).unwrap();
        let mut value = serde_json::to_value(jwk).unwrap();
        value["kid"] = Value::from(kid);
        value
    }

    /// Signs `header` and `payload` (given as JSON text, so tests can write anything).
    pub fn sign_raw(header: &str, payload: &str, key: &str, algorithm: Algorithm) -> String {
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &encoding_key(key), algorithm).unwrap();
        format!("{input}.{signature}")
    }
}

#[cfg(test)]
mod tests {
    use super::testkeys::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn usable_keys_are_kept_and_tied_to_their_algorithms() {
        let jwks = json!({"keys": [
            jwk("rsa-a.pem", Algorithm::RS256, "a"),
            jwk("ec-p256.pem", Algorithm::ES256, "ec"),
            jwk("ed25519.pem", Algorithm::EdDSA, "ed"),
        ]});
        let set = KeySet::from_jwks(&jwks).unwrap();
        assert_eq!(set.keys.len(), 3);
        assert_eq!(set.candidates(Some("a"), Algorithm::RS256).count(), 1);
        assert_eq!(set.candidates(Some("a"), Algorithm::PS256).count(), 0, "the JWK's alg narrows the key");
        assert_eq!(set.candidates(Some("ec"), Algorithm::ES384).count(), 0);
        assert_eq!(set.candidates(None, Algorithm::EdDSA).count(), 1);
        assert_eq!(set.candidates(None, Algorithm::HS256).count(), 0);
    }

    #[test]
    fn weak_symmetric_foreign_and_malformed_keys_are_skipped() {
        let mut short_ed = jwk("ed25519.pem", Algorithm::EdDSA, "short");
        short_ed["x"] = Value::from("AAAA");
        let mut encryption = jwk("rsa-b.pem", Algorithm::RS256, "enc");
        encryption["use"] = Value::from("enc");
        let mut encrypt_ops = jwk("rsa-b.pem", Algorithm::RS256, "encrypt-ops");
        encrypt_ops["key_ops"] = serde_json::json!(["encrypt"]);
        let mut malformed_ops = jwk("rsa-b.pem", Algorithm::RS256, "malformed-ops");
        malformed_ops["key_ops"] = Value::from("verify");
        // A point off its curve, and a modulus the RSA crate refuses (8192 bits): such keys
        // could never verify, so they do not load.
        let mut off_curve = jwk("ec-p256.pem", Algorithm::ES256, "off-curve");
        let mut y = URL_SAFE_NO_PAD.decode(off_curve["y"].as_str().unwrap()).unwrap();
        y[31] ^= 1;
        off_curve["y"] = Value::from(URL_SAFE_NO_PAD.encode(&y));
        let huge = json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xc5; 1024]), "e": "AQAB", "kid": "huge"});
        let mut verify_ops = jwk("rsa-a.pem", Algorithm::RS256, "verify-ops");
        verify_ops["key_ops"] = serde_json::json!(["verify"]);
        let jwks = json!({"keys": [
            jwk("rsa-1024-weak.pem", Algorithm::RS256, "weak"),
            {"kty": "oct", "k": "c2VjcmV0", "kid": "oct"},
            {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"},
            {"kty": "XYZ"},
            short_ed,
            encryption,
            encrypt_ops,
            malformed_ops,
            off_curve,
            huge,
            verify_ops,
            jwk("rsa-a.pem", Algorithm::RS256, "good"),
        ]});
        let set = KeySet::from_jwks(&jwks).unwrap();
        let kids: Vec<_> = set.keys.iter().map(|k| k.kid.clone().unwrap()).collect();
        assert_eq!(kids, vec!["verify-ops", "good"]);
        assert!(KeySet::from_jwks(&json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})).is_err());
        assert!(KeySet::from_jwks(&json!({"nokeys": []})).is_err());
    }
}
