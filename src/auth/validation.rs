//! One request's key validation, as steps: [`start`] verifies a credential with what is at hand
//! (the verified-token cache, keys already fetched, cached introspection answers, the directory)
//! or asks for a call (an introspection, a JWKS fetch) with what to [`resume`] with; the answer
//! finishes the work, or asks for the next call. A call that could not even be made resumes with
//! [`Answer::Failed`], so an unreachable key manager is an outage (900900), never bad credentials.

use std::rc::Rc;

use super::credentials::Presented;
use super::introspection::{self, CachedIntrospection, Introspected};
use super::settings::AuthConfig;
use super::{
    api_keys, bearer, credential_hash, jwks, looks_like_jws, shared_tokens, AuthFailure, Identity, Refusal, WorkerState,
};
use crate::directory::Directory;
use crate::host::{Answer, SharedStore, Step};
use crate::vocab::KmId;

/// What key validation waits for.
pub enum Resume {
    /// An introspection answer for the token with this hash. `joined` is the token of the
    /// worker's call under way for it, which the request waits for (`None`: the request makes
    /// the call). `asked_at` is when the request asked (a refusal cached since is newer word
    /// than this call's answer).
    Introspection { key_manager: KmId, hash: [u8; 32], joined: Option<u32>, asked_at: u64 },
    /// A JWKS fetch, to verify this token once the keys are in. `fetch` is the token of the
    /// worker's call the request waits for: `None` until the stream made the call, or `Some` of
    /// the fetch under way it joins.
    Jwks { key_manager: KmId, token: String, fetch: Option<u32> },
}

impl std::fmt::Debug for Resume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resume::Introspection { key_manager, .. } => write!(f, "Introspection({key_manager:?})"),
            Resume::Jwks { key_manager, .. } => write!(f, "Jwks({key_manager:?}, ***)"),
        }
    }
}

/// A step of key validation.
pub type AuthStep = Step<Identity, Resume, Refusal>;

/// What key validation works with.
pub struct Context<'a> {
    pub auth: &'a AuthConfig,
    pub directory: &'a dyn Directory,
    pub worker: &'a mut WorkerState,
    pub store: &'a mut dyn SharedStore,
    pub now: u64,
}

/// Verifies a credential, or asks for the call that lets it.
pub fn start(context: &mut Context<'_>, presented: Presented) -> AuthStep {
    match presented {
        Presented::ApiKey(key) => match api_keys::verify_cached(
            context.auth,
            context.directory,
            &mut context.worker.api_keys,
            &key,
            context.now,
        ) {
            Ok(identity) => Step::Done(identity),
            Err(refusal) => Step::Refused(refusal),
        },
        Presented::Bearer(token) => verify_bearer(context, token, true),
    }
}

/// Continues with the answer to the call a step asked for.
pub fn resume(context: &mut Context<'_>, resume: Resume, answer: &Answer) -> AuthStep {
    match resume {
        Resume::Introspection { key_manager, hash, asked_at, .. } => {
            introspected(context, key_manager, &hash, asked_at, answer)
        }
        Resume::Jwks { key_manager, token, fetch } => {
            // The worker's call may have taken the answer already (then this finds it taken); a
            // fetch that could not even be made (`fetch` none) is a failed one.
            if let (Some(km), Some(fetched)) =
                (context.auth.key_manager(key_manager), context.worker.jwks.get_mut(key_manager.index()))
            {
                match fetch {
                    Some(fetch) => drop(jwks::settle(context.store, km, fetched, fetch, answer, context.now)),
                    None => drop(jwks::ingest(context.store, km, fetched, answer, context.now)),
                }
            }
            verify_bearer(context, token, false)
        }
    }
}

/// A bearer token: from the cache, verified locally, or introspected.
fn verify_bearer(context: &mut Context<'_>, token: String, may_fetch: bool) -> AuthStep {
    let now = context.now;
    // The keys first: a token verified with a key the key manager has dropped since (a set
    // another worker refreshed, or this one) is not taken from a cache, this worker's or the
    // Envoy's, but verified again with the keys held now (CONFIG.md: a key removed from the set
    // is trusted until the next refresh).
    jwks::sync(context.store, context.auth, context.worker, now);
    let under = jwks::sets_fingerprint(&context.worker.jwks);
    if context.worker.tokens_under != under {
        context.worker.tokens.clear();
        context.worker.tokens_under = under;
    }
    if let Some(identity) = context.worker.tokens.get(&token, now) {
        return Step::Done(Identity::Token(Rc::clone(identity)));
    }
    // Another worker of this Envoy may have verified it already, under the same keys.
    let shared = context.auth.shares_verified_tokens() && looks_like_jws(&token);
    let hash = shared.then(|| credential_hash(&token));
    // Named when a token is looked up or shared only: a worker's cache answers most requests.
    let verified_under = |worker: &WorkerState| format!("{}|{:x}", context.auth.fingerprint, worker.tokens_under);
    if let Some(hash) = &hash {
        if let Some(identity) = shared_tokens::lookup(context.store, &verified_under(context.worker), hash, now) {
            let identity = Rc::new(identity);
            context.worker.tokens.insert(&token, Rc::clone(&identity));
            return Step::Done(Identity::Token(identity));
        }
    }
    match bearer::verify(context.auth, &context.worker.jwks, &token, now, may_fetch) {
        bearer::BearerStep::Verified(identity) => {
            let identity = Rc::new(identity);
            context.worker.tokens.insert(&token, Rc::clone(&identity));
            if let Some(hash) = &hash {
                shared_tokens::remember(context.store, &verified_under(context.worker), hash, &identity);
            }
            Step::Done(Identity::Token(identity))
        }
        bearer::BearerStep::Failed(refusal) => Step::Refused(refusal),
        bearer::BearerStep::Introspect { key_manager } => introspect(context, &token, key_manager),
        bearer::BearerStep::FetchJwks { key_manager } => {
            let remote = context.auth.key_manager(key_manager).and_then(|km| km.remote_jwks.as_ref());
            let (Some(remote), Some(fetched)) = (remote, context.worker.jwks.get_mut(key_manager.index())) else {
                return Step::Refused(AuthFailure::KeyManagerUnavailable.because("internal_key_manager_index"));
            };
            // One fetch at a time per worker: a request that needs the keys while one is under
            // way waits for its answer (as Envoy's jwt_authn does), and is neither refused nor
            // the cause of a second fetch.
            let fetch = fetched.under_way(now, remote.timeout_ms);
            if fetch.is_none() {
                fetched.last_attempt = Some(now);
            }
            Step::Call(jwks::call(remote), Resume::Jwks { key_manager, token, fetch })
        }
    }
}

/// An opaque token: from the shared introspection cache, or introspected.
fn introspect(context: &mut Context<'_>, token: &str, key_manager: KmId) -> AuthStep {
    let Some(km) = context.auth.key_manager(key_manager) else {
        return Step::Refused(AuthFailure::KeyManagerUnavailable.because("internal_key_manager_index"));
    };
    let Some(settings) = km.introspection.as_ref() else {
        return Step::Refused(AuthFailure::Invalid.because("opaque_without_introspection"));
    };
    let hash = credential_hash(token);
    if let Ok(Some((bytes, _))) = context.store.shared_get(&introspection::slot(km, &hash)) {
        match CachedIntrospection::lookup(&bytes, &hash, key_manager, context.now) {
            Some(Introspected::Active(identity)) => return Step::Done(Identity::Token(Rc::new(identity))),
            Some(Introspected::Inactive(_)) => return Step::Refused(AuthFailure::Inactive.because("inactive_cached")),
            Some(Introspected::NotYetValid { .. } | Introspected::Unavailable(_)) | None => {}
        }
    }
    // This worker asks about the token already: the request waits for that answer (no call, so
    // none of the call budget).
    if let Some(call) = context.worker.introspecting.call_for(&hash, context.now, settings.timeout_ms) {
        let resume = Resume::Introspection { key_manager, hash, joined: Some(call), asked_at: context.now };
        return Step::Call(introspection::call(settings, token), resume);
    }
    if let Some(budget) = settings.calls_per_second {
        if !crate::host::take_from_budget(
            context.store,
            &format!("apim.introspection.{}", km.name),
            budget,
            context.now,
        ) {
            crate::host::warn_repeated(
                context.store.gateway_scope(),
                &format!("introspection_budget:{}", km.name),
                context.now,
                || format!("introspection at key manager `{}` refused: more than {budget} calls a second", km.name),
            );
            return Step::Refused(AuthFailure::KeyManagerUnavailable.because("introspection_budget"));
        }
    }
    Step::Call(
        introspection::call(settings, token),
        Resume::Introspection { key_manager, hash, joined: None, asked_at: context.now },
    )
}

/// Reads an introspection answer and caches it for every worker. `asked_at`: when the call was
/// asked for (a join: when the request joined, after any refusal it would have found cached).
fn introspected(
    context: &mut Context<'_>,
    key_manager: KmId,
    hash: &[u8; 32],
    asked_at: u64,
    answer: &Answer,
) -> AuthStep {
    let Some(km) = context.auth.key_manager(key_manager) else {
        return Step::Refused(AuthFailure::KeyManagerUnavailable.because("internal_key_manager_index"));
    };
    let now = context.now;
    let answer = introspection::parse(km, answer, now);
    if let Some(entry) = CachedIntrospection::for_answer(hash, &answer, km, now) {
        let slot = introspection::slot(km, hash);
        // A flood of bogus tokens must not evict the cached answers of real ones (but a token's
        // own active answer gives way to a newer inactive one: another worker's call, answered
        // first, must not keep a token the key manager now refuses in for the TTL); the write
        // carries the CAS of what was read, so it never overwrites a newer entry.
        let current = context.store.shared_get(&slot).ok().flatten();
        let evicts_active = entry.identity.is_none()
            && current
                .as_ref()
                .is_some_and(|(bytes, _)| CachedIntrospection::is_fresh_active_of_another(bytes, hash, now));
        // Nor does an active answer to an older call bring back a token another worker's call,
        // asked since, found refused (revoked): answered in the other order, the revoked token
        // was served from the cache on every worker for up to `cache_ttl_s`.
        let undoes_refusal = entry.identity.is_some()
            && current
                .as_ref()
                .is_some_and(|(bytes, _)| CachedIntrospection::is_refusal_since(bytes, hash, asked_at, now));
        if let (false, false, Ok(bytes)) = (evicts_active, undoes_refusal, serde_json::to_vec(&entry)) {
            if bytes.len() <= introspection::MAX_CACHED_ENTRY {
                let _ = context.store.shared_set(&slot, &bytes, current.map(|(_, cas)| cas));
            }
        }
    }
    match answer {
        Introspected::Active(identity) => Step::Done(Identity::Token(Rc::new(identity))),
        Introspected::Inactive(reason) => Step::Refused(AuthFailure::Inactive.because(reason)),
        Introspected::NotYetValid { .. } => Step::Refused(AuthFailure::Inactive.because("not_yet_valid")),
        Introspected::Unavailable(reason) => {
            crate::host::warn_repeated(
                context.store.gateway_scope(),
                &format!("introspection:{}", km.name),
                now,
                || format!("key manager `{}` did not answer the introspection usably ({reason})", km.name),
            );
            Step::Refused(AuthFailure::KeyManagerUnavailable.because(reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::testkeys::{jwk, sign_raw};
    use crate::config::Config;
    use crate::host::testing::MemoryStore;
    use jsonwebtoken::Algorithm;

    fn config(extra: &str) -> Config {
        let json = serde_json::json!({
            "key_managers": [{"name": "a", "issuer": "https://a", "jwks": {"keys": [jwk("rsa-a.pem", Algorithm::RS256, "k")]}}],
            "credentials": {"api_key_header": extra}
        });
        Config::from_json(json.to_string().as_bytes()).unwrap()
    }

    fn validate(config: &Config, worker: &mut WorkerState, store: &mut MemoryStore, token: &str) -> AuthStep {
        let mut context =
            Context { auth: &config.auth, directory: config.directory.as_ref(), worker, store, now: 1_000 };
        start(&mut context, Presented::Bearer(token.to_string()))
    }

    /// The JWKS a key manager answers with: these keys of `rsa-a.pem` (kid `a`) and `rsa-b.pem`.
    fn jwks_answer(kids: &[(&str, &str)]) -> Answer {
        let keys: Vec<serde_json::Value> = kids.iter().map(|(pem, kid)| jwk(pem, Algorithm::RS256, kid)).collect();
        Answer::Http { status: 200, body: serde_json::json!({ "keys": keys }).to_string().into_bytes() }
    }

    /// Validates `token` at `now`, answering a JWKS fetch it asks for with `answer`.
    fn validate_at(
        config: &Config,
        worker: &mut WorkerState,
        store: &mut MemoryStore,
        token: &str,
        now: u64,
        answer: &Answer,
    ) -> AuthStep {
        let mut context = Context { auth: &config.auth, directory: config.directory.as_ref(), worker, store, now };
        match start(&mut context, Presented::Bearer(token.to_string())) {
            Step::Call(_, resume) => super::resume(&mut context, resume, answer),
            other => other,
        }
    }

    #[test]
    fn a_clock_stepped_back_leaves_no_worker_blind_to_keys_fetched_since() {
        let json = r#"{"key_managers": [{"name": "a", "issuer": "https://a", "jwks": {"cluster": "km"}}]}"#;
        let config = Config::from_json(json.as_bytes()).unwrap();
        let token = |kid: &str, pem: &str, client: &str| {
            let payload = format!(r#"{{"iss":"https://a","client_id":"{client}","exp":20000}}"#);
            sign_raw(&format!(r#"{{"alg":"RS256","kid":"{kid}"}}"#), &payload, pem, Algorithm::RS256)
        };
        let mut store = MemoryStore::default();
        let mut worker = WorkerState::new(&config.auth);
        let only_a = jwks_answer(&[("rsa-a.pem", "a")]);
        let step = validate_at(&config, &mut worker, &mut store, &token("a", "rsa-a.pem", "c"), 10_000, &only_a);
        assert!(matches!(step, Step::Done(_)), "{step:?}");
        // NTP steps the clock back an hour; the key manager rotates to `b`, and another worker
        // of this Envoy fetches the new set into shared data.
        let rotated = jwks_answer(&[("rsa-a.pem", "a"), ("rsa-b.pem", "b")]);
        let mut other = WorkerState::new(&config.auth);
        let step = validate_at(&config, &mut other, &mut store, &token("b", "rsa-b.pem", "c"), 6_400, &rotated);
        assert!(matches!(step, Step::Done(_)), "{step:?}");
        // The first worker takes the keys from shared data (or fetches them): a token of the new
        // key is no bad credential for the hour the clock takes to come back.
        let step = validate_at(&config, &mut worker, &mut store, &token("b", "rsa-b.pem", "d"), 6_410, &rotated);
        assert!(matches!(step, Step::Done(_)), "{step:?}");
    }

    #[test]
    fn a_token_one_worker_verified_is_not_verified_again_by_another_and_never_under_another_configuration() {
        let config = config("apikey");
        let token = sign_raw(
            r#"{"alg":"RS256","kid":"k"}"#,
            r#"{"iss":"https://a","client_id":"c","exp":2000,"jti":"t-1"}"#,
            "rsa-a.pem",
            Algorithm::RS256,
        );
        let mut store = MemoryStore::default();
        let mut first = WorkerState::new(&config.auth);
        assert!(matches!(validate(&config, &mut first, &mut store, &token), Step::Done(_)));
        assert_eq!(store.data.keys().filter(|key| key.starts_with("apim.verified.")).count(), 1);
        // Tamper with the stored identity: a worker that takes it from shared data shows it.
        let key = store.data.keys().find(|key| key.starts_with("apim.verified.")).unwrap().clone();
        let marked = String::from_utf8(store.data[&key].0.clone()).unwrap().replace("\"c\"", "\"from-shared-data\"");
        store.data.insert(key, (marked.into_bytes(), 1));
        let mut second = WorkerState::new(&config.auth);
        match validate(&config, &mut second, &mut store, &token) {
            Step::Done(Identity::Token(identity)) => assert_eq!(identity.client_id, "from-shared-data"),
            other => panic!("{other:?}"),
        }
        // Another configuration verifies for itself.
        let other = self::config("x-api-key");
        let mut third = WorkerState::new(&other.auth);
        match validate(&other, &mut third, &mut store, &token) {
            Step::Done(Identity::Token(identity)) => assert_eq!(identity.client_id, "c"),
            other => panic!("{other:?}"),
        }
    }

    /// A flood of made-up opaque tokens: beyond `calls_per_second` (per Envoy: every worker's
    /// calls count) a token the caches do not hold is refused with 900900, and no call is made.
    #[test]
    fn beyond_its_calls_per_second_introspection_refuses_without_calling_the_key_manager() {
        let json = r#"{"key_managers": [{"name": "o", "issuer": "https://o", "introspection":
            {"cluster": "km", "client_id": "gw", "client_secret": "s", "calls_per_second": 2}}]}"#;
        let config = Config::from_json(json.as_bytes()).unwrap();
        let mut store = MemoryStore::default();
        let (mut first, mut second) = (WorkerState::new(&config.auth), WorkerState::new(&config.auth));
        let mut start_at = |worker: &mut WorkerState, token: &str, now: u64| {
            let mut context =
                Context { auth: &config.auth, directory: config.directory.as_ref(), worker, store: &mut store, now };
            match start(&mut context, Presented::Bearer(token.to_string())) {
                Step::Call(..) => Ok(()),
                Step::Refused(refusal) => Err((refusal.failure, refusal.reason)),
                Step::Done(_) => panic!("nothing is cached"),
            }
        };
        let over = Err((AuthFailure::KeyManagerUnavailable, "introspection_budget"));
        assert_eq!(start_at(&mut first, "made-up-1", 100), Ok(()));
        assert_eq!(start_at(&mut second, "made-up-2", 100), Ok(()));
        assert_eq!(start_at(&mut first, "made-up-3", 100), over);
        assert_eq!(start_at(&mut second, "made-up-4", 100), over, "the budget is the Envoy's");
        assert_eq!(start_at(&mut second, "made-up-5", 101), Ok(()), "a new second");
        let unlimited = Config::from_json(json.replace(r#", "calls_per_second": 2"#, "").as_bytes()).unwrap();
        // Ten calls in one second through one store: a default budget would refuse some.
        let (mut worker, mut store) = (WorkerState::new(&unlimited.auth), MemoryStore::default());
        for index in 0..10 {
            let mut context = Context {
                auth: &unlimited.auth,
                directory: unlimited.directory.as_ref(),
                worker: &mut worker,
                store: &mut store,
                now: 100,
            };
            let step = start(&mut context, Presented::Bearer(format!("made-up-{index}")));
            assert!(matches!(step, Step::Call(..)), "no budget by default: {step:?}");
        }
        for calls in ["0", "100001"] {
            let refused = Config::from_json(json.replace(": 2}", &format!(": {calls}}}")).as_bytes()).unwrap_err();
            assert_eq!(refused.field, "key_managers[0].introspection.calls_per_second", "{calls}");
        }
    }

    /// Issuers are written with and without a trailing `/` (WSO2's `.../oauth2/token`, Auth0's
    /// `https://tenant.auth0.com/`): the other spelling than the tokens' used to load and refuse
    /// every token (900901). One trailing `/` is not compared; two issuers differing by it are
    /// one, refused at load; an issuer no `iss` can equal (spaces) is refused.
    #[test]
    fn an_issuer_with_or_without_a_trailing_slash_verifies_the_tokens_of_the_other_spelling() {
        let with_issuer = |issuer: &str| {
            let json = serde_json::json!({
                "key_managers": [{"name": "a", "issuer": issuer, "jwks": {"keys": [jwk("rsa-a.pem", Algorithm::RS256, "k")]}}]
            });
            Config::from_json(json.to_string().as_bytes())
        };
        for (configured, carried) in [
            ("https://km/oauth2/token/", "https://km/oauth2/token"),
            ("https://km/oauth2/token", "https://km/oauth2/token/"),
            ("https://km/oauth2/token", "https://km/oauth2/token"),
        ] {
            let config = with_issuer(configured).unwrap();
            let token = sign_raw(
                r#"{"alg":"RS256","kid":"k"}"#,
                &format!(r#"{{"iss":"{carried}","client_id":"c","exp":2000}}"#),
                "rsa-a.pem",
                Algorithm::RS256,
            );
            let mut worker = WorkerState::new(&config.auth);
            let step = validate(&config, &mut worker, &mut MemoryStore::default(), &token);
            assert!(matches!(step, Step::Done(_)), "{configured} / {carried}: {step:?}");
        }
        let other = sign_raw(
            r#"{"alg":"RS256","kid":"k"}"#,
            r#"{"iss":"https://km/oauth2/token/x","client_id":"c","exp":2000}"#,
            "rsa-a.pem",
            Algorithm::RS256,
        );
        let config = with_issuer("https://km/oauth2/token/").unwrap();
        let mut worker = WorkerState::new(&config.auth);
        assert!(matches!(validate(&config, &mut worker, &mut MemoryStore::default(), &other), Step::Refused(_)));
        for issuer in [" https://km/oauth2/token", "https://km/oauth2/token\n", "/"] {
            assert_eq!(with_issuer(issuer).unwrap_err().field, "key_managers[0].issuer", "{issuer:?}");
        }
        let two = serde_json::json!({"key_managers": [
            {"name": "a", "issuer": "https://km", "jwks": {"cluster": "a"}},
            {"name": "b", "issuer": "https://km/", "jwks": {"cluster": "b"}}]});
        let error = Config::from_json(two.to_string().as_bytes()).unwrap_err();
        assert_eq!(error.field, "key_managers[1].issuer");
    }

    /// WSO2's gateway takes a JWT that names no key manager with a JWT validator (no or an
    /// unknown `iss`, or a key manager with `self_validate_jwt` off) for an opaque token and
    /// introspects it (`getKeyManagerNameIfJwtValidatorExist` null, `OAuthAuthenticator`'s key
    /// validation path): such a JWT of an introspect-only key manager (Keycloak, say) was refused
    /// 900901 here, valid as its key manager says it is. Without introspection it stays refused.
    #[test]
    fn a_jwt_no_key_manager_verifies_itself_is_introspected_as_wso2_does() {
        let json = serde_json::json!({"key_managers": [
            {"name": "a", "issuer": "https://a", "jwks": {"keys": [jwk("rsa-a.pem", Algorithm::RS256, "k")]}},
            {"name": "kc", "issuer": "https://kc", "introspection": {"cluster": "kc", "client_id": "gw", "client_secret": "s"}}]});
        let config = Config::from_json(json.to_string().as_bytes()).unwrap();
        let jwt = |payload: &str| sign_raw(r#"{"alg":"RS256","kid":"k"}"#, payload, "rsa-b.pem", Algorithm::RS256);
        let active = Answer::Http { status: 200, body: br#"{"active":true,"client_id":"c"}"#.to_vec() };
        for payload in [
            r#"{"iss":"https://kc","client_id":"c","exp":2000}"#,
            r#"{"iss":"https://elsewhere","client_id":"c","exp":2000}"#,
            r#"{"client_id":"c","exp":2000}"#,
        ] {
            let (mut worker, mut store) = (WorkerState::new(&config.auth), MemoryStore::default());
            let mut context = Context {
                auth: &config.auth,
                directory: config.directory.as_ref(),
                worker: &mut worker,
                store: &mut store,
                now: 1_000,
            };
            let Step::Call(_, waiting) = start(&mut context, Presented::Bearer(jwt(payload))) else {
                panic!("{payload}: not introspected")
            };
            assert!(matches!(waiting, Resume::Introspection { key_manager: KmId(1), .. }), "{payload}");
            match resume(&mut context, waiting, &active) {
                Step::Done(Identity::Token(identity)) => assert_eq!(identity.key_manager, KmId(1), "{payload}"),
                other => panic!("{payload}: {other:?}"),
            }
        }
        // A JWT of a key manager that verifies JWTs itself is never introspected (a bad signature
        // is bad credentials); with no key manager introspecting, an unknown issuer is refused.
        let (mut worker, mut store) = (WorkerState::new(&config.auth), MemoryStore::default());
        let step =
            validate(&config, &mut worker, &mut store, &jwt(r#"{"iss":"https://a","client_id":"c","exp":2000}"#));
        assert!(matches!(step, Step::Refused(_)), "{step:?}");
        let alone = self::config("apikey");
        let mut worker = WorkerState::new(&alone.auth);
        let step =
            validate(&alone, &mut worker, &mut store, &jwt(r#"{"iss":"https://kc","client_id":"c","exp":2000}"#));
        assert!(matches!(step, Step::Refused(_)), "{step:?}");
    }

    /// Two workers introspect one token at once; the key manager answers the first call active,
    /// then the token is revoked and it answers the second inactive. The newer answer is what
    /// every worker's next request sees: the token is refused, not taken from the cache for the
    /// TTL (300 s) on the strength of the older answer.
    #[test]
    fn a_newer_inactive_answer_replaces_the_same_tokens_cached_active_one() {
        let json = r#"{"key_managers": [{"name": "km", "issuer": "https://km",
            "introspection": {"cluster": "km", "client_id": "gw", "client_secret": "s"}}]}"#;
        let config = Config::from_json(json.as_bytes()).unwrap();
        let mut store = MemoryStore::default();
        let (mut first, mut second) = (WorkerState::new(&config.auth), WorkerState::new(&config.auth));
        let active = Answer::Http { status: 200, body: br#"{"active":true,"client_id":"c"}"#.to_vec() };
        let inactive = Answer::Http { status: 200, body: br#"{"active":false}"#.to_vec() };
        let begin = |worker: &mut WorkerState, store: &mut MemoryStore| {
            let mut context =
                Context { auth: &config.auth, directory: config.directory.as_ref(), worker, store, now: 1_000 };
            start(&mut context, Presented::Bearer("opaque-1".to_string()))
        };
        let (Step::Call(_, one), Step::Call(_, two)) = (begin(&mut first, &mut store), begin(&mut second, &mut store))
        else {
            panic!("both workers introspect")
        };
        let mut context = Context {
            auth: &config.auth,
            directory: config.directory.as_ref(),
            worker: &mut first,
            store: &mut store,
            now: 1_000,
        };
        assert!(matches!(resume(&mut context, one, &active), Step::Done(_)));
        let mut context = Context {
            auth: &config.auth,
            directory: config.directory.as_ref(),
            worker: &mut second,
            store: &mut store,
            now: 1_000,
        };
        assert!(matches!(resume(&mut context, two, &inactive), Step::Refused(_)));
        let step = begin(&mut first, &mut store);
        assert!(matches!(step, Step::Refused(_)), "taken from the older active answer: {step:?}");
    }

    /// The same race answered in the other order: the second call's refusal (the token revoked
    /// after the first call was made) comes back first, then the first call's older active
    /// answer. That answer serves its own request, but does not replace the refusal: the token
    /// was taken from the cache by every worker for up to `cache_ttl_s` after its revocation.
    #[test]
    fn an_older_active_answer_arriving_late_does_not_undo_a_newer_refusal() {
        let json = r#"{"key_managers": [{"name": "km", "issuer": "https://km",
            "introspection": {"cluster": "km", "client_id": "gw", "client_secret": "s"}}]}"#;
        let config = Config::from_json(json.as_bytes()).unwrap();
        let mut store = MemoryStore::default();
        let (mut first, mut second) = (WorkerState::new(&config.auth), WorkerState::new(&config.auth));
        let active = Answer::Http { status: 200, body: br#"{"active":true,"client_id":"c"}"#.to_vec() };
        let inactive = Answer::Http { status: 200, body: br#"{"active":false}"#.to_vec() };
        let at = |worker: &mut WorkerState, store: &mut MemoryStore, now: u64, answer: Option<(Resume, &Answer)>| {
            let mut context = Context { auth: &config.auth, directory: config.directory.as_ref(), worker, store, now };
            match answer {
                Some((waiting, answer)) => resume(&mut context, waiting, answer),
                None => start(&mut context, Presented::Bearer("opaque-1".to_string())),
            }
        };
        let Step::Call(_, one) = at(&mut first, &mut store, 1_000, None) else { panic!("introspected") };
        let Step::Call(_, two) = at(&mut second, &mut store, 1_001, None) else { panic!("introspected") };
        assert!(matches!(at(&mut second, &mut store, 1_001, Some((two, &inactive))), Step::Refused(_)));
        assert!(matches!(at(&mut first, &mut store, 1_002, Some((one, &active))), Step::Done(_)), "its own request");
        let step = at(&mut second, &mut store, 1_002, None);
        assert!(matches!(step, Step::Refused(_)), "the revoked token came back from the cache: {step:?}");
        // A refusal cached before a call was made is older word: that call's active answer replaces it.
        let Step::Call(_, three) = at(&mut first, &mut store, 1_020, None) else { panic!("the refusal expired") };
        assert!(matches!(at(&mut first, &mut store, 1_020, Some((three, &active))), Step::Done(_)));
        assert!(matches!(at(&mut second, &mut store, 1_021, None), Step::Done(_)), "cached active");
    }
}
