//! Key-value patterns that are correct on every store Spin offers (docs/hosts.md):
//! single-use claims by atomic `increment`, expiry kept in the value, and a sweep that removes
//! expired keys so the store stays bounded. No compare-and-swap, no get-many, no list-keys.
//!
//! Two ways to make a value findable by the sweep, both grouped in one-minute buckets:
//!
//! - **Slots** ([`allocate`]): the plugin picks the key. One `increment` of the bucket's counter
//!   `t:{bucket}:n` gives `n`, and the value lives at `t:{bucket}:{n}` (its
//!   single-use claim at `…:{n}:c`). The counter *is* the registry: the sweep walks `1..=n`.
//!   A slot costs one write for the counter plus the value's own write; the login's code budget
//!   is the same counter, so a login's ticket costs nothing extra (src/login/mod.rs).
//! - **Registered keys** ([`register_expiry`], [`put_expiring`], [`claim`]): the caller picks
//!   the key (event ids, leases). The bucket's counter `gc:{bucket}:n` gives `n` and
//!   `gc:{bucket}:{n}` holds the key's name: two writes on top of the value.
//!
//! The sweep ([`sweep`]) runs off the hot path (the router calls it after requests that wrote),
//! does a bounded slice of work per call, and keeps a cursor (`sweep:cursor`,
//! `{bucket}:{phase}:{index}`) so a request that dies midway leaves the rest to the next one.

use crate::env::{Env, KvError};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Width of one expiry bucket.
pub const BUCKET_MS: u64 = 60 * 1000;
/// A bucket is swept this long after it closed, so an instance whose clock runs this much
/// behind never allocates into a bucket the sweep has already emptied.
pub const SKEW_MARGIN_MS: u64 = 2 * 60 * 1000;
/// Key-value operations one [`sweep`] call may spend.
pub const SWEEP_OPS: u32 = 48;
/// A cursor further behind than this many buckets (a store idle for a week) jumps ahead.
const MAX_LAG_BUCKETS: u64 = 7 * 24 * 60;
const CURSOR_KEY: &str = "sweep:cursor";
/// Registered keys' series (holds key names, not values).
const REGISTRY: &str = "gc";

/// The key prefix of slots: `t:{bucket}:n` counts them, `t:{bucket}:{n}` holds one.
const SLOT_PREFIX: &str = "t";
/// The longest a slot's value must stay readable after its allocation: a ticket (60 s) minted
/// after the code exchange's DingTalk calls (each at most 8 s, a few per login).
pub const SLOT_TTL_MS: u64 = 3 * 60_000;

/// A place for one expiring value, found by the sweep through its bucket's counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The expiry bucket.
    pub bucket: u64,
    /// The counter value that allocated it (1-based).
    pub n: u64,
}

impl Slot {
    /// The value's key, `t:{bucket}:{n}`.
    pub fn key(&self) -> String {
        format!("{SLOT_PREFIX}:{}:{}", self.bucket, self.n)
    }

    /// The key of the value's single-use claim.
    pub fn claim_key(&self) -> String {
        format!("{}:c", self.key())
    }
}

fn bucket_of(expires_at_ms: u64) -> u64 {
    expires_at_ms / BUCKET_MS + 1
}

fn counter_key(prefix: &str, bucket: u64) -> String {
    format!("{prefix}:{bucket}:n")
}

/// Allocates a slot in the bucket of `now + SLOT_TTL_MS`: one `increment`.
/// Slots of one bucket are numbered 1, 2, … across every instance, so `n` also counts the
/// allocations of that minute (what the login's code budget reads).
pub fn allocate(env: &mut dyn Env) -> Result<Slot, KvError> {
    let bucket = bucket_of(env.now_ms().saturating_add(SLOT_TTL_MS));
    let n = env.kv_increment(&counter_key(SLOT_PREFIX, bucket), 1)?;
    Ok(Slot {
        bucket,
        n: n.max(1) as u64,
    })
}

/// Stores `value` at `slot` until `expires_at_ms` (one write). `expires_at_ms` must not exceed
/// the allocation time plus [`SLOT_TTL_MS`].
pub fn put_slot<T: Serialize>(
    env: &mut dyn Env,
    slot: &Slot,
    value: &T,
    expires_at_ms: u64,
) -> Result<(), KvError> {
    env.kv_set(&slot.key(), &stamped(value, expires_at_ms)?)
}

/// Reads a live value stored by [`put_slot`].
pub fn get_slot<T: DeserializeOwned>(env: &mut dyn Env, slot: &Slot) -> Result<Option<T>, KvError> {
    get_live(env, &slot.key())
}

/// Claims `slot` once (one `increment`): true for exactly one caller across every instance.
/// The claim goes with the slot when its bucket is swept.
pub fn claim_slot(env: &mut dyn Env, slot: &Slot) -> Result<bool, KvError> {
    Ok(env.kv_increment(&slot.claim_key(), 1)? == 1)
}

/// Remembers that `key` may be deleted once `expires_at_ms` has passed (two writes).
pub fn register_expiry(env: &mut dyn Env, key: &str, expires_at_ms: u64) -> Result<(), KvError> {
    let bucket = bucket_of(expires_at_ms);
    let n = env.kv_increment(&counter_key(REGISTRY, bucket), 1)?;
    env.kv_set(&format!("{REGISTRY}:{bucket}:{n}"), key.as_bytes())
}

/// A value with its expiry, as stored.
#[derive(Serialize, Deserialize)]
struct Stamped<T> {
    exp: u64,
    v: T,
}

fn stamped<T: Serialize>(value: &T, expires_at_ms: u64) -> Result<Vec<u8>, KvError> {
    serde_json::to_vec(&Stamped {
        exp: expires_at_ms,
        v: value,
    })
    .map_err(|e| KvError(format!("encode: {e}")))
}

/// Stores `value` as JSON under `key` until `expires_at_ms`; the sweep removes it later.
pub fn put_expiring<T: Serialize>(
    env: &mut dyn Env,
    key: &str,
    value: &T,
    expires_at_ms: u64,
) -> Result<(), KvError> {
    env.kv_set(key, &stamped(value, expires_at_ms)?)?;
    register_expiry(env, key, expires_at_ms)
}

/// Reads a value stored by [`put_expiring`] or [`put_slot`]; `None` when absent, expired or
/// unreadable.
pub fn get_live<T: DeserializeOwned>(env: &mut dyn Env, key: &str) -> Result<Option<T>, KvError> {
    let Some(bytes) = env.kv_get(key)? else {
        return Ok(None);
    };
    match serde_json::from_slice::<Stamped<T>>(&bytes) {
        Ok(s) if s.exp > env.now_ms() => Ok(Some(s.v)),
        _ => Ok(None),
    }
}

/// Reads a plain JSON value.
pub fn get_json<T: DeserializeOwned>(env: &mut dyn Env, key: &str) -> Result<Option<T>, KvError> {
    Ok(env
        .kv_get(key)?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

/// Writes a plain JSON value (no expiry).
pub fn put_json<T: Serialize>(env: &mut dyn Env, key: &str, value: &T) -> Result<(), KvError> {
    let bytes = serde_json::to_vec(value).map_err(|e| KvError(format!("encode: {e}")))?;
    env.kv_set(key, &bytes)
}

/// Claims `key` once: true for exactly one caller across every instance sharing the store.
/// The claim is removed by the sweep after `expires_at_ms`.
pub fn claim(env: &mut dyn Env, key: &str, expires_at_ms: u64) -> Result<bool, KvError> {
    let n = env.kv_increment(key, 1)?;
    if n == 1 {
        register_expiry(env, key, expires_at_ms)?;
    }
    Ok(n == 1)
}

/// A counter as `get` returns it: 8 little-endian bytes (Spin's SQLite store), or decimal
/// digits (Redis `INCRBY`). A counter of ours never reaches the values whose little-endian
/// bytes would all be ASCII digits (above 3.4 × 10^18), so the two cannot be confused.
fn counter_value(bytes: &[u8]) -> u64 {
    if !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit) {
        return std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
    }
    match <[u8; 8]>::try_from(bytes) {
        Ok(b) => i64::from_le_bytes(b).max(0) as u64,
        Err(_) => 0,
    }
}

/// The counters the sweep walks for each bucket, in order (its cursor's phase indexes this):
/// registered keys, then slots.
fn phase_prefix(phase: u8) -> Option<&'static str> {
    match phase {
        0 => Some(REGISTRY),
        1 => Some(SLOT_PREFIX),
        _ => None,
    }
}

/// Where the sweep stands: the bucket, the phase within it and the last index done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    bucket: u64,
    phase: u8,
    done: u64,
}

impl Cursor {
    fn parse(bytes: &[u8]) -> Option<Cursor> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.split(':');
        let cursor = Cursor {
            bucket: parts.next()?.parse().ok()?,
            phase: parts.next()?.parse().ok()?,
            done: parts.next()?.parse().ok()?,
        };
        (parts.next().is_none() && phase_prefix(cursor.phase).is_some()).then_some(cursor)
    }

    fn text(&self) -> String {
        format!("{}:{}:{}", self.bucket, self.phase, self.done)
    }

    fn next_phase(&mut self) {
        self.done = 0;
        self.phase += 1;
        if phase_prefix(self.phase).is_none() {
            self.phase = 0;
            self.bucket += 1;
        }
    }
}

/// Removes the keys of buckets that have closed, at most [`SWEEP_OPS`] key-value operations
/// per call, resuming where the previous call stopped. One read when there is nothing to do.
/// Returns how many stored values (not bookkeeping) were deleted.
///
/// Concurrent sweeps may repeat each other's deletes (harmless); a key below any cursor a
/// sweep wrote has been deleted by that sweep, so nothing is skipped.
pub fn sweep(env: &mut dyn Env) -> Result<u64, KvError> {
    let now = env.now_ms();
    // Bucket b holds expiries up to b * BUCKET_MS; it is swept once that is SKEW_MARGIN_MS past.
    let last_closed = (now.saturating_sub(SKEW_MARGIN_MS) / BUCKET_MS).saturating_sub(1);
    let stored = env.kv_get(CURSOR_KEY)?;
    let mut ops = 1;
    // Every write allocates into a bucket after the last closed one (expiries lie ahead and
    // the router sweeps right after a request that wrote), so a fresh cursor starts there.
    let fresh = Cursor {
        bucket: last_closed + 1,
        phase: 0,
        done: 0,
    };
    let start = match stored.as_deref().and_then(Cursor::parse) {
        Some(c) if last_closed.saturating_sub(c.bucket) > MAX_LAG_BUCKETS => {
            env.log("sweep: the store was idle for over a week; older expired keys stay");
            fresh
        }
        Some(c) => c,
        None => fresh,
    };
    if start.bucket > last_closed && stored.is_some() {
        return Ok(0);
    }
    let mut cursor = start;
    let mut deleted = 0;
    // One operation stays for writing the cursor.
    let budget = SWEEP_OPS - 1;
    'buckets: while cursor.bucket <= last_closed && ops < budget {
        let Some(prefix) = phase_prefix(cursor.phase) else {
            cursor.next_phase();
            continue;
        };
        let counter = counter_key(prefix, cursor.bucket);
        let n = env.kv_get(&counter)?.map_or(0, |b| counter_value(&b));
        ops += 1;
        while cursor.done < n {
            let needed = if prefix == REGISTRY { 3 } else { 2 };
            if ops + needed > budget {
                break 'buckets;
            }
            let i = cursor.done + 1;
            let entry = format!("{prefix}:{}:{i}", cursor.bucket);
            if prefix == REGISTRY {
                ops += 1;
                if let Some(name) = env.kv_get(&entry)? {
                    if let Ok(name) = String::from_utf8(name) {
                        ops += 1;
                        env.kv_delete(&name)?;
                        deleted += 1;
                    }
                    ops += 1;
                    env.kv_delete(&entry)?;
                }
            } else {
                ops += 2;
                env.kv_delete(&entry)?;
                env.kv_delete(&format!("{entry}:c"))?;
                deleted += 1;
            }
            cursor.done = i;
        }
        if n > 0 {
            if ops + 1 > budget {
                break;
            }
            ops += 1;
            env.kv_delete(&counter)?;
        }
        cursor.next_phase();
    }
    if Some(cursor) != stored.as_deref().and_then(Cursor::parse) {
        env.kv_set(CURSOR_KEY, cursor.text().as_bytes())?;
    }
    Ok(deleted)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::FakeEnv;

    /// Runs the sweep until it has nothing left to do; how many calls it took.
    fn sweep_all(env: &mut FakeEnv) -> (u64, usize) {
        let mut total = 0;
        for calls in 1..10_000 {
            let before = env.kv.clone();
            total += sweep(env).unwrap();
            if env.kv == before {
                return (total, calls);
            }
        }
        panic!("the sweep never settles");
    }

    #[test]
    fn claim_once() {
        let mut env = FakeEnv::new();
        assert!(claim(&mut env, "claim:x", 10_000).unwrap());
        assert!(!claim(&mut env, "claim:x", 10_000).unwrap());
    }

    #[test]
    fn a_slot_costs_one_increment_and_its_value_one_set() {
        let mut env = FakeEnv::new();
        let a = allocate(&mut env).unwrap();
        let b = allocate(&mut env).unwrap();
        assert_eq!((a.n, b.n, a.bucket), (1, 2, b.bucket));
        let exp = env.now + 60_000;
        put_slot(&mut env, &b, &"v", exp).unwrap();
        assert!(claim_slot(&mut env, &b).unwrap());
        assert!(!claim_slot(&mut env, &b).unwrap());
        assert_eq!(
            env.kv_ops
                .iter()
                .filter(|(op, _)| *op != "get")
                .map(|(op, _)| *op)
                .collect::<Vec<_>>(),
            ["increment", "increment", "set", "increment", "increment"],
            "no registry entry for a slot"
        );
        assert_eq!(
            get_slot::<String>(&mut env, &b).unwrap().as_deref(),
            Some("v")
        );
        env.now = exp;
        assert_eq!(get_slot::<String>(&mut env, &b).unwrap(), None, "expired");
    }

    #[test]
    fn expired_values_are_invisible_and_swept() {
        let mut env = FakeEnv::new();
        env.now = 1_000_000 * BUCKET_MS;
        sweep(&mut env).unwrap();
        let exp = env.now + 60_000;
        for i in 0..200 {
            put_expiring(&mut env, &format!("x:{i}"), &i, exp).unwrap();
            claim(&mut env, &format!("c:{i}"), exp).unwrap();
            let slot = allocate(&mut env).unwrap();
            put_slot(&mut env, &slot, &i, exp).unwrap();
            claim_slot(&mut env, &slot).unwrap();
        }
        assert_eq!(get_live::<i32>(&mut env, "x:5").unwrap(), Some(5));
        assert!(env.kv.len() > 1000);
        env.now += 61_000;
        assert_eq!(get_live::<i32>(&mut env, "x:5").unwrap(), None);
        assert_eq!(sweep(&mut env).unwrap(), 0, "nothing has closed yet");
        env.now += SLOT_TTL_MS + SKEW_MARGIN_MS + 2 * BUCKET_MS;
        let (deleted, calls) = sweep_all(&mut env);
        assert_eq!(
            deleted, 600,
            "200 values, claims and tickets (with their claims)"
        );
        assert!(calls > 10, "in bounded slices: {calls}");
        assert_eq!(
            env.kv.keys().collect::<Vec<_>>(),
            [CURSOR_KEY],
            "only the cursor is left"
        );
    }

    #[test]
    fn each_call_is_bounded_and_a_call_that_dies_midway_loses_nothing() {
        let mut env = FakeEnv::new();
        env.now = 1_000_000 * BUCKET_MS;
        sweep(&mut env).unwrap();
        let exp = env.now + 1_000;
        for i in 0..500 {
            put_expiring(&mut env, &format!("x:{i}"), &i, exp).unwrap();
        }
        env.now += 10 * BUCKET_MS;
        // Every call stays within its budget; one that fails halfway through (the store goes
        // down after some deletes) leaves its cursor behind, and the next call redoes the rest.
        let mut rounds = 0;
        while env.kv.keys().any(|k| k.starts_with("x:")) {
            rounds += 1;
            let before = env.kv_ops.len();
            sweep(&mut env).unwrap();
            assert!(env.kv_ops.len() - before <= SWEEP_OPS as usize);
            if rounds == 3 {
                // A sweep that dies: its deletes happen, its cursor write does not.
                let cursor = env.kv.get(CURSOR_KEY).cloned();
                sweep(&mut env).unwrap();
                env.kv.insert(CURSOR_KEY.into(), cursor.unwrap());
            }
            assert!(rounds < 200);
        }
        assert!(
            rounds > 20,
            "500 keys are not deleted in one request: {rounds}"
        );
        sweep_all(&mut env);
        assert_eq!(env.kv.keys().collect::<Vec<_>>(), [CURSOR_KEY]);
    }

    #[test]
    fn nothing_to_do_is_one_read() {
        let mut env = FakeEnv::new();
        sweep_all(&mut env);
        env.kv_ops.clear();
        assert_eq!(sweep(&mut env).unwrap(), 0);
        assert_eq!(env.kv_ops, [("get", CURSOR_KEY.to_string())]);
    }

    #[test]
    fn sweep_catches_up_in_bounded_steps_and_jumps_a_week_of_idle() {
        let mut env = FakeEnv::new();
        env.now = 10_000 * BUCKET_MS;
        sweep(&mut env).unwrap();
        let exp = env.now + 1000;
        put_expiring(&mut env, "late", &1, exp).unwrap();
        env.now += 100 * BUCKET_MS;
        let (total, calls) = sweep_all(&mut env);
        assert_eq!(total, 1);
        assert!(
            calls > 2,
            "a hundred empty buckets take a few calls: {calls}"
        );
        assert!(!env.kv.contains_key("late"));
        env.now += 30 * 24 * 60 * BUCKET_MS;
        let (_, calls) = sweep_all(&mut env);
        assert!(calls < 20, "{calls}");
    }

    #[test]
    fn counters_read_in_either_store_format() {
        assert_eq!(counter_value(&7i64.to_le_bytes()), 7);
        assert_eq!(counter_value(b"12"), 12);
        assert_eq!(counter_value(b"12345678"), 12_345_678);
        assert_eq!(counter_value(b"junk"), 0);
        assert_eq!(counter_value(&(-3i64).to_le_bytes()), 0);
    }
}
