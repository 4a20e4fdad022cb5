//! Key-value patterns that are correct on every store Spin offers (docs/hosts.md):
//! single-use claims by atomic `increment`, expiry kept in the value, and a sweep that removes
//! expired keys so the store stays bounded. No compare-and-swap, no get-many, no list-keys.

use crate::env::{Env, KvError};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Width of one expiry bucket.
pub const BUCKET_MS: u64 = 5 * 60 * 1000;
/// At most this many buckets are swept by one request.
const MAX_BUCKETS_PER_SWEEP: u64 = 12;
const CURSOR_KEY: &str = "gc:cursor";

fn bucket_of(expires_at_ms: u64) -> u64 {
    expires_at_ms / BUCKET_MS + 1
}

/// Remembers that `key` may be deleted once `expires_at_ms` has passed.
pub fn register_expiry(env: &mut dyn Env, key: &str, expires_at_ms: u64) -> Result<(), KvError> {
    let bucket = bucket_of(expires_at_ms);
    let n = env.kv_increment(&format!("gc:{bucket}:n"), 1)?;
    env.kv_set(&format!("gc:{bucket}:{n}"), key.as_bytes())
}

/// A value with its expiry, as stored.
#[derive(Serialize, Deserialize)]
struct Stamped<T> {
    exp: u64,
    v: T,
}

/// Stores `value` as JSON under `key` until `expires_at_ms`; the sweep removes it later.
pub fn put_expiring<T: Serialize>(
    env: &mut dyn Env,
    key: &str,
    value: &T,
    expires_at_ms: u64,
) -> Result<(), KvError> {
    let bytes = serde_json::to_vec(&Stamped {
        exp: expires_at_ms,
        v: value,
    })
    .map_err(|e| KvError(format!("encode: {e}")))?;
    env.kv_set(key, &bytes)?;
    register_expiry(env, key, expires_at_ms)
}

/// Reads a value stored by [`put_expiring`]; `None` when absent, expired or unreadable.
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

/// Removes the keys of expiry buckets that have closed. Cheap when there is nothing to do (one read).
/// Returns how many keys were deleted.
pub fn sweep(env: &mut dyn Env) -> Result<u64, KvError> {
    let now = env.now_ms();
    // A bucket is closed once every key registered in it has expired and no writer can still
    // register into it (writers only register future expiries): bucket b holds expiries up to
    // b * BUCKET_MS, so it is closed when now > b * BUCKET_MS.
    let last_closed = (now / BUCKET_MS).saturating_sub(1);
    let cursor = match env.kv_get(CURSOR_KEY)? {
        Some(b) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(last_closed),
        None => {
            env.kv_set(CURSOR_KEY, last_closed.to_string().as_bytes())?;
            last_closed
        }
    };
    let mut deleted = 0;
    let mut bucket = cursor;
    while bucket <= last_closed && bucket < cursor + MAX_BUCKETS_PER_SWEEP {
        if env.kv_increment(&format!("gc:{bucket}:claim"), 1)? == 1 {
            let count_key = format!("gc:{bucket}:n");
            let n = env.kv_increment(&count_key, 0)?;
            for i in 1..=n.max(0) {
                let entry = format!("gc:{bucket}:{i}");
                if let Some(key) = env.kv_get(&entry)? {
                    if let Ok(key) = String::from_utf8(key) {
                        env.kv_delete(&key)?;
                        deleted += 1;
                    }
                    env.kv_delete(&entry)?;
                }
            }
            env.kv_delete(&count_key)?;
        }
        // Claims of long-swept buckets are no longer needed by anyone.
        if bucket >= 2 {
            env.kv_delete(&format!("gc:{}:claim", bucket - 2))?;
        }
        bucket += 1;
        env.kv_set(CURSOR_KEY, bucket.to_string().as_bytes())?;
    }
    Ok(deleted)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::FakeEnv;

    #[test]
    fn claim_once() {
        let mut env = FakeEnv::new();
        assert!(claim(&mut env, "claim:x", 10_000).unwrap());
        assert!(!claim(&mut env, "claim:x", 10_000).unwrap());
    }

    #[test]
    fn expired_values_are_invisible_and_swept() {
        let mut env = FakeEnv::new();
        env.now = 1_000_000;
        sweep(&mut env).unwrap();
        let exp = env.now + 60_000;
        for i in 0..200 {
            put_expiring(&mut env, &format!("t:{i}"), &i, exp).unwrap();
            claim(&mut env, &format!("c:{i}"), exp).unwrap();
        }
        assert_eq!(get_live::<i32>(&mut env, "t:5").unwrap(), Some(5));
        let peak = env.kv.len();
        assert!(peak > 400);
        env.now += 61_000;
        assert_eq!(get_live::<i32>(&mut env, "t:5").unwrap(), None);
        env.now += 2 * BUCKET_MS;
        let deleted = sweep(&mut env).unwrap();
        assert_eq!(deleted, 400);
        assert!(
            env.kv.len() < 8,
            "left: {:?}",
            env.kv.keys().collect::<Vec<_>>()
        );
    }

    #[test]
    fn sweep_catches_up_in_bounded_steps() {
        let mut env = FakeEnv::new();
        env.now = 10 * BUCKET_MS;
        sweep(&mut env).unwrap();
        let exp = env.now + 1000;
        put_expiring(&mut env, "late", &1, exp).unwrap();
        env.now += 100 * BUCKET_MS;
        let mut total = 0;
        for _ in 0..20 {
            total += sweep(&mut env).unwrap();
        }
        assert_eq!(total, 1);
        assert!(!env.kv.contains_key("late"));
    }
}
