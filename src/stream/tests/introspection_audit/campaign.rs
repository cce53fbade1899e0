//! The campaign's runs: random traffic (single requests, bursts on one and on several workers,
//! revocations, time passing) against the filter and the model of `introspection_audit.rs`.

use super::*;
use crate::auth::{credential_hash, introspection};

/// One token the key manager knows, and what it answers about it now.
struct Token {
    name: String,
    truth: Reply,
}

fn new_token(rng: &mut Rng, config: &Config, tokens: &mut Vec<Token>, seed: u64, now: u64) -> usize {
    // Tokens of their own slots (slot sharing is tested in tests.rs): the model keys by token.
    let km = &config.auth.key_managers[0];
    let taken: Vec<String> = tokens.iter().map(|t| introspection::slot(km, &credential_hash(&t.name))).collect();
    let name = (0..)
        .map(|n| format!("opaque-{seed:x}-{}-{n}", tokens.len()))
        .find(|name| !taken.contains(&introspection::slot(km, &credential_hash(name))))
        .unwrap();
    tokens.push(Token { name, truth: reply(rng, now) });
    tokens.len() - 1
}

struct Tally {
    classes: BTreeMap<String, usize>,
    failures: Vec<String>,
    requests: usize,
    calls: usize,
}

impl Tally {
    /// Compares one request; `what` is the case's kind (a class), after `context`'s `: `.
    fn check(&mut self, what: &str, expected: &Outcome, got: &Outcome, calls: (usize, usize)) {
        self.requests += 1;
        let got_class = format!("{got:?}").replace("Some(\"erin\")", "user").replace("Some(\"sam\")", "user");
        *self.classes.entry(got_class).or_default() += 1;
        let kind = what.rsplit(": ").next().unwrap_or(what).to_string();
        *self.classes.entry(kind).or_default() += 1;
        if expected != got || calls.0 != calls.1 {
            self.failures
                .push(format!("{what}: model {expected:?} ({} calls), filter {got:?} ({} calls)", calls.0, calls.1));
        }
    }
}

fn run_seed(seed: u64, tally: &mut Tally) {
    let mut rng = Rng::new(seed);
    let setup = Setup {
        ttl: *rng.pick(&[5, 60, 300]),
        negative_ttl: *rng.pick(&[1, 10, 60]),
        skew: *rng.pick(&[0, 60]),
        sandbox: rng.chance(2),
    };
    let config = config(&setup);
    let workers = (0..3).map(|_| Rc::new(RefCell::new(Worker::new(&config)))).collect();
    let mut run = Run { host: FakeHost { now: NOW, ..Default::default() }, config: Rc::clone(&config), workers };
    let mut tokens: Vec<Token> = Vec::new();
    let mut cache: Map<String, Entry> = Map::new();
    for step in 0..STEPS {
        run.host.now += *rng.pick(&[0u64, 0, 1, 2, 5, 30, 61, 301, 700]);
        let now = run.host.now;
        let token = if tokens.is_empty() || rng.chance(3) {
            new_token(&mut rng, &config, &mut tokens, seed, now)
        } else {
            rng.below(tokens.len())
        };
        let resource = *rng.pick(&["open", "menu"]);
        let name = tokens[token].name.clone();
        let truth = format!("{:?}", tokens[token].truth);
        let context = |what: &str| format!("seed {seed} step {step} at +{} {truth}: {what}", now - NOW);
        match rng.below(8) {
            // The key manager's word changes: revoked, or another answer.
            0 => {
                tokens[token].truth =
                    if rng.chance(2) { Reply::Json(vec![("active", "false".into())]) } else { reply(&mut rng, now) };
            }
            // Requests with the token on one worker while its answer is slow, one more on another.
            1 | 2 => {
                burst(&mut run, &mut rng, &setup, &mut cache, &mut tokens[token], resource, &context("burst"), tally)
            }
            _ => {
                let worker = rng.below(3);
                let hit = cached(&cache, &name, now);
                let (mut stream, done, made) = run.start(worker, &name, resource);
                let calls = (usize::from(hit.is_none()), usize::from(made.is_some()));
                match (hit, made) {
                    (Some(meaning), _) => {
                        let what =
                            if matches!(meaning, Meaning::Active { .. }) { "cached active" } else { "cached refusal" };
                        let got = done.unwrap_or(Err((0, 0)));
                        tally.check(&context(what), &outcome(&setup, &meaning, resource), &got, calls);
                    }
                    (None, Some(call)) => {
                        tally.calls += 1;
                        // The answer may come a little later.
                        run.host.now += *rng.pick(&[0u64, 0, 1, 3]);
                        let at = run.host.now;
                        let meaning = meaning(&setup, &tokens[token].truth, at);
                        let got = run.answer(&mut stream, &name, resource, call, &body(&tokens[token].truth));
                        tally.check(&context("introspected"), &outcome(&setup, &meaning, resource), &got, calls);
                        cache_answer(&setup, &mut cache, &name, &meaning, at, now);
                    }
                    (None, None) => tally.check(&context("no call"), &Err((0, 0)), &done.unwrap_or(Err((1, 1))), calls),
                }
            }
        }
    }
}

/// Three requests with `token` at once: two on one worker (the second waits for the first's
/// call), one on another (its own call). The key manager may revoke the token between the two
/// calls; the answers come back in either order.
#[allow(clippy::too_many_arguments)]
fn burst(
    run: &mut Run,
    rng: &mut Rng,
    setup: &Setup,
    cache: &mut Map<String, Entry>,
    token: &mut Token,
    resource: &str,
    context: &str,
    tally: &mut Tally,
) {
    let now = run.host.now;
    let first = rng.below(3);
    let other = (first + 1 + rng.below(2)) % 3;
    let name = token.name.clone();
    let hit = cached(cache, &name, now);
    let (mut one, done_one, call_one) = run.start(first, &name, resource);
    let (mut two, done_two, call_two) = run.start(first, &name, resource);
    let before = token.truth.clone();
    if rng.chance(2) {
        token.truth = Reply::Json(vec![("active", "false".into())]);
    }
    let (mut three, done_three, call_three) = run.start(other, &name, resource);
    if let Some(meaning) = hit {
        let expected = outcome(setup, &meaning, resource);
        for (done, call) in [(done_one, call_one), (done_two, call_two), (done_three, call_three)] {
            let got = done.unwrap_or(Err((0, 0)));
            tally.check(&format!("{context}: cached"), &expected, &got, (0, usize::from(call.is_some())));
        }
        return;
    }
    let (Some(call_one), None, Some(call_three)) = (call_one, call_two, call_three) else {
        let calls = [call_one, call_two, call_three].iter().filter(|call| call.is_some()).count();
        tally.check(&format!("{context}: calls"), &Ok((String::new(), None)), &Err((0, 0)), (2, calls));
        return;
    };
    tally.calls += 2;
    let after = token.truth.clone();
    let order = rng.chance(2);
    for turn in 0..2 {
        run.host.now += *rng.pick(&[0u64, 1]);
        let at = run.host.now;
        if (turn == 0) == order {
            let meaning = meaning(setup, &after, at);
            let got = run.answer(&mut three, &name, resource, call_three, &body(&after));
            tally.check(&format!("{context}: other worker"), &outcome(setup, &meaning, resource), &got, (0, 0));
            cache_answer(setup, cache, &name, &meaning, at, now);
        } else {
            let meaning = meaning(setup, &before, at);
            let expected = outcome(setup, &meaning, resource);
            let got = run.answer(&mut one, &name, resource, call_one, &body(&before));
            tally.check(&format!("{context}: made the call"), &expected, &got, (0, 0));
            cache_answer(setup, cache, &name, &meaning, at, now);
            let got = run.answer(&mut two, &name, resource, call_one, &body(&before));
            tally.check(&format!("{context}: joined"), &expected, &got, (0, 0));
        }
    }
    // Right after, on any worker: what the cache now says (a revocation the key manager gave
    // stays in force, whichever answer came last).
    let at = run.host.now;
    let hit = cached(cache, &name, at);
    let (mut four, done, made) = run.start(rng.below(3), &name, resource);
    let what = match (&hit, &before, &after) {
        (Some(Meaning::Inactive), Reply::Json(_), _) if !matches!(meaning(setup, &before, at), Meaning::Inactive) => {
            "revocation kept"
        }
        _ => "after burst",
    };
    let calls = (usize::from(hit.is_none()), usize::from(made.is_some()));
    match (hit, made) {
        (Some(meaning), _) => tally.check(
            &format!("{context}: {what}"),
            &outcome(setup, &meaning, resource),
            &done.unwrap_or(Err((0, 0))),
            calls,
        ),
        (None, Some(call)) => {
            tally.calls += 1;
            let meaning = meaning(setup, &token.truth, at);
            let got = run.answer(&mut four, &name, resource, call, &body(&token.truth));
            tally.check(&format!("{context}: {what}"), &outcome(setup, &meaning, resource), &got, calls);
            cache_answer(setup, cache, &name, &meaning, at, at);
        }
        (None, None) => tally.check(&format!("{context}: {what}"), &Err((0, 0)), &done.unwrap_or(Err((1, 1))), calls),
    }
}

#[test]
fn introspection_answers_revocations_and_slow_calls_get_what_the_documents_say() {
    let base = std::env::var("APIM_INTROSPECTION_AUDIT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x1a7e_0b5e);
    let mut tally = Tally { classes: BTreeMap::new(), failures: Vec::new(), requests: 0, calls: 0 };
    for n in 0..SEEDS {
        run_seed(base + n, &mut tally);
    }
    assert!(
        tally.failures.is_empty(),
        "seed base {base} (APIM_INTROSPECTION_AUDIT_SEED): {} of {} requests disagree:\n{}",
        tally.failures.len(),
        tally.requests,
        tally.failures.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    let classes = &tally.classes;
    let count = |class: &str| classes.iter().filter(|(name, _)| name.ends_with(class)).map(|(_, n)| *n).sum::<usize>();
    for class in [
        r#"Ok(("prod", None))"#,
        r#"Ok(("prod", user))"#,
        r#"Ok(("sand", None))"#,
        "Err((900900, 500))",
        "Err((900901, 401))",
        "Err((900901, 403))",
        "Err((900908, 403))",
        "Err((900910, 403))",
        "cached active",
        "cached refusal",
        "introspected",
        "joined",
        "other worker",
        "revocation kept",
    ] {
        assert!(count(class) >= 3, "seed base {base}: {class} reached {} times: {classes:#?}", count(class));
    }
    assert!(tally.requests > 2_000 && tally.calls > 500, "{} requests, {} calls", tally.requests, tally.calls);
}

const SEEDS: u64 = 60;
const STEPS: usize = 60;
