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

use crate::corps;
use crate::dingtalk::{contacts, ApiError, Client, Endpoints, Problem, CALL_TIMEOUT_MS};
use crate::directory::{changelog, mirror};
use crate::env::{Env, TransportError};
use crate::failure::Failure;
use crate::kv;
use crate::model::{DirectoryChange, SequencedChange};
use crate::settings::{CorpApp, Settings};
use serde::{Deserialize, Serialize};

/// Ids kept in one slot record or chunk.
pub const CHUNK_IDS: usize = 1000;
/// Most items one batch records (one change-log reservation each).
const MAX_BATCH: usize = 200;
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

/// How an event push was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued now.
    Queued,
    /// Already queued or applied (a re-delivery): nothing written.
    Duplicate,
}

/// Whether the event under `event_key` is already queued or applied (one read).
pub fn is_known(env: &mut dyn Env, event_key: &str) -> Result<bool, Failure> {
    Ok(load_marker(env, event_key)?.is_some())
}

/// Queues `ids` of one event for `work` in `corp`, unless the event is already queued or
/// applied. Costs one read for a re-delivery; otherwise an increment, one write per
/// [`CHUNK_IDS`] ids and the marker. On `Err` nothing is acknowledged: DingTalk re-delivers,
/// and a slot left half-written is skipped by the drain after [`GAP_GRACE_MS`].
pub fn enqueue(
    env: &mut dyn Env,
    event_key: &str,
    corp: &str,
    work: Work,
    ids: &[String],
) -> Result<Enqueued, Failure> {
    if ids.is_empty() {
        return Ok(Enqueued::Queued);
    }
    if is_known(env, event_key)? {
        return Ok(Enqueued::Duplicate);
    }
    let n = match env.kv_increment(TAIL_KEY, 1) {
        Ok(n) => u64::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(Failure::storage)?,
        Err(e) => {
            // A timeout may have taken slot `tail` for us: void it if nothing is there, so the
            // drain passes it at once instead of holding every later event for the grace period.
            // (Were it another enqueuer's slot between its increment and its write, that write
            // replaces the void; only a drain passing in that millisecond would miss it.)
            if let Ok(Ok(t)) = env.kv_increment(TAIL_KEY, 0).map(u64::try_from) {
                if t > 0 && matches!(env.kv_get(&slot_key(t)), Ok(None)) {
                    let _ = env.kv_set(&slot_key(t), VOID_SLOT);
                }
            }
            return Err(e.into());
        }
    };
    let total = u32::try_from(ids.len()).map_err(|_| Failure::storage())?;
    let mut chunks = ids.chunks(CHUNK_IDS);
    let first = chunks.next().unwrap_or_default();
    // The record before the chunks, so a drain that gives the slot up knows what to delete.
    let record = SlotRecord {
        e: event_key.to_string(),
        corp: corp.to_string(),
        work,
        ids: first.to_vec(),
        total,
        next: 0,
        pending: None,
        failures: 0,
    };
    let written = kv::put_json(env, &slot_key(n), &record).and_then(|()| {
        chunks
            .enumerate()
            .try_for_each(|(c, chunk)| kv::put_json(env, &chunk_key(n, c + 1), &chunk))
    });
    if let Err(e) = written {
        // Unacknowledged: DingTalk re-delivers into a new slot. Void this one so the drain
        // passes it at once instead of waiting for it.
        let _ = env.kv_set(&slot_key(n), VOID_SLOT);
        return Err(e.into());
    }
    let now = env.now_ms();
    let marker = StampedMarker {
        exp: now + STATE_TTL_MS,
        m: Marker::Queued { n },
    };
    let marked = kv::put_json(env, event_key, &marker)
        .and_then(|()| kv::register_expiry(env, event_key, marker.exp));
    if let Err(e) = marked {
        // A timeout may have applied it: then the event is queued, and DingTalk may have
        // `success`. Otherwise void the slot, as above.
        match load_marker(env, event_key) {
            Ok(Some(m)) if m == marker => {
                if kv::register_expiry(env, event_key, marker.exp).is_err() {
                    env.log("event queue: a marker may outlive its expiry (not registered)");
                }
                return Ok(Enqueued::Queued);
            }
            Ok(None) => {
                let _ = env.kv_set(&slot_key(n), VOID_SLOT);
            }
            _ => {}
        }
        return Err(e.into());
    }
    Ok(Enqueued::Queued)
}

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
    let mut drained = Drained::default();
    let mut apps: Option<Vec<CorpApp>> = None;
    let (mut head, mut tail) = (read_head(env)?, read_tail(env)?);
    loop {
        if head >= tail {
            drained.more = false;
            return Ok(drained);
        }
        let now = env.now_ms();
        if now >= until || drained.changes.len() >= budget.max_changes {
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
            until,
            budget.max_changes,
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

/// The windows a drain claims.
struct Lease {
    keys: Vec<String>,
}

impl Lease {
    fn acquire(env: &mut dyn Env, from: u64, until: u64) -> Result<Option<Lease>, Failure> {
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

    fn release(self, env: &mut dyn Env) {
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
    until: u64,
    max_changes: usize,
    drained: &mut Drained,
) -> Result<(Held, u64), Failure> {
    loop {
        // Slots queued meanwhile are seen by the caller's look after releasing.
        if head >= tail {
            return Ok((Held::Empty, head));
        }
        if env.now_ms() >= until || drained.changes.len() >= max_changes {
            return Ok((Held::Paused, head));
        }
        let n = head + 1;
        match drain_slot(env, settings, apps, n, until, max_changes, drained)? {
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

enum Step {
    /// Done with the slot: the keys to delete once the head has moved past it (so a failed
    /// head write leaves a slot the next drain recognises as done, never a hole).
    Finished(Vec<String>),
    Paused,
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

fn drain_slot(
    env: &mut dyn Env,
    settings: &Settings,
    apps: &mut Option<Vec<CorpApp>>,
    n: u64,
    until: u64,
    max_changes: usize,
    drained: &mut Drained,
) -> Result<Step, Failure> {
    let record = match env.kv_get(&slot_key(n))? {
        None => {
            // Being written (an enqueue between its increment and its write), or its writer
            // died: DingTalk got no `success` then, and re-delivers the event.
            if gap_expired(env, n)? {
                env.log(&format!("event queue: slot {n} was never written; skipped"));
                return Ok(Step::Finished(Vec::new()));
            }
            return Ok(Step::Paused);
        }
        Some(bytes) if bytes == VOID_SLOT => {
            return Ok(Step::Finished(vec![slot_key(n)]));
        }
        Some(bytes) => match serde_json::from_slice::<SlotRecord>(&bytes) {
            Ok(r) => r,
            Err(_) => {
                env.log(&format!("event queue: slot {n} is unreadable; skipped"));
                return Ok(Step::Finished(vec![slot_key(n)]));
            }
        },
    };
    let mut record = record;
    let marker = load_marker(env, &record.e)?;
    let exp = marker.map_or(0, |m| m.exp);
    match marker.map(|m| m.m) {
        Some(Marker::Queued { n: owner }) if owner == n => {}
        Some(_) => {
            // Another slot holds this event (a concurrent duplicate delivery), or it is done.
            return Ok(Step::Finished(slot_keys(n, &record)));
        }
        None => {
            if !gap_expired(env, n)? {
                return Ok(Step::Paused);
            }
            env.log(&format!(
                "event queue: slot {n} was never acknowledged; skipped (DingTalk re-delivers it)"
            ));
            return Ok(Step::Finished(slot_keys(n, &record)));
        }
    }
    let apps = match apps {
        Some(a) => a,
        None => apps.insert(corps::all(env, settings)?),
    };
    let Some(app) = apps.iter().find(|a| a.corp_id == record.corp).cloned() else {
        env.log("event queue: an event for a corp no longer served; dropped");
        finish(env, &record, exp)?;
        return Ok(Step::Finished(slot_keys(n, &record)));
    };

    // A batch interrupted after its positions were noted: keep what was written, void the rest.
    if let Some(pending) = record.pending.take() {
        let mut kept = 0;
        for (j, _) in pending.items.iter().enumerate() {
            if changelog::is_recorded(env, pending.seq + j as u64)? {
                kept = j + 1;
            } else {
                break;
            }
        }
        for j in kept..pending.items.len() {
            changelog::void(env, pending.seq + j as u64)?;
        }
        let advance = if kept == pending.items.len() {
            pending.span
        } else {
            pending.items[kept]
        };
        record.next += advance;
        record.failures = 0;
        kv::put_json(env, &slot_key(n), &record)?;
    }

    let endpoints = Endpoints::from_settings(settings);
    let mut chunk_cache = None;
    while record.next < record.total {
        let left = max_changes.saturating_sub(drained.changes.len());
        if env.now_ms() >= until || left == 0 {
            return Ok(Step::Paused);
        }
        let mut ids = ids_at(env, n, &record, &mut chunk_cache, record.next as usize)?;
        ids.truncate(
            MAX_BATCH
                .min(left)
                .min((record.total - record.next) as usize),
        );
        if ids.is_empty() {
            // A chunk is missing (never written): its ids cannot be known.
            env.log(&format!(
                "event queue: slot {n} lost a chunk of ids; the next full sync reports them"
            ));
            record.next = record.total;
            break;
        }
        let batch = resolve(env, &endpoints, &app, record.work, &ids, until);
        let (items, span) = match batch {
            Batch::Resolved { items, span } => (items, span),
            Batch::Failed(ApiError::Store(e)) => return Err(e.into()),
            // Cut short by this request's own budget: not DingTalk's fault, not counted.
            Batch::Failed(ApiError::Transport(TransportError::Timeout)) => {
                env.log("event queue: a detail call ran out of this request's time; kept for the next drain");
                return Ok(Step::Paused);
            }
            Batch::Failed(e) => {
                record.failures += 1;
                if record.failures >= MAX_FAILURES {
                    env.log(&format!(
                        "event queue: details failed {MAX_FAILURES} times ({}); one id given up, the next full sync reports it",
                        e.code_text()
                    ));
                    record.next += 1;
                    record.failures = 0;
                } else {
                    env.log(&format!(
                        "event queue: details failed ({}); kept for the next drain",
                        e.code_text()
                    ));
                }
                kv::put_json(env, &slot_key(n), &record)?;
                return Ok(Step::Paused);
            }
        };
        if span == 0 {
            return Ok(Step::Paused); // out of time before the first call
        }
        if !items.is_empty() {
            let seq = match changelog::reserve(env, items.len()) {
                Ok(seq) => seq,
                Err(e) => {
                    // The lease holder is the log's only writer: void what a timeout reserved.
                    let _ = changelog::void_unrecorded_tail(env, items.len());
                    return Err(e);
                }
            };
            record.pending = Some(Reserved {
                seq,
                items: items.iter().map(|(offset, _)| *offset).collect(),
                span,
            });
            if let Err(e) = kv::put_json(env, &slot_key(n), &record) {
                // Not noted (or noted by a timeout that applied it): void the positions, so
                // readers need not wait for them; a drain that finds the note redoes the batch.
                for j in 0..record.pending.as_ref().map_or(0, |p| p.items.len()) {
                    let _ = changelog::void(env, seq + j as u64);
                }
                return Err(e.into());
            }
            let at_ms = env.now_ms();
            for (j, (_, change)) in items.into_iter().enumerate() {
                apply_to_mirror(env, &change)?;
                drained
                    .changes
                    .push(changelog::record(env, seq + j as u64, at_ms, change)?);
            }
            record.pending = None;
        }
        record.next += span;
        record.failures = 0;
        if record.next < record.total {
            kv::put_json(env, &slot_key(n), &record)?;
        }
    }
    finish(env, &record, exp)?;
    Ok(Step::Finished(slot_keys(n, &record)))
}

/// Marks the event done: re-deliveries are answered from it (until the queued marker's expiry,
/// which the sweep already knows), and a slot still holding it is passed.
fn finish(env: &mut dyn Env, record: &SlotRecord, exp: u64) -> Result<(), Failure> {
    let done = StampedMarker {
        exp,
        m: Marker::Done,
    };
    kv::put_json(env, &record.e, &done)?;
    Ok(())
}

/// Keeps the directory mirror in step with a recorded change (written before the entry, so an
/// entry that exists has its mirror write behind it).
fn apply_to_mirror(env: &mut dyn Env, change: &DirectoryChange) -> Result<(), Failure> {
    match change {
        DirectoryChange::MemberUpserted { member } => mirror::store(env, member)?,
        DirectoryChange::MemberDeactivated { corp_id, userid } => {
            mirror::forget(env, corp_id, userid)?
        }
        DirectoryChange::AdminGranted { corp_id, userid }
        | DirectoryChange::AdminRevoked { corp_id, userid } => {
            let granted = matches!(change, DirectoryChange::AdminGranted { .. });
            if let Some(mut member) = mirror::load(env, corp_id, userid)? {
                if member.is_admin != granted {
                    member.is_admin = granted;
                    mirror::store(env, &member)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

enum Batch {
    /// Changes by item offset, and how many items were covered.
    Resolved {
        items: Vec<(u32, DirectoryChange)>,
        span: u32,
    },
    /// The first item's details could not be fetched.
    Failed(ApiError),
}

/// The changes for `ids`, fetching details where needed while time lasts. Stops at the first
/// failed fetch after at least one success (those are recorded; the rest waits).
fn resolve(
    env: &mut dyn Env,
    endpoints: &Endpoints,
    app: &CorpApp,
    work: Work,
    ids: &[String],
    until: u64,
) -> Batch {
    let corp = || app.corp_id.clone();
    if !work.fetches() {
        let items = ids
            .iter()
            .enumerate()
            .filter_map(|(i, id)| {
                let userid = id.clone();
                let change = match work {
                    Work::UserLeft => DirectoryChange::MemberDeactivated {
                        corp_id: corp(),
                        userid,
                    },
                    Work::AdminGranted => DirectoryChange::AdminGranted {
                        corp_id: corp(),
                        userid,
                    },
                    Work::AdminRevoked => DirectoryChange::AdminRevoked {
                        corp_id: corp(),
                        userid,
                    },
                    _ => DirectoryChange::DepartmentRemoved {
                        corp_id: corp(),
                        dept_id: id.parse().ok()?,
                    },
                };
                Some((i as u32, change))
            })
            .collect();
        return Batch::Resolved {
            items,
            span: ids.len() as u32,
        };
    }
    let mut client = Client::new(env, endpoints, app);
    client.throttle_retries = 0;
    let mut items = Vec::new();
    let mut span = 0u32;
    for (i, id) in ids.iter().enumerate() {
        let left = until.saturating_sub(client.env().now_ms());
        if left < MIN_CALL_MS {
            break;
        }
        client.timeout_ms = u32::try_from(left)
            .unwrap_or(CALL_TIMEOUT_MS)
            .min(CALL_TIMEOUT_MS);
        let fetched = match work {
            Work::UserDetails => contacts::user_get(&mut client, id).map(|user| {
                user.to_member(&app.corp_id)
                    .map(|member| DirectoryChange::MemberUpserted { member })
            }),
            _ => match id.parse::<i64>() {
                Ok(dept_id) => contacts::department_get(&mut client, dept_id).map(|detail| {
                    detail
                        .department
                        .map(|department| DirectoryChange::DepartmentUpserted { department })
                }),
                Err(_) => Ok(None),
            },
        };
        match fetched {
            Ok(Some(change)) => items.push((i as u32, change)),
            Ok(None) => client
                .env()
                .log("event queue: DingTalk answered without a usable record; skipped"),
            // Gone again before we asked: its leave or remove event follows.
            Err(e) if matches!(e.problem(), Problem::NotFound | Problem::NotMember) => client
                .env()
                .log("event queue: the member or department no longer exists; skipped"),
            Err(e) if span == 0 => return Batch::Failed(e),
            Err(_) => break,
        }
        span = i as u32 + 1;
    }
    Batch::Resolved { items, span }
}
