//! The backend JWT (WSO2 API-M 4.x's `X-JWT-Assertion`): the caller's context as claims in WSO2's
//! dialect, signed RS256 or ES256 (or unsigned, `alg: none`), issued once per caller and API and
//! reused by every worker of the Envoy (shared data) until shortly before it expires.
//!
//! What makes two requests "the same caller and API" is the claims themselves: the JWT's
//! identity claims (everything but `iat`, `exp` and `jti`) are written canonically and hashed with
//! the signing settings; the hash names the cached JWT. A change of tier, subscription or caller
//! claims therefore issues a new JWT, and a new signing key never reuses an old one.

use std::collections::HashMap;
use std::rc::Rc;

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{Map, Value};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::auth::authorize::Authorized;
use crate::host::SharedStore;
use crate::routing::Api;
use crate::schema::checks::check_header_name;
use crate::schema::{
    resolve_secret, BackendJwtAlgorithm, BackendJwtEncoding, ConfigError, RawBackendJwt, DEFAULT_JWKS_PATH,
};
use crate::signatures::SigningKey;
use crate::vocab::user_without_tenant;

#[path = "backend_jwt/wso2_kid.rs"]
mod wso2_kid;

/// The compiled backend-JWT settings.
pub struct BackendJwt {
    /// The header the JWT travels in (lowercase).
    pub header: String,
    algorithm: BackendJwtAlgorithm,
    key: Option<SigningKey>,
    /// The JOSE header, already encoded.
    encoded_header: String,
    lifetime_s: u64,
    renew_before_s: u64,
    /// `<dialect>/`.
    claim_prefix: String,
    issuer: String,
    encoding: BackendJwtEncoding,
    tenant_domain: String,
    tenant_id: String,
    /// Whether the caller's claims are copied (key validation keeps them only then).
    pub copy_caller_claims: bool,
    pub excluded_claims: Vec<String>,
    pub cache_entries: u32,
    /// SHA-256 of everything that shapes an issued JWT besides its claims (the key included), so
    /// a changed configuration never reuses a JWT issued under the old one.
    fingerprint: [u8; 32],
    /// Where the public key is served as a JWKS, and the JWKS (`jwks_path`).
    jwks: Option<(String, String)>,
}

impl std::fmt::Debug for BackendJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendJwt")
            .field("header", &self.header)
            .field("algorithm", &self.algorithm)
            .field("key", &self.key.as_ref().map(|_| "***"))
            .field("lifetime_s", &self.lifetime_s)
            .finish_non_exhaustive()
    }
}

const FIELD: &str = "backend_jwt";
/// Why a private key that the key crates refuse, or that fails its trial signature, is refused.
const CANNOT_SIGN: &str = "cannot sign with this key and `algorithm`";

impl BackendJwt {
    /// Checks and compiles the settings: the key is parsed and tried once (a key that cannot sign
    /// is refused here, never at run time).
    pub fn compile(raw: RawBackendJwt, warnings: &mut Vec<String>) -> Result<BackendJwt, ConfigError> {
        // Whether it is the filter's own, and no header requests need (`Host`, pseudo-headers),
        // is checked with the other headers the filter sets (`config::owned_headers`).
        check_header_name(&format!("{FIELD}.header"), &raw.header)?;
        if raw.lifetime_s == 0 || raw.lifetime_s > 86_400 {
            return Err(ConfigError::new(format!("{FIELD}.lifetime_s"), "must be from 1 to 86400"));
        }
        if raw.renew_before_s >= raw.lifetime_s {
            return Err(ConfigError::new(format!("{FIELD}.renew_before_s"), "must be less than `lifetime_s`"));
        }
        if raw.cache_entries == 0 || raw.cache_entries > 1 << 20 {
            return Err(ConfigError::new(format!("{FIELD}.cache_entries"), "must be from 1 to 1048576"));
        }
        let mut fingerprint = Sha256::new();
        let key = match (raw.algorithm, &raw.private_key) {
            (BackendJwtAlgorithm::None, key) => {
                if key.is_some() {
                    warnings.push(format!("`{FIELD}.private_key` is set but `algorithm` is `none`: it is not used"));
                }
                None
            }
            (_, None) => {
                return Err(ConfigError::new(
                    format!("{FIELD}.private_key"),
                    "is required to sign (or set `algorithm` to `none`)",
                ))
            }
            (algorithm, Some(secret)) => {
                let field = format!("{FIELD}.private_key");
                let pem_bytes = resolve_secret(&field, secret, warnings)?;
                let (key, der) = signing_key(&field, algorithm, &pem_bytes.0)?;
                fingerprint.update(Sha256::digest(&der));
                Some(key)
            }
        };
        let certificate = match raw.certificate.as_deref() {
            Some(pem_text) => Some(certificate_der(pem_text, key.as_ref())?),
            None => None,
        };
        let x5t = certificate.as_deref().map(x5t_of_certificate);
        // API-M names its key after the certificate (`use_kid_property`, on by default).
        let key_id = match (&raw.key_id, certificate.as_deref()) {
            (Some(key_id), _) => Some(key_id.clone()),
            (None, Some(certificate)) => match wso2_kid::of_certificate(certificate) {
                Ok(kid) => Some(kid),
                Err(why) => {
                    warnings.push(format!(
                        "`{FIELD}.certificate`: {why}, so the JWT carries no `kid` (set `{FIELD}.key_id` to API-M's)"
                    ));
                    None
                }
            },
            (None, None) => None,
        };
        let alg = match raw.algorithm {
            BackendJwtAlgorithm::RS256 => "RS256",
            BackendJwtAlgorithm::ES256 => "ES256",
            BackendJwtAlgorithm::None => "none",
        };
        if let Some(path) = &raw.jwks_path {
            check_jwks_path(path)?;
            if key.is_none() && path != DEFAULT_JWKS_PATH {
                warnings.push(format!("`{FIELD}.jwks_path` is set but `algorithm` is `none`: no JWKS is served"));
            }
        }
        let jwks = match (&raw.jwks_path, &key) {
            (Some(path), Some(key)) => Some((path.clone(), jwks(key, alg, key_id.as_deref(), certificate.as_deref()))),
            _ => None,
        };
        // WSO2 writes the header by hand, in this order; its unsigned (`NONE`) header has no
        // `x5t`, only the `kid` (`AbstractAPIMgtGatewayJWTGenerator.buildHeader`).
        let x5t = x5t.filter(|_| raw.algorithm != BackendJwtAlgorithm::None);
        let mut header = format!(r#"{{"typ":"JWT","alg":"{alg}""#);
        for (name, value) in [("x5t", x5t.as_deref()), ("kid", key_id.as_deref())] {
            if let Some(value) = value {
                header.push_str(&format!(",\"{name}\":{}", json_string(value)));
            }
        }
        header.push('}');
        let claim_prefix = match raw.claim_dialect.as_str() {
            "" | "/" => raw.claim_dialect.clone(),
            dialect => format!("{}/", dialect.trim_end_matches('/')),
        };
        let encoded_header = encode(raw.encoding, header.as_bytes());
        for part in [
            header.as_str(),
            &claim_prefix,
            &raw.issuer,
            &raw.tenant_domain,
            &raw.tenant_id,
            &raw.lifetime_s.to_string(),
            &format!("{:?}", raw.encoding),
            // The shared slot's layout: a slot written by another layout never matches.
            SLOT_LAYOUT,
        ] {
            fingerprint.update(part.as_bytes());
            fingerprint.update([0]);
        }
        let compiled = BackendJwt {
            header: raw.header.to_ascii_lowercase(),
            algorithm: raw.algorithm,
            key,
            encoded_header,
            lifetime_s: raw.lifetime_s,
            renew_before_s: raw.renew_before_s,
            claim_prefix,
            issuer: raw.issuer,
            encoding: raw.encoding,
            tenant_domain: raw.tenant_domain,
            tenant_id: raw.tenant_id,
            copy_caller_claims: raw.copy_caller_claims,
            excluded_claims: raw.excluded_claims,
            cache_entries: raw.cache_entries,
            fingerprint: fingerprint.finalize().into(),
            jwks,
        };
        // A key that parses but cannot sign is refused now.
        compiled
            .sign("probe")
            .map_err(|SigningFailed| ConfigError::new(format!("{FIELD}.private_key"), CANNOT_SIGN))?;
        Ok(compiled)
    }

    /// Where the JWKS is served, if it is.
    pub fn jwks_path(&self) -> Option<&str> {
        self.jwks.as_ref().map(|(path, _)| path.as_str())
    }

    /// The JWKS a request for the public key gets (`GET` or `HEAD` of `jwks_path`, whatever its
    /// query), before any API is matched, as API-M's gateway answers `/jwks`.
    pub fn jwks_answer(&self, method: &str, path: &str) -> Option<&str> {
        let (jwks_path, body) = self.jwks.as_ref()?;
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let asked = path == jwks_path || path.strip_suffix('/') == Some(jwks_path.as_str());
        (asked && (method == "GET" || method == "HEAD")).then_some(body.as_str())
    }

    /// The claims that name the caller and API: the caller's own, then WSO2's over them. A claim
    /// of WSO2's that has no value here (an application without an owner has no `subscriber`) is
    /// left out, never taken from the caller. Without the time claims.
    pub fn identity_claims(&self, api: &Api, authorized: &Authorized) -> Map<String, Value> {
        let named = [
            ("subscriber", authorized.subscriber()),
            ("applicationid", authorized.application_number()),
            ("applicationname", authorized.application_name()),
            ("applicationtier", authorized.application_tier()),
            ("apiname", api.name.as_str()),
            ("version", api.version.as_str()),
            ("tier", authorized.tier()),
        ];
        // WSO2's claim without a value is left out, never stood in for by the caller's of that
        // name: such a caller claim is not copied (not copied and then removed, which linked a
        // map's removal and rebalancing for this alone).
        let left_out = |name: &str| {
            name.strip_prefix(self.claim_prefix.as_str())
                .is_some_and(|name| named.iter().any(|(wso2, value)| value.is_empty() && *wso2 == name))
        };
        let mut claims = Map::new();
        if let Some(copied) = &authorized.caller_claims {
            for (name, value) in copied.iter().filter(|(name, _)| !left_out(name)) {
                claims.insert(name.clone(), value.clone());
            }
        }
        let mut put = |name: &str, value: &str| {
            claims.insert(format!("{}{name}", self.claim_prefix), Value::String(value.to_string()));
        };
        for (name, value) in named.iter().filter(|(_, value)| !value.is_empty()) {
            put(name, value);
        }
        put("apicontext", &api.versioned_context);
        put("keytype", authorized.key_type.name());
        put("usertype", "Application_User");
        let end_user = match (authorized.user_token, &authorized.end_user) {
            (true, Some(user)) => user.as_str(),
            _ => authorized.subscriber(),
        };
        // With the tenant once: a user that already carries it (`alice@carbon.super`) keeps it.
        let user = user_without_tenant(end_user, &self.tenant_domain);
        put("enduser", &format!("{user}@{}", self.tenant_domain));
        put("enduserTenantId", &self.tenant_id);
        put("applicationUUId", authorized.application_id());
        if let Some(attributes) = authorized.application.attributes() {
            claims.insert(format!("{}applicationAttributes", self.claim_prefix), Value::Object(attributes.clone()));
        }
        if let Some(subject) = &authorized.subject {
            claims.insert("sub".to_string(), Value::String(subject.clone()));
        }
        claims.insert("iss".to_string(), Value::String(self.issuer.clone()));
        claims
    }

    /// The cache key of identity claims: SHA-256 of the settings' fingerprint and the claims'
    /// canonical JSON (keys sorted).
    pub fn cache_key(&self, identity: &Map<String, Value>) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.fingerprint);
        // serde_json's own writer (to_vec), not Value's Display, which links a pretty printer too.
        hasher.update(serde_json::to_vec(identity).unwrap_or_default());
        hasher.finalize().into()
    }

    /// Issues a JWT for identity claims at `now`: with `iat`, `exp` and a `jti` derived from the
    /// cache key and the time. `Err` only if signing failed (a key that signed at load).
    pub fn issue(&self, mut claims: Map<String, Value>, key: &[u8; 32], now: u64) -> Result<Issued, SigningFailed> {
        let expires = now.saturating_add(self.lifetime_s);
        claims.insert("iat".to_string(), Value::from(now));
        claims.insert("exp".to_string(), Value::from(expires));
        claims.insert("jti".to_string(), Value::String(jti(key, now)));
        let payload = serde_json::to_vec(&claims).map_err(|_| SigningFailed)?;
        let signing_input = format!("{}.{}", self.encoded_header, encode(self.encoding, &payload));
        let signature = self.sign(&signing_input)?;
        Ok(Issued { jwt: format!("{signing_input}.{signature}"), validity: Validity { issued_at: now, expires } })
    }

    /// The encoded signature of a signing input (empty for `alg: none`).
    fn sign(&self, signing_input: &str) -> Result<String, SigningFailed> {
        if self.algorithm == BackendJwtAlgorithm::None {
            return Ok(String::new());
        }
        let key = self.key.as_ref().ok_or(SigningFailed)?;
        let signature = key.sign(signing_input.as_bytes()).ok_or(SigningFailed)?;
        Ok(encode(self.encoding, &signature))
    }

    /// The JWT for a caller and API: this worker's copy, else the Envoy's (shared data), else a
    /// newly issued one (stored for every worker). `Err` only if signing failed.
    pub fn jwt_for(
        &self,
        store: &mut dyn SharedStore,
        cache: &mut IssuedCache,
        api: &Api,
        authorized: &Authorized,
        now: u64,
    ) -> Result<(Rc<str>, bool), SigningFailed> {
        // The quick path: the same caller (by what names it exactly) at the same API.
        let renew_before = self.renew_before_s;
        let quick = quick_key(api, authorized);
        if let Some((validity, jwt)) = quick.as_ref().and_then(|quick| cache.by_caller.get(quick)) {
            if validity.reusable(now, renew_before) {
                return Ok((Rc::clone(jwt), false));
            }
        }
        let identity = self.identity_claims(api, authorized);
        let key = self.cache_key(&identity);
        if let Some((validity, jwt)) = cache.entries.get(&key) {
            if validity.reusable(now, renew_before) {
                let (validity, jwt) = (*validity, Rc::clone(jwt));
                cache.remember(quick, validity, &jwt, self.cache_entries);
                return Ok((jwt, false));
            }
        }
        let slot = format!("apim.backend_jwt.{}", slot_of(&key, self.cache_entries));
        if let Ok(Some((bytes, _))) = store.shared_get(&slot) {
            if let Some((validity, jwt)) = read_slot(&bytes, &key) {
                if validity.reusable(now, renew_before) {
                    let jwt: Rc<str> = Rc::from(jwt);
                    cache.insert(key, validity, Rc::clone(&jwt), self.cache_entries);
                    cache.remember(quick, validity, &jwt, self.cache_entries);
                    return Ok((jwt, false));
                }
            }
        }
        let issued = self.issue(identity, &key, now)?;
        let mut value = Vec::with_capacity(48 + issued.jwt.len());
        value.extend_from_slice(&key);
        value.extend_from_slice(&issued.validity.issued_at.to_be_bytes());
        value.extend_from_slice(&issued.validity.expires.to_be_bytes());
        value.extend_from_slice(issued.jwt.as_bytes());
        // Last writer wins: two workers issuing at once both hold valid JWTs.
        let _ = store.shared_set(&slot, &value, None);
        let jwt: Rc<str> = Rc::from(issued.jwt);
        cache.insert(key, issued.validity, Rc::clone(&jwt), self.cache_entries);
        cache.remember(quick, issued.validity, &jwt, self.cache_entries);
        Ok((jwt, true))
    }
}

/// Signing failed (with a key that signed when the configuration loaded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigningFailed;

/// A newly issued JWT and until when it is reused. `Debug` leaves the JWT out.
pub struct Issued {
    pub jwt: String,
    pub validity: Validity,
}

/// When an issued JWT was issued and when it expires. It is reused while the clock reads from
/// its `iat` to `renew_before_s` before its `exp`, as the settings read now: a clock stepped back
/// never serves a JWT issued in its future, and a longer `renew_before_s` applies to JWTs issued
/// before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub issued_at: u64,
    pub expires: u64,
}

impl Validity {
    fn reusable(&self, now: u64, renew_before_s: u64) -> bool {
        self.issued_at <= now && now.saturating_add(renew_before_s) < self.expires
    }
}

/// The layout of a shared slot, part of the settings' fingerprint.
const SLOT_LAYOUT: &str = "slot: key, iat, exp, jwt";

/// A worker's issued JWTs by cache key, and by caller (bounded: emptied when full). `Debug` gives
/// the counts: the JWTs are credentials, and a caller's key is its token's `jti` or signature.
#[derive(Default)]
pub struct IssuedCache {
    entries: HashMap<[u8; 32], (Validity, Rc<str>)>,
    by_caller: HashMap<String, (Validity, Rc<str>)>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").field("validity", &self.validity).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for IssuedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCache")
            .field("entries", &self.entries.len())
            .field("by_caller", &self.by_caller.len())
            .finish()
    }
}

impl IssuedCache {
    fn remember(&mut self, quick: Option<String>, validity: Validity, jwt: &Rc<str>, capacity: u32) {
        let Some(quick) = quick else { return };
        if self.by_caller.len() >= capacity as usize {
            self.by_caller.clear();
        }
        self.by_caller.insert(quick, (validity, Rc::clone(jwt)));
    }

    fn insert(&mut self, key: [u8; 32], validity: Validity, jwt: Rc<str>, capacity: u32) {
        if self.entries.len() >= capacity as usize {
            self.entries.clear();
        }
        self.entries.insert(key, (validity, jwt));
    }
}

fn slot_of(key: &[u8; 32], slots: u32) -> u32 {
    u32::from_be_bytes([key[0], key[1], key[2], key[3]]) % slots.max(1)
}

/// Everything that decides a caller's JWT at an API, written exactly (a cheap string instead of
/// the claims' JSON and its hash); `None` when caller claims are copied but nothing names the
/// caller's token (an introspected token: the claims path is taken).
fn quick_key(api: &Api, authorized: &Authorized) -> Option<String> {
    let token = match (&authorized.caller_claims, &authorized.caller_token) {
        (None, token) => token.as_deref().unwrap_or(""),
        (Some(_), Some(token)) => token.as_str(),
        (Some(_), None) => return None,
    };
    let parts = [
        api.label.as_str(),
        api.context.as_str(),
        authorized.application_id(),
        authorized.application_number(),
        authorized.application.attributes_json(),
        authorized.application_name(),
        authorized.application_tier(),
        authorized.subscriber(),
        authorized.tier(),
        authorized.key_type.name(),
        authorized.end_user.as_deref().unwrap_or("\u{1}"),
        if authorized.user_token { "u" } else { "a" },
        authorized.subject.as_deref().unwrap_or("\u{1}"),
        token,
    ];
    // Each part with its length first: no value can shift the boundaries.
    let mut key = String::with_capacity(parts.iter().map(|part| part.len() + 6).sum());
    for part in parts {
        key.push_str(&part.len().to_string());
        key.push(':');
        key.push_str(part);
    }
    Some(key)
}

/// A shared slot's JWT if it is the one for `key`: 32 bytes of key, 8 of `iat` and 8 of `exp`
/// (big endian), then the JWT.
fn read_slot<'b>(bytes: &'b [u8], key: &[u8; 32]) -> Option<(Validity, &'b str)> {
    let stored_key = bytes.get(..32)?;
    if stored_key != key {
        return None;
    }
    let issued_at: [u8; 8] = bytes.get(32..40)?.try_into().ok()?;
    let expires: [u8; 8] = bytes.get(40..48)?.try_into().ok()?;
    let jwt = std::str::from_utf8(bytes.get(48..)?).ok()?;
    Some((Validity { issued_at: u64::from_be_bytes(issued_at), expires: u64::from_be_bytes(expires) }, jwt))
}

/// A UUID-shaped (version 4 layout) id from the cache key and the issue time.
fn jti(key: &[u8; 32], now: u64) -> String {
    let mut hasher = Sha256::new();
    hasher.update(key);
    hasher.update(now.to_be_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = crate::hashing::hex(&bytes);
    let part = |from: usize, to: usize| hex.get(from..to).unwrap_or_default().to_string();
    format!("{}-{}-{}-{}-{}", part(0, 8), part(8, 12), part(12, 16), part(16, 20), part(20, 32))
}

fn encode(encoding: BackendJwtEncoding, bytes: &[u8]) -> String {
    match encoding {
        BackendJwtEncoding::Base64url => URL_SAFE_NO_PAD.encode(bytes),
        BackendJwtEncoding::Base64urlPadded => URL_SAFE.encode(bytes),
        BackendJwtEncoding::Base64 => STANDARD_NO_PAD.encode(bytes),
    }
}

/// `text` as a JSON string (writing a string cannot fail).
fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

const RSA_OID: &str = "1.2.840.113549.1.1.1";
const EC_OID: &str = "1.2.840.10045.2.1";

/// The signing key from PEM, and its DER (for the fingerprint).
fn signing_key(
    field: &str,
    algorithm: BackendJwtAlgorithm,
    pem_text: &[u8],
) -> Result<(SigningKey, Vec<u8>), ConfigError> {
    let parsed = pem::parse(pem_text).map_err(|_| ConfigError::new(field, "is not a PEM private key"))?;
    let der = parsed.contents().to_vec();
    let wrong = |what: &str| ConfigError::new(field, format!("{what} (algorithm {algorithm:?})"));
    let key = match (parsed.tag(), algorithm) {
        ("RSA PRIVATE KEY", BackendJwtAlgorithm::RS256) => SigningKey::rs256_from_pkcs1_der(&der),
        ("PRIVATE KEY", _) => {
            let info = pkcs8::PrivateKeyInfoRef::try_from(der.as_slice())
                .map_err(|_| ConfigError::new(field, "is not a readable PKCS#8 private key"))?;
            let oid = info.algorithm.oid.to_string();
            match algorithm {
                BackendJwtAlgorithm::RS256 if oid == RSA_OID => {
                    SigningKey::rs256_from_pkcs1_der(info.private_key.as_bytes())
                }
                BackendJwtAlgorithm::ES256 if oid == EC_OID => SigningKey::es256_from_pkcs8_der(&der),
                _ => return Err(wrong("is not a key of the algorithm's type")),
            }
        }
        ("EC PRIVATE KEY", BackendJwtAlgorithm::ES256) => {
            return Err(wrong("is a SEC1 EC key: convert it to PKCS#8 (`openssl pkcs8 -topk8 -nocrypt -in key.pem`)"))
        }
        (tag, _) => return Err(wrong(&format!("holds a `{tag}`, not a private key of the algorithm's type"))),
    };
    let key = key.ok_or_else(|| ConfigError::new(field, CANNOT_SIGN))?;
    Ok((key, der))
}

/// The certificate's DER. The certificate must be the signing key's (`key`, when the JWT is
/// signed): a backend that finds the certificate by `x5t` verifies with its public key, and
/// another key's certificate would fail every JWT.
fn certificate_der(pem_text: &str, key: Option<&SigningKey>) -> Result<Vec<u8>, ConfigError> {
    let field = format!("{FIELD}.certificate");
    let parsed = pem::parse(pem_text).map_err(|_| ConfigError::new(&field, "is not a PEM certificate"))?;
    if parsed.tag() != "CERTIFICATE" {
        return Err(ConfigError::new(field, "is not a PEM certificate"));
    }
    // A certificate holds its key's modulus or point byte for byte (DER is canonical), and
    // another key's 256 or 65 bytes do not appear in it by chance.
    if let Some(public_key) = key.map(SigningKey::public_key_bytes) {
        let certifies = !public_key.is_empty()
            && parsed.contents().windows(public_key.len()).any(|window| window == public_key.as_slice());
        if !certifies {
            return Err(ConfigError::new(field, "is not the certificate of `private_key` (its public key differs)"));
        }
    }
    Ok(parsed.into_contents())
}

/// WSO2's `x5t`: base64url, padded, of the lowercase hex SHA-1 thumbprint of the certificate's DER.
fn x5t_of_certificate(der: &[u8]) -> String {
    let thumbprint = crate::hashing::hex(&Sha1::digest(der));
    URL_SAFE.encode(thumbprint.as_bytes())
}

/// A path the gateway can answer: absolute, no query or fragment, no space or control character.
fn check_jwks_path(path: &str) -> Result<(), ConfigError> {
    let fine = path.starts_with('/')
        && path.len() <= 256
        && path.bytes().all(|byte| byte.is_ascii_graphic() && byte != b'?' && byte != b'#');
    if fine {
        Ok(())
    } else {
        Err(ConfigError::new(
            format!("{FIELD}.jwks_path"),
            "must be a path (`/jwks`) of printable ASCII, without query, spaces or controls",
        ))
    }
}

/// The JWKS of the signing key: its public members, `use`, `alg`, and the `kid` and certificate
/// (`x5c`, standard base64 DER) when configured.
fn jwks(key: &SigningKey, alg: &str, key_id: Option<&str>, certificate: Option<&[u8]>) -> String {
    let mut jwk = Map::new();
    for (name, value) in key.public_jwk_members() {
        jwk.insert(name.to_string(), Value::from(value));
    }
    jwk.insert("use".to_string(), Value::from("sig"));
    jwk.insert("alg".to_string(), Value::from(alg));
    if let Some(kid) = key_id {
        jwk.insert("kid".to_string(), Value::from(kid));
    }
    if let Some(der) = certificate {
        jwk.insert(
            "x5c".to_string(),
            Value::from(vec![Value::from(base64::engine::general_purpose::STANDARD.encode(der))]),
        );
    }
    serde_json::json!({ "keys": [jwk] }).to_string()
}

#[cfg(test)]
#[path = "backend_jwt/tests.rs"]
mod tests;

#[cfg(test)]
#[path = "backend_jwt/audit_tests.rs"]
mod audit_tests;
