//! The directory change log: changes from DingTalk events, in order, read by the platform with a
//! cursor (`GET /dingding/api/changes?after=N&limit=M`, typed `directory.changes`).
//!
//! Key-value layout (every store Spin offers, docs/hosts.md):
//! * `changes:seq` — counter; [`append`] takes the positions of its changes with one
//!   `increment(n)`, so positions are unique and strictly increasing across instances;
//! * `change:{seq}` — the [`SequencedChange`] as JSON;
//! * `changes:gap:{seq}` — when a reader first saw position `seq` missing (expiring value).
//!
//! **Gaps.** A writer takes its position before it writes the entry, so a reader can meet a
//! missing entry: either the write is in flight (it appears within milliseconds) or the writer
//! crashed (it never appears). The reader stops before a missing entry and records when it first
//! saw it missing; once it has been missing for [`GAP_GRACE_MS`] (10 s) readers skip it. A write
//! that lands later than that is not delivered to readers already past it.
//!
//! **Idempotent writers.** A writer that must not record a change twice (the deferred event
//! queue, `events::queue`) takes positions with [`reserve`], notes them in its own record, then
//! writes each with [`record`]. After a crash or a store fault it checks which of its positions
//! are written ([`is_recorded`]), keeps those, and marks the others [`void`]: a void position is
//! skipped by readers at once, without the grace period, so a reserved-but-unused position
//! blocks nobody once its owner has looked again.
//!
//! **Retention.** The log keeps the last [`RETAINED`] (100,000) positions: appending position `s`
//! deletes entry `s - 100,000`. A cursor older than that resumes at the oldest kept entry; the
//! platform sees the jump in `seq` (then a full-sync pass re-reports everything).

use crate::env::Env;
use crate::failure::Failure;
use crate::kv;
use crate::model::{DirectoryChange, SequencedChange};

/// Page size when the caller asks for 0.
pub const DEFAULT_LIMIT: u32 = 100;
/// Largest page.
pub const MAX_LIMIT: u32 = 1000;
/// How many positions the log keeps.
pub const RETAINED: u64 = 100_000;
/// How long a missing entry blocks readers before it is skipped.
pub const GAP_GRACE_MS: u64 = 10_000;

const SEQ_KEY: &str = "changes:seq";
/// After a blocking gap, further missing entries up to this far ahead get their first-seen time
/// recorded too, so a run of gaps clears in one grace period rather than one per entry.
const SCAN_AHEAD: u64 = 200;
/// Gap markers are removed by the sweep after this long.
const GAP_MARKER_TTL_MS: u64 = 24 * 3600 * 1000;

/// A page of changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChangePage {
    /// Changes after the cursor, in order.
    pub changes: Vec<SequencedChange>,
    /// Cursor to pass next time (the last position returned or skipped).
    pub next_after: u64,
}

/// What a void position holds: readers skip it at once.
const VOID: &[u8] = b"{\"void\":true}";

fn entry_key(seq: u64) -> String {
    format!("change:{seq}")
}

fn gap_key(seq: u64) -> String {
    format!("changes:gap:{seq}")
}

/// Appends `changes` in order and returns them with their positions.
#[cfg(test)]
pub fn append(
    env: &mut dyn Env,
    changes: Vec<DirectoryChange>,
) -> Result<Vec<SequencedChange>, Failure> {
    append_retaining(env, changes, RETAINED)
}

#[cfg(test)]
fn append_retaining(
    env: &mut dyn Env,
    changes: Vec<DirectoryChange>,
    retained: u64,
) -> Result<Vec<SequencedChange>, Failure> {
    let mut out = Vec::with_capacity(changes.len());
    if changes.is_empty() {
        return Ok(out);
    }
    // One increment reserves every position of the batch (still unique and increasing across
    // instances): a large batch costs one store round trip less per change.
    let first = reserve(env, changes.len())?;
    let at_ms = env.now_ms();
    for (seq, change) in (first..).zip(changes) {
        out.push(record_retaining(env, seq, at_ms, change, retained)?);
    }
    Ok(out)
}

/// Reserves `count` consecutive positions (one `increment`) and returns the first. Positions are
/// unique and increasing across instances; each must then be [`record`]ed or made [`void`].
pub fn reserve(env: &mut dyn Env, count: usize) -> Result<u64, Failure> {
    let count = i64::try_from(count)
        .ok()
        .filter(|c| *c > 0)
        .ok_or_else(Failure::storage)?;
    let last = env.kv_increment(SEQ_KEY, count)?;
    u64::try_from(last - count + 1)
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(Failure::storage)
}

/// Writes `change` at the reserved position `seq` (writing it again is harmless) and prunes the
/// entry that falls out of retention.
pub fn record(
    env: &mut dyn Env,
    seq: u64,
    at_ms: u64,
    change: DirectoryChange,
) -> Result<SequencedChange, Failure> {
    record_retaining(env, seq, at_ms, change, RETAINED)
}

fn record_retaining(
    env: &mut dyn Env,
    seq: u64,
    at_ms: u64,
    change: DirectoryChange,
    retained: u64,
) -> Result<SequencedChange, Failure> {
    let entry = SequencedChange { seq, at_ms, change };
    kv::put_json(env, &entry_key(seq), &entry)?;
    if seq > retained {
        env.kv_delete(&entry_key(seq - retained))?;
    }
    Ok(entry)
}

/// Whether position `seq` holds a change (not a void marker): its writer got that far.
pub fn is_recorded(env: &mut dyn Env, seq: u64) -> Result<bool, Failure> {
    Ok(env.kv_get(&entry_key(seq))?.is_some_and(|b| b != VOID))
}

/// After [`reserve`] failed (a timeout may have applied it), voids the last `count` positions
/// that hold nothing. Only for a writer that no other writer runs beside (the event queue's
/// lease holder); also voids positions a dead earlier writer left, which is what readers need.
pub fn void_unrecorded_tail(env: &mut dyn Env, count: usize) -> Result<(), Failure> {
    let head = u64::try_from(env.kv_increment(SEQ_KEY, 0)?).unwrap_or(0);
    let from = head.saturating_sub(count as u64) + 1;
    for seq in from..=head {
        if env.kv_get(&entry_key(seq))?.is_none() {
            void(env, seq)?;
        }
    }
    Ok(())
}

/// Marks a reserved position that will never hold a change, so readers pass it at once.
pub fn void(env: &mut dyn Env, seq: u64) -> Result<(), Failure> {
    env.kv_set(&entry_key(seq), VOID)?;
    Ok(())
}

/// Reads changes after `after`, at most `limit` (0: 100; at most 1000), skipping entries pruned
/// by retention and, after [`GAP_GRACE_MS`], entries a crashed writer never wrote.
pub fn read(env: &mut dyn Env, after: u64, limit: u32) -> Result<ChangePage, Failure> {
    read_retaining(env, after, limit, RETAINED)
}

enum Slot {
    Entry(Box<SequencedChange>),
    Void,
    Unreadable,
    Missing,
}

fn load(env: &mut dyn Env, seq: u64) -> Result<Slot, Failure> {
    Ok(match env.kv_get(&entry_key(seq))? {
        None => Slot::Missing,
        Some(bytes) if bytes == VOID => Slot::Void,
        Some(bytes) => match serde_json::from_slice::<SequencedChange>(&bytes) {
            Ok(e) if e.seq == seq => Slot::Entry(Box::new(e)),
            _ => Slot::Unreadable,
        },
    })
}

/// Whether a missing entry may be skipped now; records when it was first seen missing.
fn gap_expired(env: &mut dyn Env, seq: u64) -> Result<bool, Failure> {
    let now = env.now_ms();
    match kv::get_live::<u64>(env, &gap_key(seq))? {
        Some(first_seen) => Ok(now >= first_seen.saturating_add(GAP_GRACE_MS)),
        None => {
            kv::put_expiring(env, &gap_key(seq), &now, now + GAP_MARKER_TTL_MS)?;
            Ok(false)
        }
    }
}

fn read_retaining(
    env: &mut dyn Env,
    after: u64,
    limit: u32,
    retained: u64,
) -> Result<ChangePage, Failure> {
    let limit = match limit {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    } as usize;
    let head = u64::try_from(env.kv_increment(SEQ_KEY, 0)?).unwrap_or(0);
    if after >= head {
        return Ok(ChangePage {
            changes: Vec::new(),
            next_after: after,
        });
    }
    let floor = head.saturating_sub(retained);
    let mut page = ChangePage {
        changes: Vec::new(),
        next_after: after.max(floor),
    };
    let mut seq = page.next_after + 1;
    while seq <= head && page.changes.len() < limit {
        match load(env, seq)? {
            Slot::Entry(e) => page.changes.push(*e),
            Slot::Void => {}
            Slot::Unreadable => env.log(&format!("change log: entry {seq} is unreadable; skipped")),
            Slot::Missing => {
                if !gap_expired(env, seq)? {
                    // Note later gaps now, so a run of them clears in one grace period.
                    let end = head.min(seq + SCAN_AHEAD);
                    for later in seq + 1..=end {
                        if matches!(load(env, later)?, Slot::Missing) {
                            gap_expired(env, later)?;
                        }
                    }
                    break;
                }
                env.log(&format!("change log: entry {seq} never appeared; skipped"));
            }
        }
        page.next_after = seq;
        seq += 1;
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeEnv;

    fn removed(dept_id: i64) -> DirectoryChange {
        DirectoryChange::DepartmentRemoved {
            corp_id: "c".into(),
            dept_id,
        }
    }

    fn ids(page: &ChangePage) -> Vec<u64> {
        page.changes.iter().map(|c| c.seq).collect()
    }

    #[test]
    fn append_then_read_in_order_with_paging() {
        let mut env = FakeEnv::new();
        let out = append(&mut env, (1..=5).map(removed).collect()).unwrap();
        assert_eq!(
            out.iter().map(|c| c.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(out[0].at_ms, env.now);
        let p = read(&mut env, 0, 2).unwrap();
        assert_eq!((ids(&p), p.next_after), (vec![1, 2], 2));
        let p = read(&mut env, 2, 0).unwrap();
        assert_eq!((ids(&p), p.next_after), (vec![3, 4, 5], 5));
        assert_eq!(p.changes[0].change, removed(3));
        let p = read(&mut env, 5, 10).unwrap();
        assert!(p.changes.is_empty());
        assert_eq!(p.next_after, 5);
        let p = read(&mut env, 99, 10).unwrap();
        assert_eq!(p.next_after, 99);
    }

    #[test]
    fn limit_is_capped() {
        let mut env = FakeEnv::new();
        append(&mut env, (0..1005).map(removed).collect()).unwrap();
        assert_eq!(read(&mut env, 0, 5000).unwrap().changes.len(), 1000);
        assert_eq!(read(&mut env, 0, 0).unwrap().changes.len(), 100);
    }

    #[test]
    fn gap_of_a_crashed_writer_is_skipped_after_grace() {
        let mut env = FakeEnv::new();
        append(&mut env, vec![removed(1)]).unwrap();
        // A writer took positions 2 and 3 and died before writing them.
        env.kv_increment(SEQ_KEY, 2).unwrap();
        append(&mut env, vec![removed(4)]).unwrap();
        let p = read(&mut env, 0, 10).unwrap();
        assert_eq!((ids(&p), p.next_after), (vec![1], 1));
        env.now += GAP_GRACE_MS - 1;
        let p = read(&mut env, 1, 10).unwrap();
        assert_eq!((ids(&p), p.next_after), (vec![], 1));
        env.now += 1;
        let p = read(&mut env, 1, 10).unwrap();
        assert_eq!(
            (ids(&p), p.next_after),
            (vec![4], 4),
            "both gaps clear after one grace period"
        );
    }

    #[test]
    fn in_flight_write_is_delivered() {
        let mut env = FakeEnv::new();
        let seq = env.kv_increment(SEQ_KEY, 1).unwrap() as u64;
        append(&mut env, vec![removed(2)]).unwrap();
        assert_eq!(read(&mut env, 0, 10).unwrap().changes.len(), 0);
        // The slow writer finishes within the grace period.
        let entry = SequencedChange {
            seq,
            at_ms: env.now,
            change: removed(1),
        };
        kv::put_json(&mut env, &entry_key(seq), &entry).unwrap();
        env.now += 100;
        let p = read(&mut env, 0, 10).unwrap();
        assert_eq!(ids(&p), vec![1, 2]);
    }

    #[test]
    fn void_positions_are_passed_at_once() {
        let mut env = FakeEnv::new();
        let first = reserve(&mut env, 3).unwrap();
        let now = env.now;
        record(&mut env, first, now, removed(1)).unwrap();
        assert!(is_recorded(&mut env, first).unwrap());
        assert!(!is_recorded(&mut env, first + 1).unwrap());
        // The owner of positions 2 and 3 gave them up: no grace period is waited out.
        void(&mut env, first + 1).unwrap();
        void(&mut env, first + 2).unwrap();
        assert!(!is_recorded(&mut env, first + 1).unwrap());
        append(&mut env, vec![removed(4)]).unwrap();
        let p = read(&mut env, 0, 10).unwrap();
        assert_eq!((ids(&p), p.next_after), (vec![1, 4], 4));
    }

    #[test]
    fn unreadable_entries_are_skipped() {
        let mut env = FakeEnv::new();
        append(&mut env, vec![removed(1), removed(2)]).unwrap();
        env.kv.insert(entry_key(1), b"garbage".to_vec());
        let p = read(&mut env, 0, 10).unwrap();
        assert_eq!((ids(&p), p.next_after), (vec![2], 2));
    }

    #[test]
    fn retention_keeps_the_store_bounded() {
        let mut env = FakeEnv::new();
        for i in 0..25 {
            append_retaining(&mut env, vec![removed(i)], 10).unwrap();
        }
        let entries = env.kv.keys().filter(|k| k.starts_with("change:")).count();
        assert_eq!(entries, 10);
        let p = read_retaining(&mut env, 0, 100, 10).unwrap();
        assert_eq!(ids(&p), (16..=25).collect::<Vec<_>>());
        assert_eq!(p.next_after, 25);
    }
}
