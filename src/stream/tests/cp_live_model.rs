//! A seeded, model-based campaign over long live sequences of the control plane: API-M's
//! directory changes between 10-30 full loads driven through the root context's background path
//! (`background::tick` / `answered`), some loads failing per resource (HTTP 500, a truncated or
//! oversize body, a timeout, another document's shape) or answering WSO2's quirks (`count`
//! disagreeing with the list, `pagination` present), and random requests in between, including
//! callers known only through on-demand lookups. An independent model written from README.md,
//! docs/HOWTO.md ("Connect to WSO2 API Manager": each resource keeps its last good data, lookups
//! remembered, "not found" for `negative_ttl_s`) and WSO2-CONTROL-PLANE.md predicts each outcome,
//! subscription-tier counting included. `CPL_SEED=<n>` runs one seed.

use super::claims_model::Rng;
use super::gateways::{Gateway, NOW};
use super::*;
use crate::directory::control_plane::refresh::MAX_DOCUMENT;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const SECRET: &str = "cp-live-campaign-hmac-secret-0123456789";
const KM: &str = "Resident Key Manager";
const SLOTS: [(&str, &str); 2] = [("Alpha", "1.0.0"), ("Beta", "1.0.0")];
const PATTERNS: [&str; 3] = ["/menu", "/order/*", "/items/{id}"];
const CLIENTS: [&str; 7] = ["c0", "c1", "c2", "c3", "c4", "c5", "c6"];
const JTIS: [&str; 4] = ["j0", "j1", "j2", "j3"];
const STATES: [&str; 5] = ["UNBLOCKED", "BLOCKED", "ON_HOLD", "TIER_UPDATE_PENDING", "PROD_ONLY_BLOCKED"];
const TIERS: [&str; 2] = ["Gold", "Silver"];
/// The resources of a full load, in the filter's documented order (`refresh::Fetch`).
const RESOURCES: [&str; 9] = [
    "apis",
    "subscription-policies",
    "application-policies",
    "api-policies",
    "applications",
    "subscriptions",
    "application-key-mappings",
    "block",
    "revokedjwt",
];
const NEGATIVE_TTL_S: u64 = 30;

#[derive(Clone, Debug)]
struct Api {
    slot: usize,
    uuid: String,
    status: &'static str,
    /// (method, pattern, secured, scopes)
    mappings: Vec<(&'static str, &'static str, bool, &'static [&'static str])>,
}

#[derive(Clone, Debug)]
struct App {
    uuid: String,
    id: u64,
    name: String,
}

#[derive(Clone, Debug)]
struct Key {
    client: &'static str,
    app: String,
    km: &'static str,
}

#[derive(Clone, Debug)]
struct Sub {
    app: String,
    api: String,
    state: &'static str,
    tier: &'static str,
}

/// What API-M holds.
#[derive(Clone, Debug, Default)]
struct Apim {
    apis: Vec<Api>,
    apps: Vec<App>,
    keys: Vec<Key>,
    subs: Vec<Sub>,
    /// Requests per day of Gold and Silver.
    limits: [u64; 2],
    blocked_apis: Vec<usize>,
    blocked_apps: Vec<String>,
    revoked: Vec<&'static str>,
    next_id: u64,
}

fn list(items: Vec<Value>) -> String {
    json!({"count": items.len(), "list": items, "pagination": null}).to_string()
}

fn query<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

fn random_mappings(rng: &mut Rng) -> Vec<(&'static str, &'static str, bool, &'static [&'static str])> {
    let mut out = Vec::new();
    for pattern in PATTERNS {
        if rng.chance(75) {
            let scopes: &'static [&'static str] = if rng.chance(25) { &["read"] } else { &[] };
            out.push((*rng.pick(&["GET", "POST"]), pattern, !rng.chance(15), scopes));
        }
    }
    out
}

impl Apim {
    fn new_app(&mut self) -> App {
        self.next_id += 1;
        App { uuid: format!("app-{}", self.next_id), id: self.next_id, name: format!("App{}", self.next_id) }
    }

    fn new_api(&mut self, slot: usize, rng: &mut Rng) -> Api {
        self.next_id += 1;
        Api { slot, uuid: format!("api-{}", self.next_id), status: "PUBLISHED", mappings: random_mappings(rng) }
    }

    fn context(slot: usize) -> String {
        format!("/{}/{}", SLOTS[slot].0.to_lowercase(), SLOTS[slot].1)
    }

    fn api_json(api: &Api) -> Value {
        let (name, version) = SLOTS[api.slot];
        let mappings: Vec<Value> = api
            .mappings
            .iter()
            .map(|(method, pattern, secured, scopes)| {
                json!({"authScheme": if *secured { "Any" } else { "None" }, "throttlingPolicy": "Unlimited",
                    "httpMethod": method, "urlPattern": pattern, "scopes": scopes})
            })
            .collect();
        json!({"uuid": api.uuid, "apiId": 1, "provider": "admin", "name": name, "version": version,
            "context": Apim::context(api.slot), "policy": null, "apiType": "HTTP", "status": api.status,
            "organization": "carbon.super", "isDefaultVersion": false, "urlMappings": mappings})
    }

    fn app_json(app: &App) -> Value {
        json!({"uuid": app.uuid, "id": app.id, "name": app.name, "subName": "owner", "policy": "Unlimited",
            "tokenType": "JWT", "groupIds": [], "attributes": {}, "organization": "carbon.super"})
    }

    fn policy_json(&self, name: &str, limit: u64) -> Value {
        json!({"id": 2, "tenantId": -1234, "tenantDomain": "carbon.super", "name": name, "quotaType": "requestCount",
            "graphQLMaxComplexity": 0, "graphQLMaxDepth": 0, "rateLimitCount": 0, "rateLimitTimeUnit": null,
            "stopOnQuotaReach": true, "defaultLimit": {"quotaType": "requestCount",
            "requestCount": {"timeUnit": "days", "unitTime": 1, "requestCount": limit}}})
    }

    /// API-M's answer to `path` (full loads and lookups alike).
    fn answer(&self, path: &str) -> String {
        let resource = path.trim_start_matches("/internal/data/v1/");
        let (resource, q) = resource.split_once('?').unwrap_or((resource, ""));
        match resource {
            "apis" => list(self.apis.iter().map(Apim::api_json).collect()),
            "applications" => list(
                self.apps
                    .iter()
                    .filter(|app| query(q, "appId").is_none_or(|id| id == app.id.to_string() || id == app.uuid))
                    .map(Apim::app_json)
                    .collect(),
            ),
            "subscriptions" => list(
                self.subs
                    .iter()
                    .filter(|sub| {
                        query(q, "apiUUID").is_none_or(|id| id == sub.api)
                            && query(q, "applicationUUID").is_none_or(|id| id == sub.app)
                    })
                    .map(|sub| {
                        let app = self.apps.iter().find(|app| app.uuid == sub.app).map_or(0, |app| app.id);
                        json!({"subscriptionUUID": format!("s-{}-{}", sub.app, sub.api), "subscriptionId": 1,
                            "policyId": sub.tier, "apiUUID": sub.api, "apiId": 1, "applicationUUID": sub.app,
                            "appId": app, "subscriptionState": sub.state})
                    })
                    .collect(),
            ),
            "application-key-mappings" => list(
                self.keys
                    .iter()
                    .filter(|key| {
                        query(q, "consumerKey").is_none_or(|client| client == key.client)
                            && query(q, "keymanager").is_none_or(|km| km.replace("%20", " ") == key.km)
                    })
                    .map(|key| {
                        let id = self.apps.iter().find(|app| app.uuid == key.app).map_or(0, |app| app.id);
                        json!({"applicationId": id, "applicationUUID": key.app, "consumerKey": key.client,
                            "keyType": "PRODUCTION", "keyManager": key.km})
                    })
                    .collect(),
            ),
            "subscription-policies" => list(
                TIERS
                    .iter()
                    .zip(self.limits)
                    .filter(|(name, _)| query(q, "policyName").is_none_or(|wanted| wanted == **name))
                    .map(|(name, limit)| self.policy_json(name, limit))
                    .collect(),
            ),
            "application-policies" | "api-policies" => list(
                ["Unlimited"]
                    .iter()
                    .filter(|name| query(q, "policyName").is_none_or(|wanted| wanted == **name))
                    .map(|name| self.policy_json(name, 2_147_483_647))
                    .collect(),
            ),
            "block" => json!({"api": self.blocked_apis.iter().map(|slot| Apim::context(*slot)).collect::<Vec<_>>(),
                "application": self.blocked_apps.iter().map(|name| format!("owner:{name}")).collect::<Vec<_>>(),
                "user": [], "ip": [], "custom": [], "subscription": []})
            .to_string(),
            "revokedjwt" => Value::Array(
                self.revoked.iter().map(|jti| json!({"jwt_signature": jti, "expiry_time": NOW + 86_400})).collect(),
            )
            .to_string(),
            _ => "[]".into(),
        }
    }
}

#[path = "cp_live_model/changes.rs"]
mod changes;
#[path = "cp_live_model/run.rs"]
mod run;
