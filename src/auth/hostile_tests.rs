//! Hostile key-manager answers and tokens: JWKS documents, introspection answers and JWTs built
//! from good ones and mutated (extreme values, wrong types, deep nesting, broken bytes), fed to
//! the JWKS ingestion, the introspection reading and the JWT parsing and checks. Each gives a
//! defined outcome (keys taken or the last good ones kept; active, inactive or unavailable; a
//! token parsed or refused), never a panic.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use super::fixture::compile;
use super::jwks::{self, FetchedKeys};
use super::keys::testkeys::jwk;
use super::keys::KeySet;
use super::{introspection, jwt};
use crate::host::fuzz::{each_case, mutate_bytes, mutate_document, noise};
use crate::host::testing::MemoryStore;
use crate::host::Answer;

const NOW: u64 = 1_800_000_000;

fn good_jwks() -> Value {
    json!({"keys": [
        jwk("rsa-a.pem", Algorithm::RS256, "a"),
        jwk("ec-p256.pem", Algorithm::ES256, "e"),
        jwk("ed25519.pem", Algorithm::EdDSA, "d"),
        {"kty": "oct", "kid": "h", "k": "c2VjcmV0", "alg": "HS256"},
        {"kty": "RSA", "kid": "x5c", "x5c": ["MIIB"], "use": "sig"},
    ]})
}

#[test]
fn mutated_jwks_answers_give_keys_or_keep_the_last_good_ones() {
    let config = compile(
        r#"{"key_managers": [{"name": "km", "issuer": "https://km", "jwks": {"cluster": "km", "refresh_s": 60}}]}"#,
    );
    let km = &config.auth.key_managers[0];
    let good = good_jwks();
    each_case("jwks", 300, 0x105E7, |rng, _| {
        let mut store = MemoryStore::default();
        let mut fetched = FetchedKeys::default();
        let body = match rng.below(6) {
            0 => noise(rng, 300),
            1 => mutate_bytes(good.to_string().as_bytes(), rng),
            _ => mutate_document(&good, rng),
        };
        let status = if rng.chance(10) { rng.word() as u16 } else { 200 };
        let took = jwks::ingest(&mut store, km, &mut fetched, &Answer::Http { status, body }, NOW);
        assert_eq!(took, fetched.keys.is_some(), "keys exactly when the answer was taken");
        assert_eq!(fetched.failed, !took);
        if let Some(keys) = &fetched.keys {
            let _ = keys.has_kid("a");
        }
    });
}

#[test]
fn mutated_introspection_answers_are_active_inactive_or_unavailable() {
    let config = compile(
        r#"{"key_managers": [{"name": "a", "issuer": "https://a",
            "introspection": {"cluster": "km", "client_id": "gw", "client_secret": "s"}}]}"#,
    );
    let km = &config.auth.key_managers[0];
    let good = json!({"active": true, "client_id": "c", "token_type": "Bearer", "scope": "read write",
        "exp": NOW + 3600, "iat": NOW - 10, "nbf": NOW - 10, "sub": "alice", "username": "alice@carbon.super",
        "aud": ["x", "y"], "iss": "https://a", "jti": "j"});
    each_case("introspection", 600, 0x127, |rng, _| {
        let body = match rng.below(6) {
            0 => noise(rng, 200),
            1 => mutate_bytes(good.to_string().as_bytes(), rng),
            _ => mutate_document(&good, rng),
        };
        let now = *rng.pick(&[0, NOW, u64::MAX, u64::MAX / 2, i64::MAX as u64]);
        let introspected = introspection::parse(km, &Answer::Http { status: 200, body: body.clone() }, now);
        let hash = [7u8; 32];
        let _ = introspection::CachedIntrospection::for_answer(&hash, &introspected, km, now);
        // A cache entry in shared data is outside data too (another module version's, or garbled).
        let _ = introspection::CachedIntrospection::is_fresh_active(&body, now);
        let _ = introspection::CachedIntrospection::lookup(&body, &hash, km.id, now);
    });
}

fn segment(value: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(value)
}

#[test]
fn mutated_tokens_parse_or_are_refused_and_their_checks_answer() {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "a"});
    let payload = json!({"iss": "https://km", "sub": "alice", "aud": ["x"], "exp": NOW + 60, "nbf": NOW - 5,
        "iat": NOW - 5, "jti": "j", "scope": "a b", "azp": "c", "application": {"uuid": "u", "tier": "Gold"},
        "subscribedAPIs": [{"name": "PizzaShackAPI", "context": "/pizzashack/1.0.0", "version": "1.0.0"}]});
    let keys = KeySet::from_jwks(&good_jwks()).unwrap();
    each_case("jwt", 800, 0x137, |rng, _| {
        let head = if rng.chance(3) { mutate_document(&header, rng) } else { header.to_string().into_bytes() };
        let body = if rng.chance(4) { payload.to_string().into_bytes() } else { mutate_document(&payload, rng) };
        let signature = noise(rng, 300);
        let mut token = format!("{}.{}.{}", segment(&head), segment(&body), segment(&signature));
        if rng.chance(5) {
            token = String::from_utf8_lossy(&mutate_bytes(token.as_bytes(), rng)).into_owned();
        }
        let Ok(parsed) = jwt::parse(&token, 1 << 16) else { return };
        let _ = parsed.revocation_ids();
        let _ = parsed.issuer();
        let now = *rng.pick(&[0, NOW, u64::MAX]);
        let skew = *rng.pick(&[0, 60, u64::MAX]);
        let audiences = ["x".to_string()];
        let rules = jwt::Rules {
            algorithms: &[Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA, Algorithm::HS256],
            audiences: &audiences,
            clock_skew_s: skew,
            require_expiry: rng.chance(2),
        };
        let kid = parsed.kid.clone();
        let _ = parsed.check(&rules, keys.candidates(kid.as_deref(), parsed.algorithm), now);
    });
}
