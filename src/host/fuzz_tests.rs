//! Random and mutated inputs for the tests that feed outside data (a control plane's, a key
//! manager's, a rate-limit service's answers, configurations, requests) to the filter's entry
//! points: a seeded xorshift generator, byte mutations, and JSON mutations that keep the document
//! valid but put extreme values, wrong types and deep nesting anywhere in it. Deterministic: a
//! failure names its case.

use serde_json::{Map, Value};

/// xorshift64*: a seed gives the same cases on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn word(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (0 for `n` 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.word() % n as u64) as usize
        }
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Text that has broken parsers and arithmetic before: numbers at every edge, multi-byte UTF-8,
/// escapes, punctuation that opens or closes.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "\\u0000",
    "\\ud800",
    "-",
    ".",
    "e",
    "0",
    "-0",
    "-1",
    "1e999",
    "-1e999",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "9223372036854775807",
    "0.5",
    "1e-400",
    "null",
    "true",
    "false",
    "é",
    "😀",
    "\u{7f}",
    "\u{2028}",
    " ",
    "\n",
    "%",
    "%zz",
    "%00",
    "/..",
    "//",
    "?",
    "#",
    "*",
    "{}",
    "[]",
    "\"\"",
];

/// Values that have broken arithmetic, sizes and types before.
pub fn extreme(rng: &mut Rng) -> Value {
    let depth = 1 + rng.below(200);
    let deep_array = serde_json::from_str::<Value>(&format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
    let choices: Vec<Value> = vec![
        Value::Null,
        Value::Bool(true),
        Value::Bool(false),
        0.into(),
        1.into(),
        (-1).into(),
        i64::MIN.into(),
        i64::MAX.into(),
        u64::MAX.into(),
        u64::from(u32::MAX).into(),
        (u64::from(u32::MAX) + 1).into(),
        i64::from(i32::MIN).into(),
        serde_json::json!(1e308),
        serde_json::json!(-1e308),
        serde_json::json!(0.5),
        serde_json::json!(-0.0),
        "".into(),
        " ".into(),
        "0".into(),
        "-1".into(),
        "18446744073709551616".into(),
        "é😀".into(),
        "x".repeat(1 + rng.below(5000)).into(),
        "é".repeat(1 + rng.below(100)).into(),
        "/".into(),
        "/{a}/{b}/*".into(),
        "*".into(),
        "%".into(),
        "GET".into(),
        "UNLIMITED".into(),
        "min".into(),
        "DAYS".into(),
        "requestCount".into(),
        "bandwidthVolume".into(),
        "IPRANGE".into(),
        "::/0".into(),
        "1.2.3.4/99".into(),
        Value::Array(Vec::new()),
        Value::Object(Map::new()),
        deep_array.unwrap_or(Value::Null),
    ];
    rng.pick(&choices).clone()
}

/// A mutation of a JSON document that stays JSON: some values replaced by extreme ones, members
/// dropped, array elements repeated.
pub fn mutate_json(value: &Value, rng: &mut Rng) -> Value {
    let mut out = value.clone();
    let edits = 1 + rng.below(4);
    for _ in 0..edits {
        edit(&mut out, rng, 0);
    }
    out
}

fn edit(value: &mut Value, rng: &mut Rng, depth: usize) {
    let children = match value {
        Value::Object(map) => map.len(),
        Value::Array(items) => items.len(),
        _ => 0,
    };
    // Stop here at a leaf, or with a chance that grows with depth.
    if children == 0 || rng.chance(6usize.saturating_sub(depth).max(2)) {
        match (value, rng.below(4)) {
            (Value::Array(items), 0) if !items.is_empty() => {
                let copy = items[rng.below(items.len())].clone();
                let times = 1 + rng.below(3);
                items.extend(std::iter::repeat_n(copy, times));
            }
            (Value::Object(map), 0) if !map.is_empty() => {
                let key = map.keys().nth(rng.below(map.len())).cloned().unwrap_or_default();
                map.remove(&key);
            }
            (value, _) => *value = extreme(rng),
        }
        return;
    }
    match value {
        Value::Object(map) => {
            let at = rng.below(map.len());
            if let Some((_, child)) = map.iter_mut().nth(at) {
                edit(child, rng, depth + 1);
            }
        }
        Value::Array(items) => {
            let at = rng.below(items.len());
            edit(&mut items[at], rng, depth + 1);
        }
        _ => {}
    }
}

/// A mutation of bytes: flips, insertions of tokens, deletions, duplications, cuts.
pub fn mutate_bytes(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let edits = 1 + rng.below(6);
    for _ in 0..edits {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 if !out.is_empty() => {
                let at = at.min(out.len() - 1);
                out[at] ^= 1 << rng.below(8);
            }
            1 => {
                let token = rng.pick(TOKENS).as_bytes().to_vec();
                out.splice(at..at, token);
            }
            2 => {
                let end = (at + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
            3 => {
                let end = (at + rng.below(64)).min(out.len());
                let copy = out[at..end].to_vec();
                out.splice(at..at, copy);
            }
            4 => out.truncate(at),
            _ => {
                let byte = rng.word() as u8;
                out.insert(at, byte);
            }
        }
    }
    out
}

/// Random bytes, fewer than `most` of them.
pub fn noise(rng: &mut Rng, most: usize) -> Vec<u8> {
    let len = rng.below(most);
    (0..len).map(|_| rng.word() as u8).collect()
}

/// Either a JSON mutation of `document` or a byte mutation of its text.
pub fn mutate_document(document: &Value, rng: &mut Rng) -> Vec<u8> {
    let value = mutate_json(document, rng);
    let text = serde_json::to_vec(&value).unwrap_or_default();
    if rng.chance(3) {
        mutate_bytes(&text, rng)
    } else {
        text
    }
}

/// Runs `work` on `cases` cases from `seed`, and fails naming the case that panicked.
/// `APIM_FUZZ_SCALE=<n>` runs n times as many (the first ones the same), for a longer search.
pub fn each_case(name: &str, cases: usize, seed: u64, mut work: impl FnMut(&mut Rng, usize)) {
    let scale = std::env::var("APIM_FUZZ_SCALE").ok().and_then(|scale| scale.parse::<usize>().ok()).unwrap_or(1);
    let mut rng = Rng::new(seed);
    for case in 0..cases.saturating_mul(scale.max(1)) {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&mut rng, case)));
        if let Err(panic) = result {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_string()))
                .unwrap_or_default();
            panic!("{name}: case {case} of seed {seed} panicked: {message}");
        }
    }
}
