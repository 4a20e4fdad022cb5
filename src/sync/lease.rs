//! The step lease: two 30-s slots claimed with `increment` so two instances never step the same
//! corp at once.

use super::*;

/// Claims the lease for the slot of `started` and the next one. `None`: another instance holds
/// it (the step returns an empty batch with `retry_after_ms`).
pub(super) fn claim(
    env: &mut dyn Env,
    keys: &Keys,
    ck: &Checkpoint,
    started: u64,
) -> Result<Option<[String; 2]>, Failure> {
    let slot = started / LEASE_MS;
    let leases = [
        keys.lease(ck.cur.pass, ck.version, slot),
        keys.lease(ck.cur.pass, ck.version, slot + 1),
    ];
    for (key, s) in leases.iter().zip([slot, slot + 1]) {
        if !kv::claim(env, key, (s + 2) * LEASE_MS)? {
            return Ok(None);
        }
    }
    Ok(Some(leases))
}

pub(super) fn release(env: &mut dyn Env, leases: &[String]) {
    for key in leases {
        if env.kv_delete(key).is_err() {
            env.log("sync: could not release the step lease; it expires by itself");
        }
    }
}
