//! The workers campaign's run: workers built and reconfigured, requests sent through their
//! streams (another worker's request run inside a compare-and-swap when a conflict is injected),
//! each answer judged against the model, and the tests.

use super::*;

/// What a request got.
#[derive(Debug)]
enum Got {
    Forwarded { rate: Option<(u64, u64, u64)> },
    Denied { status: u16, code: u32, retry_after: Option<u64>, rate: Option<(u64, u64, u64)> },
}

fn rate_of(get: impl Fn(&str) -> Option<u64>) -> Option<(u64, u64, u64)> {
    Some((get("ratelimit-limit")?, get("ratelimit-remaining")?, get("ratelimit-reset")?))
}

impl Campaign {
    fn new(seed: u64, hostile: bool) -> Rc<Campaign> {
        let mut rng = Rng(seed);
        let w = world(&mut rng);
        let limits: Vec<u64> = w.pols.iter().map(|(_, pol)| pol.limit).collect();
        let campaign = Rc::new(Campaign {
            seed,
            w,
            generations: vec![limits],
            workers: RefCell::new(Vec::new()),
            store: Rc::new(RefCell::new(Store::default())),
            model: RefCell::new(Model::default()),
            now: std::cell::Cell::new(START + rng.below(100_000) as u64),
            hostile,
            seen: RefCell::new(BTreeMap::new()),
            found: RefCell::new(Vec::new()),
            instances: std::cell::Cell::new(0),
        });
        let workers = 2 + rng.below(5);
        for _ in 0..workers {
            let slot = campaign.slot(0);
            campaign.workers.borrow_mut().push(slot);
        }
        campaign
    }

    fn host(&self) -> WorkerHost {
        let inner = FakeHost { now: self.now.get(), ..FakeHost::default() };
        WorkerHost { inner, store: Rc::clone(&self.store), interloper: None }
    }

    /// A new worker (VM) of generation `generation`: its configuration loaded, its counters
    /// prepared in the Envoy's store (kept when they exist), no blocks held.
    fn slot(&self, generation: usize) -> Slot {
        let json = self.w.json(&self.generations[generation]);
        let mut config = Config::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{e:?}\n{json}"));
        crate::stream::prepare_counters(&mut self.host(), &mut config);
        let instance = self.instances.get();
        self.instances.set(instance + 1);
        let worker = Rc::new(RefCell::new(Worker::new(&config)));
        Slot { instance, generation, config: Rc::new(config), worker }
    }

    /// A configuration update reaches worker `k` mid-window: a new generation with one policy's
    /// limit changed, a new VM (the blocks the old one held are lost).
    fn reconfigure(&mut self, rng: &mut Rng, k: usize) {
        let mut limits = self.generations.last().cloned().unwrap_or_default();
        // Request policies only: a byte budget whose limit changed mid-window is left untriaged
        // (see the report).
        let requests: Vec<usize> = (0..limits.len()).filter(|p| !self.w.pols[*p].1.bytes).collect();
        if !requests.is_empty() {
            let p = *rng.pick(&requests);
            let pol = &self.w.pols[p].1;
            // A burst stays below its tier's limit (docs/CONFIG.md).
            let floor = pol.burst.map_or(1, |(requests, _, _)| requests + 1);
            limits[p] = if pol.bytes { 100 + rng.below(400) as u64 } else { (1 + rng.below(150) as u64).max(floor) };
        }
        self.generations.push(limits);
        let slot = self.slot(self.generations.len() - 1);
        self.workers.borrow_mut()[k] = slot;
    }

    fn note(&self, class: &str, detail: String) {
        self.found.borrow_mut().push((class.to_string(), format!("seed {}: {detail}", self.seed)));
    }

    fn saw(&self, what: &str) {
        *self.seen.borrow_mut().entry(what.to_string()).or_insert(0) += 1;
    }

    /// Sends `req` through its worker's stream; `interloper`, another worker's request, runs
    /// between a read and a write of a counter slot.
    fn send(self: &Rc<Self>, req: Req, interloper: Option<Req>) {
        let (instance, generation, config, worker) = {
            let workers = self.workers.borrow();
            let slot = &workers[req.worker];
            (slot.instance, slot.generation, Rc::clone(&slot.config), Rc::clone(&slot.worker))
        };
        let now = self.now.get();
        let bytes_before =
            self.bytes_used(&plan(&self.w, &self.generations[generation], req.app, req.api, req.res, req.ip));
        let mut host = self.host();
        host.inner.request = [
            (":method", "GET".to_string()),
            (":path", format!("/c{}/1/r{}", req.api, req.res)),
            ("apikey", format!("key-{}", req.app)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_bytes()))
        .collect();
        host.inner.properties.insert("source.address".into(), format!("10.0.0.{}:40000", req.ip).into_bytes());
        host.inner.response = [(":status".to_string(), b"200".to_vec())].into_iter().collect();
        let armed = interloper.is_some();
        host.interloper = interloper.map(|other| {
            let me = Rc::clone(self);
            Box::new(move || me.send(other, None)) as Interloper
        });
        let mut stream = Stream::new(config, worker);
        let got = if stream.on_request_headers(&mut host, false) == Flow::Continue {
            host.inner.bodies[0] = vec![b'y'; req.body];
            assert_eq!(stream.on_request_body(&mut host, req.body, true), Flow::Continue);
            assert_eq!(stream.on_response_headers(&mut host), Flow::Continue);
            let response = host.inner.response.clone();
            Got::Forwarded {
                rate: rate_of(|n| response.get(n).and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())),
            }
        } else {
            let (status, headers, body) = host.inner.sent.clone().unwrap_or_default();
            let body = String::from_utf8_lossy(&body).to_string();
            let code = body.split("\"code\":\"").nth(1).and_then(|s| s.get(..6)).and_then(|s| s.parse().ok());
            let code = code.unwrap_or(u32::from(status));
            Got::Denied {
                status,
                code,
                retry_after: header(&headers, "retry-after"),
                rate: rate_of(|n| header(&headers, n)),
            }
        };
        let conflicted = armed && host.interloper.is_none();
        self.judge(req, instance, generation, now, &got, conflicted, bytes_before);
    }

    fn bytes_used(&self, levels: &[Lv]) -> Vec<u64> {
        let now = self.now.get();
        let model = self.model.borrow();
        levels
            .iter()
            .map(|lv| model.bytes.get(&(lv.key.clone(), now / lv.window * lv.window)).copied().unwrap_or(0))
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn judge(
        &self,
        req: Req,
        instance: usize,
        generation: usize,
        now: u64,
        got: &Got,
        conflicted: bool,
        before: Vec<u64>,
    ) {
        let w = &self.w;
        let levels = plan(w, &self.generations[generation], req.app, req.api, req.res, req.ip);
        let after = self.bytes_used(&levels);
        let what = format!("#{req:?} instance {instance} gen {generation} now {now} got {got:?} levels {levels:?}");
        if self.hostile {
            // A hostile store: a defined outcome, never a panic.
            let code = match got {
                Got::Forwarded { .. } => "forwarded".to_string(),
                Got::Denied { code, status, .. } => {
                    let known = (900800..=900808).contains(code) && *code != 900805;
                    if !known
                        || *status
                            != if *code == 900801 {
                                503
                            } else if *code == 900808 {
                                500
                            } else {
                                429
                            }
                    {
                        self.note("hostile: undefined answer", what.clone());
                    }
                    code.to_string()
                }
            };
            self.saw(&code);
            return;
        }
        let mut model = self.model.borrow_mut();
        let start = |lv: &Lv| now / lv.window * lv.window;
        let reach = |model: &mut Model, lv: &Lv| {
            let win = model.wins.entry((lv.key.clone(), start(lv))).or_default();
            let block = block_max(w, lv.limit);
            let entry = win.reached.entry(instance).or_insert(0);
            *entry = (*entry).max(block);
            win.limits.insert(lv.limit);
        };
        match got {
            Got::Forwarded { rate } => {
                self.saw("forwarded");
                for (i, lv) in levels.iter().enumerate() {
                    if lv.bytes {
                        if before[i].min(after[i]) >= lv.limit {
                            self.note("bytes: forwarded over a spent budget", what.clone());
                        }
                        continue;
                    }
                    reach(&mut model, lv);
                    let win = model.wins.entry((lv.key.clone(), start(lv))).or_default();
                    win.admitted += 1;
                    *win.own.entry(instance).or_insert(0) += 1;
                    let most = win.limits.iter().max().copied().unwrap_or(0);
                    if win.admitted > most {
                        self.note("over the limit", format!("{} admitted of {most}: {what}", win.admitted));
                    }
                }
                for lv in levels.iter().filter(|lv| lv.bytes) {
                    *model.bytes.entry((lv.key.clone(), start(lv))).or_insert(0) += req.body as u64;
                }
                let counted: Vec<&Lv> = levels.iter().filter(|lv| !lv.bytes).collect();
                match (rate, counted.is_empty()) {
                    (None, true) => {}
                    (Some(_), true) | (None, false) => self.note("forwarded: RateLimit headers", what.clone()),
                    (Some((limit, remaining, reset)), false) => {
                        let fits = counted.iter().any(|lv| {
                            let win = &model.wins[&(lv.key.clone(), start(lv))];
                            let held: u64 = win.reached.values().sum();
                            let own = win.own.get(&instance).copied().unwrap_or(0);
                            lv.limit == *limit
                                && start(lv) + lv.window - now == *reset
                                && *remaining + own <= lv.limit
                                && *remaining + win.admitted + held >= lv.limit
                        });
                        if !fits {
                            self.note("forwarded: RateLimit headers", what.clone());
                        }
                    }
                }
            }
            Got::Denied { status, code, retry_after, rate } => {
                self.saw(&code.to_string());
                if *code == 900808 {
                    // Any level may have taken a block before the lost compare-and-swap.
                    for lv in levels.iter().filter(|lv| !lv.bytes) {
                        reach(&mut model, lv);
                    }
                    if !(conflicted && w.retries == 1) {
                        self.note("900808 without a lost compare-and-swap", what.clone());
                    }
                    return;
                }
                let mut verdict = "denied: no level of that code";
                for (i, lv) in levels.iter().enumerate() {
                    if lv.code != *code {
                        continue;
                    }
                    let reset = start(lv) + lv.window - now;
                    let status_ok = *status == if *code == 900801 { 503 } else { 429 };
                    let retry_ok = *retry_after == (*code != 900801).then_some(reset);
                    if lv.bytes {
                        for before_lv in levels[..i].iter().filter(|lv| !lv.bytes) {
                            reach(&mut model, before_lv);
                        }
                        if status_ok && retry_ok && rate.is_none() && before[i].max(after[i]) >= lv.limit {
                            self.saw("bytes denied");
                            verdict = "";
                            break;
                        }
                        verdict = "denied: a byte budget not spent, or its headers";
                        continue;
                    }
                    if !(status_ok && retry_ok && *rate == Some((lv.limit, 0, reset))) {
                        verdict = "denied: status or headers";
                        continue;
                    }
                    for before_lv in levels[..=i].iter().filter(|lv| !lv.bytes) {
                        reach(&mut model, before_lv);
                    }
                    let win = &model.wins[&(lv.key.clone(), start(lv))];
                    let others: u64 = win.reached.iter().filter(|(k, _)| **k != instance).map(|(_, b)| *b).sum();
                    if win.admitted + others < lv.limit {
                        verdict = "denied: fewer admitted than the limit less the held blocks";
                        continue;
                    }
                    if others > 0 {
                        self.saw("denied with blocks held elsewhere");
                    }
                    verdict = "";
                    break;
                }
                if !verdict.is_empty() {
                    self.note(verdict, what);
                }
            }
        }
    }
}

/// Runs one seed: `requests` requests over the workers; returns the campaign (its findings).
fn campaign(seed: u64, requests: usize, hostile: bool) -> Rc<Campaign> {
    let mut c = Campaign::new(seed, hostile);
    let mut rng = Rng(seed ^ 0x005e_ed0f_3a11);
    let workers = c.workers.borrow().len();
    let pairs: Vec<(usize, usize)> = c.w.subs.keys().copied().collect();
    let mut windows: Vec<u64> = c.w.pols.iter().map(|(_, p)| p.window).collect();
    windows.extend(c.w.customs.iter().map(|(_, _, window)| *window));
    windows.push(1);
    let mut idle: Option<(usize, usize)> = None;
    let hot = rng.below(workers);
    for i in 0..requests {
        let now = c.now.get();
        let now = now
            + match rng.below(40) {
                0..=25 => 0,
                26..=33 => 1,
                34..=36 => {
                    // Exactly at a window's edge, or the second before it.
                    let len = *rng.pick(&windows);
                    let edge = (now / len + 1) * len;
                    edge - now - u64::from(rng.chance(40) && edge - now > 1)
                }
                37 | 38 => rng.below(20) as u64,
                _ => 60 * (1 + rng.below(3) as u64),
            };
        c.now.set(now);
        if rng.chance(1) && c.generations.len() < 4 {
            let k = rng.below(workers);
            Rc::get_mut(&mut c).map(|c| c.reconfigure(&mut rng, k)).unwrap_or_else(|| panic!("one owner"));
            c.saw("reconfigured");
        }
        if idle.is_none_or(|(_, until)| until < i) && rng.chance(3) {
            idle = Some((rng.below(workers), i + 20 + rng.below(200)));
            c.saw("idle phase");
        }
        let pick = |rng: &mut Rng, not: Option<usize>| {
            for _ in 0..64 {
                let worker = if rng.chance(40) { hot } else { rng.below(workers) };
                let idle_now = idle.is_some_and(|(k, until)| k == worker && i <= until);
                if Some(worker) != not && !idle_now {
                    let (app, api) = *rng.pick(&pairs);
                    let ip = 1 + rng.below(3) as u8;
                    return Some(Req { worker, app, api, res: rng.below(2), ip, body: rng.below(80) });
                }
            }
            None
        };
        let Some(req) = pick(&mut rng, None) else { continue };
        let interloper = if rng.chance(8) { pick(&mut rng, Some(req.worker)) } else { None };
        if hostile {
            let mut store = c.store.borrow_mut();
            store.refuse_writes = rng.chance(30);
            store.garbage = rng.chance(30).then(|| {
                let mut bytes: Vec<u8> = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
                if rng.chance(50) && !bytes.is_empty() {
                    bytes[0] = 0xA1;
                }
                bytes
            });
        }
        c.send(req, interloper);
    }
    c
}

fn seeds() -> Vec<u64> {
    match std::env::var("WM_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => vec![seed],
        None => (0..40).collect(),
    }
}

#[test]
fn workers_never_admit_more_than_the_limit_and_strand_at_most_a_block_each() {
    let mut classes: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut conflicts = 0;
    for seed in seeds() {
        let c = campaign(seed, 700, false);
        conflicts += c.store.borrow().conflicts;
        for (what, n) in c.seen.borrow().iter() {
            *seen.entry(what.clone()).or_insert(0) += n;
        }
        for (class, detail) in c.found.borrow().iter() {
            classes.entry(class.clone()).or_insert((0, detail.clone())).0 += 1;
        }
    }
    eprintln!("workers campaign: {seen:?}, {conflicts} conflicts injected");
    assert!(classes.is_empty(), "{classes:#?}");
    if std::env::var("WM_SEED").is_err() {
        for what in [
            "forwarded",
            "900800",
            "900801",
            "900802",
            "900803",
            "900804",
            "900806",
            "900807",
            "900808",
            "bytes denied",
            "denied with blocks held elsewhere",
            "reconfigured",
            "idle phase",
        ] {
            assert!(seen.get(what).copied().unwrap_or(0) >= 5, "{what} too rare: {seen:?}");
        }
        assert!(conflicts >= 100, "{conflicts} conflicts");
    }
}

#[test]
fn a_hostile_or_corrupted_counter_store_gets_a_defined_answer() {
    let mut classes: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for seed in seeds().into_iter().take(15) {
        let c = campaign(1_000 + seed, 200, true);
        for (what, n) in c.seen.borrow().iter() {
            *seen.entry(what.clone()).or_insert(0) += n;
        }
        for (class, detail) in c.found.borrow().iter() {
            classes.entry(class.clone()).or_insert((0, detail.clone())).0 += 1;
        }
    }
    eprintln!("hostile store: {seen:?}");
    assert!(classes.is_empty(), "{classes:#?}");
    if std::env::var("WM_SEED").is_err() {
        for what in ["forwarded", "900808"] {
            assert!(seen.get(what).copied().unwrap_or(0) >= 5, "{what} too rare: {seen:?}");
        }
    }
}
