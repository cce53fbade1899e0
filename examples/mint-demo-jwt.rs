//! Mints a JWT access token that the demo configuration (envoy/envoy.yaml) accepts: issuer
//! `https://demo.apim.local/oauth2/token`, client `demo-client` (the demo application), scopes
//! `menu:read order:write`, valid for an hour (or `--valid-days N`), signed RS256 with the demo
//! key `envoy/demo/demo-jwt-signing-key.pem` (a demo key, public in this repository).
//!
//! `envoy/demo/credentials.env` already carries one (`DEMO_JWT`, minted with `--valid-days 3650`);
//! run this for a fresh one. The first build compiles the crate's dependencies (a few minutes;
//! cargo shows its progress without `--quiet`).
//!
//!     cargo run --quiet --example mint-demo-jwt

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pem = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/envoy/demo/demo-jwt-signing-key.pem"))?;
    let key = EncodingKey::from_rsa_pem(&pem)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let args: Vec<String> = std::env::args().collect();
    let lifetime = match args.iter().position(|arg| arg == "--valid-days") {
        Some(at) => args.get(at + 1).ok_or("--valid-days needs a number")?.parse::<u64>()? * 86_400,
        None => 3600,
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("demo-2026".to_string());
    let claims = json!({
        "iss": "https://demo.apim.local/oauth2/token",
        "sub": "demo-client",
        "client_id": "demo-client",
        "scope": "menu:read order:write",
        "iat": now,
        "exp": now + lifetime,
    });
    println!("{}", jsonwebtoken::encode(&header, &claims, &key)?);
    Ok(())
}
