//! Opaque tokens by RFC 7662 introspection at a key manager: the call (the gateway authenticating
//! with HTTP Basic), reading the answer with every field it relies on typed (a garbled answer is a
//! key manager outage, 900900, never "no expiry"), and the answers cached in shared data for every
//! worker, keyed by the token's hash (never the token), until min(TTL, `exp`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{Map, Value};

use super::bearer::{token_identity, TokenIdentity, IDENTITY_FORMAT};
use super::jwt::{numeric_date_value, Fraction};
use super::settings::{Claims, Introspection, KeyManager};
use crate::hashing::{form_encode, hex};
use crate::host::{Answer, Call};
use crate::vocab::KmId;

/// This worker's introspection calls under way, by the hash of the token each asks about: a
/// request whose token is being introspected waits for that call's answer instead of making its
/// own (a burst of requests with a new token made one call each, all to the key manager at once).
#[derive(Debug, Default)]
pub struct UnderWay {
    calls: std::collections::HashMap<[u8; 32], (u32, u64)>,
    /// When the calls were last looked through for ones never seen answering.
    pruned_at: u64,
}

impl UnderWay {
    /// The most calls remembered: beyond, a request makes its own call, as without this.
    const MAX: usize = 4096;

    /// The call under way for the token with `hash`, unless it has outlived its timeout (Envoy
    /// answers every call, a timeout included: one seen this late was missed, and is not waited
    /// for).
    pub fn call_for(&self, hash: &[u8; 32], now: u64, timeout_ms: u32) -> Option<u32> {
        let (token, started) = self.calls.get(hash)?;
        (now <= started.saturating_add(u64::from(timeout_ms) / 1000 + 2)).then_some(*token)
    }

    /// This worker's call `token` asks about the token with `hash`.
    pub fn started(&mut self, hash: [u8; 32], token: u32, now: u64) {
        // Calls answered without being seen (none should be) go first, looked for at most once a
        // second: a flood of calls keeping it full would otherwise pay a scan per request.
        if self.calls.len() >= Self::MAX && now > self.pruned_at {
            self.pruned_at = now;
            self.calls.retain(|_, (_, started)| now <= started.saturating_add(120));
        }
        if self.calls.len() < Self::MAX {
            self.calls.insert(hash, (token, now));
        }
    }

    /// Call `token` about the token with `hash` answered (a newer call about it stays noted).
    pub fn answered(&mut self, hash: &[u8; 32], token: u32) {
        if self.calls.get(hash).is_some_and(|(call, _)| *call == token) {
            self.calls.remove(hash);
        }
    }
}

/// The introspection call: a form body, the gateway authenticating with HTTP Basic.
pub fn call(introspection: &Introspection, token: &str) -> Call {
    let credentials = STANDARD.encode(format!(
        "{}:{}",
        form_encode(&introspection.client_id),
        form_encode(&String::from_utf8_lossy(&introspection.client_secret.0))
    ));
    let headers = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), introspection.path.clone()),
        (":authority".to_string(), introspection.authority.clone()),
        ("content-type".to_string(), "application/x-www-form-urlencoded".to_string()),
        ("accept".to_string(), "application/json".to_string()),
        ("authorization".to_string(), format!("Basic {credentials}")),
    ];
    let body = format!("token={}&token_type_hint=access_token", form_encode(token)).into_bytes();
    Call::Http { cluster: introspection.cluster.clone(), headers, body, timeout_ms: introspection.timeout_ms }
}

/// What an introspection answer means; the strings are the reasons operators see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Introspected {
    Active(TokenIdentity),
    Inactive(&'static str),
    /// Active, but not before `valid_from` (its `nbf` less the clock skew): refused until then,
    /// and remembered as refused no longer.
    NotYetValid {
        valid_from: u64,
    },
    Unavailable(&'static str),
}

/// A NumericDate field of an introspection answer: absent (or null), or a NumericDate as a JWT
/// claim is read (`jwt::numeric_date_value`). Anything else (a string, a negative number, 1e300)
/// is a malformed answer.
fn answer_time(answer: &Map<String, Value>, name: &str, fraction: Fraction) -> Result<Option<u64>, ()> {
    match answer.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => numeric_date_value(value, fraction).map(Some).ok_or(()),
    }
}

/// The largest introspection result cached: a key manager answering with tens of thousands of
/// scopes is asked again rather than filling shared data (4,096 slots).
pub const MAX_CACHED_ENTRY: usize = 16 * 1024;

/// A key manager that does not introspect this kind of token says so with a 400
/// `unsupported_token_type` (oidc-provider answers it for every JWT): the token is none of its
/// own, refused (900901) as an inactive one, not a key manager outage.
fn unsupported_token_type(body: &[u8]) -> bool {
    let answer = crate::auth::strict_json::parse_object(body);
    answer.is_ok_and(|answer| answer.get("error").and_then(Value::as_str) == Some("unsupported_token_type"))
}

/// Reads an introspection answer. Only a 200 with a well-typed JSON object is an answer (and a
/// 400 `unsupported_token_type`, a refusal): a timeout, a reset, a 5xx, anything unreadable, or a
/// field of the wrong type means the key manager is unavailable (900900, nothing cached), not that
/// the token is bad.
pub fn parse(km: &KeyManager, answer: &Answer, now: u64) -> Introspected {
    let body = match answer {
        Answer::Http { status: 200, body } => body,
        Answer::Http { status: 400, body } if unsupported_token_type(body) => {
            return Introspected::Inactive("unsupported_token_type")
        }
        Answer::Http { .. } | Answer::HttpStream { .. } => return Introspected::Unavailable("introspection_status"),
        Answer::Grpc { .. } | Answer::Failed { .. } => return Introspected::Unavailable("introspection_call_failed"),
    };
    // Duplicate members are refused, as in a JWT: `{"active":false,...,"active":true}` is no answer.
    let Ok(answer) = crate::auth::strict_json::parse_object(body) else {
        return Introspected::Unavailable("introspection_not_json");
    };
    match answer.get("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => return Introspected::Inactive("inactive"),
        _ => return Introspected::Unavailable("introspection_malformed"),
    }
    // `token_type_hint` is only a hint: a refresh token is reported active too, and is no access token.
    match answer.get("token_type") {
        None | Some(Value::Null) => {}
        Some(Value::String(kind)) => {
            if !kind.eq_ignore_ascii_case("bearer") && !kind.eq_ignore_ascii_case("access_token") {
                return Introspected::Inactive("not_an_access_token");
            }
        }
        Some(_) => return Introspected::Unavailable("introspection_malformed"),
    }
    let (Ok(exp), Ok(nbf)) = (answer_time(&answer, "exp", Fraction::Down), answer_time(&answer, "nbf", Fraction::Up))
    else {
        return Introspected::Unavailable("introspection_malformed");
    };
    let expires_at = match exp {
        Some(exp) if exp <= now => return Introspected::Inactive("expired"),
        Some(exp) => exp,
        None => u64::MAX,
    };
    if let Some(nbf) = nbf.filter(|nbf| *nbf > now.saturating_add(km.clock_skew_s)) {
        return Introspected::NotYetValid { valid_from: nbf.saturating_sub(km.clock_skew_s) };
    }
    // The end user is RFC 7662's `username`, as WSO2 reads it; WSO2 IS's answers carry no `sub`.
    let username = match answer.get("username") {
        None | Some(Value::Null) => None,
        // An empty one names nobody: the end-user claim stands.
        Some(Value::String(username)) => Some(username.clone()).filter(|username| !username.is_empty()),
        Some(_) => return Introspected::Unavailable("introspection_malformed"),
    };
    match token_identity(km.id, &rfc7662_names(&km.claims), &answer, expires_at) {
        Ok(identity) => Introspected::Active(TokenIdentity { end_user: username.or(identity.end_user), ..identity }),
        Err("no_client_id") => Introspected::Inactive("no_client_id"),
        Err(_) => Introspected::Unavailable("introspection_malformed"),
    }
}

/// The names an introspection answer is read by: RFC 7662's `client_id` and `scope` first, as WSO2
/// reads them (`IntrospectInfo`), then the key manager's claim names (the end user is its
/// `username`, else the end-user claim: see [`parse`]). The claim names are its
/// JWTs' (Okta's `cid` and `scp`, Azure's `appid`), which its answers need not use: read by them
/// alone, every opaque token of such a key manager was refused (`no_client_id`, 900901) or had
/// no scopes (900910).
fn rfc7662_names(claims: &Claims) -> Claims {
    let first = |standard: &str, configured: &[String]| {
        std::iter::once(standard.to_string())
            .chain(configured.iter().filter(|name| *name != standard).cloned())
            .collect::<Vec<_>>()
    };
    Claims {
        client_id: first("client_id", &claims.client_id),
        scopes: first("scope", &claims.scopes),
        // API-M reads an answer's `client_id` and `scope` as strings, and gives no `default`.
        client_id_lists: false,
        default_scope: false,
        ..claims.clone()
    }
}

/// An introspection result as cached in shared data (keyed by the token's hash, never the token).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CachedIntrospection {
    /// [`IDENTITY_FORMAT`] of the module that cached it (absent before it was recorded): an
    /// answer an earlier module made of the key manager's is asked again.
    pub format: u32,
    /// Hex SHA-256 of the token (slots are shared by hashes, so the entry names its owner).
    pub hash: String,
    /// Cached from (Unix seconds): an entry from the clock's future (the clock was stepped back)
    /// is not read, so no answer outlives its time to live. 0 in entries written before.
    #[serde(default)]
    pub since: u64,
    /// Cached until (Unix seconds).
    pub until: u64,
    /// `None` for an inactive token.
    pub identity: Option<TokenIdentity>,
}

/// Shared-data slots for introspection results: memory is bounded by the slot count.
pub const SLOTS: u32 = 4096;

/// The shared-data key of the slot for a token hash at a key manager.
pub fn slot(km: &KeyManager, hash: &[u8; 32]) -> String {
    let head = [hash[0], hash[1], hash[2], hash[3]];
    let slot = u32::from_be_bytes(head) % SLOTS;
    format!("apim.introspection.{}.{slot}", km.cache_id)
}

impl CachedIntrospection {
    /// What to cache for an answer: active until min(ttl, exp); inactive for the negative TTL;
    /// nothing when the key manager was unavailable.
    pub fn for_answer(
        hash: &[u8; 32],
        answer: &Introspected,
        km: &KeyManager,
        now: u64,
    ) -> Option<CachedIntrospection> {
        let introspection = km.introspection.as_ref()?;
        let (until, identity) = match answer {
            Introspected::Active(identity) => {
                (now.saturating_add(introspection.cache_ttl_s).min(identity.expires_at), Some(identity.clone()))
            }
            Introspected::Inactive(_) => (now.saturating_add(introspection.negative_cache_ttl_s), None),
            Introspected::NotYetValid { valid_from } => {
                (now.saturating_add(introspection.negative_cache_ttl_s).min(*valid_from), None)
            }
            Introspected::Unavailable(_) => return None,
        };
        Some(CachedIntrospection { format: IDENTITY_FORMAT, hash: hex(hash), since: now, until, identity })
    }

    fn covers(&self, now: u64) -> bool {
        self.format == IDENTITY_FORMAT && self.since <= now && now < self.until
    }

    /// Whether the entry is a fresh active answer (worth keeping over a negative one).
    pub fn is_fresh_active(bytes: &[u8], now: u64) -> bool {
        crate::pieces::from_bytes::<CachedIntrospection>(bytes)
            .is_ok_and(|entry| entry.covers(now) && entry.identity.is_some_and(|identity| now < identity.expires_at))
    }

    /// Whether the entry is a fresh active answer about another token than the one with `hash`:
    /// kept over that token's inactive answer (a flood of bogus tokens sharing its slot must not
    /// evict it). The token's own active answer gives way: the key manager's newer word is that
    /// the token is no longer active.
    pub fn is_fresh_active_of_another(bytes: &[u8], hash: &[u8; 32], now: u64) -> bool {
        crate::pieces::from_bytes::<CachedIntrospection>(bytes).is_ok_and(|entry| {
            entry.hash != hex(hash)
                && entry.covers(now)
                && entry.identity.is_some_and(|identity| now < identity.expires_at)
        })
    }

    /// Whether the entry is a fresh refusal of the token with `hash` (inactive, or not yet
    /// valid) cached at or after `asked_at`: the key manager's word after that call was made.
    pub fn is_refusal_since(bytes: &[u8], hash: &[u8; 32], asked_at: u64, now: u64) -> bool {
        crate::pieces::from_bytes::<CachedIntrospection>(bytes).is_ok_and(|entry| {
            entry.hash == hex(hash) && entry.identity.is_none() && entry.since >= asked_at && entry.covers(now)
        })
    }

    /// The cached answer for this hash at `now`, if the slot holds it and it is fresh; the
    /// identity is reported as coming from `key_manager` (the slot belongs to it).
    pub fn lookup(bytes: &[u8], hash: &[u8; 32], key_manager: KmId, now: u64) -> Option<Introspected> {
        let entry: CachedIntrospection = crate::pieces::from_bytes(bytes).ok()?;
        if entry.hash != hex(hash) || !entry.covers(now) {
            return None;
        }
        Some(match entry.identity {
            Some(identity) if now < identity.expires_at => {
                Introspected::Active(TokenIdentity { key_manager, ..identity })
            }
            _ => Introspected::Inactive("inactive"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::fixture::compile;

    const CONFIG: &str = r#"{"key_managers": [{"name": "a", "issuer": "https://a",
        "introspection": {"cluster": "km", "client_id": "gw", "client_secret": "s"}}]}"#;

    /// Full, the note takes no more calls (those requests make their own, as without it), and
    /// looks for calls never seen answering at most once a second.
    #[test]
    fn a_full_note_is_looked_through_once_a_second() {
        let mut under_way = UnderWay::default();
        let hash = |index: usize| {
            let mut hash = [0u8; 32];
            hash[..8].copy_from_slice(&(index as u64).to_le_bytes());
            hash
        };
        for index in 0..UnderWay::MAX {
            under_way.started(hash(index), index as u32, 1_000);
        }
        under_way.started(hash(UnderWay::MAX), 99_999, 1_200);
        assert_eq!(under_way.call_for(&hash(UnderWay::MAX), 1_200, 10_000), Some(99_999), "the old ones went");
        assert_eq!(under_way.calls.len(), 1);
        for index in 0..UnderWay::MAX {
            under_way.started(hash(index), index as u32, 1_300);
        }
        assert_eq!(under_way.calls.len(), UnderWay::MAX);
        under_way.started(hash(UnderWay::MAX + 1), 7, 1_300);
        assert_eq!(under_way.call_for(&hash(UnderWay::MAX + 1), 1_300, 10_000), None, "full: not noted");
        assert_eq!(under_way.pruned_at, 1_300, "looked through once this second");
    }

    /// A call seen answering after its timeout, which a newer call about the same token
    /// replaced, forgets nothing: the requests waiting for the newer one still have it to join.
    #[test]
    fn a_late_call_answering_leaves_the_newer_call_about_its_token_noted() {
        let mut under_way = UnderWay::default();
        under_way.started([7; 32], 1, 1_000);
        assert_eq!(under_way.call_for(&[7; 32], 1_020, 10_000), None, "outlived its timeout");
        under_way.started([7; 32], 2, 1_020);
        under_way.answered(&[7; 32], 1);
        assert_eq!(under_way.call_for(&[7; 32], 1_020, 10_000), Some(2));
        under_way.answered(&[7; 32], 2);
        assert_eq!(under_way.call_for(&[7; 32], 1_020, 10_000), None);
    }

    fn parse_introspection(km: &KeyManager, status: Option<u16>, body: &[u8], now: u64) -> Introspected {
        let answer = match status {
            Some(status) => Answer::Http { status, body: body.to_vec() },
            None => Answer::Failed { code: 11 },
        };
        parse(km, &answer, now)
    }

    #[test]
    fn introspected_refresh_tokens_are_not_access_tokens() {
        let config = compile(CONFIG);
        let km = &config.auth.key_managers[0];
        let refresh = br#"{"active":true,"client_id":"c","token_type":"refresh_token"}"#;
        assert_eq!(parse_introspection(km, Some(200), refresh, 0), Introspected::Inactive("not_an_access_token"));
        let access = br#"{"active":true,"client_id":"c","token_type":"Bearer"}"#;
        assert!(matches!(parse_introspection(km, Some(200), access, 0), Introspected::Active(_)));
        assert_eq!(parse_introspection(km, Some(503), access, 0), Introspected::Unavailable("introspection_status"));
        let unsupported =
            br#"{"error":"unsupported_token_type","error_description":"Structured JWT Tokens cannot be introspected"}"#;
        assert_eq!(
            parse_introspection(km, Some(400), unsupported, 0),
            Introspected::Inactive("unsupported_token_type")
        );
        let other = br#"{"error":"invalid_request"}"#;
        assert_eq!(parse_introspection(km, Some(400), other, 0), Introspected::Unavailable("introspection_status"));
        assert_eq!(
            parse_introspection(km, Some(500), unsupported, 0),
            Introspected::Unavailable("introspection_status")
        );
        // Fields of the wrong type are a garbled answer (900900, nothing cached), never "no expiry".
        for exp in [r#""2000""#, "-5", "1e300", "9223372036854775808", "true", "[]"] {
            let answer = format!(r#"{{"active":true,"client_id":"c","exp":{exp}}}"#);
            assert_eq!(
                parse_introspection(km, Some(200), answer.as_bytes(), 0),
                Introspected::Unavailable("introspection_malformed"),
                "exp {exp}"
            );
        }
        for field in [r#""client_id":7"#, r#""scope":5"#, r#""scope":["a",1]"#, r#""sub":{}"#, r#""token_type":1"#] {
            let answer = format!(r#"{{"active":true,"client_id":"c",{field}}}"#)
                .replace(r#""client_id":"c","client_id":7"#, r#""client_id":7"#);
            assert_eq!(
                parse_introspection(km, Some(200), answer.as_bytes(), 0),
                Introspected::Unavailable("introspection_malformed"),
                "{answer}"
            );
        }
        let expired = br#"{"active":true,"client_id":"c","exp":100}"#;
        assert_eq!(parse_introspection(km, Some(200), expired, 100), Introspected::Inactive("expired"));
        // A NumericDate may have a fraction (RFC 7519 2): counted down for `exp`.
        for exp in ["1.5e3", "1500.5"] {
            let answer = format!(r#"{{"active":true,"client_id":"c","exp":{exp}}}"#);
            let Introspected::Active(identity) = parse_introspection(km, Some(200), answer.as_bytes(), 0) else {
                panic!("exp {exp}")
            };
            assert_eq!(identity.expires_at, 1500);
        }
        // Duplicate members are no answer (the last one would say active).
        let twice = br#"{"active":false,"client_id":"c","active":true}"#;
        assert_eq!(parse_introspection(km, Some(200), twice, 0), Introspected::Unavailable("introspection_not_json"));
    }

    #[test]
    fn a_token_not_yet_valid_is_refused_no_longer_than_until_it_is() {
        let config = compile(
            r#"{"key_managers": [{"name": "a", "issuer": "https://a", "clock_skew_s": 0,
                "introspection": {"cluster": "km", "client_id": "gw", "client_secret": "s", "negative_cache_ttl_s": 300}}]}"#,
        );
        let km = &config.auth.key_managers[0];
        let answer = br#"{"active":true,"client_id":"c","nbf":1002}"#;
        let parsed = parse_introspection(km, Some(200), answer, 1000);
        assert_eq!(parsed, Introspected::NotYetValid { valid_from: 1002 });
        let cached = CachedIntrospection::for_answer(&[7; 32], &parsed, km, 1000).unwrap();
        assert_eq!((cached.until, cached.identity), (1002, None), "refused until nbf, not for 300 s");
        assert!(matches!(parse_introspection(km, Some(200), answer, 1002), Introspected::Active(_)));
    }

    #[test]
    fn a_cached_answer_from_the_clocks_future_is_not_read() {
        let config = compile(
            r#"{"key_managers": [{"name": "a", "issuer": "https://a",
                "introspection": {"cluster": "km", "client_id": "gw", "client_secret": "s", "cache_ttl_s": 60}}]}"#,
        );
        let km = &config.auth.key_managers[0];
        let parsed = parse_introspection(km, Some(200), br#"{"active":true,"client_id":"c","exp":99999}"#, 10_000);
        let cached = CachedIntrospection::for_answer(&[7; 32], &parsed, km, 10_000).unwrap();
        let bytes = serde_json::to_vec(&cached).unwrap();
        assert!(CachedIntrospection::lookup(&bytes, &[7; 32], KmId(0), 10_030).is_some(), "within its 60 s");
        // The clock is stepped back an hour: the answer would otherwise count for an hour more.
        assert_eq!(CachedIntrospection::lookup(&bytes, &[7; 32], KmId(0), 6_400), None);
        assert!(!CachedIntrospection::is_fresh_active(&bytes, 6_400));
    }

    #[test]
    fn what_a_cached_answer_depends_on_names_its_cache_and_one_key_manager_introspects() {
        let cache_id =
            |km: &str| compile(&format!(r#"{{"key_managers": [{km}]}}"#)).auth.key_managers[0].cache_id.clone();
        let km = |extra: &str| {
            format!(
                r#"{{"name": "a", "issuer": "https://a"{extra},
                    "introspection": {{"cluster": "km", "client_id": "gw", "client_secret": "s"}}}}"#
            )
        };
        let base = cache_id(&km(""));
        assert_eq!(base, cache_id(&km("")));
        assert_ne!(base, cache_id(&km(r#", "claims": {"client_id": ["azp"]}"#)), "the claim names");
        assert_ne!(base, cache_id(&km(r#", "clock_skew_s": 5"#)), "the skew");
        let ttl = r#"{"name": "a", "issuer": "https://a",
            "introspection": {"cluster": "km", "client_id": "gw", "client_secret": "s", "cache_ttl_s": 5}}"#;
        assert_ne!(base, cache_id(ttl), "the cache time");
        let two = format!(
            r#"{{"key_managers": [{}, {}]}}"#,
            km(""),
            km("").replace("https://a", "https://b").replace(r#""a""#, r#""b""#)
        );
        let error = crate::config::Config::from_json(two.as_bytes()).expect_err("two introspecting key managers");
        assert_eq!(error.field, "key_managers[1].introspection");
    }

    #[test]
    fn another_host_behind_the_same_cluster_has_its_own_cached_keys_and_answers() {
        let cache_id =
            |km: &str| compile(&format!(r#"{{"key_managers": [{km}]}}"#)).auth.key_managers[0].cache_id.clone();
        let jwks = |host: &str| {
            format!(
                r#"{{"name": "a", "issuer": "https://a", "jwks": {{"cluster": "idp", "path": "/jwks", "authority": "{host}"}}}}"#
            )
        };
        assert_ne!(cache_id(&jwks("tenant-a.idp")), cache_id(&jwks("tenant-b.idp")), "JWKS of another host");
        let introspect = |host: &str, secret: &str| {
            format!(
                r#"{{"name": "a", "issuer": "https://a", "introspection": {{"cluster": "km", "authority": "{host}", "client_id": "gw", "client_secret": "{secret}"}}}}"#
            )
        };
        assert_ne!(cache_id(&introspect("a.km", "s")), cache_id(&introspect("b.km", "s")), "answers of another host");
        assert_ne!(cache_id(&introspect("a.km", "s")), cache_id(&introspect("a.km", "t")), "another gateway client");
        assert_eq!(cache_id(&introspect("a.km", "s")), cache_id(&introspect("a.km", "s")), "the same key manager");
    }

    #[test]
    fn an_answer_an_earlier_module_cached_is_asked_again() {
        // Before refresh tokens were told from access tokens (381da3f), an active refresh token's
        // answer was cached as an active identity. During a module upgrade the new module read
        // that entry (same key manager, same slot) and let the refresh token in until it expired
        // from the cache, where an introspection of its own refuses it.
        let hash = [7u8; 32];
        let earlier = serde_json::json!({
            "hash": hex(&hash), "until": 1_000,
            "identity": {"key_manager": 0, "client_id": "c", "scopes": [], "end_user": null,
                "user_token": false, "expires_at": 2_000, "token_id": null}
        });
        let bytes = serde_json::to_vec(&earlier).unwrap();
        assert_eq!(CachedIntrospection::lookup(&bytes, &hash, KmId(0), 500), None, "asked again");
        assert!(!CachedIntrospection::is_fresh_active(&bytes, 500), "an entry this module cannot read is not kept");
    }
}
