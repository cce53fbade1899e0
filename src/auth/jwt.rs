//! Strict JWS parsing and checking for access tokens and WSO2 API keys. Everything a token says
//! about how to check it is distrusted: the algorithm must be one the issuer is configured for
//! and one the selected key's type allows; keys come from configuration only.
//!
//! Refused: tokens over the size limit (before any parsing), anything but three base64url
//! segments, padding or non-canonical base64url, JSON with duplicate keys or trailing data,
//! `alg: none` in any spelling, algorithms not configured, `crit` (no extension is understood),
//! embedded or remote keys (`jwk`, `jku`, `x5u`, `x5c`), nested tokens (`cty: JWT`), `kid`s that
//! are not short printable strings, bad signatures (including ECDSA r = s = 0, which the RustCrypto
//! verifiers reject), and failed time or audience checks.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::keys::VerificationKey;
use super::strict_json;

/// Why a token was refused. Only logged (never sent): the client sees the WSO2 code alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtError {
    TooLarge,
    Malformed,
    AlgorithmNotAllowed,
    CriticalHeader,
    EmbeddedKey,
    NestedToken,
    BadKeyId,
    UnknownIssuer,
    UnknownKey,
    BadSignature,
    MissingExpiry,
    Expired,
    NotYetValid,
    WrongAudience,
}

impl JwtError {
    /// The reason operators see (logs and the `apim.auth.refused.<reason>` counters).
    pub fn name(self) -> &'static str {
        match self {
            JwtError::TooLarge => "too_large",
            JwtError::Malformed => "malformed",
            JwtError::AlgorithmNotAllowed => "algorithm_not_allowed",
            JwtError::CriticalHeader => "critical_header",
            JwtError::EmbeddedKey => "embedded_key",
            JwtError::NestedToken => "nested_token",
            JwtError::BadKeyId => "bad_key_id",
            JwtError::UnknownIssuer => "unknown_issuer",
            JwtError::UnknownKey => "unknown_key",
            JwtError::BadSignature => "bad_signature",
            JwtError::MissingExpiry => "missing_expiry",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::WrongAudience => "wrong_audience",
        }
    }
}

/// A structurally valid JWS, not yet verified.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub algorithm: Algorithm,
    pub kid: Option<String>,
    /// The header's `typ`, when it is a string.
    pub typ: Option<String>,
    pub payload: Map<String, Value>,
    signing_input: &'a str,
    signature: &'a str,
}

/// The longest `kid` accepted.
const MAX_KID_LEN: usize = 256;

fn decode_segment(segment: &str) -> Result<Vec<u8>, JwtError> {
    if segment.is_empty() {
        return Err(JwtError::Malformed);
    }
    // The no-padding URL-safe engine refuses `=`, `+`, `/` and non-zero trailing bits.
    URL_SAFE_NO_PAD.decode(segment).map_err(|_| JwtError::Malformed)
}

/// Whether a token's first segment is a JWS header: base64url JSON naming its `alg` (read
/// leniently: a header [`parse`] then refuses is still a JWS's).
pub fn is_jws_header(segment: &str) -> bool {
    decode_segment(segment)
        .ok()
        .and_then(|bytes| crate::pieces::from_bytes::<Map<String, Value>>(&bytes).ok())
        .is_some_and(|header| header.get("alg").is_some_and(Value::is_string))
}

/// Splits and decodes a compact JWS and checks its header.
pub fn parse(token: &str, max_bytes: usize) -> Result<Parsed<'_>, JwtError> {
    if token.len() > max_bytes {
        return Err(JwtError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header_json = strict_json::parse_object(&decode_segment(header)?).map_err(|_| JwtError::Malformed)?;
    let payload_json = strict_json::parse_object(&decode_segment(payload)?).map_err(|_| JwtError::Malformed)?;
    decode_segment(signature)?;

    let alg = header_json.get("alg").and_then(Value::as_str).ok_or(JwtError::Malformed)?;
    let algorithm: Algorithm = alg.parse().map_err(|_| JwtError::AlgorithmNotAllowed)?;
    if header_json.contains_key("crit") {
        return Err(JwtError::CriticalHeader);
    }
    if ["jwk", "jku", "x5u", "x5c"].iter().any(|name| header_json.contains_key(*name)) {
        return Err(JwtError::EmbeddedKey);
    }
    if header_json.get("cty").and_then(Value::as_str).is_some_and(|cty| cty.eq_ignore_ascii_case("JWT")) {
        return Err(JwtError::NestedToken);
    }
    let kid = match header_json.get("kid") {
        None => None,
        Some(Value::String(kid))
            if !kid.is_empty() && kid.len() <= MAX_KID_LEN && kid.chars().all(|c| c.is_ascii_graphic()) =>
        {
            Some(kid.clone())
        }
        Some(_) => return Err(JwtError::BadKeyId),
    };
    let typ = header_json.get("typ").and_then(Value::as_str).map(String::from);
    let signing_input_len = header.len() + 1 + payload.len();
    Ok(Parsed {
        algorithm,
        kid,
        typ,
        payload: payload_json,
        signing_input: token.get(..signing_input_len).ok_or(JwtError::Malformed)?,
        signature,
    })
}

/// What a JWT is checked against. Bearer tokens and WSO2 JWT API keys go through the same checks
/// in the same order: the issuer (checked by the caller before the keys are chosen: it picks the
/// key manager, or must equal the configured API-key issuer), then the signature (an algorithm the
/// issuer is configured for and the key's type allows), the times, and the audience.
#[derive(Clone, Copy, Debug)]
pub struct Rules<'a> {
    pub algorithms: &'a [Algorithm],
    /// Accepted `aud` values; empty accepts any.
    pub audiences: &'a [String],
    pub clock_skew_s: u64,
    /// `exp` is required (access tokens) or may be absent (WSO2's API keys of unlimited validity).
    pub require_expiry: bool,
}

impl Parsed<'_> {
    /// Checks signature, times and audience, in that order; returns `exp`, if any.
    pub fn check<'k>(
        &self,
        rules: &Rules<'_>,
        candidates: impl Iterator<Item = &'k VerificationKey>,
        now: u64,
    ) -> Result<Option<u64>, JwtError> {
        self.verify(rules.algorithms, candidates)?;
        let expires = check_times_optional_exp(&self.payload, now, rules.clock_skew_s)?;
        if rules.require_expiry && expires.is_none() {
            return Err(JwtError::MissingExpiry);
        }
        check_audience(&self.payload, rules.audiences)?;
        Ok(expires)
    }

    /// How a revocation names this token, as WSO2 does: its `jti` when it is a non-empty string,
    /// else its signature segment as sent. With no `jti`, an ECDSA token has a second name: the
    /// other form of its signature, `(r, n - s)`, which verifies the same claims (whoever holds
    /// the token can write it), so a revocation naming either names both.
    pub fn revocation_ids(&self) -> (String, Option<String>) {
        if let Some(jti) = self.payload.get("jti").and_then(Value::as_str).filter(|jti| !jti.is_empty()) {
            return (jti.to_string(), None);
        }
        let twin = URL_SAFE_NO_PAD
            .decode(self.signature)
            .ok()
            .and_then(|signature| crate::signatures::ecdsa_twin(self.algorithm, &signature))
            .map(|twin| URL_SAFE_NO_PAD.encode(twin));
        (self.signature.to_string(), twin)
    }

    /// The unverified issuer, to choose whose keys to use.
    pub fn issuer(&self) -> Option<&str> {
        self.payload.get("iss").and_then(Value::as_str)
    }

    /// Verifies the signature with the first candidate key that accepts it. `allowed` is the
    /// issuer's configured algorithm list.
    pub fn verify<'k>(
        &self,
        allowed: &[Algorithm],
        candidates: impl Iterator<Item = &'k VerificationKey>,
    ) -> Result<(), JwtError> {
        if !allowed.contains(&self.algorithm) {
            return Err(JwtError::AlgorithmNotAllowed);
        }
        // A signature that is not base64url is tried as no signature: it verifies with no key.
        let signature = URL_SAFE_NO_PAD.decode(self.signature).unwrap_or_default();
        let mut tried = false;
        for key in candidates {
            if !key.algorithms.contains(&self.algorithm) || !key.key.serves(self.algorithm) {
                continue;
            }
            tried = true;
            if key.key.verifies(self.algorithm, self.signing_input.as_bytes(), &signature) {
                return Ok(());
            }
        }
        Err(if tried { JwtError::BadSignature } else { JwtError::UnknownKey })
    }
}

/// The largest NumericDate taken: Envoy's `jwt_authn` reads the time claims as 64-bit signed
/// integers and refuses what does not fit. A larger `exp` would make a token valid forever.
const MAX_NUMERIC_DATE: u64 = i64::MAX as u64;

/// How a fraction of a second in a NumericDate is taken: down for `exp` and `iat`, up for `nbf`
/// (each the direction that accepts no earlier and no longer than the claim says).
#[derive(Clone, Copy)]
pub enum Fraction {
    Down,
    Up,
}

/// A NumericDate (RFC 7519 2) as whole seconds: a non-negative number up to
/// [`MAX_NUMERIC_DATE`]; `None` for anything else (another type, a negative, `1e300`). Shared by
/// JWT claims and introspection answers.
pub fn numeric_date_value(value: &Value, fraction: Fraction) -> Option<u64> {
    let Value::Number(number) = value else { return None };
    let seconds = match (number.as_u64(), number.as_f64()) {
        (Some(seconds), _) => seconds,
        // Below 2^63 a float converts without saturating.
        (None, Some(seconds)) if (0.0..9.223_372_036_854_775e18).contains(&seconds) => match fraction {
            Fraction::Down => seconds.floor() as u64,
            Fraction::Up => seconds.ceil() as u64,
        },
        _ => return None,
    };
    (seconds <= MAX_NUMERIC_DATE).then_some(seconds)
}

/// A NumericDate claim, when present; any other value is malformed.
fn numeric_date(payload: &Map<String, Value>, name: &str, fraction: Fraction) -> Result<Option<u64>, JwtError> {
    payload.get(name).map(|value| numeric_date_value(value, fraction).ok_or(JwtError::Malformed)).transpose()
}

/// `exp`, when present, must be `>= now - skew` and `nbf`, when present, `<= now + skew`; `iat`,
/// when present, must be a NumericDate. Returns `exp` (whether it is required is the caller's
/// rule: see [`Rules`]).
pub fn check_times_optional_exp(payload: &Map<String, Value>, now: u64, skew: u64) -> Result<Option<u64>, JwtError> {
    let expires = numeric_date(payload, "exp", Fraction::Down)?;
    if expires.is_some_and(|expires| now > expires.saturating_add(skew)) {
        return Err(JwtError::Expired);
    }
    if let Some(not_before) = numeric_date(payload, "nbf", Fraction::Up)? {
        if not_before > now.saturating_add(skew) {
            return Err(JwtError::NotYetValid);
        }
    }
    numeric_date(payload, "iat", Fraction::Down)?;
    Ok(expires)
}

/// When audiences are configured, `aud` (a string or an array) must name one of them.
/// An `aud` that is neither is malformed, whether or not audiences are configured (as in Envoy's
/// `jwt_authn`): an array with a number or an object beside the wanted audience is refused.
pub fn check_audience(payload: &Map<String, Value>, audiences: &[String]) -> Result<(), JwtError> {
    let audience: Vec<&str> = match payload.get("aud") {
        None => Vec::new(),
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(values)) => {
            values.iter().map(Value::as_str).collect::<Option<Vec<&str>>>().ok_or(JwtError::Malformed)?
        }
        Some(_) => return Err(JwtError::Malformed),
    };
    if audiences.is_empty() {
        return Ok(());
    }
    let ok = audience.iter().any(|aud| audiences.iter().any(|wanted| wanted == aud));
    if ok {
        Ok(())
    } else {
        Err(JwtError::WrongAudience)
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys::testkeys::*;
    use super::super::keys::{hmac_key, KeySet};
    use super::*;
    use serde_json::json;

    const RSA_ALGS: &[Algorithm] = &[Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA];
    const NOW: u64 = 1_800_000_000;

    fn keys() -> KeySet {
        KeySet::from_jwks(&json!({"keys": [
            jwk("rsa-a.pem", Algorithm::RS256, "a"),
            jwk("ec-p256.pem", Algorithm::ES256, "ec"),
            jwk("ed25519.pem", Algorithm::EdDSA, "ed"),
        ]}))
        .unwrap()
    }

    fn payload() -> String {
        json!({"iss": "https://km", "exp": NOW + 300, "client_id": "app1"}).to_string()
    }

    fn check(token: &str) -> Result<(), JwtError> {
        let parsed = parse(token, 8192)?;
        let set = keys();
        let rules = Rules { algorithms: RSA_ALGS, audiences: &[], clock_skew_s: 60, require_expiry: true };
        parsed.check(&rules, set.candidates(parsed.kid.as_deref(), parsed.algorithm), NOW).map(|_| ())
    }

    fn check_times(payload: &Map<String, Value>, now: u64, skew: u64) -> Result<u64, JwtError> {
        check_times_optional_exp(payload, now, skew)?.ok_or(JwtError::MissingExpiry)
    }

    fn b64(text: &str) -> String {
        URL_SAFE_NO_PAD.encode(text)
    }

    #[test]
    fn good_tokens_of_every_key_type_verify() {
        assert_eq!(check(&sign_raw(r#"{"alg":"RS256","kid":"a"}"#, &payload(), "rsa-a.pem", Algorithm::RS256)), Ok(()));
        assert_eq!(
            check(&sign_raw(r#"{"alg":"ES256","kid":"ec"}"#, &payload(), "ec-p256.pem", Algorithm::ES256)),
            Ok(())
        );
        assert_eq!(
            check(&sign_raw(r#"{"alg":"EdDSA","kid":"ed"}"#, &payload(), "ed25519.pem", Algorithm::EdDSA)),
            Ok(())
        );
        assert_eq!(
            check(&sign_raw(r#"{"alg":"RS256"}"#, &payload(), "rsa-a.pem", Algorithm::RS256)),
            Ok(()),
            "no kid: try the keys"
        );
    }

    #[test]
    fn alg_none_in_any_casing_is_refused() {
        for alg in ["none", "None", "NONE", "nOnE"] {
            let token = format!("{}.{}.", b64(&format!(r#"{{"alg":"{alg}"}}"#)), b64(&payload()));
            assert!(check(&token).is_err(), "{alg}");
            let token = format!("{}.{}.c2ln", b64(&format!(r#"{{"alg":"{alg}"}}"#)), b64(&payload()));
            assert_eq!(check(&token), Err(JwtError::AlgorithmNotAllowed), "{alg}");
        }
    }

    #[test]
    fn hmac_signed_with_the_public_key_is_refused() {
        // The attacker signs HS256 using the RSA public key bytes as the secret.
        let public_pem = fixture("rsa-a.pub.pem");
        let input = format!("{}.{}", b64(r#"{"alg":"HS256","kid":"a"}"#), b64(&payload()));
        let signature = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &jsonwebtoken::EncodingKey::from_secret(&public_pem),
            Algorithm::HS256,
        )
        .unwrap();
        let token = format!("{input}.{signature}");
        let parsed = parse(&token, 8192).unwrap();
        let set = keys();
        // Even when HS256 is allowed for the issuer, no RSA key verifies HMAC.
        let allowed = [Algorithm::RS256, Algorithm::HS256];
        assert_eq!(
            parsed.verify(&allowed, set.candidates(parsed.kid.as_deref(), parsed.algorithm)),
            Err(JwtError::UnknownKey)
        );
        assert_eq!(parsed.verify(RSA_ALGS, set.candidates(None, parsed.algorithm)), Err(JwtError::AlgorithmNotAllowed));
        // With a configured secret, HS256 works, and only with that secret.
        let secret = hmac_key(b"a-configured-secret-of-enough-length");
        assert_eq!(parsed.verify(&allowed, std::iter::once(&secret)), Err(JwtError::BadSignature));
    }

    #[test]
    fn embedded_and_remote_keys_are_refused() {
        let embedded = jwk("rsa-b.pem", Algorithm::RS256, "b");
        let header = json!({"alg": "RS256", "jwk": embedded}).to_string();
        assert_eq!(check(&sign_raw(&header, &payload(), "rsa-b.pem", Algorithm::RS256)), Err(JwtError::EmbeddedKey));
        for name in ["jku", "x5u"] {
            let header = json!({"alg": "RS256", "kid": "a", name: "https://attacker.example/keys"}).to_string();
            assert_eq!(
                check(&sign_raw(&header, &payload(), "rsa-a.pem", Algorithm::RS256)),
                Err(JwtError::EmbeddedKey)
            );
        }
        let header = json!({"alg": "RS256", "kid": "a", "x5c": ["MIIB"]}).to_string();
        assert_eq!(check(&sign_raw(&header, &payload(), "rsa-a.pem", Algorithm::RS256)), Err(JwtError::EmbeddedKey));
    }

    #[test]
    fn a_token_signed_by_another_key_is_refused() {
        let token = sign_raw(r#"{"alg":"RS256","kid":"a"}"#, &payload(), "rsa-b.pem", Algorithm::RS256);
        assert_eq!(check(&token), Err(JwtError::BadSignature));
        let token = sign_raw(r#"{"alg":"RS256","kid":"b"}"#, &payload(), "rsa-b.pem", Algorithm::RS256);
        assert_eq!(check(&token), Err(JwtError::UnknownKey));
    }

    #[test]
    fn kid_injection_and_traversal_are_refused_or_harmless() {
        for kid in ["../../etc/passwd", "a' OR '1'='1", "a\u{0}", "a\nb", &"k".repeat(300)] {
            let header = json!({"alg": "RS256", "kid": kid}).to_string();
            let result = check(&sign_raw(&header, &payload(), "rsa-a.pem", Algorithm::RS256));
            assert!(matches!(result, Err(JwtError::BadKeyId | JwtError::UnknownKey)), "{kid:?}: {result:?}");
        }
        let header = json!({"alg": "RS256", "kid": 7}).to_string();
        assert_eq!(check(&sign_raw(&header, &payload(), "rsa-a.pem", Algorithm::RS256)), Err(JwtError::BadKeyId));
    }

    #[test]
    fn psychic_ecdsa_signature_is_refused() {
        // CVE-2022-21449: r = s = 0 (64 zero bytes for P-256).
        let input = format!("{}.{}", b64(r#"{"alg":"ES256","kid":"ec"}"#), b64(&payload()));
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode([0u8; 64]));
        assert_eq!(check(&token), Err(JwtError::BadSignature));
    }

    #[test]
    fn unknown_critical_extensions_are_refused() {
        let header = json!({"alg": "RS256", "kid": "a", "crit": ["exp-ext"], "exp-ext": 1}).to_string();
        assert_eq!(check(&sign_raw(&header, &payload(), "rsa-a.pem", Algorithm::RS256)), Err(JwtError::CriticalHeader));
    }

    #[test]
    fn expiry_is_pinned_around_exp_and_skew() {
        let exp = NOW;
        let token = |exp: u64| {
            let claims = json!({"iss": "https://km", "exp": exp}).to_string();
            parse(&sign_raw(r#"{"alg":"RS256","kid":"a"}"#, &claims, "rsa-a.pem", Algorithm::RS256), 8192)
                .unwrap()
                .payload
        };
        let payload = token(exp);
        assert_eq!(check_times(&payload, exp - 1, 60), Ok(exp));
        assert_eq!(check_times(&payload, exp, 60), Ok(exp));
        assert_eq!(check_times(&payload, exp + 60, 60), Ok(exp));
        assert_eq!(check_times(&payload, exp + 61, 60), Err(JwtError::Expired));
        let no_exp: Map<String, Value> = serde_json::from_str(r#"{"iss":"x"}"#).unwrap();
        assert_eq!(check_times(&no_exp, NOW, 60), Err(JwtError::MissingExpiry));
        let future: Map<String, Value> =
            serde_json::from_str(&format!(r#"{{"exp":{},"nbf":{}}}"#, NOW + 900, NOW + 61)).unwrap();
        assert_eq!(check_times(&future, NOW, 60), Err(JwtError::NotYetValid));
        let bad: Map<String, Value> = serde_json::from_str(r#"{"exp":"tomorrow"}"#).unwrap();
        assert_eq!(check_times(&bad, NOW, 60), Err(JwtError::Malformed));
    }

    #[test]
    fn audience_and_issuer() {
        let payload: Map<String, Value> = serde_json::from_str(r#"{"aud":["x","gateway"],"iss":"i"}"#).unwrap();
        assert_eq!(check_audience(&payload, &["gateway".to_string()]), Ok(()));
        assert_eq!(check_audience(&payload, &["other".to_string()]), Err(JwtError::WrongAudience));
        assert_eq!(check_audience(&payload, &[]), Ok(()));
        let token =
            sign_raw(r#"{"alg":"RS256","kid":"a"}"#, &payload_with_iss("https://km"), "rsa-a.pem", Algorithm::RS256);
        assert_eq!(parse(&token, 8192).unwrap().issuer(), Some("https://km"));
    }

    #[test]
    fn time_claims_out_of_range_or_of_another_type_are_malformed_never_forever() {
        let times = |claims: &str| check_times_optional_exp(&serde_json::from_str(claims).unwrap(), NOW, 60);
        // An `exp` past what a signed 64-bit integer holds would never expire (a float saturates).
        for exp in
            ["1e300", "18446744073709551615", "18446744073709551616", "9223372036854775808", "1.8446744073709552e19"]
        {
            assert_eq!(times(&format!(r#"{{"exp":{exp}}}"#)), Err(JwtError::Malformed), "exp {exp}");
        }
        assert_eq!(times(r#"{"exp":9223372036854775807}"#), Ok(Some(i64::MAX as u64)));
        assert_eq!(times(&format!(r#"{{"exp":{}.75}}"#, NOW + 10)), Ok(Some(NOW + 10)));
        // `nbf`'s fraction counts up: not a fraction of a second early.
        assert_eq!(times(&format!(r#"{{"nbf":{}.1}}"#, NOW + 60)), Err(JwtError::NotYetValid));
        assert_eq!(times(&format!(r#"{{"nbf":{}}}"#, NOW + 60)), Ok(None));
        // `iat` is not compared with the clock, but it must be a NumericDate.
        for iat in [r#""yesterday""#, "1e300", "-5", "{}", "null", "[1]"] {
            assert_eq!(times(&format!(r#"{{"iat":{iat}}}"#)), Err(JwtError::Malformed), "iat {iat}");
        }
        assert_eq!(times(&format!(r#"{{"iat":{NOW}.5}}"#)), Ok(None));
    }

    #[test]
    fn an_audience_with_a_value_that_is_not_a_string_is_malformed() {
        let audience = |claims: &str, wanted: &[String]| check_audience(&serde_json::from_str(claims).unwrap(), wanted);
        let gateway = ["gw".to_string()];
        for aud in [r#"["gw",5,{"x":1}]"#, r#"[null,"gw"]"#, "5", "{}", "null"] {
            assert_eq!(audience(&format!(r#"{{"aud":{aud}}}"#), &gateway), Err(JwtError::Malformed), "aud {aud}");
            assert_eq!(audience(&format!(r#"{{"aud":{aud}}}"#), &[]), Err(JwtError::Malformed), "aud {aud}");
        }
        assert_eq!(audience(r#"{"aud":[]}"#, &gateway), Err(JwtError::WrongAudience));
        assert_eq!(audience(r#"{"aud":[]}"#, &[]), Ok(()));
        assert_eq!(audience(r#"{"aud":"gw"}"#, &gateway), Ok(()));
    }

    #[test]
    fn an_ecdsa_token_without_jti_is_named_by_both_forms_of_its_signature() {
        // Whoever holds an ES256 token can write its twin, (r, n - s), which verifies the same
        // claims: a revocation naming the signature as sent must name the twin too.
        let token = sign_raw(r#"{"alg":"ES256","kid":"ec"}"#, &payload(), "ec-p256.pem", Algorithm::ES256);
        let parsed = parse(&token, 8192).unwrap();
        let (id, twin) = parsed.revocation_ids();
        assert_eq!(id, token.rsplit('.').next().unwrap());
        let twin = twin.expect("an ECDSA signature has a twin");
        let twin_token = format!("{}.{twin}", token.rsplit_once('.').unwrap().0);
        let rules = Rules { algorithms: RSA_ALGS, audiences: &[], clock_skew_s: 60, require_expiry: true };
        let twin_parsed = parse(&twin_token, 8192).unwrap();
        twin_parsed.check(&rules, keys().candidates(Some("ec"), Algorithm::ES256), NOW).expect("the twin verifies");
        assert_eq!(twin_parsed.revocation_ids(), (twin, Some(id)), "each names the other");
        // A `jti` names the token alone; RSA signatures have no twin.
        let with_jti = json!({"iss": "https://km", "exp": NOW + 300, "jti": "j-1"}).to_string();
        let token = sign_raw(r#"{"alg":"ES256","kid":"ec"}"#, &with_jti, "ec-p256.pem", Algorithm::ES256);
        assert_eq!(parse(&token, 8192).unwrap().revocation_ids(), ("j-1".to_string(), None));
        let token = sign_raw(r#"{"alg":"RS256","kid":"a"}"#, &payload(), "rsa-a.pem", Algorithm::RS256);
        assert_eq!(parse(&token, 8192).unwrap().revocation_ids().1, None);
    }

    fn payload_with_iss(iss: &str) -> String {
        json!({"iss": iss, "exp": NOW + 300}).to_string()
    }

    #[test]
    fn duplicate_json_keys_are_refused() {
        let token = sign_raw(r#"{"alg":"RS256","alg":"none","kid":"a"}"#, &payload(), "rsa-a.pem", Algorithm::RS256);
        assert_eq!(check(&token), Err(JwtError::Malformed));
        let claims = format!(r#"{{"iss":"https://km","exp":{},"exp":{}}}"#, NOW + 300, NOW + 99999);
        assert_eq!(
            check(&sign_raw(r#"{"alg":"RS256","kid":"a"}"#, &claims, "rsa-a.pem", Algorithm::RS256)),
            Err(JwtError::Malformed)
        );
    }

    #[test]
    fn non_canonical_base64url_is_refused() {
        let good = sign_raw(r#"{"alg":"RS256","kid":"a"}"#, &payload(), "rsa-a.pem", Algorithm::RS256);
        let parts: Vec<&str> = good.split('.').collect();
        // Padding, standard-alphabet characters, and a changed last character (non-zero trailing bits).
        let padded = format!("{}=.{}.{}", parts[0], parts[1], parts[2]);
        assert_eq!(check(&padded), Err(JwtError::Malformed));
        let plus = format!("{}.{}.{}", parts[0], parts[1], parts[2].replace('-', "+").replace('_', "/"));
        if plus != good {
            assert_eq!(check(&plus), Err(JwtError::Malformed));
        }
        // The signature is 256 bytes: its last base64url char carries 4 trailing bits that must be 0.
        let mut signature = parts[2].to_string();
        let last = signature.pop().unwrap();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let index = alphabet.find(last).unwrap();
        signature.push(alphabet.chars().nth(index ^ 1).unwrap());
        let tweaked = format!("{}.{}.{signature}", parts[0], parts[1]);
        assert_eq!(check(&tweaked), Err(JwtError::Malformed));
    }

    #[test]
    fn oversized_and_malformed_tokens_are_refused_before_parsing() {
        let huge = format!("{}.{}.sig", "a".repeat(9000), "b");
        assert_eq!(parse(&huge, 8192).err(), Some(JwtError::TooLarge));
        for token in ["", "a", "a.b", "a.b.c.d", "..", "e30.e30.", "e30..c2ln", "bm90IGpzb24.e30.c2ln"] {
            assert!(parse(token, 8192).is_err(), "{token}");
        }
    }

    #[test]
    fn nested_tokens_are_refused() {
        let inner = sign_raw(r#"{"alg":"RS256","kid":"a"}"#, &payload(), "rsa-a.pem", Algorithm::RS256);
        let header = r#"{"alg":"RS256","kid":"a","cty":"JWT"}"#;
        let outer = sign_raw(header, &json!({"token": inner}).to_string(), "rsa-a.pem", Algorithm::RS256);
        assert_eq!(check(&outer), Err(JwtError::NestedToken));
    }
}
