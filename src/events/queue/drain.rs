//! The drain: within a request's budget, under the lease, slot after slot from the head; moves
//! the head past each finished slot and deletes its keys.

use super::lease::Lease;
use super::record::{drain_slot, Step};
use super::{FIRST_BATCH, HEAD_KEY, LEASE_MARGIN_MS, LEASE_WINDOW_MS, MAX_BATCH, TAIL_KEY};
use crate::env::Env;
use crate::failure::Failure;
use crate::model::SequencedChange;
use crate::settings::{CorpApp, Settings};

/// How much one request may spend draining the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainBudget {
    /// Wall time from the call, in milliseconds (capped at `LEASE_WINDOW_MS - LEASE_MARGIN_MS`).
    pub time_ms: u64,
    /// Most changes recorded.
    pub max_changes: usize,
}

impl DrainBudget {
    /// The event route's budget: with verification and the answer, far inside DingTalk's
    /// 1,500 ms, even when every detail call takes its full time.
    pub const EVENT: DrainBudget = DrainBudget {
        time_ms: 600,
        max_changes: 2_000,
    };
    /// A platform request's budget (`changes`, sync step).
    pub const PLATFORM: DrainBudget = DrainBudget {
        time_ms: 2_000,
        max_changes: 5_000,
    };

    /// This budget less the `spent_ms` its request already used before draining: the event
    /// route's deadline counts from the push's arrival, so a slow decryption or store leaves
    /// less time to drain instead of delaying the answer.
    #[must_use]
    pub fn less(self, spent_ms: u64) -> DrainBudget {
        DrainBudget {
            time_ms: self.time_ms.saturating_sub(spent_ms),
            ..self
        }
    }
}

/// What is left of one drain's budget, and how fast this drain has been recording: each batch
/// is sized to what the remaining time holds at the pace the previous batch took, so a slow
/// store (Spin's SQLite under load) shortens batches instead of overrunning the deadline.
#[derive(Debug, Clone, Copy)]
pub(super) struct Allowance {
    /// Nothing is started at or after this time (Unix ms).
    pub until: u64,
    /// Most changes recorded by the whole drain.
    pub max_changes: usize,
    /// Microseconds the last batch took per item (detail calls and writes), once measured.
    us_per_item: Option<u64>,
}

impl Allowance {
    fn new(until: u64, max_changes: usize) -> Allowance {
        Allowance {
            until,
            max_changes,
            us_per_item: None,
        }
    }

    /// Whether the drain must stop before another batch: out of time or of changes.
    pub fn spent(&self, now: u64, recorded: usize) -> bool {
        now >= self.until || recorded >= self.max_changes
    }

    /// How many items the next batch may take: [`FIRST_BATCH`] until a pace is known, then
    /// what three quarters of the remaining time holds at that pace; at least one, at most
    /// [`MAX_BATCH`] and the changes left.
    pub fn batch_size(&self, now: u64, recorded: usize) -> usize {
        let by_time = match self.us_per_item {
            None => FIRST_BATCH,
            Some(us) => {
                let left_us = self.until.saturating_sub(now).saturating_mul(750);
                usize::try_from(left_us / us.max(1)).unwrap_or(MAX_BATCH)
            }
        };
        by_time
            .clamp(1, MAX_BATCH)
            .min(self.max_changes.saturating_sub(recorded))
    }

    /// Notes that a batch of `items` took `took_ms` (a batch under a millisecond counts as one).
    pub fn observe(&mut self, items: usize, took_ms: u64) {
        if let Ok(items @ 1..) = u64::try_from(items) {
            self.us_per_item = Some(took_ms.max(1).saturating_mul(1000) / items);
        }
    }
}

/// What one drain did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Drained {
    /// Changes recorded by this call, in order.
    pub changes: Vec<SequencedChange>,
    /// Work is left (the budget ran out, another request holds the lease, or DingTalk failed).
    pub more: bool,
}

/// Records queued events' changes within `budget`: fetches details where an event carries
/// only ids, mirrors members, appends to the change log. Safe to call from any request at any
/// time; returns at once when the queue is empty (two reads) or another request is draining.
///
/// # Errors
///
/// A store failure; nothing is lost (the queue keeps what was not recorded).
pub fn drain_deferred(
    env: &mut dyn Env,
    settings: &Settings,
    budget: DrainBudget,
) -> Result<Drained, Failure> {
    let start = env.now_ms();
    let until = start + budget.time_ms.min(LEASE_WINDOW_MS - LEASE_MARGIN_MS);
    let mut allowance = Allowance::new(until, budget.max_changes);
    let mut drained = Drained::default();
    let mut apps: Option<Vec<CorpApp>> = None;
    let (mut head, mut tail) = (read_head(env)?, read_tail(env)?);
    loop {
        if head >= tail {
            drained.more = false;
            return Ok(drained);
        }
        let now = env.now_ms();
        if allowance.spent(now, drained.changes.len()) {
            drained.more = true;
            return Ok(drained);
        }
        let Some(lease) = Lease::acquire(env, now, until)? else {
            drained.more = true;
            return Ok(drained);
        };
        let held = drain_held(
            env,
            settings,
            &mut apps,
            (head, tail),
            &mut allowance,
            &mut drained,
        );
        lease.release(env);
        let (stopped, drained_to) = held?;
        if stopped == Held::Paused {
            drained.more = true;
            return Ok(drained);
        }
        // The queue was empty while held. Look again after releasing: an event queued while
        // the lease was held found it taken and left its slot to us.
        tail = read_tail(env)?;
        head = if tail > drained_to {
            read_head(env)?
        } else {
            drained_to
        };
    }
}

fn read_head(env: &mut dyn Env) -> Result<u64, Failure> {
    Ok(env
        .kv_get(HEAD_KEY)?
        .and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok())
        .unwrap_or(0))
}

fn read_tail(env: &mut dyn Env) -> Result<u64, Failure> {
    Ok(u64::try_from(env.kv_increment(TAIL_KEY, 0)?).unwrap_or(0))
}

/// Why a held drain stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// Every slot is drained.
    Empty,
    /// Out of budget, waiting on a slot being written, or DingTalk failed.
    Paused,
}

/// Drains slots after `head` while the lease and budget last; returns why it stopped and the
/// last slot drained.
fn drain_held(
    env: &mut dyn Env,
    settings: &Settings,
    apps: &mut Option<Vec<CorpApp>>,
    (mut head, tail): (u64, u64),
    allowance: &mut Allowance,
    drained: &mut Drained,
) -> Result<(Held, u64), Failure> {
    loop {
        // Slots queued meanwhile are seen by the caller's look after releasing.
        if head >= tail {
            return Ok((Held::Empty, head));
        }
        if allowance.spent(env.now_ms(), drained.changes.len()) {
            return Ok((Held::Paused, head));
        }
        let n = head + 1;
        match drain_slot(env, settings, apps, n, allowance, drained)? {
            Step::Finished(leftovers) => {
                env.kv_set(HEAD_KEY, n.to_string().as_bytes())?;
                head = n;
                for key in leftovers {
                    if env.kv_delete(&key).is_err() {
                        env.log(&format!(
                            "event queue: could not delete a finished slot's key ({key})"
                        ));
                    }
                }
            }
            Step::Paused => return Ok((Held::Paused, head)),
        }
    }
}
