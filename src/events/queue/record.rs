//! Recording one slot: its items' changes (details fetched where the event carries only ids),
//! each batch's change-log positions noted before the entries are written, an interrupted
//! batch's unwritten positions voided, the directory mirror kept in step, and the event marked
//! done.

use super::drain::{Allowance, Drained};
use super::{
    gap_expired, ids_at, load_marker, slot_key, slot_keys, Marker, Reserved, SlotRecord,
    StampedMarker, Work, MAX_FAILURES, MIN_CALL_MS, VOID_SLOT,
};
use crate::corps;
use crate::dingtalk::{contacts, ApiError, Client, Endpoints, Problem, CALL_TIMEOUT_MS};
use crate::directory::{changelog, mirror};
use crate::env::{Env, TransportError};
use crate::failure::Failure;
use crate::kv;
use crate::model::DirectoryChange;
use crate::settings::{CorpApp, Settings};

/// What draining one slot came to.
pub(super) enum Step {
    /// Done with the slot: the keys to delete once the head has moved past it (so a failed
    /// head write leaves a slot the next drain recognises as done, never a hole).
    Finished(Vec<String>),
    Paused,
}

/// Drains slot `n` while the allowance lasts, recording its changes into `drained`.
pub(super) fn drain_slot(
    env: &mut dyn Env,
    settings: &Settings,
    apps: &mut Option<Vec<CorpApp>>,
    n: u64,
    allowance: &mut Allowance,
    drained: &mut Drained,
) -> Result<Step, Failure> {
    let until = allowance.until;
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
        let batch_started = env.now_ms();
        if allowance.spent(batch_started, drained.changes.len()) {
            return Ok(Step::Paused);
        }
        let mut ids = ids_at(env, n, &record, &mut chunk_cache, record.next as usize)?;
        ids.truncate(
            allowance
                .batch_size(batch_started, drained.changes.len())
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
        allowance.observe(span as usize, env.now_ms().saturating_sub(batch_started));
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
