//! A seeded audit of API products (`apiType` `APIProduct`) from a control plane against WSO2 API
//! Manager 4.x's gateway: a product bundling resources of two APIs, served beside them, loaded
//! through the background's real full load and looked up through the real lookups, with random
//! subscriptions (to the product, to a member API, in every state), contexts in both forms API-M
//! writes, scopes on product resources and `control_plane.endpoints` naming the product or not;
//! each request's answer compared with an independent model of API-M's. Then the product's
//! throttling tiers, request by request. Seed: `PRODUCT_AUDIT_SEED` (printed on failure).
//!
//! Sources (wso2/carbon-apimgt as mirrored in binodmx/wso2-carbon-apimgt, commit
//! 389d4e225143445c50f913257ae9c2e21914a640, `components/apimgt/`, unless noted):
//! - SVD = `org.wso2.carbon.apimgt.impl/.../dao/SubscriptionValidationDAO.java` `getAllApis`:
//!   a product is an API of `apiType` `APIProduct` with its own `API_ID`, `CONTEXT`, `API_TIER`
//!   (`policy`); its URL mappings (`attachURlMappingDetailsOfApiProduct`,
//!   `SubscriptionValidationSQLConstants.GET_ALL_API_PRODUCT_URI_TEMPLATES_SQL`) are its members'
//!   `AM_API_URL_MAPPING` rows named in `AM_API_PRODUCT_MAPPING`, with their `THROTTLING_TIER`,
//!   `AUTH_SCHEME` and scopes.
//! - AKVH = `org.wso2.carbon.apimgt.keymgt/.../handlers/AbstractKeyValidationHandler.java`
//!   `validateSubscriptionDetails`: the API is the one of the request's context and version
//!   (the product's own), the subscription `getSubscriptionById(app, api.getApiId())`: the
//!   product's subscription for a product's request, the member's for the member's; `validate`:
//!   BLOCKED 900907, ON_HOLD and REJECTED 900909, PROD_ONLY_BLOCKED 900907 but for sandbox
//!   keys; the subscription tier is the product subscription's `policyId`, the API tier the
//!   product's.
//! - AKV = `org.wso2.carbon.apimgt.gateway/.../handlers/security/APIKeyValidator.java`
//!   `getVerbInfoDTOFromAPIData`: a product's resources (`doGetAPIProductInfo`) are the product's
//!   URI templates (`APIKeyValidationService.getAPIProductURITemplates` -> `getTemplates` of the
//!   product's context and version): a member resource the product does not bundle is no
//!   resource of it (900906).
//! - CTX = `org.wso2.carbon.apimgt.rest.api.publisher.v1.common/.../mappings/APIMappingUtil.java`
//!   `fromDTOtoAPIProduct` (a product's context stored without a version, its version
//!   `API_PRODUCT_VERSION` 1.0.0) and `.../template/APIConfigContext.java`
//!   `setApiProductVelocityContext` (the Synapse API's context is that context, not a
//!   `{version}` template); product-apim `api_product_template.xml` (`version-type="context"`)
//!   and Synapse's `ContextVersionStrategy` (the version replaces `{version}`, of which such a
//!   context has none): API-M 4.0 to 4.2 serve a product at `/bundle/...`, without its version,
//!   and `/bundle/1.0.0/...` is a path under it that names no resource (900906).
//!   `org.wso2.carbon.apimgt.gateway/.../internal/DataHolder.java` `addAPIMetaData` keeps such a
//!   context whole ("APIProduct": no version taken off). API-M 4.2 from update level 55 on
//!   versions products as APIs (apim.docs.wso2.com 4.2.0 "Create a New API Version"; later
//!   carbon-apimgt's `setApiProductVelocityContext` puts `getContextTemplate()`): context
//!   `/bundle/1.0.0`, served at `/bundle/1.0.0/...`.
//! - TH = `org.wso2.carbon.apimgt.gateway/.../handlers/throttling/ThrottleHandler.java`: the API
//!   tier (the product's `policy`) counts the product's requests under the product's context and
//!   version, resource tiers (the member resources' tiers, as the product carries them) only when
//!   the API tier is unlimited or absent, the subscription tier per application and product.
//! - Endpoints: the product's resources go to their members' backends
//!   (`api_product_template.xml`: each aggregate's `getEndpointConfigAsJSON()`), which `/apis`
//!   does not carry: the filter sends them to `control_plane.endpoints`' cluster for the product,
//!   and does not serve a product that only `endpoint_template` would name (docs/HOWTO.md): its
//!   requests answer as an unknown API's. That row is the filter's documented difference.

use super::gateways::{tick_answering, Gateway, NOW};
use super::model_cp::through_the_gateway;
use super::*;
use crate::host::fuzz::Rng;
use serde_json::{json, Value};

const SECRET: &str = "product-audit-hmac-secret-0123456789";
const STATES: [&str; 7] =
    ["UNBLOCKED", "BLOCKED", "PROD_ONLY_BLOCKED", "ON_HOLD", "REJECTED", "TIER_UPDATE_PENDING", "DELETE_PENDING"];
/// Requests per directory.
const REQUESTS: usize = 40;
const PATHS: [&str; 10] = [
    "/bundle/items",
    "/bundle/1.0.0/items",
    "/bundle/plans",
    "/bundle/1.0.0/plans",
    "/bundle/orders",
    "/bundle/1.0.0/orders",
    "/menu/1.0.0/items",
    "/menu/1.0.0/orders",
    "/lease/1.0.0/plans",
    "/other/1.0.0/items",
];

/// API-M's directory, as far as products need it.
#[derive(Clone, Debug)]
struct Model {
    /// The product's context as API-M 4.0-4.2 write it (`/bundle`, version 1.0.0, CTX), or as
    /// 4.2 update 55 and later (`/bundle/1.0.0`).
    versioned_context: bool,
    /// `control_plane.endpoints` names the product (by label or by name), else only
    /// `endpoint_template` would.
    named: Option<&'static str>,
    /// Scopes of `GET /items` (the member's, and so the product's: SVD).
    item_scopes: &'static [&'static str],
    /// Subscription states of the application to the product and to the member API `Menu`.
    product_sub: Option<&'static str>,
    menu_sub: Option<&'static str>,
    lease_sub: Option<&'static str>,
    /// The product's lifecycle is BLOCKED: `APIStatusHandler` (gateway, `handlers/common/`)
    /// answers 700700 for a product as for any API whose `status` is BLOCKED, before resources.
    product_blocked: bool,
    /// The product's subscription was made after the full load: only the lookup
    /// (`/subscriptions?apiUUID=&applicationUUID=`) brings it, as API-M's gateway loads a
    /// subscription it does not hold (`SubscriptionDataStoreImpl.getSubscriptionById`).
    late_product_sub: bool,
}

fn random_model(rng: &mut Rng) -> Model {
    let state = |rng: &mut Rng| if rng.chance(4) { None } else { Some(*rng.pick(&STATES)) };
    Model {
        versioned_context: rng.chance(2),
        named: match rng.below(4) {
            0 => None,
            1 => Some("Bundle"),
            _ => Some("Bundle:1.0.0"),
        },
        item_scopes: if rng.chance(2) { &[] } else { &["read"] },
        product_sub: state(rng),
        menu_sub: state(rng),
        lease_sub: state(rng),
        product_blocked: rng.chance(8),
        late_product_sub: rng.chance(3),
    }
}

fn list(items: Vec<Value>) -> String {
    json!({"count": items.len(), "list": items, "pagination": null}).to_string()
}

fn query<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

fn policies(fixture: &str, name: Option<&str>) -> String {
    let all: Value = serde_json::from_str(fixture).unwrap();
    let items = all["list"].as_array().unwrap().iter().filter(|policy| name.is_none_or(|name| policy["name"] == name));
    list(items.cloned().collect())
}

/// Tiers of the product: its API tier, the tier of its `GET /items` resource, its subscription's.
#[derive(Clone, Copy, Debug)]
struct Tiers {
    api: Option<&'static str>,
    items: &'static str,
    subscription: &'static str,
}

const UNLIMITED: Tiers = Tiers { api: None, items: "Unlimited", subscription: "Gold" };

fn mapping(method: &str, pattern: &str, tier: &str, scopes: &[&str]) -> Value {
    json!({"authScheme": "Any", "throttlingPolicy": tier, "httpMethod": method, "urlPattern": pattern, "scopes": scopes})
}

impl Model {
    fn apis(&self, tiers: Tiers) -> Value {
        let items = |tier| mapping("GET", "/items", tier, self.item_scopes);
        let api = |uuid: &str,
                   id: u32,
                   name: &str,
                   context: &str,
                   kind: &str,
                   policy: Option<&str>,
                   maps: Vec<Value>| {
            json!({"uuid": uuid, "apiId": id, "provider": "admin", "name": name, "version": "1.0.0", "context": context,
                "policy": policy, "apiType": kind, "status": "PUBLISHED", "organization": "carbon.super",
                "isDefaultVersion": false, "urlMappings": maps})
        };
        let mut all = json!([
            api(
                "a-menu",
                1,
                "Menu",
                "/menu/1.0.0",
                "HTTP",
                None,
                vec![items("Unlimited"), mapping("POST", "/orders", "Unlimited", &[])]
            ),
            api("a-lease", 2, "Lease", "/lease/1.0.0", "HTTP", None, vec![mapping("GET", "/plans", "Unlimited", &[])]),
            // The product bundles Menu's `GET /items` and Lease's `GET /plans`, not `POST /orders`.
            api(
                "p-bundle",
                3,
                "Bundle",
                if self.versioned_context { "/bundle/1.0.0" } else { "/bundle" },
                "APIProduct",
                tiers.api,
                vec![items(tiers.items), mapping("GET", "/plans", "Unlimited", &[])]
            ),
        ]);
        if self.product_blocked {
            all[2]["status"] = json!("BLOCKED");
        }
        all
    }

    fn subs(&self, tiers: Tiers) -> Vec<(&'static str, &'static str, &'static str)> {
        [
            ("p-bundle", self.product_sub, tiers.subscription),
            ("a-menu", self.menu_sub, "Gold"),
            ("a-lease", self.lease_sub, "Gold"),
        ]
        .into_iter()
        .filter_map(|(api, state, tier)| Some((api, state?, tier)))
        .collect()
    }

    /// API-M's answer to `path` (full loads and lookups alike).
    fn answer(&self, tiers: Tiers, path: &str) -> String {
        let resource = path.trim_start_matches("/internal/data/v1/");
        let (resource, q) = resource.split_once('?').unwrap_or((resource, ""));
        let app = json!({"uuid": "app-1", "id": 11, "name": "App", "subName": "owner", "policy": "Unlimited",
            "tokenType": "JWT", "groupIds": [], "attributes": {}, "organization": "carbon.super"});
        match resource {
            "apis" => list(self.apis(tiers).as_array().unwrap().clone()),
            "applications" => list(vec![app]),
            "subscriptions" => list(
                self.subs(tiers)
                    .into_iter()
                    .filter(|(api, _, _)| query(q, "apiUUID").is_none_or(|id| id == *api))
                    .filter(|(api, _, _)| !(self.late_product_sub && q.is_empty() && *api == "p-bundle"))
                    .filter(|_| query(q, "applicationUUID").is_none_or(|id| id == "app-1"))
                    .map(|(api, state, tier)| {
                        json!({"subscriptionUUID": format!("s-{api}"), "subscriptionId": 1, "policyId": tier,
                            "apiUUID": api, "apiId": 1, "applicationUUID": "app-1", "appId": 11,
                            "subscriptionState": state})
                    })
                    .collect(),
            ),
            "application-key-mappings" => list(
                [("c-prod", "PRODUCTION"), ("c-sand", "SANDBOX")]
                    .into_iter()
                    .filter(|(client, _)| query(q, "consumerKey").is_none_or(|wanted| wanted == *client))
                    .map(|(client, kind)| {
                        json!({"applicationId": 11, "applicationUUID": "app-1", "consumerKey": client,
                            "keyType": kind, "keyManager": "Resident Key Manager"})
                    })
                    .collect(),
            ),
            "block" => json!({"api": [], "application": [], "user": [], "ip": [], "custom": [], "subscription": []})
                .to_string(),
            "subscription-policies" => {
                policies(include_str!("../../../tests/cp/fixtures/subscription-policies.json"), query(q, "policyName"))
            }
            "application-policies" => {
                policies(include_str!("../../../tests/cp/fixtures/application-policies.json"), query(q, "policyName"))
            }
            "api-policies" => {
                policies(include_str!("../../../tests/cp/fixtures/api-policies.json"), query(q, "policyName"))
            }
            _ => "[]".into(),
        }
    }

    fn config(&self) -> String {
        let mut control_plane = json!({"cluster": "cp", "username": "gw", "password": "secret", "refresh_s": 5,
            "endpoint_template": {"production": "{name}-prod", "sandbox": "{name}-sand"}});
        if let Some(named) = self.named {
            control_plane["endpoints"] = json!({ named: {"production": "bundle-prod", "sandbox": "bundle-sand"} });
        }
        json!({"key_managers": [{"name": "Resident Key Manager", "issuer": "https://km", "algorithms": ["HS256"],
                "hmac_secret": SECRET}],
            "control_plane": control_plane})
        .to_string()
    }
}

#[derive(Clone, Debug)]
struct Request {
    method: &'static str,
    path: &'static str,
    /// client id and the token's scopes; `None`: no credential.
    token: Option<(&'static str, &'static [&'static str])>,
}

fn random_request(rng: &mut Rng) -> Request {
    let path = *rng.pick(&PATHS);
    let method = if path.ends_with("/orders") && !rng.chance(4) { "POST" } else { "GET" };
    let token = match rng.below(6) {
        0 => None,
        1 => Some(("ghost", &[][..])),
        2 | 3 => Some(("c-prod", *rng.pick(&[&[][..], &["read"][..]]))),
        _ => Some(("c-sand", *rng.pick(&[&[][..], &["read"][..]]))),
    };
    Request { method, path, token }
}

/// API-M's answer: the cluster forwarded to, or (code, status). `differs`: the row is the
/// filter's documented difference (a product `endpoint_template` alone names: not served).
fn wso2(model: &Model, request: &Request) -> (Result<String, (u32, u16)>, bool) {
    // Routing (CTX): the product at `/bundle/1.0.0` (versioned) or `/bundle` (4.0-4.2).
    let product_base = if model.versioned_context { "/bundle/1.0.0" } else { "/bundle" };
    let routed = [("Menu", "/menu/1.0.0"), ("Lease", "/lease/1.0.0"), ("Bundle", product_base)]
        .into_iter()
        .find_map(|(api, base)| Some((api, request.path.strip_prefix(base)?.strip_prefix('/')?)));
    let Some((api, rest)) = routed else { return (Err((404, 404)), false) };
    if api == "Bundle" && model.named.is_none() {
        // The filter's documented difference: not served, its requests an unknown API's.
        return (Err((404, 404)), true);
    }
    if api == "Bundle" && model.product_blocked {
        return (Err((700700, 503)), false);
    }
    // Resources (AKV): the product's are its own URL mappings.
    let resources: &[(&str, &str)] = match api {
        "Menu" => &[("GET", "items"), ("POST", "orders")],
        "Lease" => &[("GET", "plans")],
        _ => &[("GET", "items"), ("GET", "plans")],
    };
    if !resources.contains(&(request.method, rest)) {
        return (Err((900906, 403)), false);
    }
    let Some((client, scopes)) = request.token else { return (Err((900902, 401)), false) };
    if client == "ghost" {
        return (Err((900908, 403)), false);
    }
    let sandbox = client == "c-sand";
    // The subscription of the API the request's context names (AKVH).
    let state = match api {
        "Menu" => model.menu_sub,
        "Lease" => model.lease_sub,
        _ => model.product_sub,
    };
    match state {
        None => return (Err((900908, 403)), false),
        Some("BLOCKED") => return (Err((900907, 401)), false),
        Some("PROD_ONLY_BLOCKED") if !sandbox => return (Err((900907, 401)), false),
        Some("ON_HOLD" | "REJECTED") => return (Err((900909, 401)), false),
        Some(_) => {}
    }
    if rest == "items" && !model.item_scopes.is_empty() && !model.item_scopes.iter().any(|s| scopes.contains(s)) {
        return (Err((900910, 403)), false);
    }
    let cluster = match api {
        "Bundle" => "bundle".to_string(),
        other => other.to_string(),
    };
    let kind = if sandbox { "sand" } else { "prod" };
    (Ok(format!("{cluster}-{kind}")), false)
}

fn token(client: &str, scopes: &[&str]) -> String {
    let mut claims =
        json!({"iss": "https://km", "exp": NOW + 3600, "client_id": client, "sub": "user1", "aut": "APPLICATION"});
    if !scopes.is_empty() {
        claims["scope"] = json!(scopes.join(" "));
    }
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key).unwrap()
}

/// A gateway with `model` loaded by the background's real full load.
fn loaded(model: &Model, tiers: Tiers, shared: &mut HashMap<String, (Vec<u8>, u32)>) -> Gateway {
    let gateway = Gateway::configure(shared, &model.config());
    let mut host = FakeHost { shared: std::mem::take(shared), now: NOW, ..Default::default() };
    let asked = tick_answering(&mut host, &gateway.config, &gateway.worker, |_, path| Answer::Http {
        status: 200,
        body: model.answer(tiers, path).into_bytes(),
    });
    assert!(asked.iter().any(|path| path.contains("/apis")), "no full load: {asked:?}");
    *shared = std::mem::take(&mut host.shared);
    gateway
}

fn send(
    gateway: &Gateway,
    shared: &mut HashMap<String, (Vec<u8>, u32)>,
    model: &Model,
    tiers: Tiers,
    request: &Request,
) -> Result<String, (u32, u16)> {
    let mut host = FakeHost::request(&[(":method", request.method), (":path", request.path)]);
    host.now = NOW;
    host.shared = std::mem::take(shared);
    if let Some((client, scopes)) = request.token {
        host.request.insert("authorization".into(), format!("Bearer {}", token(client, scopes)).into_bytes());
    }
    through_the_gateway(gateway, shared, host, |path| model.answer(tiers, path))
}

#[test]
fn api_products_answer_as_api_m_answers() {
    let seed = std::env::var("PRODUCT_AUDIT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x0a9d_0c75_u64);
    let mut tally: HashMap<String, usize> = HashMap::new();
    let mut failures = Vec::new();
    crate::host::fuzz::each_case("product-audit", 60, seed, |rng, case| {
        let model = random_model(rng);
        let mut shared = HashMap::new();
        let gateway = loaded(&model, UNLIMITED, &mut shared);
        for _ in 0..REQUESTS {
            let request = random_request(rng);
            let (expected, differs) = wso2(&model, &request);
            let got = send(&gateway, &mut shared, &model, UNLIMITED, &request);
            let api = if request.path.starts_with("/bundle") { "product" } else { "api" };
            let class = match (&expected, differs) {
                (_, true) => "product not served (documented)".to_string(),
                (Ok(_), _) => format!("{api} forwarded"),
                (Err((code, _)), _) => format!("{api} {code}"),
            };
            *tally.entry(class).or_default() += 1;
            if got != expected {
                failures.push(format!("case {case}: {request:?} got {got:?}, API-M {expected:?}\n{model:?}"));
            }
        }
    });
    println!("product-audit classes: {tally:?}");
    assert!(
        failures.is_empty(),
        "seed {seed} (PRODUCT_AUDIT_SEED): {} failures, first: {:?}",
        failures.len(),
        failures.first()
    );
    for class in [
        "product forwarded",
        "product 900906",
        "product 700700",
        "product 404",
        "product 900902",
        "product 900907",
        "product 900908",
        "product 900909",
        "product 900910",
        "product not served (documented)",
        "api forwarded",
        "api 900908",
        "api 404",
    ] {
        assert!(tally.get(class).is_some_and(|count| *count > 0), "{class} never decided: {tally:?}");
    }
}

/// The product's tiers (TH): its API tier counts its requests apart from its members', its
/// resource tiers only without an API tier, its subscription tier per application and product.
/// Each row: the tiers, and the number of product requests API-M lets through before the one it
/// refuses with `code`; a member API's request after it still passes (its counters are its own).
#[test]
fn a_products_tiers_count_its_own_requests() {
    let rows: [(Tiers, usize, u32); 3] = [
        // API tier ThreePerMin: the fourth request 900800.
        (Tiers { api: Some("ThreePerMin"), items: "Unlimited", subscription: "Gold" }, 3, 900800),
        // A resource tier without an API tier: 900802.
        (Tiers { api: None, items: "ThreePerMin", subscription: "Gold" }, 3, 900802),
        // The product subscription's tier TwoPerHour: the third request 900804.
        (Tiers { api: None, items: "Unlimited", subscription: "TwoPerHour" }, 2, 900804),
    ];
    for versioned_context in [false, true] {
        for (tiers, passes, code) in rows {
            let model = Model {
                versioned_context,
                named: Some("Bundle:1.0.0"),
                item_scopes: &[],
                product_sub: Some("UNBLOCKED"),
                menu_sub: Some("UNBLOCKED"),
                lease_sub: Some("UNBLOCKED"),
                product_blocked: false,
                late_product_sub: false,
            };
            let mut shared = HashMap::new();
            let gateway = loaded(&model, tiers, &mut shared);
            let path = if versioned_context { "/bundle/1.0.0/items" } else { "/bundle/items" };
            let product = Request { method: "GET", path, token: Some(("c-prod", &[])) };
            for sent in 0..passes {
                let got = send(&gateway, &mut shared, &model, tiers, &product);
                assert_eq!(got, Ok("bundle-prod".to_string()), "{tiers:?} {path}: request {sent}");
            }
            let got = send(&gateway, &mut shared, &model, tiers, &product);
            assert_eq!(got.err().map(|(code, _)| code), Some(code), "{tiers:?} {path}");
            let member = Request { method: "GET", path: "/menu/1.0.0/items", token: Some(("c-prod", &[])) };
            assert_eq!(send(&gateway, &mut shared, &model, tiers, &member), Ok("Menu-prod".to_string()), "{tiers:?}");
        }
    }
}
