//! Enqueue: the event route records an event's ids in a new slot and marks the event queued,
//! unless it is a re-delivery; a slot its writer could not finish is voided.

use super::{
    chunk_key, load_marker, slot_key, Marker, SlotRecord, StampedMarker, Work, CHUNK_IDS,
    STATE_TTL_MS, TAIL_KEY, VOID_SLOT,
};
use crate::env::Env;
use crate::failure::Failure;
use crate::kv;

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
/// and a slot left half-written is skipped by the drain after [`GAP_GRACE_MS`](super::GAP_GRACE_MS).
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
