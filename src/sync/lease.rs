//! The step lease: which instance may step a corp's sync from checkpoint version `v`.
//!
//! Correct whatever the clock skew between instances: no instance ever compares its clock with a
//! time another instance wrote. The lease of version `v` is a sequence of **epochs**, each held by
//! one instance, all keyed under `synclease:{corp}:{pass}:{v}`:
//!
//! * `take:{e}` — claimed (`increment == 1`) by exactly one instance, which then holds epoch
//!   `e + 1`. The current epoch is the first `e` whose `take:{e}` is absent (epoch 0 has no
//!   holder). Presence is all that is read of it (never its bytes, docs/hosts.md trap 3).
//! * `beat:{e}` — the holder's heartbeat: bumped before every unit of work and every DingTalk call.
//! * `done:{e}` — present once the holder released the lease (failed, or committed).
//!
//! Another instance takes an epoch over when it was released, or when it watched `beat:{e}` not
//! move for [`LEASE_MS`] measured on **its own** clock between its own reads: a killed step
//! blocks the others for [`LEASE_MS`], not a minute. A holder that stalled longer than that (and
//! was taken over) finds `take:{e}` present before it commits and does not commit, so two steps
//! never commit from the same checkpoint, and a takeover never waits on a clock.

use super::*;

/// How long a holder may go without renewing before another instance takes over, measured by the
/// observer's own clock.
pub const LEASE_MS: u64 = 6_000;
/// How often an observer re-reads the heartbeat while it watches.
const POLL_MS: u64 = 200;
/// Epochs of one checkpoint version looked at before giving up (each is a takeover).
const MAX_EPOCHS: u64 = 64;
/// Lease keys are removed by the sweep after this long: far longer than any step lives, and than
/// any plausible clock skew of the sweeping instance.
const KEEP_MS: u64 = 24 * 3600 * 1000;

/// The epoch an instance holds.
pub(super) struct Lease {
    prefix: String,
    epoch: u64,
}

impl Lease {
    fn take_key(prefix: &str, e: u64) -> String {
        format!("{prefix}:take:{e}")
    }
    fn beat_key(prefix: &str, e: u64) -> String {
        format!("{prefix}:beat:{e}")
    }
    fn done_key(prefix: &str, e: u64) -> String {
        format!("{prefix}:done:{e}")
    }

    /// The heartbeat key of this epoch (bumped by [`beat`]).
    pub(super) fn heartbeat_key(&self) -> String {
        Self::beat_key(&self.prefix, self.epoch)
    }

    /// Whether nobody has taken the lease over from this holder.
    pub(super) fn still_held(&self, env: &mut dyn Env) -> Result<bool, KvError> {
        Ok(env
            .kv_get(&Self::take_key(&self.prefix, self.epoch))?
            .is_none())
    }
}

/// Renews the lease whose heartbeat key is `key`.
pub(super) fn beat(env: &mut dyn Env, key: &str) -> Result<(), KvError> {
    if env.kv_increment(key, 1)? == 1 {
        let now = env.now_ms();
        kv::register_expiry(env, key, now + KEEP_MS)?;
    }
    Ok(())
}

/// Claims the lease of checkpoint `ck`. `None`: another instance holds it and is alive (the step
/// returns an empty batch with `retry_after_ms`). May watch a silent holder for up to
/// [`LEASE_MS`] (sleeping) before taking over.
pub(super) fn claim(
    env: &mut dyn Env,
    keys: &Keys,
    ck: &Checkpoint,
) -> Result<Option<Lease>, Failure> {
    let prefix = keys.lease(ck.cur.pass, ck.version);
    let mut e = 0;
    while env.kv_get(&Lease::take_key(&prefix, e))?.is_some() {
        e += 1;
        if e >= MAX_EPOCHS {
            return Ok(None);
        }
    }
    let free = e == 0 || env.kv_get(&Lease::done_key(&prefix, e))?.is_some();
    if !free && !holder_is_silent(env, &prefix, e)? {
        return Ok(None);
    }
    let now = env.now_ms();
    if !kv::claim(env, &Lease::take_key(&prefix, e), now + KEEP_MS)? {
        return Ok(None);
    }
    if !free {
        env.log("sync: the step lease's holder stopped renewing it; taken over");
    }
    let lease = Lease {
        prefix,
        epoch: e + 1,
    };
    beat(env, &lease.heartbeat_key())?;
    Ok(Some(lease))
}

/// Watches epoch `e`'s heartbeat for [`LEASE_MS`] of this instance's own time: true when it did
/// not move (and nobody else took the epoch over meanwhile).
fn holder_is_silent(env: &mut dyn Env, prefix: &str, e: u64) -> Result<bool, KvError> {
    let key = Lease::beat_key(prefix, e);
    let first = env.kv_increment(&key, 0)?;
    if first == 0 {
        // The holder died before its first beat; reading created the counter.
        let now = env.now_ms();
        kv::register_expiry(env, &key, now + KEEP_MS)?;
    }
    let since = env.now_ms();
    loop {
        env.sleep_ms(POLL_MS);
        if env.kv_increment(&key, 0)? != first
            || env.kv_get(&Lease::take_key(prefix, e))?.is_some()
            || env.kv_get(&Lease::done_key(prefix, e))?.is_some()
        {
            // Renewed (alive), taken over by someone else, or released just now: let the caller
            // come back; a released lease is free at once on the next step.
            return Ok(false);
        }
        if env.now_ms().saturating_sub(since) >= LEASE_MS {
            return Ok(true);
        }
    }
}

/// Gives the lease up so that the next step runs at once. Best effort: an unreleased lease is
/// taken over after [`LEASE_MS`].
pub(super) fn release(env: &mut dyn Env, lease: &Lease) {
    let key = Lease::done_key(&lease.prefix, lease.epoch);
    let done = env.kv_increment(&key, 1).and_then(|n| {
        if n == 1 {
            let now = env.now_ms();
            kv::register_expiry(env, &key, now + KEEP_MS)?;
        }
        Ok(())
    });
    if done.is_err() {
        env.log("sync: could not release the step lease; it is taken over after its lease time");
    }
}
