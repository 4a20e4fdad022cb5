//! Test-only helpers of `scenarios` and `scale_out`: small thread races and readings of the
//! simulator's call log. The launchers, targets and HTTP client are in the host library
//! (`dingtalk_host::{spin, redis, targets, client}`).

use dingtalk_sim::Sim;
use std::collections::BTreeMap;
use std::sync::Barrier;

/// Runs `f(0..n)` on `n` threads released together by a barrier, and returns the results in
/// index order. `n` is a small, fixed number (at most 32).
pub fn race<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    assert!(n <= 32, "races stay small: {n} threads asked");
    let barrier = Barrier::new(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let barrier = &barrier;
                let f = &f;
                s.spawn(move || {
                    barrier.wait();
                    f(i)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a racing thread panicked"))
            .collect()
    })
}

/// Milliseconds since the Unix epoch (the clock the guest reads too).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `(method, path)` of every call in the simulator's log, in order.
pub fn call_list(sim: &Sim) -> Vec<(String, String)> {
    sim.calls().into_iter().map(|c| (c.method, c.api)).collect()
}

/// The largest number of simulator calls (any API, token calls included) that arrived within
/// any 1-second window.
pub fn max_calls_per_second(sim: &Sim) -> usize {
    let mut ts: Vec<i64> = sim.calls().into_iter().map(|c| c.at_ms).collect();
    ts.sort_unstable();
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..ts.len() {
        while ts[hi] - ts[lo] >= 1000 {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// The largest number of simulator calls within one calendar second (`at_ms / 1000`).
pub fn max_calls_per_calendar_second(sim: &Sim) -> usize {
    let mut per: BTreeMap<i64, usize> = BTreeMap::new();
    for c in sim.calls() {
        *per.entry(c.at_ms.div_euclid(1000)).or_default() += 1;
    }
    per.into_values().max().unwrap_or(0)
}
