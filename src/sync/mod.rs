//! Full directory sync as bounded, resumable steps (docs/http-contract.md §8, docs/dingtalk-api.md §5.7).
//!
//! # How the platform calls it
//!
//! Call [`step`] (typed export `directory.sync-step`) or `POST /dingding/api/sync` again and again.
//! Each call makes at most `min(2 × sync_qps, 40)` DingTalk calls, starts no new call after 8 s,
//! and returns a bounded [`SyncBatch`]: ≤ 500 departments (parents before children), ≤ 500
//! members (each once per pass, with every department it belongs to, leader, admin, boss and
//! active flags), ≤ 1000 changes. When `retry_after_ms` is set, wait that long before the next call
//! (DingTalk throttled, another instance holds the step, or the step ran out of time). When
//! `progress.complete` is true the pass is over: its last batch carries the deactivations and
//! removals; the next call starts pass `pass + 1` (run one every few hours to heal missed events).
//!
//! A pass (docs/dingtalk-api.md §5.7): breadth first `department/listsub` from the root (1) — or,
//! when the app's contact scope is part of the org (`listsub(1)` answers 50004, or the last pass
//! found it so), from each `authed_dept` of `GET /auth/scopes` (one `department/get` each, for its
//! name) — then `user/list` (cursor, size 100, `contain_access_limit: true`) for every visible
//! department, then `user/get` for each `authed_user` not met in those departments. Leader flags
//! come from the `leader` of each list item (about the listed department): a member in several
//! departments is reported when the walk reaches the last of them. A subtree answering 50004 is
//! skipped, never fatal. With the whole org visible and nobody gone, that is exactly Σ listsub +
//! Σ ⌈members/100⌉ calls. `next_cursor` is an offset, so a member who was not met may still be
//! there: at the end of a **complete** pass each member not seen is confirmed with `user/get`
//! (one call per absent member): 60121 / 33012 → `MemberDeactivated` (never deleted, never on an
//! incomplete pass); found → reported as present; 50004 → left as it is. Members back after
//! leaving → `MemberUpserted`, changed department sets → `MemberMoved { added, removed }`,
//! departments gone → `DepartmentRemoved`. The first pass reports no changes. Every member reported
//! present is written to the directory mirror (`directory::mirror`), every deactivation removed
//! from it. Sync changes are returned in batches only; events go to the change log.
//!
//! # Crash safety and exactly-once delivery
//!
//! Every step reads the checkpoint, does its work, and **commits the new checkpoint as its last
//! store write**; nothing fallible follows, so a returned batch always matches a committed
//! checkpoint and a step that fails or dies commits nothing. Every per-member and per-department
//! record written during a step carries the step's attempt id (`tag`) next to its previous value
//! (`base`); a tag counts only once its attempt has committed (attempts that died, failed or were
//! replayed are listed as void in the checkpoint), so a re-run re-derives the same batch from the
//! same checkpoint: nothing is lost and nothing is reported twice.
//!
//! Every batch is delivered until the platform acknowledges it: each carries a `cursor`, and the
//! next step (HTTP body or the typed export's `sync-request`) sends it back as `ack`:
//!
//! ```json
//! {"corp_id": "", "ack": "<cursor of the last batch received>", "restart": false}
//! ```
//!
//! * `ack` = the cursor of the last committed batch: continue;
//! * no `ack` once a batch was handed out, or `ack` = the cursor of the batch before it (the last
//!   response was lost, or the platform did not apply it): that batch is derived again from the
//!   previous checkpoint and returned (its own writes are voided), deactivations included;
//! * no `ack` before any batch: start;
//! * any other `ack`: 409 `sync_cursor_stale` (another worker is stepping the same corp).
//! * `restart: true` abandons the current pass and starts a new one (no deactivations for the
//!   abandoned pass; the new one compares with the last complete pass).
//!
//! Two instances stepping at once: a lease on the checkpoint version (`lease.rs`) taken with
//! `increment` and renewed by a heartbeat before every unit of work and every DingTalk call; the
//! loser returns an empty batch with `retry_after_ms`. Another instance takes over a lease whose
//! heartbeat did not move for `lease::LEASE_MS` (6 s) of its own clock, so correctness never depends on
//! clocks agreeing across instances; a step that was taken over, or ran past 25 s, does not commit.
//!
//! # Rate limit
//!
//! Before every DingTalk call (including a token fetch) the step claims a pacing slot of
//! `1050 / sync_qps` ms with `increment("syncq:{corp}:{slot}") == 1` and starts the call at the
//! slot's start. Slots are shared by every instance on the store, so at most `sync_qps` calls
//! fall in any sliding second, across steps and instances. Throttling answers (90018, 90002, 403 Qps…) end the step early with the work
//! done so far and `retry_after_ms` (1 s, doubling while it repeats, at most 16 s); the unfinished
//! page is read again. The monthly quota (90020), a missing permission
//! (`qyapi_get_department_list`, `qyapi_get_department_member`, `qyapi_get_member`, `qyapi_base`),
//! the IP whitelist and bad credentials stop the step with a clear [`Failure`]. A 200 without
//! `result.list` (`user/list`) or without a `result` array (`listsub`) ends the step for a retry.
//!
//! # Key-value keys (per corp)
//!
//! | key | value |
//! |---|---|
//! | `sync:{corp}:ckpt` | checkpoint: `version`, current and previous state, void attempt ranges |
//! | `sync:{corp}:attempt` | counter: attempt ids |
//! | `sync:{corp}:born` | counter: > 0 once a checkpoint was committed (tells a lost one from none) |
//! | `synclease:{corp}:{pass}:{version}:take:{e}`, `…:beat:{e}`, `…:done:{e}` | counters: step lease epochs, heartbeats, releases (expire after a day) |
//! | `syncq:{corp}:{slot}` | counter: pacing slot claim (expires) |
//! | `syncdq:{corp}:{i}` | the pass's department queue, position `i` (overwritten each pass) |
//! | `syncd:{corp}:{dept_id}` | department record: slot, base/new state (reported, last pass queued, queue position), tag |
//! | `syncdi:{corp}:n`, `syncdi:{corp}:{i}` | counter and slots: index of department records |
//! | `syncm:{corp}:{userid}` | member record: slot, base/new state (present, last pass seen, departments, leader flags gathered), tag |
//! | `dir:{corp}:{userid}` | the directory mirror (`directory::mirror`), written when a member is reported |
//! | `syncmi:{corp}:n`, `syncmi:{corp}:{i}` | counter and slots: index of member records |
//!
//! The indexes are walked slot by slot at the end of a pass (no list-keys); a slot whose record
//! does not point back to it (left by a crash) is skipped.

use crate::corps;
use crate::dingtalk::contacts::{self, AuthScopes};
use crate::dingtalk::records::ROOT_DEPT;
use crate::dingtalk::{ApiError, Client, Endpoints, Problem};
use crate::directory::mirror;
use crate::env::{Env, HttpRequest, HttpResponse, KvError, TransportError};
use crate::failure::Failure;
use crate::kv;
use crate::model::{Department, DirectoryChange, Member};
use crate::settings::Settings;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::HashMap;

mod lease;
mod phases;
mod qps;
mod records;
mod run;
mod state;
#[cfg(test)]
mod tests;

use qps::{Meter, QpsEnv};
use run::{Flow, Halt, Run};
use state::{
    add_void, load_checkpoint, next_attempt, token, Checkpoint, DeptState, Keys, MemberState,
    Phase, QueueEntry, Rec, State, Validity,
};

/// Most departments in one batch.
pub const MAX_DEPARTMENTS_PER_BATCH: usize = 500;
/// Most members in one batch.
pub const MAX_MEMBERS_PER_BATCH: usize = 500;
/// Most changes in one batch.
pub const MAX_CHANGES_PER_BATCH: usize = 1000;
/// Most record slots examined by one step at the end of a pass.
pub const SWEEP_SLOTS_PER_STEP: u64 = 500;
/// Most DingTalk calls in one step (also at most twice `sync_qps`).
pub const MAX_CALLS_PER_STEP: u32 = 40;
/// No new DingTalk call starts after a step has run this long.
pub const STEP_BUDGET_MS: u64 = 8_000;
/// A step that ran longer than this does not commit (it is redone by the next step).
const COMMIT_DEADLINE_MS: u64 = 25_000;
/// `user/list` page size (the API's maximum).
const PAGE_SIZE: u32 = 100;
const BUSY_RETRY_MS: u32 = 2_000;
const DEPT_PERMISSION: &str = "qyapi_get_department_list";
const MEMBER_PERMISSION: &str = "qyapi_get_department_member";
const MEMBER_DETAIL_PERMISSION: &str = "qyapi_get_member";
const BASE_PERMISSION: &str = "qyapi_base";

/// DingTalk's answer for a department outside the contact scope (errcode 50004).
fn out_of_scope() -> ApiError {
    ApiError::Old {
        errcode: 50004,
        sub_code: None,
        errmsg: "企业部门不在授权范围".into(),
        request_id: None,
    }
}

/// Progress of the current pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncProgress {
    /// Pass number (1 for the first pass).
    pub pass: u64,
    /// Departments whose members were all read.
    pub departments_done: u32,
    /// Departments discovered.
    pub departments_known: u32,
    /// Distinct members seen in this pass.
    pub members_seen: u32,
    /// DingTalk calls made by this step.
    pub calls: u32,
    /// Pass complete.
    pub complete: bool,
}

/// One step's batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncBatch {
    /// Departments, parents first.
    pub departments: Vec<Department>,
    /// Members read, each once per pass.
    pub members: Vec<Member>,
    /// Moves, comebacks, removals and (at the end of a complete pass) deactivations.
    pub changes: Vec<DirectoryChange>,
    /// Progress.
    pub progress: SyncProgress,
    /// Wait this long before the next step.
    pub retry_after_ms: Option<u32>,
    /// Acknowledge this batch by sending it as `ack` with the next HTTP step.
    pub cursor: String,
}

/// The body of `POST /dingding/api/sync`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct StepRequest {
    /// Organisation (empty: the configured corp).
    #[serde(default)]
    pub corp_id: String,
    /// `cursor` of the last batch received.
    #[serde(default)]
    pub ack: Option<String>,
    /// Abandon the current pass and start a new one.
    #[serde(default)]
    pub restart: bool,
}

/// The part of the organisation the sync can see, as its last step learned it: `None` before
/// the first step that looked (then ask [`contacts::auth_scopes`]). `authed_dept == [1]` is the
/// whole organisation; otherwise the subtrees of `authed_dept` plus the members of
/// `authed_user`, and the rest of the org is neither synced nor deactivated.
#[allow(dead_code)] // Read by the set-up guide (setup/checks.rs) to say which part of the org is visible.
pub fn visible_scope(env: &mut dyn Env, corp_id: &str) -> Result<Option<AuthScopes>, Failure> {
    let keys = Keys {
        corp: corp_id.to_string(),
    };
    let ck = load_checkpoint(env, &keys)?;
    Ok(ck.cur.scope.or_else(|| ck.prev.and_then(|p| p.scope)))
}

#[cfg(test)]
/// Runs one bounded step of the full sync for `corp_id` (empty: the configured corp) as a
/// platform that applied every batch so far: it acknowledges the last committed one.
pub fn step(env: &mut dyn Env, settings: &Settings, corp_id: &str) -> Result<SyncBatch, Failure> {
    let app = corps::resolve(env, settings, Some(corp_id))?;
    let ck = load_checkpoint(
        env,
        &Keys {
            corp: app.corp_id.clone(),
        },
    )?;
    step_with(
        env,
        settings,
        &StepRequest {
            corp_id: corp_id.to_string(),
            ack: ck.prev.is_some().then(|| token(&ck.cur)),
            ..StepRequest::default()
        },
    )
}
// ---------------------------------------------------------------------------------------------
// The step

fn stale_cursor() -> Failure {
    Failure::new(
        409,
        "sync_cursor_stale",
        "The ack does not match the last two sync batches: another worker is stepping this organisation's sync. Let one worker step it; send no ack to continue from the checkpoint.",
        "ack 与最近两个同步批次都不匹配：另一个进程正在推进该组织的同步。请只让一个进程推进；不带 ack 可从检查点继续。",
    )
}

/// A batch of a step that did no work (another instance holds the step, or it could not
/// commit): the same cursor again, and never `complete`, so that a platform stepping "until
/// complete" steps again instead of ending a pass that reported nothing.
fn idle_batch(state: &State, cursor: String, retry_after_ms: u32) -> SyncBatch {
    SyncBatch {
        progress: SyncProgress {
            complete: false,
            ..progress_of(state, 0)
        },
        retry_after_ms: Some(retry_after_ms),
        cursor,
        ..SyncBatch::default()
    }
}

fn progress_of(s: &State, calls: u32) -> SyncProgress {
    let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    SyncProgress {
        pass: s.pass,
        departments_done: match s.phase {
            Phase::Tree => 0,
            Phase::Members => clamp(s.walk),
            Phase::Done | Phase::Users | Phase::SweepMembers | Phase::SweepDepts => clamp(s.known),
        },
        departments_known: clamp(s.known),
        members_seen: clamp(s.members_seen),
        calls,
        complete: s.phase == Phase::Done && s.pass > 0,
    }
}

/// Runs one step; `request.ack` and `request.restart` as described in the module docs.
pub fn step_with(
    env: &mut dyn Env,
    settings: &Settings,
    request: &StepRequest,
) -> Result<SyncBatch, Failure> {
    let app = corps::resolve(env, settings, Some(&request.corp_id))?;
    let keys = Keys {
        corp: app.corp_id.clone(),
    };
    let ck = load_checkpoint(env, &keys)?;
    let ack = request
        .ack
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty());
    // The ack is mandatory once a batch was handed out: a step that does not acknowledge the
    // last committed batch derives that batch again from the checkpoint before it (its own
    // writes voided), so a batch whose answer was lost, or that the platform did not apply, is
    // delivered until acknowledged.
    let base = match (ack, &ck.prev) {
        (Some(a), _) if a == token(&ck.cur) => ck.cur.clone(),
        (Some(a), Some(p)) if a == token(p) => p.clone(),
        (Some(_), _) => return Err(stale_cursor()),
        (None, Some(p)) => p.clone(),
        (None, None) => ck.cur.clone(),
    };
    let echo = token(&base);

    let started = env.now_ms();
    let Some(lease) = lease::claim(env, &keys, &ck)? else {
        return Ok(idle_batch(&base, echo.clone(), BUSY_RETRY_MS));
    };
    let heartbeat = lease.heartbeat_key();
    // The lease is keyed by the checkpoint version read before claiming it: a step that
    // committed meanwhile (and released) has made it stale.
    let fresh = load_checkpoint(env, &keys).map(|now| now.version == ck.version);
    if !matches!(fresh, Ok(true)) {
        lease::release(env, &lease);
        fresh?;
        return Ok(idle_batch(&base, echo.clone(), 0));
    }
    let me = match next_attempt(env, &keys, &ck) {
        Ok(me) => me,
        Err(f) => {
            lease::release(env, &lease);
            return Err(f);
        }
    };

    let meter = Meter::default();
    let endpoints = Endpoints::from_settings(settings);
    let outcome = {
        let mut qps_env = QpsEnv {
            inner: &mut *env,
            corp: app.corp_id.clone(),
            qps: i64::from(settings.sync_qps.max(1)),
            deadline_ms: started + STEP_BUDGET_MS + 2_000,
            meter: &meter,
            heartbeat: heartbeat.clone(),
        };
        let mut client = Client::new(&mut qps_env, &endpoints, &app);
        client.throttle_retries = 0;
        let mut run = Run {
            client,
            keys: &keys,
            valid: Validity {
                me,
                base: base.attempt,
                void: ck.void.clone(),
            },
            me,
            pass: 0,
            dept_cache: HashMap::new(),
            meter: &meter,
            max_calls: settings
                .sync_qps
                .max(1)
                .saturating_mul(2)
                .clamp(2, MAX_CALLS_PER_STEP),
            started,
            heartbeat,
        };
        run.go(&base, request.restart)
    };
    let (state, mut batch) = match outcome {
        Ok(done) => done,
        Err(f) => {
            // Nothing of this attempt counts; let the next step run at once.
            lease::release(env, &lease);
            return Err(f);
        }
    };
    if env.now_ms().saturating_sub(started) > COMMIT_DEADLINE_MS {
        env.log("sync: step ran too long; not committed, it will be redone");
        lease::release(env, &lease);
        return Ok(idle_batch(&base, echo.clone(), 0));
    }
    // Fencing: a holder that stalled past its lease and was taken over must not commit.
    if !lease.still_held(env)? {
        env.log("sync: another instance took the step lease over; not committed");
        return Ok(idle_batch(&base, echo.clone(), BUSY_RETRY_MS));
    }
    let mut void = ck.void.clone();
    if state.pass > base.pass && base.phase == Phase::Done && base.pass > 0 {
        // The finished pass swept every record: void attempts from before its sweep tag none.
        void.retain(|(_, hi)| *hi >= base.sweep_from);
    }
    add_void(&mut void, base.attempt + 1, me - 1);
    let committed = Checkpoint {
        version: ck.version + 1,
        cur: state,
        prev: Some(base),
        void,
    };
    if ck.version == 0 {
        // Lets a later step tell a lost checkpoint from one never written.
        env.kv_increment(&keys.born(), 1)?;
    }
    kv::put_json(env, &keys.ckpt(), &committed)?;
    batch.cursor = token(&committed.cur);
    // Best effort, after the commit: lets a step that read the old checkpoint see at once that
    // it is stale instead of watching for a heartbeat.
    lease::release(env, &lease);
    Ok(batch)
}
