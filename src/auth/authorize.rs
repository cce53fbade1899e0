//! Authorization of a verified credential, in WSO2's order: a JWT API key's restrictions (client
//! address and `Referer`, 900908), the subscription (none 900908, BLOCKED 900907,
//! PROD_ONLY_BLOCKED for production keys, inactive states 900909), the token type (a user's or an
//! application's, as the resource's auth type asks: 900905), the scopes (900910); and the endpoint
//! of the key type (900901/403), asked for after throttling. The directory answers who the
//! application is and what it subscribed to.

use std::net::IpAddr;
use std::rc::Rc;

use super::Identity;
use crate::catalogue::{Fault, FaultId};
use crate::directory::{Application, Directory, Subscription, Wso2Details};
use crate::routing::{Api, Resource};
use crate::vocab::{KeyType, SubscriptionState, UNLIMITED};

/// The auth context of an authorized request, sent to the backend as headers. The application,
/// its subscription and the cluster are shared with the directory and the routing table (a
/// count each, not copies of their strings on every request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorized {
    /// The Envoy cluster of the key type's endpoint, `None` when the API has none: read through
    /// [`Authorized::endpoint`], after throttling.
    pub cluster: Option<Rc<str>>,
    pub key_type: KeyType,
    pub application: Rc<Application>,
    /// The subscription to the API (its tier).
    pub subscription: Rc<Subscription>,
    pub end_user: Option<String>,
    /// A user's token (WSO2's APPLICATION_USER) rather than an application's.
    pub user_token: bool,
    /// The caller token's `sub`.
    pub subject: Option<String>,
    /// The caller's claims the backend JWT copies.
    pub caller_claims: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// What names the caller's token uniquely (its key manager and `jti` or signature), when
    /// something does: the caller claims are then a function of it.
    pub caller_token: Option<String>,
}

/// How a JWT API key's `caller_token` starts.
const JWT_API_KEY: &str = "api-key:";

impl Authorized {
    /// A JWT API key's: its claims name its subscriptions (one the gateway does not know passes).
    pub fn by_jwt_api_key(&self) -> bool {
        self.caller_token.as_deref().is_some_and(|token| token.starts_with(JWT_API_KEY))
    }

    /// The Envoy cluster of the key type's endpoint, or 900901 (403) when the API has no endpoint
    /// of that type. API-M refuses such a key in the API's in-sequence (its
    /// `_production_key_error_` and `_sandbox_key_error_`), after its handlers: the request is
    /// throttled and counted first, and the stream asks for the endpoint once throttling let the
    /// request through.
    pub fn endpoint(&self) -> Result<&str, Fault> {
        self.cluster.as_deref().ok_or_else(|| missing_endpoint(self.key_type))
    }

    /// The application's UUID.
    pub fn application_id(&self) -> &str {
        &self.application.id
    }

    /// The application's id as WSO2's backend JWT sends it (`applicationid`): its numeric id,
    /// else its UUID when the numeric one is not known.
    pub fn application_number(&self) -> &str {
        self.application.number().unwrap_or(&self.application.id)
    }

    pub fn application_name(&self) -> &str {
        self.application.name()
    }

    /// The user who owns the application.
    pub fn subscriber(&self) -> &str {
        self.application.owner()
    }

    /// The subscription's tier.
    pub fn tier(&self) -> &str {
        &self.subscription.tier
    }

    /// The application's own throttling policy (WSO2's `applicationtier`).
    pub fn application_tier(&self) -> &str {
        self.application.policy().unwrap_or(UNLIMITED)
    }
}

/// A subscription's state refuses the key type (900907, 900909), as at the handshake.
pub fn check_subscription_state(state: SubscriptionState, key_type: KeyType) -> Result<(), Fault> {
    match state {
        SubscriptionState::Unblocked | SubscriptionState::TierUpdatePending | SubscriptionState::DeletePending => {
            Ok(())
        }
        SubscriptionState::Blocked => Err(Fault::new(FaultId::ApiTemporarilyBlocked)),
        SubscriptionState::ProdOnlyBlocked if key_type == KeyType::Production => {
            Err(Fault::new(FaultId::ApiTemporarilyBlocked))
        }
        SubscriptionState::ProdOnlyBlocked => Ok(()),
        SubscriptionState::OnHold | SubscriptionState::Rejected | SubscriptionState::Inactive => {
            Err(Fault::new(FaultId::SubscriptionInactive))
        }
    }
}

/// API keys carry no scopes: a resource that requires scopes refuses them (900910). An opaque key
/// is an application's, never a user's: user-only resources refuse it (900905).
fn api_key_resource_checks(resource: &Resource, opaque: bool) -> Result<(), Fault> {
    if !resource.scopes.is_empty() {
        return Err(Fault::new(FaultId::InsufficientScope).with_challenge_error("insufficient_scope"));
    }
    if opaque && resource.user_token_only {
        return Err(Fault::new(FaultId::IncorrectAccessTokenType).with_challenge_error("invalid_token"));
    }
    Ok(())
}

fn endpoint(api: &Api, key_type: KeyType) -> Option<Rc<str>> {
    match key_type {
        KeyType::Production => api.endpoints.production.clone(),
        KeyType::Sandbox => api.endpoints.sandbox.clone(),
    }
}

/// The fault for a key type the API has no endpoint for (an open resource's traffic is
/// production traffic).
pub fn missing_endpoint(key_type: KeyType) -> Fault {
    match key_type {
        KeyType::Production => Fault::new(FaultId::ProductionKeyWithoutEndpoint),
        KeyType::Sandbox => Fault::new(FaultId::SandboxKeyWithoutEndpoint),
    }
}

/// What authorization reads of the request itself: where it comes from, for a JWT API key's
/// `permittedIP` (the client address blocking conditions read) and `permittedReferer`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestOrigin<'r> {
    pub client_ip: Option<IpAddr>,
    pub referer: Option<&'r str>,
}

/// Checks, in WSO2's order: a JWT API key's IP and referer restrictions (900908), subscription
/// (900908 none, 900907 blocked, 900909 inactive), token type (900905), scopes (900910, any one
/// of the resource's). The key type's endpoint is looked up, not checked: see
/// [`Authorized::endpoint`].
pub fn authorize(
    directory: &dyn Directory,
    api: &Api,
    resource: &Resource,
    identity: &Identity,
    origin: &RequestOrigin<'_>,
) -> Result<Authorized, Fault> {
    let forbidden = || Fault::new(FaultId::ResourceForbidden);
    match identity {
        Identity::JwtApiKey(key) => {
            if !key.permits(origin.client_ip, origin.referer) {
                return Err(Fault::new(FaultId::ApiKeyRestricted));
            }
            // WSO2 (`validateAPISubscription`) matches by context and version, never by name: API-M
            // signs every tenant's keys with one key, and another tenant's API may share the name.
            let Some((_, _, _, subscription_tier)) = key
                .subscribed
                .iter()
                .find(|(_, version, context, _)| version == &api.version && context == &api.versioned_context)
            else {
                return Err(forbidden());
            };
            api_key_resource_checks(resource, false)?;
            // An application the gateway also knows: its subscription's state applies too.
            let subscription = match directory.subscription(&key.application_id, api) {
                Some(subscription) => {
                    check_subscription_state(subscription.state, key.key_type)?;
                    subscription
                }
                None => {
                    let tier = if subscription_tier.is_empty() { &key.tier } else { subscription_tier };
                    Rc::new(Subscription { tier: tier.clone(), state: SubscriptionState::Unblocked })
                }
            };
            // WSO2 sends the key's numeric `application.id` as the backend JWT's `applicationid`.
            let details = Wso2Details { number: &key.application_number, attributes: serde_json::Map::new() };
            let application = Application::with_details(
                Rc::from(&*key.application_id),
                &key.application_name,
                &key.owner,
                Some(&key.tier),
                details,
            );
            Ok(Authorized {
                cluster: endpoint(api, key.key_type),
                key_type: key.key_type,
                application: Rc::new(application),
                subscription,
                end_user: key.end_user.clone(),
                user_token: key.end_user.is_some(),
                subject: key.end_user.clone(),
                caller_claims: key.claims.clone(),
                caller_token: Some(format!("{JWT_API_KEY}{}", key.token_id)),
            })
        }
        Identity::ApiKey(_) | Identity::Token(_) => {
            let (app_key, token) = match identity {
                Identity::ApiKey(app_key) => (app_key.clone(), None),
                Identity::Token(token) => {
                    // An API that names its key managers refuses another's token as invalid
                    // (`OAuthAuthenticator`: "not found in API level list", 900901).
                    if api.key_managers.as_ref().is_some_and(|allowed| !allowed.contains(&token.key_manager)) {
                        return Err(Fault::new(FaultId::InvalidCredentials).with_challenge_error("invalid_token"));
                    }
                    let app_key = directory.client(&token.client_id, token.key_manager).ok_or_else(forbidden)?;
                    // A client id belongs to the key manager that issued it: another's is no key
                    // mapping of this token (WSO2's `getKeyMappingByKeyAndKeyManager`, 900908).
                    if app_key.key_manager.is_some_and(|owner| owner != token.key_manager) {
                        return Err(forbidden());
                    }
                    (app_key, Some(token))
                }
                Identity::JwtApiKey(_) => return Err(forbidden()),
            };
            let application = directory.application(&app_key.application).ok_or_else(forbidden)?;
            let subscription = directory.subscription(&app_key.application, api).ok_or_else(forbidden)?;
            check_subscription_state(subscription.state, app_key.key_type)?;
            if token.is_none() {
                api_key_resource_checks(resource, true)?;
            }
            if let Some(token) = token {
                let wrong_kind =
                    if token.user_token { resource.application_token_only } else { resource.user_token_only };
                if wrong_kind {
                    return Err(Fault::new(FaultId::IncorrectAccessTokenType).with_challenge_error("invalid_token"));
                }
                if !resource.scopes.is_empty() && !resource.scopes.iter().any(|scope| token.scopes.contains(scope)) {
                    return Err(Fault::new(FaultId::InsufficientScope).with_challenge_error("insufficient_scope"));
                }
            }
            Ok(Authorized {
                cluster: endpoint(api, app_key.key_type),
                key_type: app_key.key_type,
                application,
                subscription,
                end_user: token.and_then(|token| token.end_user.clone()),
                user_token: token.is_some_and(|token| token.user_token),
                subject: token.and_then(|token| token.subject.clone()),
                caller_claims: token.and_then(|token| token.claims.clone()),
                caller_token: token
                    .and_then(|token| token.token_id.as_ref().map(|id| format!("{}:{id}", token.key_manager.0))),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::api_keys::{self, JwtApiKey};
    use crate::auth::fixture::{compile, Fixture};
    use crate::auth::{AuthFailure, TokenIdentity};
    use crate::directory::AppKey;
    use crate::vocab::KmId;

    const CONFIG: &str = r#"{
        "key_managers": [{"name": "a", "issuer": "https://a", "jwks": {"cluster": "a"}},
                         {"name": "b", "issuer": "https://b", "jwks": {"cluster": "b"}}],
        "apis": [{"name": "S", "context": "/s", "version": "1", "security": ["oauth2", "api_key"],
                  "endpoints": {"production": "p", "sandbox": "s"},
                  "resources": [{"method": "GET", "path": "/open-to-keys"},
                                {"method": "GET", "path": "/scoped", "scopes": ["read"]},
                                {"method": "GET", "path": "/users", "user_token_only": true},
                                {"method": "GET", "path": "/apps", "application_token_only": true}]}],
        "applications": [{"id": "app", "name": "App", "client_ids": [{"id": "c", "key_manager": "b"}],
                          "api_keys": [{"sha256": "b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c"}]},
                         {"id": "jwt-app", "name": "JwtApp"}],
        "subscriptions": [{"application": "app", "api": "S:1"}, {"application": "jwt-app", "api": "S:1", "state": "BLOCKED"}]
    }"#;

    fn token(key_manager: u32, scopes: &[&str], user_token: bool) -> Identity {
        Identity::Token(std::rc::Rc::new(TokenIdentity {
            key_manager: KmId(key_manager),
            client_id: "c".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            end_user: Some("someone".into()),
            user_token,
            expires_at: u64::MAX,
            token_id: None,
            token_twin: None,
            subject: None,
            claims: None,
        }))
    }

    fn code(fixture: &Fixture, path: usize, identity: &Identity) -> Result<String, u32> {
        let api = &fixture.routes.apis[0];
        authorize(&fixture.directory, api, &api.resources[path], identity, &RequestOrigin::default())
            .map(|a| a.application_id().to_string())
            .map_err(|fault| fault.code)
    }

    #[test]
    fn a_client_id_is_honoured_only_from_its_own_key_manager() {
        let config = compile(CONFIG);
        assert_eq!(code(&config, 0, &token(1, &[], false)), Ok("app".into()));
        assert_eq!(code(&config, 0, &token(0, &[], false)), Err(900908), "issuer a cannot speak for b's client");
    }

    /// A key mapping is a client id and its key manager, as in WSO2: two key managers (two
    /// Keycloak realms) may issue the same client id to two applications, and each token is its
    /// own key manager's client's. The same id twice for one key manager is refused at load.
    #[test]
    fn two_key_managers_may_issue_one_client_id_to_two_applications() {
        let two = CONFIG.replace(
            r#"{"id": "jwt-app", "name": "JwtApp"}"#,
            r#"{"id": "jwt-app", "name": "JwtApp", "client_ids": [{"id": "c", "key_manager": "a"}]}"#,
        );
        let config = compile(&two.replace(r#""state": "BLOCKED""#, r#""state": "UNBLOCKED""#));
        assert_eq!(code(&config, 0, &token(1, &[], false)), Ok("app".into()), "b's client c");
        assert_eq!(code(&config, 0, &token(0, &[], false)), Ok("jwt-app".into()), "a's client c");
        let twice = two.replace(r#"{"id": "c", "key_manager": "a"}"#, r#"{"id": "c", "key_manager": "b"}"#);
        let error = crate::config::Config::from_json(twice.as_bytes()).map(|_| ()).unwrap_err();
        assert_eq!(error.field, "applications[1].client_ids[0].id");
    }

    #[test]
    fn api_keys_cannot_reach_scoped_or_user_only_resources() {
        let config = compile(CONFIG);
        // The configured hash is SHA-256("foo\n").
        assert!(matches!(api_keys::verify(&config.auth, &config.directory, "foo\n", 0), Ok(Identity::ApiKey(_))));
        assert_eq!(
            api_keys::verify(&config.auth, &config.directory, "foo", 0),
            Err(AuthFailure::Invalid.because("unknown_api_key"))
        );
        let opaque =
            Identity::ApiKey(AppKey { application: "app".into(), key_type: KeyType::Production, key_manager: None });
        assert_eq!(code(&config, 0, &opaque), Ok("app".into()));
        assert_eq!(code(&config, 1, &opaque), Err(900910));
        assert_eq!(code(&config, 2, &opaque), Err(900905));
        assert_eq!(code(&config, 1, &token(1, &["read"], false)), Ok("app".into()));
        assert_eq!(code(&config, 2, &token(1, &[], false)), Err(900905));
        assert_eq!(code(&config, 2, &token(1, &[], true)), Ok("app".into()));
        assert_eq!(code(&config, 3, &opaque), Ok("app".into()));
        assert_eq!(code(&config, 3, &token(1, &[], false)), Ok("app".into()));
        assert_eq!(code(&config, 3, &token(1, &[], true)), Err(900905));
    }

    /// Every state WSO2 writes in `AM_SUBSCRIPTION.SUB_STATUS` loads from the configuration, and
    /// answers as WSO2's gateway answers it (`SubscriptionValidationUtils`): a tier change or a
    /// removal awaiting approval leaves the subscription working.
    #[test]
    fn configured_subscription_states_answer_as_wso2_answers_them() {
        for (state, production, sandbox) in [
            ("UNBLOCKED", Ok(()), Ok(())),
            ("TIER_UPDATE_PENDING", Ok(()), Ok(())),
            ("DELETE_PENDING", Ok(()), Ok(())),
            ("BLOCKED", Err(900907), Err(900907)),
            ("PROD_ONLY_BLOCKED", Err(900907), Ok(())),
            ("ON_HOLD", Err(900909), Err(900909)),
            ("REJECTED", Err(900909), Err(900909)),
        ] {
            let config = compile(&CONFIG.replace(
                r#"{"application": "app", "api": "S:1"}"#,
                &format!(r#"{{"application": "app", "api": "S:1", "state": "{state}"}}"#),
            ));
            let api = &config.routes.apis[0];
            for (key_type, expected) in [(KeyType::Production, production), (KeyType::Sandbox, sandbox)] {
                let key = Identity::ApiKey(AppKey { application: "app".into(), key_type, key_manager: None });
                let answer = authorize(&config.directory, api, &api.resources[0], &key, &RequestOrigin::default());
                assert_eq!(answer.map(|_| ()).map_err(|fault| fault.code), expected, "{state} {key_type:?}");
            }
        }
    }

    /// WSO2's resource auth types (`AUTH_APPLICATION_LEVEL_TOKEN` and its kin): `Application`
    /// takes application tokens only, `Application_User` user tokens only, `Any` both; the wrong
    /// kind answers 900905 (`JWTValidator.validateTokenGrantType`, `hasTokenRequiredAuthLevel`).
    #[test]
    fn control_plane_auth_types_admit_the_token_types_wso2_admits() {
        use crate::directory::control_plane::wire;
        let config = compile(CONFIG);
        let wso2: wire::Api = serde_json::from_str(
            r#"{"uuid":"u","name":"S","version":"1","context":"/s/1","status":"PUBLISHED","urlMappings":[
                {"authScheme":"Application","httpMethod":"GET","urlPattern":"/app"},
                {"authScheme":"Application_User","httpMethod":"GET","urlPattern":"/user"},
                {"authScheme":"Application User","httpMethod":"GET","urlPattern":"/user2"},
                {"authScheme":"Any","httpMethod":"GET","urlPattern":"/any"}]}"#,
        )
        .unwrap();
        let endpoints = crate::schema::RawEndpoints { production: Some("p".into()), sandbox: None };
        let raw =
            wire::api(&wso2, endpoints, &[crate::vocab::SecurityScheme::Oauth2, crate::vocab::SecurityScheme::ApiKey])
                .unwrap();
        let routes = crate::routing::Table::compile(vec![raw], &|_| true).unwrap();
        let api = &routes.apis[0];
        let check = |resource: usize, identity: &Identity| {
            authorize(&config.directory, api, &api.resources[resource], identity, &RequestOrigin::default())
                .map(|_| ())
                .map_err(|fault| fault.code)
        };
        let (application_token, user_token) = (token(1, &[], false), token(1, &[], true));
        let opaque =
            Identity::ApiKey(AppKey { application: "app".into(), key_type: KeyType::Production, key_manager: None });
        assert_eq!(check(0, &application_token), Ok(()));
        assert_eq!(check(0, &user_token), Err(900905), "Application refuses user tokens");
        assert_eq!(check(0, &opaque), Ok(()), "an API key is an application's");
        for user_only in [1, 2] {
            assert_eq!(check(user_only, &application_token), Err(900905));
            assert_eq!(check(user_only, &user_token), Ok(()));
        }
        assert_eq!((check(3, &application_token), check(3, &user_token)), (Ok(()), Ok(())));
    }

    #[test]
    fn jwt_api_keys_honour_the_subscription_state_the_gateway_knows() {
        let config = compile(CONFIG);
        let key = Identity::JwtApiKey(Rc::new(JwtApiKey {
            key_type: KeyType::Production,
            application_id: "jwt-app".into(),
            application_number: "3".into(),
            claims: None,
            application_name: "JwtApp".into(),
            owner: "o".into(),
            tier: "Unlimited".into(),
            end_user: None,
            subscribed: vec![("S".into(), "1".into(), "/s/1".into(), "Gold".into())],
            token_id: "jti".into(),
            token_twin: None,
            permitted_ips: None,
            permitted_referers: None,
            expires_at: u64::MAX,
        }));
        assert_eq!(code(&config, 0, &key), Err(900907));
    }
}

#[cfg(test)]
#[path = "authorize_jwt_api_key_tests.rs"]
mod jwt_api_key_tests;
