//! The fixture RSA keys of `tests/fixtures/keys/` as tests use them: a key's public JWK under a
//! `kid`, and RS256 JWTs it signs (WSO2 JWT API keys, tokens of inline key managers).

use serde_json::Value;

fn private_key(name: &str) -> jsonwebtoken::EncodingKey {
    let pem = super::read_repo_file(&format!("tests/fixtures/keys/{name}"));
    jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
}

/// The public JWK of the fixture key `name` (`rsa-b.pem`), with `kid`.
pub fn public_jwk(name: &str, kid: &str) -> Value {
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&private_key(name), jsonwebtoken::Algorithm::RS256).unwrap();
    let mut jwk = serde_json::to_value(jwk).unwrap();
    jwk["kid"] = Value::from(kid);
    jwk
}

/// `claims` signed RS256 by the fixture key `name`, with `kid` in the header.
pub fn signed_jwt(name: &str, kid: &str, claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &private_key(name)).unwrap()
}
