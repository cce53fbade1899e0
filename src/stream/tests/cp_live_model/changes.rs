//! The live campaign's changes on API-M's side between two loads: APIs retired, blocked,
//! deleted and redeployed (a new UUID, changed resources), applications, key mappings and
//! subscriptions added, removed or moved, tiers and limits changed, blocking conditions and
//! revoked tokens.

use super::*;

/// The directory at the start: two APIs, three applications, some keys and subscriptions.
pub(super) fn initial(rng: &mut Rng) -> Apim {
    let mut apim = Apim { limits: [4, 8], ..Apim::default() };
    for slot in 0..SLOTS.len() {
        let api = apim.new_api(slot, rng);
        apim.apis.push(api);
    }
    for _ in 0..3 {
        let app = apim.new_app();
        apim.apps.push(app);
    }
    for (i, client) in CLIENTS.iter().take(4).enumerate() {
        let app = apim.apps[i % 3].uuid.clone();
        apim.keys.push(Key { client, app, km: KM });
    }
    for app in apim.apps.clone() {
        for api in apim.apis.clone() {
            if rng.chance(70) {
                apim.subs.push(Sub {
                    app: app.uuid.clone(),
                    api: api.uuid,
                    state: "UNBLOCKED",
                    tier: TIERS[rng.below(TIERS.len())],
                });
            }
        }
    }
    apim
}

/// One random change; its name, for the tally.
pub(super) fn change(apim: &mut Apim, rng: &mut Rng) -> &'static str {
    // A deleted API is mostly redeployed soon (a new UUID): deletions do not pile up.
    let vacant = apim.apis.len() < SLOTS.len();
    match if vacant && rng.chance(50) { 2 } else { rng.below(16) } {
        0 => {
            let api = rng.below(apim.apis.len().max(1));
            let Some(api) = apim.apis.get_mut(api) else { return "none" };
            api.status = *rng.pick(&["PUBLISHED", "PUBLISHED", "BLOCKED", "RETIRED", "CREATED", "DEPRECATED"]);
            "api status"
        }
        1 => {
            // Deleted (its subscriptions with it, as API-M deletes them).
            if apim.apis.is_empty() {
                return "none";
            }
            let api = apim.apis.remove(rng.below(apim.apis.len()));
            apim.subs.retain(|sub| sub.api != api.uuid);
            "api deleted"
        }
        2 => {
            // Redeployed: a slot without an API gets a new one (a new UUID).
            let Some(slot) = (0..SLOTS.len()).find(|slot| !apim.apis.iter().any(|api| api.slot == *slot)) else {
                return "none";
            };
            let api = apim.new_api(slot, rng);
            for app in apim.apps.clone() {
                if rng.chance(60) {
                    apim.subs.push(Sub { app: app.uuid, api: api.uuid.clone(), state: "UNBLOCKED", tier: "Gold" });
                }
            }
            apim.apis.push(api);
            "api redeployed"
        }
        3 => {
            let api = rng.below(apim.apis.len().max(1));
            let Some(api) = apim.apis.get_mut(api) else { return "none" };
            api.mappings = random_mappings(rng);
            "api resources changed"
        }
        4 => {
            let app = apim.new_app();
            if rng.chance(60) {
                if let Some(client) = CLIENTS.iter().find(|client| !apim.keys.iter().any(|key| key.client == **client))
                {
                    apim.keys.push(Key { client, app: app.uuid.clone(), km: KM });
                }
            }
            if let Some(api) = apim.apis.first() {
                apim.subs.push(Sub {
                    app: app.uuid.clone(),
                    api: api.uuid.clone(),
                    state: "UNBLOCKED",
                    tier: "Silver",
                });
            }
            apim.apps.push(app);
            "app added"
        }
        5 => {
            if apim.apps.is_empty() {
                return "none";
            }
            let app = apim.apps.remove(rng.below(apim.apps.len()));
            apim.keys.retain(|key| key.app != app.uuid);
            apim.subs.retain(|sub| sub.app != app.uuid);
            "app deleted"
        }
        6 => {
            let Some(client) = CLIENTS.iter().find(|client| !apim.keys.iter().any(|key| key.client == **client)) else {
                return "none";
            };
            let Some(app) = apim.apps.get(rng.below(apim.apps.len().max(1))) else { return "none" };
            apim.keys.push(Key { client, app: app.uuid.clone(), km: KM });
            "key added"
        }
        7 => {
            if apim.keys.is_empty() {
                return "none";
            }
            apim.keys.remove(rng.below(apim.keys.len()));
            "key removed"
        }
        8 => {
            let Some(app) = apim.apps.get(rng.below(apim.apps.len().max(1))).map(|app| app.uuid.clone()) else {
                return "none";
            };
            let key = rng.below(apim.keys.len().max(1));
            let Some(key) = apim.keys.get_mut(key) else { return "none" };
            if rng.chance(30) {
                key.km = if key.km == KM { "Other KM" } else { KM };
                return "key moved to another key manager";
            }
            key.app = app;
            "key moved to another app"
        }
        9 => {
            let app = apim.apps.get(rng.below(apim.apps.len().max(1))).map(|app| app.uuid.clone());
            let api = apim.apis.get(rng.below(apim.apis.len().max(1))).map(|api| api.uuid.clone());
            let (Some(app), Some(api)) = (app, api) else { return "none" };
            if apim.subs.iter().any(|sub| sub.app == app && sub.api == api) {
                return "none";
            }
            apim.subs.push(Sub { app, api, state: "UNBLOCKED", tier: TIERS[rng.below(TIERS.len())] });
            "sub created"
        }
        10 => {
            let sub = rng.below(apim.subs.len().max(1));
            let Some(sub) = apim.subs.get_mut(sub) else { return "none" };
            sub.state = *rng.pick(&STATES);
            "sub state"
        }
        11 => {
            let sub = rng.below(apim.subs.len().max(1));
            let Some(sub) = apim.subs.get_mut(sub) else { return "none" };
            sub.tier = if sub.tier == "Gold" { "Silver" } else { "Gold" };
            "sub tier"
        }
        12 => {
            // A limit changed mid-window (lowered more often than raised).
            let tier = rng.below(2);
            apim.limits[tier] = 1 + rng.below(6) as u64;
            "policy limit"
        }
        13 => {
            let slot = rng.below(SLOTS.len());
            if let Some(at) = apim.blocked_apis.iter().position(|blocked| *blocked == slot) {
                apim.blocked_apis.remove(at);
            } else {
                apim.blocked_apis.push(slot);
            }
            "api blocking"
        }
        14 => {
            let Some(name) = apim.apps.get(rng.below(apim.apps.len().max(1))).map(|app| app.name.clone()) else {
                return "none";
            };
            if let Some(at) = apim.blocked_apps.iter().position(|blocked| *blocked == name) {
                apim.blocked_apps.remove(at);
            } else {
                apim.blocked_apps.push(name);
            }
            "app blocking"
        }
        _ if !apim.revoked.is_empty() && rng.chance(50) => {
            // A revoked token's entry leaves the list once the token has expired.
            apim.revoked.remove(rng.below(apim.revoked.len()));
            "revocation expired"
        }
        _ => {
            let jti = *rng.pick(&JTIS);
            if !apim.revoked.contains(&jti) {
                apim.revoked.push(jti);
            }
            "token revoked"
        }
    }
}
