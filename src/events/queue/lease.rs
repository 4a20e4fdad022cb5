//! Leases without compare-and-swap: a drainer claims every time window its work may overlap
//! (`increment` == 1 wins) and gives its claims back when done.

use super::{LEASE_MARGIN_MS, LEASE_WINDOW_MS};
use crate::env::Env;
use crate::failure::Failure;

/// The windows a drain claims.
pub(super) struct Lease {
    keys: Vec<String>,
}

impl Lease {
    pub(super) fn acquire(
        env: &mut dyn Env,
        from: u64,
        until: u64,
    ) -> Result<Option<Lease>, Failure> {
        let first = from / LEASE_WINDOW_MS;
        let last = (until + LEASE_MARGIN_MS) / LEASE_WINDOW_MS;
        let mut lease = Lease { keys: Vec::new() };
        for w in first..=last {
            let key = format!("evq:lease:{w}");
            match claim_window(env, &key) {
                Ok(true) => {
                    // Old windows are no longer claimed by anyone.
                    if w == first && w >= 3 {
                        let _ = env.kv_delete(&format!("evq:lease:{}", w - 3));
                    }
                    lease.keys.push(key);
                }
                Ok(false) => {
                    lease.release(env);
                    return Ok(None);
                }
                Err(e) => {
                    lease.release(env);
                    return Err(e);
                }
            }
        }
        Ok(Some(lease))
    }

    pub(super) fn release(self, env: &mut dyn Env) {
        for key in &self.keys {
            if env.kv_increment(key, -1).is_err() {
                // A timeout may have applied it: look before giving it back again.
                match env.kv_increment(key, 0) {
                    Ok(1) if env.kv_increment(key, -1).is_ok() => {}
                    Ok(0) => {}
                    _ => env.log(
                        "event queue: could not release a drain lease; it ends with its window",
                    ),
                }
            }
        }
    }
}

/// Claims one lease window: `increment` gives 1 to exactly one claimant; a loser gives its
/// increment back. When the store fails the increment, a look at the counter tells whether it
/// was applied (1: this claim holds it), so a store timeout does not block the window.
fn claim_window(env: &mut dyn Env, key: &str) -> Result<bool, Failure> {
    let claimed = match env.kv_increment(key, 1) {
        Ok(n) => n,
        Err(_) => match env.kv_increment(key, 0)? {
            1 => return Ok(true),
            0 => env.kv_increment(key, 1)?,
            _ => return Ok(false),
        },
    };
    if claimed == 1 {
        return Ok(true);
    }
    if env.kv_increment(key, -1).is_err() {
        env.log("event queue: could not give back a lease claim; the window ends by itself");
    }
    Ok(false)
}
