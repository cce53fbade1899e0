//! Rate-limit windows in tests: counters count in windows aligned to Unix time, so a sequence of
//! requests meant to land in one window must not straddle two, however slow the machine.

use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_f64() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn window_of(at: f64, window: u64) -> u64 {
    (at / window as f64).floor() as u64
}

/// Sleeps until just after the start of the next `window`-second window.
pub fn align_to_window(window: u64) {
    let now = now_f64();
    let next = ((now / window as f64).floor() + 1.0) * window as f64;
    thread::sleep(Duration::from_secs_f64(next - now + 0.05));
}

/// Waits out the last `margin` seconds of a `window`, so what follows starts with at least
/// `margin` seconds of the window left (the hourly policies would otherwise flake at the top of
/// the hour).
pub fn away_from_window_end(window: u64, margin: u64) {
    let into = now_f64() % window as f64;
    if into > window.saturating_sub(margin) as f64 {
        thread::sleep(Duration::from_secs_f64(window as f64 - into + 0.05));
    }
}

/// Runs `requests` right after a `window` starts and returns what it returned; when a slow
/// machine made them straddle two windows (their outcome is then not the one-window outcome),
/// says so and runs them again in the next window, up to five times.
pub fn in_one_window<T>(window: u64, requests: impl Fn() -> T) -> T {
    for attempt in 1..=5 {
        align_to_window(window);
        let started = now_f64();
        let outcome = requests();
        let ended = now_f64();
        if window_of(started, window) == window_of(ended, window) {
            return outcome;
        }
        eprintln!("attempt {attempt}: the requests took {:.2} s and straddled two {window} s windows", ended - started);
    }
    panic!("five times the requests could not be sent within one {window} s window: the machine is too slow");
}
