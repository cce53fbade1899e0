//! A seeded, model-based campaign over node-local throttling across 2 to 6 workers of one Envoy:
//! separate workers (and streams) over one shared-data store with compare-and-swap, random
//! policies at every level (API or resource, subscription with burst, application, custom, hard
//! limit, bandwidth), random interleavings, a clock at and across window edges, workers
//! reconfigured mid-window (a new generation, another limit), idle workers holding blocks, and
//! compare-and-swap conflicts injected (another worker's request runs between a read and a
//! write). The model is written from README.md ("Worker blocks"), docs/CONFIG.md
//! (`worker_lease_share_percent`: "Never more than the limit is admitted; fewer only by the tokens
//! a worker still holds ... (at most one block per worker and counter)") and WSO2-CONTRACT.md's
//! codes; it never calls the filter's throttle functions. Seed: `WM_SEED`.

use super::claims_model::Rng;
use super::*;
use std::collections::{BTreeMap, BTreeSet};

const START: u64 = 1_800_000_000;
const UNITS: [(&str, u64); 2] = [("second", 1), ("minute", 60)];

/// The one shared-data store of the Envoy, with what a test makes it do.
#[derive(Default)]
struct Store {
    data: HashMap<String, (Vec<u8>, u32)>,
    /// Hostile: writes to counter slots fail; reads of counter slots answer these bytes.
    refuse_writes: bool,
    garbage: Option<Vec<u8>>,
    /// Conflicts injected (another request ran between a read and a write).
    conflicts: usize,
}

/// Another worker's request, run between a read and a write of the request under way.
type Interloper = Box<dyn FnMut()>;

/// One worker's host: its own request and replies, the Envoy's one store.
struct WorkerHost {
    inner: FakeHost,
    store: Rc<RefCell<Store>>,
    interloper: Option<Interloper>,
}

impl SharedStore for WorkerHost {
    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        let store = self.store.borrow();
        match &store.garbage {
            Some(bytes) if key.starts_with("apim.rl.") && !key.contains("layout") && !key.contains("seed") => {
                Ok(Some((bytes.clone(), store.data.get(key).map_or(1, |(_, cas)| *cas))))
            }
            _ => Ok(store.data.get(key).cloned()),
        }
    }
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        if key.starts_with("apim.rl.") && self.store.borrow().refuse_writes {
            return Err(HostError(2));
        }
        let current = self.store.borrow().data.get(key).map(|(_, cas)| *cas);
        if key.starts_with("apim.rl.") && cas.is_some() && cas == current {
            if let Some(mut other) = self.interloper.take() {
                // Another worker writes between this read and this write: its whole request runs
                // now; if it wrote nothing here, it rewrote the slot as it read it.
                other();
                let mut store = self.store.borrow_mut();
                store.conflicts += 1;
                if let Some((_, version)) = store.data.get_mut(key).filter(|(_, v)| Some(*v) == current) {
                    *version += 1;
                }
            }
        }
        let mut store = self.store.borrow_mut();
        let current = store.data.get(key).map(|(_, cas)| *cas);
        if cas.is_some() && current.is_some() && cas != current {
            return Err(HostError::CAS_MISMATCH);
        }
        store.data.insert(key.to_string(), (value.to_vec(), current.unwrap_or(0) + 1));
        Ok(())
    }
}

impl Host for WorkerHost {
    fn request_headers(&self) -> Vec<crate::host::Header> {
        self.inner.request_headers()
    }
    fn set_request_header(&mut self, name: &str, value: Option<&[u8]>) {
        self.inner.set_request_header(name, value)
    }
    fn request_trailer_names(&self) -> Vec<String> {
        self.inner.request_trailer_names()
    }
    fn remove_request_trailer(&mut self, name: &str) {
        self.inner.remove_request_trailer(name)
    }
    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        self.inner.response_header(name)
    }
    fn set_response_header(&mut self, name: &str, value: Option<&[u8]>) {
        self.inner.set_response_header(name, value)
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.inner.property(path)
    }
    fn set_property(&mut self, name: &str, value: &[u8]) {
        self.inner.set_property(name, value)
    }
    fn send_response(&mut self, status: u16, headers: &[(String, String)], body: &[u8], grpc_status: Option<u8>) {
        self.inner.send_response(status, headers, body, grpc_status)
    }
    fn count(&mut self, name: &str) {
        self.inner.count(name)
    }
    fn now(&self) -> Result<u64, HostError> {
        self.inner.now()
    }
    fn call(&mut self, call: &Call) -> Result<u32, HostError> {
        self.inner.call(call)
    }
    fn resume_request(&mut self) {
        self.inner.resume_request()
    }
    fn body_chunk(&self, direction: crate::host::Direction, size: usize) -> Option<Vec<u8>> {
        self.inner.body_chunk(direction, size)
    }
    fn replace_body_chunk(&mut self, direction: crate::host::Direction, size: usize, bytes: &[u8]) {
        self.inner.replace_body_chunk(direction, size, bytes)
    }
    fn close_stream(&mut self) {
        self.inner.close_stream()
    }
}

/// A policy as generated: requests or bytes per window, a burst (requests, window).
#[derive(Clone, Debug)]
struct Pol {
    limit: u64,
    window: u64,
    unit: &'static str,
    unit_count: u64,
    bytes: bool,
    burst: Option<(u64, u64, &'static str)>,
}

fn gen_pol(rng: &mut Rng, level: &str) -> Pol {
    let (unit, unit_s) = *rng.pick(&UNITS);
    let unit_count = if unit_s == 1 { 2 + rng.below(20) as u64 } else { 1 };
    let bytes = matches!(level, "sub" | "app") && rng.chance(12);
    let limit = match (bytes, rng.below(3)) {
        (true, _) => 100 + rng.below(400) as u64,
        (false, 0) => 1 + rng.below(12) as u64,
        (false, _) => 15 + rng.below(120) as u64,
    };
    let mut pol = Pol { limit, window: unit_s * unit_count, unit, unit_count, bytes, burst: None };
    if level == "sub" && !bytes && limit > 2 && rng.chance(40) {
        let (bunit, bunit_s) = *rng.pick(&UNITS);
        pol.burst = Some((1 + rng.below(limit as usize - 1) as u64, bunit_s, bunit));
    }
    pol
}

fn pol_json(name: &str, pol: &Pol, limit: u64) -> String {
    let what = if pol.bytes { "bytes" } else { "requests" };
    let mut text = format!(
        r#""{name}":{{"{what}":{limit},"per":"{}","unit_count":{},"stop_on_quota_reach":true"#,
        pol.unit, pol.unit_count
    );
    if let Some((requests, _, unit)) = pol.burst {
        text.push_str(&format!(r#","burst":{{"requests":{requests},"per":"{unit}"}}"#));
    }
    text.push('}');
    text
}

/// An API as generated: its policy, its two resources' (indices of `World::pols`), its hard
/// limit (requests per second).
type ApiGen = (Option<usize>, [Option<usize>; 2], Option<u64>);

/// The generated world: policies by name (the model's), what each level uses, the knobs.
struct World {
    /// Policies, by name, in the order of `limits` of a generation.
    pols: Vec<(String, Pol)>,
    /// Per API: its policy, or its two resources' (indices of `pols`), its hard limit (rps).
    apis: Vec<ApiGen>,
    /// Per application: its policy.
    apps: Vec<Option<usize>>,
    subs: BTreeMap<(usize, usize), Option<usize>>,
    /// Custom policies: template, limit, window.
    customs: Vec<(&'static str, u64, u64)>,
    share: u64,
    max: u64,
    retries: u32,
    slots: u32,
}

impl World {
    fn json(&self, limits: &[u64]) -> String {
        let policies: Vec<String> =
            self.pols.iter().zip(limits).map(|((name, pol), limit)| pol_json(name, pol, *limit)).collect();
        let mut apis = Vec::new();
        let mut hard = Vec::new();
        for (a, (api_pol, res, rps)) in self.apis.iter().enumerate() {
            let resources: Vec<String> = res
                .iter()
                .enumerate()
                .map(|(r, p)| {
                    let policy = p.map(|p| format!(r#","policy":"{}""#, self.pols[p].0)).unwrap_or_default();
                    format!(r#"{{"method":"GET","path":"/r{r}"{policy}}}"#)
                })
                .collect();
            let policy = api_pol.map(|p| format!(r#""policy":"{}","#, self.pols[p].0)).unwrap_or_default();
            apis.push(format!(
                r#"{{"name":"N{a}","context":"/c{a}","version":"1","security":["api_key"],{policy}
                    "endpoints":{{"production":"prod"}},"resources":[{}]}}"#,
                resources.join(",")
            ));
            if let Some(rps) = rps {
                hard.push(format!(r#"{{"api":"N{a}:1","requests_per_second":{rps}}}"#));
            }
        }
        let apps: Vec<String> = self
            .apps
            .iter()
            .enumerate()
            .map(|(p, pol)| {
                let policy = pol.map(|i| format!(r#","policy":"{}""#, self.pols[i].0)).unwrap_or_default();
                format!(
                    r#"{{"id":"app{p}","name":"App{p}","owner":"o{p}"{policy},"api_keys":[{{"sha256":"{}","key_type":"PRODUCTION"}}]}}"#,
                    crate::hashing::hex(&credential_hash(&format!("key-{p}")))
                )
            })
            .collect();
        let subs: Vec<String> = self
            .subs
            .iter()
            .map(|((p, a), tier)| {
                let tier = tier.map_or("Unlimited".to_string(), |t| self.pols[t].0.clone());
                format!(r#"{{"application":"app{p}","api":"N{a}:1","tier":"{tier}"}}"#)
            })
            .collect();
        let customs: Vec<String> = self
            .customs
            .iter()
            .enumerate()
            .map(|(c, (template, limit, window))| {
                format!(
                    r#"{{"name":"C{c}","key":"{template}","requests":{limit},"per":"second","unit_count":{window}}}"#
                )
            })
            .collect();
        format!(
            r#"{{"throttling":{{"rate_limit_headers":true,"worker_lease_share_percent":{},"worker_lease_max":{},
                "cas_retries":{},"counter_slots":{}}},
              "apis":[{}],"applications":[{}],"subscriptions":[{}],"policies":{{{}}},"hard_limits":[{}],
              "custom_policies":[{}]}}"#,
            self.share,
            self.max,
            self.retries,
            self.slots,
            apis.join(","),
            apps.join(","),
            subs.join(","),
            policies.join(","),
            hard.join(","),
            customs.join(",")
        )
    }
}

fn world(rng: &mut Rng) -> World {
    let mut pols = Vec::new();
    let mut add = |rng: &mut Rng, name: String, level: &str| {
        pols.push((name, gen_pol(rng, level)));
        pols.len() - 1
    };
    let mut apis = Vec::new();
    for a in 0..1 + rng.below(2) {
        let api_pol = rng.chance(40).then(|| add(rng, format!("A{a}"), "api"));
        let res = [0, 1].map(|r| (api_pol.is_none() && rng.chance(60)).then(|| add(rng, format!("R{a}{r}"), "api")));
        let hard = rng.chance(20).then(|| 3 + rng.below(30) as u64);
        apis.push((api_pol, res, hard));
    }
    let mut apps = Vec::new();
    let mut subs = BTreeMap::new();
    for p in 0..1 + rng.below(3) {
        apps.push(rng.chance(40).then(|| add(rng, format!("P{p}"), "app")));
        for a in 0..apis.len() {
            if p == 0 || rng.chance(80) {
                subs.insert((p, a), rng.chance(80).then(|| add(rng, format!("S{p}{a}"), "sub")));
            }
        }
    }
    let customs = (0..rng.below(3))
        .map(|_| {
            let template = *rng.pick(&["$appId", "$apiContext", "$clientIp", "$appId:$clientIp"]);
            (template, 2 + rng.below(100) as u64, 2 + rng.below(30) as u64)
        })
        .collect();
    let share = *rng.pick(&[5, 10, 25, 50, 100]);
    let max = *rng.pick(&[0, 1, 2, 5, 20, 100, 1000]);
    let retries = if rng.chance(25) { 1 } else { 20 };
    let slots = *rng.pick(&[1, 2, 64]);
    World { pols, apis, apps, subs, customs, share, max, retries, slots }
}

/// A level a request is subject to: code, model key, limit, window, bytes.
#[derive(Clone, Debug)]
struct Lv {
    code: u32,
    key: String,
    limit: u64,
    window: u64,
    bytes: bool,
}

/// The levels of a request in WSO2's order (WSO2-CONTRACT.md), under a generation's limits.
fn plan(w: &World, limits: &[u64], app: usize, api: usize, res: usize, ip: u8) -> Vec<Lv> {
    let mut out = Vec::new();
    let push = |out: &mut Vec<Lv>, code, key: String, p: usize| {
        let pol = &w.pols[p].1;
        out.push(Lv { code, key, limit: limits[p], window: pol.window, bytes: pol.bytes });
    };
    let (api_pol, res_pols, hard) = &w.apis[api];
    if let Some(p) = api_pol {
        push(&mut out, 900800, format!("api{api}"), *p);
    } else if let Some(p) = res_pols[res] {
        push(&mut out, 900802, format!("res{api}.{res}"), p);
    }
    if let Some(Some(p)) = w.subs.get(&(app, api)) {
        push(&mut out, 900804, format!("sub{app}.{api}"), *p);
        if let Some((requests, window, _)) = w.pols[*p].1.burst {
            out.push(Lv { code: 900807, key: format!("burst{app}.{api}"), limit: requests, window, bytes: false });
        }
    }
    if let Some(p) = w.apps[app] {
        push(&mut out, 900803, format!("app{app}|o{app}"), p);
    }
    for (c, (template, limit, window)) in w.customs.iter().enumerate() {
        let key = template
            .replace("$appId", &format!("app{app}"))
            .replace("$apiContext", &format!("/c{api}"))
            .replace("$clientIp", &format!("10.0.0.{ip}"));
        out.push(Lv { code: 900806, key: format!("c{c}|{key}"), limit: *limit, window: *window, bytes: false });
    }
    if let Some(rps) = hard {
        out.push(Lv { code: 900801, key: format!("hard{api}"), limit: *rps, window: 1, bytes: false });
    }
    out
}

/// What the model knows of one counter's window.
#[derive(Default)]
struct Win {
    admitted: u64,
    /// Admitted per worker instance.
    own: BTreeMap<usize, u64>,
    /// Worker instances whose requests reached this level, with the largest block each can hold.
    reached: BTreeMap<usize, u64>,
    limits: BTreeSet<u64>,
}

#[derive(Default)]
struct Model {
    /// (key, window start) -> window.
    wins: HashMap<(String, u64), Win>,
    /// Bytes charged, (key, window start).
    bytes: HashMap<(String, u64), u64>,
}

/// The largest block a worker takes of a counter of `limit`: a share of what remains, at most
/// `max`; one token or less is counted in shared data (README.md "Worker blocks").
fn block_max(w: &World, limit: u64) -> u64 {
    let block = (limit * w.share / 100).min(w.max);
    if w.max > 1 && block > 1 {
        block
    } else {
        0
    }
}

/// One request to send: worker, application, API, resource, client address, body size.
#[derive(Clone, Copy, Debug)]
struct Req {
    worker: usize,
    app: usize,
    api: usize,
    res: usize,
    ip: u8,
    body: usize,
}

/// A worker: its instance (a new one at each reconfiguration), generation, configuration.
struct Slot {
    instance: usize,
    generation: usize,
    config: Rc<Config>,
    worker: Rc<RefCell<Worker>>,
}

struct Campaign {
    seed: u64,
    w: World,
    /// Limits of each generation, by policy index.
    generations: Vec<Vec<u64>>,
    workers: RefCell<Vec<Slot>>,
    store: Rc<RefCell<Store>>,
    model: RefCell<Model>,
    now: std::cell::Cell<u64>,
    hostile: bool,
    seen: RefCell<BTreeMap<String, usize>>,
    found: RefCell<Vec<(String, String)>>,
    /// Worker instances made so far.
    instances: std::cell::Cell<usize>,
}

fn header(headers: &[(String, String)], name: &str) -> Option<u64> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.parse().ok())
}

mod run;
