//! Prints the credentials `make bench` uses, as JSON: the JWK of the fixture key
//! `tests/fixtures/keys/rsa-a.pem` and an RS256 token it signs (issuer `https://bench.local`,
//! client `bench-client`, valid for a day); the same for ES256 (`ec-p256.pem`) and EdDSA
//! (`ed25519.pem`); and with `--tokens N FILE`, N RS256 tokens of clients `client-1` ..
//! `client-N`, one per line in FILE (many distinct callers); with `--fresh N FILE`, N RS256 tokens
//! of `bench-client` that differ by their `jti` (a token no cache has seen, for every request).
//!
//!     cargo run --quiet --example bench-credentials [-- --tokens N FILE | --fresh N FILE]

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

type Failure = Box<dyn std::error::Error>;

/// The JWK of a fixture key (with `kid`) and the key to sign with.
fn signer(file: &str, algorithm: Algorithm, kid: &str) -> Result<(serde_json::Value, EncodingKey), Failure> {
    let pem = std::fs::read(format!("{}/tests/fixtures/keys/{file}", env!("CARGO_MANIFEST_DIR")))?;
    let key = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem)?,
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem)?,
        _ => EncodingKey::from_ed_pem(&pem)?,
    };
    let mut jwk = if algorithm == Algorithm::EdDSA {
        // jsonwebtoken has no JWK export for Ed25519: the public key is the last 32 bytes of the
        // SubjectPublicKeyInfo.
        use base64::Engine;
        let public = std::fs::read(format!(
            "{}/tests/fixtures/keys/{}",
            env!("CARGO_MANIFEST_DIR"),
            file.replace(".pem", ".pub.pem")
        ))?;
        let der = pem::parse(public)?.into_contents();
        let raw = der.get(der.len().saturating_sub(32)..).unwrap_or_default();
        json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA",
               "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)})
    } else {
        serde_json::to_value(Jwk::from_encoding_key(&key, algorithm)?)?
    };
    if let Some(fields) = jwk.as_object_mut() {
        fields.insert("kid".to_string(), json!(kid));
    }
    Ok((jwk, key))
}

fn token(key: &EncodingKey, algorithm: Algorithm, kid: &str, client: &str) -> Result<String, Failure> {
    token_with_id(key, algorithm, kid, client, None)
}

fn token_with_id(
    key: &EncodingKey,
    algorithm: Algorithm,
    kid: &str,
    client: &str,
    id: Option<usize>,
) -> Result<String, Failure> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_string());
    let mut claims = json!({"iss": "https://bench.local", "sub": client, "client_id": client,
        "aud": "bench", "scope": "read", "iat": now, "exp": now + 86_400});
    if let (Some(id), Some(fields)) = (id, claims.as_object_mut()) {
        fields.insert("jti".to_string(), json!(format!("fresh-{id}")));
    }
    Ok(jsonwebtoken::encode(&header, &claims, key)?)
}

/// `count` tokens of `bench-client`, each with its own `jti`, signed on every core (RSA signing
/// takes about 1.5 ms a token).
fn fresh_tokens(key: &EncodingKey, count: usize) -> Result<String, Failure> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let parts: Vec<Result<String, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|part| {
                scope.spawn(move || {
                    let mut lines = String::new();
                    for id in (part..count).step_by(threads) {
                        let token = token_with_id(key, Algorithm::RS256, "bench", "bench-client", Some(id))
                            .map_err(|e| e.to_string())?;
                        lines.push_str(&token);
                        lines.push('\n');
                    }
                    Ok(lines)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|_| Err("a signing thread failed".into()))).collect()
    });
    let mut all = String::new();
    for part in parts {
        all.push_str(&part?);
    }
    Ok(all)
}

fn main() -> Result<(), Failure> {
    let (jwk, key) = signer("rsa-a.pem", Algorithm::RS256, "bench")?;
    let args: Vec<String> = std::env::args().collect();
    if let (Some("--tokens"), Some(count), Some(file)) = (args.get(1).map(String::as_str), args.get(2), args.get(3)) {
        let count: usize = count.parse()?;
        let mut lines = String::new();
        for i in 1..=count {
            lines.push_str(&token(&key, Algorithm::RS256, "bench", &format!("client-{i}"))?);
            lines.push('\n');
        }
        std::fs::write(file, lines)?;
        return Ok(());
    }
    if let (Some("--fresh"), Some(count), Some(file)) = (args.get(1).map(String::as_str), args.get(2), args.get(3)) {
        std::fs::write(file, fresh_tokens(&key, count.parse()?)?)?;
        return Ok(());
    }
    let (es_jwk, es_key) = signer("ec-p256.pem", Algorithm::ES256, "bench-es")?;
    let (ed_jwk, ed_key) = signer("ed25519.pem", Algorithm::EdDSA, "bench-ed")?;
    println!(
        "{}",
        json!({"jwk": jwk, "token": token(&key, Algorithm::RS256, "bench", "bench-client")?,
               "es256": {"jwk": es_jwk, "token": token(&es_key, Algorithm::ES256, "bench-es", "bench-client")?},
               "eddsa": {"jwk": ed_jwk, "token": token(&ed_key, Algorithm::EdDSA, "bench-ed", "bench-client")?},
               "issuer": "https://bench.local"})
    );
    Ok(())
}
