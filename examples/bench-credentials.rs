//! Prints the credentials `make bench` uses, as JSON: the JWK of the fixture key
//! `tests/fixtures/keys/rsa-a.pem` and an RS256 token it signs (issuer `https://bench.local`,
//! client `bench-client`, valid for a day).
//!
//!     cargo run --quiet --example bench-credentials

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pem = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys/rsa-a.pem"))?;
    let key = EncodingKey::from_rsa_pem(&pem)?;
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&key, Algorithm::RS256)?)?;
    if let Some(fields) = jwk.as_object_mut() {
        fields.insert("kid".to_string(), json!("bench"));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("bench".to_string());
    let claims = json!({"iss": "https://bench.local", "sub": "bench-client", "client_id": "bench-client",
        "aud": "bench", "scope": "read", "iat": now, "exp": now + 86_400});
    let token = jsonwebtoken::encode(&header, &claims, &key)?;
    println!("{}", json!({"jwk": jwk, "token": token, "issuer": "https://bench.local"}));
    Ok(())
}
