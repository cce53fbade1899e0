//! Mints a JWT access token that the demo configuration (envoy/envoy.yaml) accepts: issuer
//! `https://demo.apim.local/oauth2/token`, client `demo-client` (the demo application), scopes
//! `menu:read order:write`, valid for an hour, signed RS256 with the demo key
//! `envoy/demo/demo-jwt-signing-key.pem` (a demo key, public in this repository).
//!
//!     cargo run --quiet --example mint-demo-jwt

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pem = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/envoy/demo/demo-jwt-signing-key.pem"))?;
    let key = EncodingKey::from_rsa_pem(&pem)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("demo-2026".to_string());
    let claims = json!({
        "iss": "https://demo.apim.local/oauth2/token",
        "sub": "demo-client",
        "client_id": "demo-client",
        "scope": "menu:read order:write",
        "iat": now,
        "exp": now + 3600,
    });
    println!("{}", jsonwebtoken::encode(&header, &claims, &key)?);
    Ok(())
}
