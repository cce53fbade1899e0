//! Signatures: the JWS algorithms the filter verifies (RS*, PS*, ES256, ES384, EdDSA, HS*) and the
//! two it signs the backend JWT with (RS256, ES256), on the RustCrypto crates, with every key
//! parsed once, when it loads.
//!
//! jsonwebtoken is used for its `Algorithm` type only (src/auth/keys.rs reads JWKs itself). Its
//! crypto provider is not linked: the provider holds a signer for every algorithm (Ed25519's
//! basepoint table, P-384 and RSA-PSS signing) that the filter never runs, and it parsed the key
//! again at every verification. The calls below are the ones that provider makes, so what
//! verifies is unchanged.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use jsonwebtoken::Algorithm;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::pkcs8::DecodePrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
/// The hash types RSA schemes are named by (the RSA crate's version of SHA-2; the digests
/// themselves are computed once, with `sha2`, for every algorithm).
use rsa::sha2 as rsa_sha2;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use rsa::{BoxedUint, Pkcs1v15Sign, Pss, PublicKey as RsaPublicKey};
use sha2::{Digest, Sha256, Sha384, Sha512};
use zeroize::Zeroizing;

/// RSA moduli this layer takes: at least 1024 bits (shorter keys can be factored), at most 4096
/// (a longer modulus makes every cold verification a denial of service). Key managers' keys are
/// held to 2048 bits and more before they get here (`auth::keys::MIN_RSA_BITS`).
const RSA_MODULUS_BITS: std::ops::RangeInclusive<usize> = 1024..=4096;

/// A key that verifies signatures, parsed and checked when it loads (a key that parses here can
/// run every verification of its algorithms).
pub enum VerifyingKey {
    Rsa(RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    /// A configured HMAC secret (HS256/384/512).
    Hmac(Zeroizing<Vec<u8>>),
}

impl VerifyingKey {
    /// An RSA public key from its big-endian modulus and exponent; `None` if the RSA crate
    /// refuses it (a modulus under 1024 or over 4096 bits, an even modulus, an exponent out of
    /// range). Leading zero bytes are dropped: the integers are sized by their significant bytes,
    /// or a key manager's modulus padded with zeros would make every verification with it compute
    /// at the padded width (8,000 bytes of zeros: about 900 times slower).
    pub fn rsa(modulus: &[u8], exponent: &[u8]) -> Option<VerifyingKey> {
        let (modulus, exponent) = (significant(modulus), significant(exponent));
        let bits = |bytes: &[u8]| u32::try_from(bytes.len().max(1).saturating_mul(8)).ok();
        let modulus = BoxedUint::from_be_slice(modulus, bits(modulus)?).ok()?;
        let exponent = BoxedUint::from_be_slice(exponent, bits(exponent)?).ok()?;
        RsaPublicKey::new_with_size_limits(modulus, exponent, RSA_MODULUS_BITS).ok().map(VerifyingKey::Rsa)
    }

    /// A P-256 public key from its coordinates; `None` unless the point is on the curve.
    pub fn p256(x: &[u8], y: &[u8]) -> Option<VerifyingKey> {
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&uncompressed_point(x, y)).ok().map(VerifyingKey::P256)
    }

    /// A P-384 public key from its coordinates; `None` unless the point is on the curve.
    pub fn p384(x: &[u8], y: &[u8]) -> Option<VerifyingKey> {
        p384::ecdsa::VerifyingKey::from_sec1_bytes(&uncompressed_point(x, y)).ok().map(VerifyingKey::P384)
    }

    /// An Ed25519 public key from its 32 bytes; `None` for any other length or a point that does
    /// not decompress.
    pub fn ed25519(x: &[u8]) -> Option<VerifyingKey> {
        let bytes: &[u8; 32] = x.try_into().ok()?;
        ed25519_dalek::VerifyingKey::from_bytes(bytes).ok().map(VerifyingKey::Ed25519)
    }

    /// An HMAC secret.
    pub fn hmac(secret: &[u8]) -> VerifyingKey {
        VerifyingKey::Hmac(Zeroizing::new(secret.to_vec()))
    }

    /// Whether this key is of the type `algorithm` signs with.
    pub fn serves(&self, algorithm: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (self, algorithm),
            (VerifyingKey::Rsa(_), RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
                | (VerifyingKey::P256(_), ES256)
                | (VerifyingKey::P384(_), ES384)
                | (VerifyingKey::Ed25519(_), EdDSA)
                | (VerifyingKey::Hmac(_), HS256 | HS384 | HS512)
        )
    }

    /// Whether `signature` (raw bytes) is this key's signature of `message` under `algorithm`.
    /// False for an algorithm of another key type and for a malformed signature.
    pub fn verifies(&self, algorithm: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        use Algorithm::*;
        #[cfg(test)]
        testing::VERIFICATIONS.with(|count| count.set(count.get() + 1));
        match (self, algorithm) {
            (VerifyingKey::Rsa(key), RS256) => {
                key.verify(Pkcs1v15Sign::new::<rsa_sha2::Sha256>(), &Sha256::digest(message), signature).is_ok()
            }
            (VerifyingKey::Rsa(key), RS384) => {
                key.verify(Pkcs1v15Sign::new::<rsa_sha2::Sha384>(), &Sha384::digest(message), signature).is_ok()
            }
            (VerifyingKey::Rsa(key), RS512) => {
                key.verify(Pkcs1v15Sign::new::<rsa_sha2::Sha512>(), &Sha512::digest(message), signature).is_ok()
            }
            (VerifyingKey::Rsa(key), PS256) => {
                key.verify(Pss::<rsa_sha2::Sha256>::new(), &Sha256::digest(message), signature).is_ok()
            }
            (VerifyingKey::Rsa(key), PS384) => {
                key.verify(Pss::<rsa_sha2::Sha384>::new(), &Sha384::digest(message), signature).is_ok()
            }
            (VerifyingKey::Rsa(key), PS512) => {
                key.verify(Pss::<rsa_sha2::Sha512>::new(), &Sha512::digest(message), signature).is_ok()
            }
            (VerifyingKey::P256(key), ES256) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|signature| key.verify(message, &signature).is_ok()),
            (VerifyingKey::P384(key), ES384) => p384::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|signature| key.verify(message, &signature).is_ok()),
            (VerifyingKey::Ed25519(key), EdDSA) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|signature| key.verify(message, &signature).is_ok()),
            (VerifyingKey::Hmac(secret), HS256) => hmac_verifies::<Hmac<Sha256>>(secret, message, signature),
            (VerifyingKey::Hmac(secret), HS384) => hmac_verifies::<Hmac<Sha384>>(secret, message, signature),
            (VerifyingKey::Hmac(secret), HS512) => hmac_verifies::<Hmac<Sha512>>(secret, message, signature),
            _ => false,
        }
    }
}

/// What tests measure of the verifier: how many signatures this thread checked (a cache that
/// works checks none again).
#[cfg(test)]
pub mod testing {
    thread_local! {
        pub static VERIFICATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    /// Signatures checked by this thread so far.
    pub fn verifications() -> u64 {
        VERIFICATIONS.with(std::cell::Cell::get)
    }
}

/// The other ECDSA signature that verifies whatever `signature` verifies: `(r, n - s)` for `(r, s)`
/// (ECDSA signatures are malleable; JWS does not ask for a low `s`, and signers produce both).
/// `None` for other algorithms and for bytes that are not a signature of the curve.
pub fn ecdsa_twin(algorithm: Algorithm, signature: &[u8]) -> Option<Vec<u8>> {
    match algorithm {
        Algorithm::ES256 => {
            let (r, s) = p256::ecdsa::Signature::from_slice(signature).ok()?.split_scalars();
            p256::ecdsa::Signature::from_scalars(r, -s).ok().map(|twin| twin.to_vec())
        }
        Algorithm::ES384 => {
            let (r, s) = p384::ecdsa::Signature::from_slice(signature).ok()?.split_scalars();
            p384::ecdsa::Signature::from_scalars(r, -s).ok().map(|twin| twin.to_vec())
        }
        _ => None,
    }
}

/// The SEC1 uncompressed encoding of a point: `04 || x || y`.
fn uncompressed_point(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut point = Vec::with_capacity(1 + x.len() + y.len());
    point.push(0x04);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    point
}

/// HMAC comparison in constant time (`verify_slice`).
fn hmac_verifies<M: Mac + KeyInit>(secret: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(mut mac) = <M as KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(message);
    mac.verify_slice(signature).is_ok()
}

/// A key that signs the backend JWT, parsed and checked when it loads.
pub enum SigningKey {
    /// RSASSA-PKCS1-v1_5 with SHA-256, blinded with random numbers from the host.
    Rs256(Box<rsa::pkcs1v15::SigningKey<rsa_sha2::Sha256>>),
    /// ECDSA P-256 with SHA-256, deterministic nonces (RFC 6979).
    Es256(p256::ecdsa::SigningKey),
}

impl SigningKey {
    /// An RS256 key from a PKCS#1 `RSAPrivateKey` DER.
    pub fn rs256_from_pkcs1_der(der: &[u8]) -> Option<SigningKey> {
        let key = rsa::PrivateKey::from_pkcs1_der(der).ok()?;
        Some(SigningKey::Rs256(Box::new(rsa::pkcs1v15::SigningKey::new(key))))
    }

    /// An ES256 key from a PKCS#8 `PrivateKeyInfo` DER (of a P-256 key).
    pub fn es256_from_pkcs8_der(der: &[u8]) -> Option<SigningKey> {
        p256::ecdsa::SigningKey::from_pkcs8_der(der).ok().map(SigningKey::Es256)
    }

    /// The bytes that make the public key, as a certificate of it holds them: an RSA modulus
    /// (big-endian, without leading zeros), or a P-256 point (uncompressed SEC1).
    pub fn public_key_bytes(&self) -> Vec<u8> {
        use rsa::signature::Keypair;
        use rsa::traits::PublicKeyParts;
        match self {
            SigningKey::Rs256(key) => significant(&key.verifying_key().as_ref().n().to_be_bytes()).to_vec(),
            SigningKey::Es256(key) => key.verifying_key().to_sec1_point(false).as_bytes().to_vec(),
        }
    }

    /// The public key as a JWK's key members (RFC 7518 section 6): `kty` and `n`, `e` (RSA) or
    /// `crv`, `x`, `y` (P-256), each number base64url without padding.
    pub fn public_jwk_members(&self) -> Vec<(&'static str, String)> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        use rsa::signature::Keypair;
        use rsa::traits::PublicKeyParts;
        match self {
            SigningKey::Rs256(key) => {
                let public = key.verifying_key();
                let public = public.as_ref();
                vec![
                    ("kty", "RSA".to_string()),
                    ("n", URL_SAFE_NO_PAD.encode(significant(&public.n().to_be_bytes()))),
                    ("e", URL_SAFE_NO_PAD.encode(significant(&public.e().to_be_bytes()))),
                ]
            }
            SigningKey::Es256(key) => {
                let point = key.verifying_key().to_sec1_point(false);
                let coordinates = point.as_bytes().get(1..).unwrap_or_default();
                let (x, y) = coordinates.split_at(coordinates.len() / 2);
                vec![
                    ("kty", "EC".to_string()),
                    ("crv", "P-256".to_string()),
                    ("x", URL_SAFE_NO_PAD.encode(x)),
                    ("y", URL_SAFE_NO_PAD.encode(y)),
                ]
            }
        }
    }

    /// The raw signature of `message` (PKCS#1 v1.5 bytes, or ECDSA `r || s`); `None` if signing
    /// failed (no randomness from the host, or an arithmetic failure).
    pub fn sign(&self, message: &[u8]) -> Option<Vec<u8>> {
        match self {
            SigningKey::Rs256(key) => {
                key.try_sign_with_rng(&mut getrandom::SysRng, message).ok().map(|signature| signature.to_vec())
            }
            SigningKey::Es256(key) => {
                let signature: p256::ecdsa::Signature = key.try_sign(message).ok()?;
                Some(signature.to_vec())
            }
        }
    }
}

/// A big-endian integer without its leading zero bytes.
fn significant(bytes: &[u8]) -> &[u8] {
    let zeros = bytes.iter().take_while(|byte| **byte == 0).count();
    bytes.get(zeros..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    //! Our keys and calls against jsonwebtoken's own provider (a dev-dependency with its RustCrypto
    //! provider on), both ways: what it signs we verify, what we sign it verifies.
    use super::*;
    use crate::auth::keys::testkeys::{fixture, sign_raw};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn split(token: &str) -> (String, Vec<u8>) {
        let (input, signature) = token.rsplit_once('.').unwrap();
        (input.to_string(), URL_SAFE_NO_PAD.decode(signature).unwrap())
    }

    fn public_jwk(name: &str, algorithm: Algorithm) -> serde_json::Value {
        crate::auth::keys::testkeys::jwk(name, algorithm, "k")
    }

    fn b64(value: &serde_json::Value, field: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(value[field].as_str().unwrap()).unwrap()
    }

    fn key_of(name: &str, algorithm: Algorithm) -> VerifyingKey {
        let jwk = public_jwk(name, algorithm);
        match algorithm {
            Algorithm::ES256 => VerifyingKey::p256(&b64(&jwk, "x"), &b64(&jwk, "y")).unwrap(),
            Algorithm::EdDSA => VerifyingKey::ed25519(&b64(&jwk, "x")).unwrap(),
            _ => VerifyingKey::rsa(&b64(&jwk, "n"), &b64(&jwk, "e")).unwrap(),
        }
    }

    #[test]
    fn every_algorithm_verifies_what_jsonwebtoken_signs_and_nothing_else() {
        let cases = [
            ("rsa-a.pem", Algorithm::RS256),
            ("rsa-a.pem", Algorithm::RS384),
            ("rsa-a.pem", Algorithm::RS512),
            ("rsa-a.pem", Algorithm::PS256),
            ("rsa-a.pem", Algorithm::PS384),
            ("rsa-a.pem", Algorithm::PS512),
            ("ec-p256.pem", Algorithm::ES256),
            ("ed25519.pem", Algorithm::EdDSA),
        ];
        for (name, algorithm) in cases {
            let key = key_of(name, algorithm);
            let (input, signature) = split(&sign_raw(r#"{"alg":"x"}"#, r#"{"a":1}"#, name, algorithm));
            assert!(key.serves(algorithm), "{algorithm:?}");
            assert!(key.verifies(algorithm, input.as_bytes(), &signature), "{algorithm:?}");
            assert!(!key.verifies(algorithm, b"another message", &signature), "{algorithm:?}");
            let mut flipped = signature.clone();
            flipped[signature.len() / 2] ^= 1;
            assert!(!key.verifies(algorithm, input.as_bytes(), &flipped), "{algorithm:?}");
            assert!(!key.verifies(algorithm, input.as_bytes(), &[]), "{algorithm:?}");
            assert!(!key.verifies(Algorithm::HS256, input.as_bytes(), &signature), "{algorithm:?}");
        }
        // A PKCS#1 v1.5 signature is not a PSS one, and SHA-256 is not SHA-384.
        let rsa = key_of("rsa-a.pem", Algorithm::RS256);
        let (input, signature) = split(&sign_raw("{}", "{}", "rsa-a.pem", Algorithm::RS256));
        assert!(!rsa.verifies(Algorithm::PS256, input.as_bytes(), &signature));
        assert!(!rsa.verifies(Algorithm::RS384, input.as_bytes(), &signature));
        assert!(!rsa.serves(Algorithm::ES256));
    }

    #[test]
    fn an_rsa_key_padded_with_zeros_is_the_key_it_pads() {
        use rsa::traits::PublicKeyParts;
        let jwk = public_jwk("rsa-a.pem", Algorithm::RS256);
        let (input, signature) = split(&sign_raw("{}", "{}", "rsa-a.pem", Algorithm::RS256));
        let Some(VerifyingKey::Rsa(unpadded)) = VerifyingKey::rsa(&b64(&jwk, "n"), &b64(&jwk, "e")) else {
            panic!("refused");
        };
        for zeros in [1, 600, 8_000] {
            let mut modulus = vec![0u8; zeros];
            modulus.extend(b64(&jwk, "n"));
            let mut exponent = vec![0u8; zeros];
            exponent.extend(b64(&jwk, "e"));
            let Some(VerifyingKey::Rsa(key)) = VerifyingKey::rsa(&modulus, &exponent) else {
                panic!("{zeros} zeros: refused");
            };
            // Sized by its significant bytes: a 2048-bit key computes as one.
            assert_eq!(key.n_bits_precision(), 2048, "{zeros} zeros");
            assert_eq!(key.e().bits_precision(), unpadded.e().bits_precision(), "{zeros} zeros");
            let key = VerifyingKey::Rsa(key);
            assert!(key.verifies(Algorithm::RS256, input.as_bytes(), &signature), "{zeros} zeros");
            assert!(!key.verifies(Algorithm::RS256, b"another message", &signature), "{zeros} zeros");
        }
        assert!(VerifyingKey::rsa(&[0; 300], &b64(&jwk, "e")).is_none());
        assert!(VerifyingKey::rsa(&b64(&jwk, "n"), &[0; 3]).is_none());
    }

    #[test]
    fn any_signature_bytes_are_a_verdict_never_a_panic() {
        let keys = [
            (key_of("rsa-a.pem", Algorithm::RS256), [Algorithm::RS256, Algorithm::PS512]),
            (key_of("ec-p256.pem", Algorithm::ES256), [Algorithm::ES256, Algorithm::ES384]),
            (key_of("ed25519.pem", Algorithm::EdDSA), [Algorithm::EdDSA, Algorithm::EdDSA]),
            (VerifyingKey::hmac(b""), [Algorithm::HS256, Algorithm::HS512]),
        ];
        // Every length around each algorithm's own (0 to 600 bytes), all zero, all 0xff and a
        // pseudo-random pattern: none verifies.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for length in 0..600 {
            let mut noise = vec![0u8; length];
            for byte in noise.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = state as u8;
            }
            for signature in [vec![0u8; length], vec![0xffu8; length], noise] {
                for (key, algorithms) in &keys {
                    for algorithm in algorithms {
                        assert!(!key.verifies(*algorithm, b"message", &signature), "{algorithm:?} {length}");
                    }
                }
            }
        }
    }

    #[test]
    fn hmac_verifies_its_own_secret_only() {
        let input = b"header.payload";
        for algorithm in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let signed =
                jsonwebtoken::crypto::sign(input, &jsonwebtoken::EncodingKey::from_secret(b"secret"), algorithm)
                    .unwrap();
            let signature = URL_SAFE_NO_PAD.decode(signed).unwrap();
            assert!(VerifyingKey::hmac(b"secret").verifies(algorithm, input, &signature), "{algorithm:?}");
            assert!(!VerifyingKey::hmac(b"secreT").verifies(algorithm, input, &signature), "{algorithm:?}");
            assert!(!VerifyingKey::hmac(b"secret").verifies(Algorithm::RS256, input, &signature));
        }
    }

    #[test]
    fn keys_that_cannot_verify_are_refused_when_they_load() {
        let jwk = public_jwk("ec-p256.pem", Algorithm::ES256);
        let (x, mut y) = (b64(&jwk, "x"), b64(&jwk, "y"));
        assert!(VerifyingKey::p256(&x, &y).is_some());
        y[31] ^= 1;
        assert!(VerifyingKey::p256(&x, &y).is_none(), "a point off the curve");
        assert!(VerifyingKey::p384(&x, &b64(&jwk, "y")).is_none(), "P-256 coordinates are not P-384");
        assert!(VerifyingKey::ed25519(&[0u8; 31]).is_none());
        assert!(VerifyingKey::rsa(&[0xff; 1024], &[1, 0, 1]).is_none(), "an 8192-bit modulus");
        assert!(VerifyingKey::rsa(&[0xc5; 64], &[1, 0, 1]).is_none(), "a 512-bit modulus (factorable)");
        // Moduli no key manager would publish (even, all ones) load or not, but never panic.
        for modulus in [[0xc4u8; 256], [0xffu8; 256]] {
            if let Some(key) = VerifyingKey::rsa(&modulus, &[1, 0, 1]) {
                for signature in [[0u8; 256], [0x7fu8; 256], [0xffu8; 256]] {
                    assert!(!key.verifies(Algorithm::RS256, b"m", &signature));
                    assert!(!key.verifies(Algorithm::PS256, b"m", &signature));
                }
            }
        }
        assert!(VerifyingKey::rsa(&b64(&public_jwk("rsa-a.pem", Algorithm::RS256), "n"), &[1]).is_none(), "e = 1");
    }

    #[test]
    fn a_mangled_rs256_signing_key_is_refused_or_signs_never_panics() {
        // The backend JWT's key comes from the configuration: every byte of it changed in turn
        // (every 5th, to keep the test short) loads and signs, or is refused when it loads.
        let pem = pem::parse(fixture("rsa-a.pem")).unwrap();
        let der = match pem.tag() {
            "RSA PRIVATE KEY" => pem.contents().to_vec(),
            _ => pkcs8::PrivateKeyInfoRef::try_from(pem.contents()).unwrap().private_key.as_bytes().to_vec(),
        };
        for index in (0..der.len()).step_by(5) {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut mangled = der.clone();
                mangled[index] ^= flip;
                if let Some(key) = SigningKey::rs256_from_pkcs1_der(&mangled) {
                    let _ = key.sign(b"header.payload");
                }
            }
        }
        let _ = SigningKey::rs256_from_pkcs1_der(&der[..der.len() / 2]);
    }

    #[test]
    fn what_we_sign_jsonwebtoken_verifies() {
        let message = b"header.payload";
        let rsa_pem = pem::parse(fixture("rsa-a.pem")).unwrap();
        let rsa_der = match rsa_pem.tag() {
            "RSA PRIVATE KEY" => rsa_pem.contents().to_vec(),
            _ => pkcs8::PrivateKeyInfoRef::try_from(rsa_pem.contents()).unwrap().private_key.as_bytes().to_vec(),
        };
        let ec_der = pem::parse(fixture("ec-p256.pem")).unwrap().contents().to_vec();
        let cases = [
            (SigningKey::rs256_from_pkcs1_der(&rsa_der).unwrap(), Algorithm::RS256, "rsa-a.pub.pem"),
            (SigningKey::es256_from_pkcs8_der(&ec_der).unwrap(), Algorithm::ES256, "ec-p256.pub.pem"),
        ];
        for (key, algorithm, public) in cases {
            let signature = URL_SAFE_NO_PAD.encode(key.sign(message).unwrap());
            let public = fixture(public);
            let decoding = match algorithm {
                Algorithm::RS256 => jsonwebtoken::DecodingKey::from_rsa_pem(&public).unwrap(),
                _ => jsonwebtoken::DecodingKey::from_ec_pem(&public).unwrap(),
            };
            assert!(jsonwebtoken::crypto::verify(&signature, message, &decoding, algorithm).unwrap(), "{algorithm:?}");
            assert!(!jsonwebtoken::crypto::verify(&signature, b"other", &decoding, algorithm).unwrap());
        }
        assert!(SigningKey::es256_from_pkcs8_der(&rsa_der).is_none());
        assert!(SigningKey::rs256_from_pkcs1_der(&ec_der).is_none());
    }
}
