//! The live campaign's gateway model (what each resource's last good load and the lookups left
//! the gateway knowing), its decisions, the loads and requests driven through the filter, and the
//! test.

use super::*;

/// How API-M answers one resource of a load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Ok,
    Status500,
    Truncated,
    Oversize,
    Timeout,
    /// Another document's shape: a `/block` object for a list, a list envelope for `/block`.
    WrongShape,
    /// `count` disagreeing with the list (taken: the documents say nothing of `count`).
    CountOff,
    /// `pagination` present (taken: WSO2's internal API answers whole lists).
    Paginated,
}

impl Mode {
    fn taken(self) -> bool {
        matches!(self, Mode::Ok | Mode::CountOff | Mode::Paginated)
    }
}

/// What the gateway should know: each resource's last good answer (as the API-M it came from)
/// and what lookups found since (`until`: a "not found" counts until then).
#[derive(Default)]
struct Known {
    snap: Vec<Option<Apim>>,
    /// Each resource's last answer taken, as sent: an answer the same as it leaves what lookups
    /// remembered as not found (the filter does not rewrite an unchanged answer).
    bodies: Vec<Option<Vec<u8>>>,
    keys: HashMap<&'static str, (Option<Key>, u64)>,
    apps: HashMap<String, (Option<App>, u64)>,
    subs: HashMap<(String, String), (Option<Sub>, u64)>,
    /// Subscription counters by (application, API context, tier), as WSO2's ThrottleHandler keys
    /// them (`appId:context:version:subTier`): a subscription moved to another tier counts afresh.
    counters: HashMap<(String, usize, &'static str), u64>,
}

fn remembered<K: std::hash::Hash + Eq, T: Clone>(
    map: &mut HashMap<K, (Option<T>, u64)>,
    key: K,
    now: u64,
    live: impl FnOnce() -> Option<T>,
    looked_up: &mut bool,
) -> Option<T> {
    if let Some((found, until)) = map.get(&key) {
        if found.is_some() || now < *until {
            return found.clone();
        }
    }
    *looked_up = true;
    let found = live();
    let until = if found.is_some() { u64::MAX } else { now + NEGATIVE_TTL_S };
    map.insert(key, (found.clone(), until));
    found
}

#[derive(Clone, Debug)]
struct Request {
    slot: usize,
    method: &'static str,
    rest: &'static str,
    /// client, jti, scopes
    token: Option<(&'static str, &'static str, bool)>,
}

fn pattern_matches(pattern: &str, rest: &str) -> bool {
    match pattern {
        "/menu" => rest == "/menu",
        "/order/*" => rest.starts_with("/order/"),
        _ => rest.starts_with("/items/") && rest.matches('/').count() == 2,
    }
}

impl Known {
    fn of(&self, resource: usize) -> &Apim {
        static EMPTY: std::sync::OnceLock<Apim> = std::sync::OnceLock::new();
        self.snap[resource].as_ref().unwrap_or_else(|| EMPTY.get_or_init(Apim::default))
    }

    /// The model's decision; `looked_up` tells whether it needed a lookup.
    fn decide(&mut self, live: &Apim, request: &Request, now: u64, looked_up: &mut bool) -> Result<String, (u32, u16)> {
        let apis = &self.of(0).apis;
        let Some(api) =
            apis.iter().find(|api| api.slot == request.slot && !matches!(api.status, "CREATED" | "RETIRED")).cloned()
        else {
            return Err((404, 404));
        };
        if api.status == "BLOCKED" {
            return Err((700700, 503));
        }
        let Some(&(_, _, secured, scopes)) = api
            .mappings
            .iter()
            .find(|(method, pattern, _, _)| *method == request.method && pattern_matches(pattern, request.rest))
        else {
            return Err((900906, 403));
        };
        let cluster = format!("{}-{}", SLOTS[api.slot].0.to_lowercase(), SLOTS[api.slot].1);
        let api_blocked = self.of(7).blocked_apis.contains(&api.slot);
        if !secured {
            return if api_blocked { Err((900805, 429)) } else { Ok(cluster) };
        }
        let Some((client, jti, read)) = request.token else { return Err((900902, 401)) };
        if self.of(8).revoked.contains(&jti) {
            return Err((900901, 401));
        }
        let listed = self.of(6).keys.iter().find(|key| key.client == client && key.km == KM).cloned();
        let key = match listed {
            Some(key) => Some(key),
            None => remembered(
                &mut self.keys,
                client,
                now,
                || live.keys.iter().find(|key| key.client == client && key.km == KM).cloned(),
                looked_up,
            ),
        };
        let Some(key) = key else { return Err((900908, 403)) };
        let listed = self.of(4).apps.iter().find(|app| app.uuid == key.app).cloned();
        let app = match listed {
            Some(app) => Some(app),
            None => remembered(
                &mut self.apps,
                key.app.clone(),
                now,
                || live.apps.iter().find(|app| app.uuid == key.app).cloned(),
                looked_up,
            ),
        };
        let Some(app) = app else { return Err((900908, 403)) };
        let listed = self.of(5).subs.iter().find(|sub| sub.app == app.uuid && sub.api == api.uuid).cloned();
        let sub = match listed {
            Some(sub) => Some(sub),
            None => remembered(
                &mut self.subs,
                (app.uuid.clone(), api.uuid.clone()),
                now,
                || live.subs.iter().find(|sub| sub.app == app.uuid && sub.api == api.uuid).cloned(),
                looked_up,
            ),
        };
        let Some(sub) = sub else { return Err((900908, 403)) };
        match sub.state {
            "BLOCKED" | "PROD_ONLY_BLOCKED" => return Err((900907, 401)),
            "ON_HOLD" => return Err((900909, 401)),
            _ => {}
        }
        if !scopes.is_empty() && !read {
            return Err((900910, 403));
        }
        if api_blocked || self.of(7).blocked_apps.contains(&app.name) {
            return Err((900805, 429));
        }
        let limit = self.of(1).limits[TIERS.iter().position(|tier| *tier == sub.tier).unwrap_or(0)];
        let count = self.counters.entry((app.uuid.clone(), api.slot, sub.tier)).or_default();
        if *count >= limit {
            return Err((900804, 429));
        }
        *count += 1;
        Ok(cluster)
    }
}

fn config() -> String {
    let mut endpoints = serde_json::Map::new();
    for (name, version) in SLOTS {
        let cluster = format!("{}-{version}", name.to_lowercase());
        endpoints.insert(format!("{name}:{version}"), json!({"production": cluster}));
    }
    json!({"key_managers": [{"name": KM, "issuer": "https://km", "algorithms": ["HS256"], "hmac_secret": SECRET}],
        "control_plane": {"cluster": "cp", "username": "gw", "password": "secret", "refresh_s": 5,
            "negative_ttl_s": NEGATIVE_TTL_S, "endpoints": endpoints}})
    .to_string()
}

fn token(client: &str, jti: &str, read: bool) -> String {
    let mut claims = json!({"iss": "https://km", "exp": NOW + 86_400, "client_id": client, "sub": "user0",
        "aut": "APPLICATION", "jti": jti});
    if read {
        claims["scope"] = json!("read");
    }
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key).unwrap()
}

/// The filter's decision on `request`, answering its lookups from API-M as it is now.
fn filter(
    gateway: &Gateway,
    shared: &mut HashMap<String, (Vec<u8>, u32)>,
    live: &Apim,
    request: &Request,
    now: u64,
) -> Result<String, (u32, u16)> {
    let (name, version) = SLOTS[request.slot];
    let path = format!("/{}/{version}{}", name.to_lowercase(), request.rest);
    let mut host = FakeHost::request(&[(":method", request.method), (":path", &path)]);
    host.now = now;
    host.shared = std::mem::take(shared);
    if let Some((client, jti, read)) = request.token {
        host.request.insert("authorization".into(), format!("Bearer {}", token(client, jti, read)).into_bytes());
    }
    super::model_cp::through_the_gateway(gateway, shared, host, |path| live.answer(path))
}

/// `resource`'s answer under `mode`.
fn answer(apim: &Apim, path: &str, mode: Mode) -> Answer {
    let body = apim.answer(path);
    let resource = path.trim_start_matches("/internal/data/v1/").split('?').next().unwrap_or_default();
    let envelope = !matches!(resource, "block" | "revokedjwt");
    let http = |body: String| Answer::Http { status: 200, body: body.into_bytes() };
    match mode {
        Mode::Ok => http(body),
        Mode::Status500 => Answer::Http { status: 500, body: b"{\"error\":\"internal\"}".to_vec() },
        Mode::Truncated => http(body[..body.len() / 2].to_string()),
        Mode::Oversize => Answer::HttpStream { status: 200, size: MAX_DOCUMENT + 1 },
        Mode::Timeout => Answer::Failed { code: 4 },
        Mode::WrongShape if envelope => http(apim.answer("/internal/data/v1/block")),
        Mode::WrongShape => http(list(Vec::new())),
        Mode::CountOff | Mode::Paginated if !envelope => http(body),
        Mode::CountOff => {
            let mut value: Value = serde_json::from_str(&body).unwrap();
            value["count"] = json!(value["count"].as_u64().unwrap_or(0) + 3);
            http(value.to_string())
        }
        Mode::Paginated => {
            let mut value: Value = serde_json::from_str(&body).unwrap();
            let total = value["count"].clone();
            value["pagination"] = json!({"offset": 0, "limit": 1000, "total": total, "next": "", "previous": ""});
            http(value.to_string())
        }
    }
}

/// One full load through the root context's background path, each resource answered as `modes`
/// says; the model's knowledge updated the same way.
fn load(
    gateway: &Gateway,
    shared: &mut HashMap<String, (Vec<u8>, u32)>,
    apim: &Apim,
    modes: &[Mode; 9],
    known: &mut Known,
    now: u64,
) -> usize {
    let mut host = FakeHost { shared: std::mem::take(shared), now, ..Default::default() };
    let mut bodies = vec![None; RESOURCES.len()];
    let asked = super::gateways::tick_answering(&mut host, &gateway.config, &gateway.worker, |_, path| {
        let resource = path.trim_start_matches("/internal/data/v1/").split('?').next().unwrap_or_default().to_string();
        let index = RESOURCES.iter().position(|name| *name == resource).unwrap();
        let reply = answer(apim, path, modes[index]);
        if let Answer::Http { body, .. } = &reply {
            bodies[index] = Some(body.clone());
        }
        reply
    })
    .len();
    *shared = std::mem::take(&mut host.shared);
    for (index, mode) in modes.iter().enumerate() {
        if asked == RESOURCES.len() && mode.taken() {
            // A changed answer is written anew, and so is one after a lookup found something
            // (it forgets the answer's fingerprint): what lookups remembered of it goes. An
            // unchanged one keeps the "not found" answers until they expire.
            let changed = known.bodies[index] != bodies[index];
            match index {
                4 if changed || known.apps.values().any(|(found, _)| found.is_some()) => known.apps.clear(),
                5 if changed || known.subs.values().any(|(found, _)| found.is_some()) => known.subs.clear(),
                6 if changed || known.keys.values().any(|(found, _)| found.is_some()) => known.keys.clear(),
                _ => {}
            }
            known.snap[index] = Some(apim.clone());
            known.bodies[index] = bodies[index].take();
        }
    }
    asked
}

/// A random request; most of them for a resource the API-M of now has, so that decisions past
/// routing come often.
fn random_request(rng: &mut Rng, apim: &Apim) -> Request {
    let token = (!rng.chance(8)).then(|| (*rng.pick(&CLIENTS), *rng.pick(&JTIS), rng.chance(60)));
    let slot = rng.below(SLOTS.len());
    let mapping = apim.apis.iter().find(|api| api.slot == slot).and_then(|api| {
        let mapping = api.mappings.get(rng.below(api.mappings.len().max(1)))?;
        rng.chance(65).then_some(*mapping)
    });
    if let Some((method, pattern, _, _)) = mapping {
        let rest = match pattern {
            "/menu" => "/menu",
            "/order/*" => "/order/1",
            _ => "/items/7",
        };
        return Request { slot, method, rest, token };
    }
    Request {
        slot,
        method: ["GET", "POST"][rng.below(2)],
        rest: ["/menu", "/order/1", "/items/7", "/nope"][rng.below(4)],
        token,
    }
}

fn class(outcome: &Result<String, (u32, u16)>) -> String {
    match outcome {
        Ok(_) => "forwarded".into(),
        Err((code, _)) => code.to_string(),
    }
}

/// Runs one seed; the first disagreement, if any, as (class, detail).
fn campaign(seed: u64, tally: &mut BTreeMap<String, usize>) -> Option<(String, String)> {
    let mut rng = Rng(seed);
    let mut apim = changes::initial(&mut rng);
    let mut shared = HashMap::new();
    let gateway = Gateway::configure(&mut shared, &config());
    let mut known =
        Known { snap: vec![None; RESOURCES.len()], bodies: vec![None; RESOURCES.len()], ..Known::default() };
    let rounds = 10 + rng.below(21);
    let mut history = Vec::new();
    for round in 0..rounds {
        let now = NOW + 6 * round as u64;
        let mut modes = [Mode::Ok; 9];
        if round > 0 {
            for _ in 0..1 + rng.below(3) {
                let what = changes::change(&mut apim, &mut rng);
                *tally.entry(format!("change: {what}")).or_default() += 1;
                history.push(format!("round {round}: {what}"));
            }
            for mode in &mut modes {
                if rng.chance(15) {
                    *mode = *rng.pick(&[
                        Mode::Status500,
                        Mode::Truncated,
                        Mode::Oversize,
                        Mode::Timeout,
                        Mode::WrongShape,
                        Mode::CountOff,
                        Mode::Paginated,
                    ]);
                    *tally.entry(format!("answer: {mode:?}")).or_default() += 1;
                }
            }
            history.push(format!("round {round}: load {modes:?}"));
        }
        let asked = load(&gateway, &mut shared, &apim, &modes, &mut known, now);
        assert_eq!(asked, RESOURCES.len(), "seed {seed} round {round}: a load asks every resource");
        let stale = modes.iter().any(|mode| !mode.taken());
        for _ in 0..12 {
            let request = random_request(&mut rng, &apim);
            let mut looked_up = false;
            let expected = known.decide(&apim, &request, now, &mut looked_up);
            let got = filter(&gateway, &mut shared, &apim, &request, now);
            *tally.entry(class(&expected)).or_default() += 1;
            if looked_up {
                *tally.entry("needed a lookup".into()).or_default() += 1;
            }
            if stale {
                *tally.entry("after a failed load".into()).or_default() += 1;
            }
            if got != expected {
                let detail = format!(
                    "seed {seed} round {round}: {request:?}: expected {expected:?}, got {got:?}\n{}\nAPI-M now: {apim:#?}",
                    history.join("\n")
                );
                return Some((format!("expected {} got {}", class(&expected), class(&got)), detail));
            }
        }
    }
    None
}

#[test]
fn long_live_sequences_of_the_control_plane_agree_with_the_model() {
    let seeds: Vec<u64> = match std::env::var("CPL_SEED").ok().and_then(|seed| seed.parse().ok()) {
        Some(seed) => vec![seed],
        None => (0..24).map(|i| 0xC0FF_EE00 + i).collect(),
    };
    let mut tally = BTreeMap::new();
    let mut disagreements: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for seed in &seeds {
        if let Some((class, detail)) = campaign(*seed, &mut tally) {
            disagreements.entry(class).or_default().push(detail);
        }
    }
    println!("cp-live tally: {tally:#?}");
    for (class, details) in &disagreements {
        println!("DISAGREEMENT {class}: {} seed(s); first:\n{}", details.len(), details[0]);
    }
    assert!(disagreements.is_empty(), "disagreement classes: {:?}", disagreements.keys().collect::<Vec<_>>());
    for class in [
        "forwarded",
        "404",
        "700700",
        "900906",
        "900902",
        "900901",
        "900908",
        "900907",
        "900909",
        "900910",
        "900805",
        "900804",
        "needed a lookup",
        "after a failed load",
    ] {
        assert!(tally.get(class).is_some_and(|count| *count > 0), "{class} never decided: {tally:?}");
    }
}
