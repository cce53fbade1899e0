//! Verification keys: a JWKS parsed into keys the verifier may use, each tied to the algorithms
//! its type allows, and an optional HMAC secret. Keys are chosen from configuration, never from
//! the token (`jwk`, `jku`, `x5u` and `x5c` headers are refused elsewhere).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
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

/// A key of a JWKS that can never verify a token, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Its index in the `keys` array.
    pub index: usize,
    pub kid: Option<String>,
    pub reason: &'static str,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kid {
            Some(kid) => write!(f, "key {} (kid `{kid}`): {}", self.index, self.reason),
            None => write!(f, "key {} (no kid): {}", self.index, self.reason),
        }
    }
}

impl KeySet {
    /// Parses a JWKS (`{"keys":[...]}`). Keys that are not signature keys (`use` other than `sig`,
    /// `key_ops` without `verify`, symmetric `oct` keys, unknown types or curves, short RSA
    /// moduli, malformed coordinates) are skipped; a set with no usable key is an error.
    pub fn from_jwks(jwks: &Value) -> Result<KeySet, String> {
        Self::with_skipped(jwks).map(|(set, _)| set)
    }

    /// [`KeySet::from_jwks`], with the keys it skipped and why (for a fetched set's log).
    pub fn with_skipped(jwks: &Value) -> Result<(KeySet, Vec<Skipped>), String> {
        let Some(entries) = jwks.get("keys").and_then(Value::as_array) else {
            return Err("a JWKS is an object with a `keys` array".to_string());
        };
        Self::from_entries(entries)
    }

    /// The keys of a JWKS's `keys` array, with those skipped and why.
    fn from_entries(entries: &[Value]) -> Result<(KeySet, Vec<Skipped>), String> {
        if entries.len() > MAX_KEYS {
            return Err(format!("a JWKS may hold at most {MAX_KEYS} keys"));
        }
        let mut keys = Vec::with_capacity(entries.len());
        let mut skipped = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            match parse_key(entry) {
                Ok(key) => keys.push(key),
                Err(reason) => {
                    let kid = entry.get("kid").and_then(Value::as_str).map(String::from);
                    skipped.push(Skipped { index, kid, reason });
                }
            }
        }
        if keys.is_empty() {
            return Err("the JWKS has no usable signature key (RSA >= 2048 bits, EC P-256/P-384, Ed25519)".to_string());
        }
        Ok((KeySet { keys }, skipped))
    }

    /// Keys written in the configuration: every one must be able to verify a token (a key that
    /// cannot, as a modulus pasted in standard base64 or `use: enc`, is a mistake the operator
    /// has to see, not a key quietly missing). The error: the index of the key at fault (`None`
    /// for the set as a whole) and why.
    pub fn from_configured(keys: &[Value]) -> Result<KeySet, (Option<usize>, String)> {
        let (set, skipped) = Self::from_entries(keys).map_err(|reason| {
            // A set with no usable key names its first key's reason when there is one.
            match keys.first().map(parse_key) {
                Some(Err(why)) => (Some(0), why.to_string()),
                _ => (None, reason),
            }
        })?;
        match skipped.into_iter().next() {
            Some(first) => Err((Some(first.index), first.reason.to_string())),
            None => Ok(set),
        }
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

fn parse_key(entry: &Value) -> Result<VerificationKey, &'static str> {
    // A key published for another purpose never verifies tokens: `use` must say `sig` and
    // `key_ops`, when present, must list `verify` (RFC 7517 4.2 and 4.3).
    if let Some(usage) = entry.get("use") {
        if usage != "sig" {
            return Err("`use` is not `sig`: not a signature key");
        }
    }
    if let Some(operations) = entry.get("key_ops") {
        let verifies = operations.as_array().is_some_and(|ops| ops.iter().any(|op| op == "verify"));
        if !verifies {
            return Err("`key_ops` does not list `verify`");
        }
    }
    const BASE64: &str = "a value is not unpadded base64url (RFC 7518: `-` and `_`, no `=`)";
    if entry.get("kty").and_then(Value::as_str) == Some("oct") {
        return Err("a symmetric (`oct`) key is never taken from a JWKS: HMAC needs `hmac_secret`");
    }
    match (entry.get("kty").and_then(Value::as_str), entry.get("crv").and_then(Value::as_str)) {
        (Some("EC"), crv) if !matches!(crv, Some("P-256" | "P-384")) => {
            return Err("an EC curve (`crv`) other than P-256 or P-384")
        }
        (Some("OKP"), crv) if crv != Some("Ed25519") => return Err("an OKP curve (`crv`) other than Ed25519"),
        _ => {}
    }
    // The members are read from the JSON value itself (a typed JWK's parser cost 20 KB of
    // .wasm). A member of the wrong type makes the key malformed, optional ones too: a `kid` that
    // is a number, an `x5c` that is not an array of strings (RFC 7517 4).
    for name in ["kid", "alg", "x5u", "x5t", "x5t#S256"] {
        text(entry, name)?;
    }
    let strings = |value: &Value| value.as_array().is_some_and(|items| items.iter().all(Value::is_string));
    if entry.get("x5c").is_some_and(|chain| !chain.is_null() && !strings(chain))
        || entry.get("key_ops").is_some_and(|operations| !strings(operations))
    {
        return Err(NOT_A_JWK);
    }
    let required = |name| text(entry, name)?.ok_or(NOT_A_JWK);
    let (key, mut algorithms) = match text(entry, "kty")? {
        Some("RSA") => {
            let modulus = decoded(required("n")?).ok_or(BASE64)?;
            let exponent = decoded(required("e")?).ok_or(BASE64)?;
            let significant = modulus.iter().skip_while(|byte| **byte == 0).count();
            if significant * 8 < MIN_RSA_BITS {
                return Err("an RSA modulus shorter than 2048 bits");
            }
            if exponent.is_empty() {
                return Err("an empty RSA exponent");
            }
            (VerifyingKey::rsa(&modulus, &exponent).ok_or("an RSA key that cannot be used")?, RSA_ALGORITHMS.to_vec())
        }
        Some("EC") => {
            let (x, y) = (required("x")?, required("y")?);
            let (x, y) = (decoded(x).ok_or(BASE64)?, decoded(y).ok_or(BASE64)?);
            // The coordinates must be the curve's full size (RFC 7518 6.2.1.2) and on the curve.
            let off_curve = "coordinates not of the curve's size or not on the curve";
            match entry.get("crv").and_then(Value::as_str) {
                Some("P-256") if x.len() == 32 && y.len() == 32 => {
                    (VerifyingKey::p256(&x, &y).ok_or(off_curve)?, vec![Algorithm::ES256])
                }
                Some("P-384") if x.len() == 48 && y.len() == 48 => {
                    (VerifyingKey::p384(&x, &y).ok_or(off_curve)?, vec![Algorithm::ES384])
                }
                Some("P-256" | "P-384") => return Err(off_curve),
                _ => return Err("an EC curve (`crv`) other than P-256 or P-384"),
            }
        }
        Some("OKP") => {
            // Ed25519 only (checked above): exactly 32 bytes that decompress to a point.
            let x = decoded(required("x")?).ok_or(BASE64)?;
            (VerifyingKey::ed25519(&x).ok_or("an Ed25519 key that is not 32 bytes of a point")?, vec![Algorithm::EdDSA])
        }
        _ => return Err(NOT_A_JWK),
    };
    if let Some(declared) = text(entry, "alg")? {
        let declared: Algorithm = declared.parse().map_err(|_| "an unknown `alg`")?;
        if !algorithms.contains(&declared) {
            return Err("an `alg` this type of key cannot verify");
        }
        algorithms = vec![declared];
    }
    Ok(VerificationKey { kid: text(entry, "kid")?.map(String::from), algorithms, key })
}

const NOT_A_JWK: &str = "not a JWK of a known type (`kty` RSA, EC or OKP, with its members)";

/// A member that is a string when present (`null` is absent).
fn text<'a>(entry: &'a Value, name: &str) -> Result<Option<&'a str>, &'static str> {
    match entry.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(NOT_A_JWK),
    }
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
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding_key(name), algorithm).unwrap();
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

    #[test]
    fn a_member_of_the_wrong_type_makes_a_key_malformed_as_a_typed_jwk_parser_found_it() {
        let rsa = jwk("rsa-a.pem", Algorithm::RS256, "rsa");
        let ec = jwk("ec-p256.pem", Algorithm::ES256, "ec");
        let ed = jwk("ed25519.pem", Algorithm::EdDSA, "ed");
        let with = |base: &Value, name: &str, value: Value| {
            let mut key = base.clone();
            match value {
                Value::Null if name.starts_with('-') => {
                    key.as_object_mut().unwrap().remove(&name[1..]);
                }
                value => key[name] = value,
            }
            key
        };
        let malformed = [
            with(&rsa, "kid", json!(5)),
            with(&rsa, "alg", json!(["RS256"])),
            with(&rsa, "x5u", json!(1)),
            with(&rsa, "x5t", json!({})),
            with(&rsa, "x5t#S256", json!(true)),
            with(&rsa, "x5c", json!("MIIB")),
            with(&rsa, "x5c", json!(["MIIB", 1])),
            with(&rsa, "key_ops", json!(["verify", 1])),
            with(&rsa, "n", json!(5)),
            with(&rsa, "-e", Value::Null),
            with(&rsa, "kty", json!("rsa")),
            with(&ec, "x", json!(1)),
            with(&ec, "-y", Value::Null),
            with(&ed, "-x", Value::Null),
            with(&ed, "kty", Value::Null),
        ];
        for key in malformed {
            let jwks = json!({"keys": [key.clone(), jwk("rsa-b.pem", Algorithm::RS256, "good")]});
            let (set, skipped) = KeySet::with_skipped(&jwks).unwrap();
            assert_eq!(set.keys.len(), 1, "{key}");
            assert_eq!(skipped[0].reason, NOT_A_JWK, "{key}");
            // jsonwebtoken's typed JWK, which the filter parsed keys with before, refuses it too.
            assert!(serde_json::from_value::<jsonwebtoken::jwk::Jwk>(key.clone()).is_err(), "{key}");
        }
        // Absent and null optional members are the same; well-typed ones are ignored.
        let kept = [
            with(&rsa, "kid", Value::Null),
            with(&rsa, "x5c", json!(["MIIB"])),
            with(&rsa, "x5c", Value::Null),
            with(&ec, "x5t", json!("thumb")),
            ed.clone(),
        ];
        for key in kept {
            assert!(KeySet::from_jwks(&json!({"keys": [key.clone()]})).is_ok(), "{key}");
            assert!(serde_json::from_value::<jsonwebtoken::jwk::Jwk>(key.clone()).is_ok(), "{key}");
        }
    }
}

#[cfg(test)]
mod configured_key_tests {
    use crate::auth::keys::testkeys::jwk;
    use jsonwebtoken::Algorithm;

    fn load(keys: serde_json::Value) -> Result<crate::config::Config, String> {
        let json =
            serde_json::json!({"key_managers": [{"name": "km", "issuer": "https://km", "jwks": {"keys": keys}}]});
        crate::config::Config::from_json(json.to_string().as_bytes()).map_err(|error| error.to_string())
    }

    #[test]
    fn an_inline_key_that_can_never_verify_is_refused_at_load_naming_it() {
        let good = jwk("rsa-a.pem", Algorithm::RS256, "old");
        // The operator pastes the new key with its modulus in standard base64 (`+`, `/`, `=`),
        // as many tools print it: it can never verify a token.
        let mut pasted = jwk("rsa-b.pem", Algorithm::RS256, "new");
        let n = pasted["n"].as_str().unwrap().replace('-', "+").replace('_', "/") + "=";
        pasted["n"] = serde_json::Value::from(n);
        let error = load(serde_json::json!([good.clone(), pasted])).unwrap_err();
        assert!(error.contains("key_managers[0].jwks.keys[1]") && error.contains("base64url"), "{error}");
        let mut typo = jwk("ec-p256.pem", Algorithm::ES256, "ec");
        typo["crv"] = serde_json::Value::from("P256");
        let mut encryption = jwk("rsa-b.pem", Algorithm::RS256, "enc");
        encryption["use"] = serde_json::Value::from("enc");
        let weak = jwk("rsa-1024-weak.pem", Algorithm::RS256, "weak");
        for (bad, why) in [(typo, "crv"), (encryption, "use"), (weak, "2048")] {
            let error = load(serde_json::json!([good.clone(), bad])).unwrap_err();
            assert!(error.contains("key_managers[0].jwks.keys[1]") && error.contains(why), "{error}");
        }
        let error = load(serde_json::json!([{"kty": "oct", "k": "c2VjcmV0"}])).unwrap_err();
        assert!(error.contains("key_managers[0].jwks.keys[0]"), "{error}");
        assert!(load(serde_json::json!([good])).is_ok());
        let api_key_jwt = serde_json::json!({"api_key_jwt": {"keys": [jwk("rsa-a.pem", Algorithm::RS256, "k"), {"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}});
        let error = crate::config::Config::from_json(api_key_jwt.to_string().as_bytes()).unwrap_err().to_string();
        assert!(error.contains("api_key_jwt.keys[1]"), "{error}");
    }
}
