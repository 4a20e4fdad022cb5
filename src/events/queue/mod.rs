//! The deferred queue of contact events (issue 10.6): an event push is answered as soon as its
//! ids are in the key-value store, and the details are fetched and recorded later, in bounded
//! slices, by whichever request comes next: the event route itself, a platform read of
//! `changes`, a sync step ([`drain_deferred`]).
//!
//! DingTalk counts an answer slower than 1,500 ms as a failed push and retries it
//! (docs/dingtalk-api.md §8.6); fetching the details of 20 members at DingTalk's pace takes
//! longer than that, so the route cannot wait for them.
//!
//! Key-value layout (get, set, delete and increment only, docs/hosts.md):
//! * `evq:tail` — counter: slots taken; `evq:head` — the last slot fully drained (plain value,
//!   written by the lease holder only, so a repeated write is harmless);
//! * `evq:{n}` — slot `n`: the event's key, corp, kind of work, its first [`CHUNK_IDS`] ids,
//!   how far it is drained, and the change-log positions of a batch being recorded;
//!   `evq:{n}:{c}` — further chunks of ids;
//! * the event's own key (`evt:id:…` / `evt:…`, expiring) — `queued` in slot `n`, or `done`:
//!   re-deliveries are answered from it and never queued twice;
//! * `evq:lease:{w}` — who drains during time window `w` ([`LEASE_WINDOW_MS`]);
//! * `evq:gap:{n}` — when a slot was first seen without its record (expiring).
//!
//! **Exactly once.** A slot is drained by one lease holder at a time, in order. A batch takes
//! its change-log positions with one increment, notes them in the slot *before* writing the
//! entries, and moves the slot's `next` past the batch after. A holder that dies or meets a
//! store fault anywhere leaves the slot as it was or with its positions noted; the next holder
//! keeps the entries that were written and voids the others (readers pass them at once), so a
//! change is never recorded twice nor lost, and a queue entry is removed only after its changes
//! are recorded. A re-delivery of an event whose slot is half drained is answered `success`
//! (it is queued), never refused.
//!
//! **Leases without compare-and-swap.** A drainer claims every time window its work may
//! overlap (`increment` == 1 wins; a loser gives its increment back), works until its budget's
//! end, and writes nothing after `end + LEASE_MARGIN_MS`. Two drainers overlap only if their
//! clocks differ by more than [`LEASE_MARGIN_MS`]; a drainer that dies holds its windows for at
//! most two windows. An increment lost to a store timeout blocks draining until the window ends.
//!
//! Parts: `enqueue` (the event route records an event's ids), `drain` (the bounded drain and its
//! leases) and `record` (one slot's items recorded in the change log and the mirror, an
//! interrupted batch's positions voided). The slot layout below is shared by them.

mod drain;
mod enqueue;
mod lease;
mod record;

pub use drain::{drain_deferred, DrainBudget};
pub use enqueue::{enqueue, Enqueued};

// The rest of the queue's public items, at the paths they had before the split.
#[allow(unused_imports)]
pub use drain::Drained;
#[allow(unused_imports)]
pub use enqueue::is_known;

use crate::env::Env;
use crate::failure::Failure;
use crate::kv;
use serde::{Deserialize, Serialize};

/// Ids kept in one slot record or chunk.
pub const CHUNK_IDS: usize = 1000;
/// Most items one batch records (one change-log reservation each).
const MAX_BATCH: usize = 200;
/// Items in a drain's first batch, before its pace is known.
const FIRST_BATCH: usize = 25;
/// How long an event's queued/done marker is kept: re-deliveries within it are recognised.
pub const STATE_TTL_MS: u64 = 3 * 24 * 3600 * 1000;
/// A slot without its record (or an event without its marker) this long is given up: its
/// writer died before DingTalk got `success`, so DingTalk re-delivers the event.
pub const GAP_GRACE_MS: u64 = 10_000;
/// Width of a lease window.
pub const LEASE_WINDOW_MS: u64 = 4_000;
/// Clock skew between instances tolerated by the lease, and time left for the last writes.
pub const LEASE_MARGIN_MS: u64 = 1_000;
/// No detail call is started with less time than this left.
const MIN_CALL_MS: u64 = 100;
/// An item whose details fail this many drains in a row is given up (logged); the next full
/// sync reports the member or department.
const MAX_FAILURES: u32 = 20;

const TAIL_KEY: &str = "evq:tail";
/// What a slot given up by its writer holds: the drain passes it at once.
const VOID_SLOT: &[u8] = b"{\"void\":true}";
const HEAD_KEY: &str = "evq:head";

/// What a queued event asks for, per id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Work {
    /// Fetch the member (`user/get`), record `member_upserted`, mirror it.
    UserDetails,
    /// Record `member_deactivated`, drop the mirrored member.
    UserLeft,
    /// Record `admin_granted`.
    AdminGranted,
    /// Record `admin_revoked`.
    AdminRevoked,
    /// Fetch the department (`department/get`), record `department_upserted`.
    DeptDetails,
    /// Record `department_removed`.
    DeptRemoved,
}

impl Work {
    fn fetches(self) -> bool {
        matches!(self, Work::UserDetails | Work::DeptDetails)
    }
}

/// Change-log positions reserved for a batch being recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Reserved {
    /// First position.
    seq: u64,
    /// Offset (from `next`) of the item each position is for.
    items: Vec<u32>,
    /// Items the batch covers (those without a change too: gone members).
    span: u32,
}

/// One queued event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SlotRecord {
    /// The event's de-duplication key.
    e: String,
    corp: String,
    work: Work,
    /// The first chunk of ids.
    ids: Vec<String>,
    total: u32,
    /// Items drained.
    #[serde(default)]
    next: u32,
    #[serde(default)]
    pending: Option<Reserved>,
    #[serde(default)]
    failures: u32,
}

/// An event's marker under its de-duplication key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "s", rename_all = "snake_case")]
enum Marker {
    /// Queued in slot `n`.
    Queued { n: u64 },
    /// Every change recorded.
    Done,
}

/// A marker with its expiry, registered once with the sweep when the event is queued: marking
/// it done later rewrites the value only (one write, not three).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct StampedMarker {
    exp: u64,
    m: Marker,
}

fn load_marker(env: &mut dyn Env, event_key: &str) -> Result<Option<StampedMarker>, Failure> {
    let now = env.now_ms();
    Ok(kv::get_json::<StampedMarker>(env, event_key)?.filter(|s| s.exp > now))
}

fn slot_key(n: u64) -> String {
    format!("evq:{n}")
}

fn chunk_key(n: u64, c: usize) -> String {
    format!("evq:{n}:{c}")
}

fn gap_key(n: u64) -> String {
    format!("evq:gap:{n}")
}

/// Whether slot `n`'s missing record or marker may be given up now; notes when it was first
/// seen missing.
fn gap_expired(env: &mut dyn Env, n: u64) -> Result<bool, Failure> {
    let now = env.now_ms();
    match kv::get_live::<u64>(env, &gap_key(n))? {
        Some(first_seen) => Ok(now >= first_seen.saturating_add(GAP_GRACE_MS)),
        None => {
            kv::put_expiring(env, &gap_key(n), &now, now + STATE_TTL_MS)?;
            Ok(false)
        }
    }
}

/// The keys of slot `n`: its chunks and its record.
fn slot_keys(n: u64, record: &SlotRecord) -> Vec<String> {
    let chunks = (record.total as usize).div_ceil(CHUNK_IDS);
    (1..chunks)
        .map(|c| chunk_key(n, c))
        .chain(std::iter::once(slot_key(n)))
        .collect()
}

/// The ids of items `from..from+len` (within one chunk).
fn ids_at(
    env: &mut dyn Env,
    n: u64,
    record: &SlotRecord,
    chunk_cache: &mut Option<(usize, Vec<String>)>,
    from: usize,
) -> Result<Vec<String>, Failure> {
    let c = from / CHUNK_IDS;
    let in_chunk = from % CHUNK_IDS;
    let chunk: &[String] = if c == 0 {
        &record.ids
    } else {
        if chunk_cache.as_ref().map(|(cc, _)| *cc) != Some(c) {
            let ids: Vec<String> = kv::get_json(env, &chunk_key(n, c))?.unwrap_or_default();
            *chunk_cache = Some((c, ids));
        }
        chunk_cache
            .as_ref()
            .map(|(_, ids)| ids.as_slice())
            .unwrap_or(&[])
    };
    Ok(chunk.get(in_chunk..).unwrap_or(&[]).to_vec())
}
