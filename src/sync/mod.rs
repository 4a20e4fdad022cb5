//! Full directory sync as bounded, resumable steps (DESIGN §7, docs §5.7, peers opportunities 3–5, 7).
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
//! A pass: `department/get` for the root (1), then breadth first `department/listsub` for every
//! department plus `department/get` (order and `dept_manager_userid_list`, so a member's leader
//! flags are complete even for departments listed later), then `user/list` (cursor, size 100) for
//! every department; no per-user detail calls. At the end of a **complete** pass it compares with
//! the previous complete pass: members no longer seen → `MemberDeactivated` (never deleted, never
//! on an incomplete pass), members back after leaving → `MemberUpserted`, changed department sets
//! → `MemberMoved { added, removed }`, departments gone → `DepartmentRemoved`. The first pass
//! reports no changes. Sync changes are returned in batches only; events go to the change log.
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
//! A batch whose response was lost *after* the commit (HTTP) can be asked for again: every batch
//! carries a `cursor`; the HTTP body may acknowledge the last batch received:
//!
//! ```json
//! {"corp_id": "", "ack": "<cursor of the last batch received>", "restart": false}
//! ```
//!
//! * no `ack` (and the typed export, which returns in-process): continue from the checkpoint;
//! * `ack` = the cursor of the last committed batch: continue;
//! * `ack` = the cursor of the batch before it (the last response was lost): that lost batch is
//!   derived again from the previous checkpoint and returned (its own writes are voided);
//! * any other `ack`: 409 `sync_cursor_stale` (another worker is stepping the same corp).
//! * `restart: true` abandons the current pass and starts a new one (no deactivations for the
//!   abandoned pass; the new one compares with the last complete pass).
//!
//! Two instances stepping at once: a lease `synclease:{corp}:{pass}:{version}:{slot}` is claimed
//! with `increment` for the 30-s slot of the start time and the next one; the loser returns an
//! empty batch with `retry_after_ms`. A step that ran past 25 s does not commit.
//!
//! # Rate limit
//!
//! Before every DingTalk call (including a token fetch) the step claims a pacing slot of
//! `1050 / sync_qps` ms with `increment("syncq:{corp}:{slot}") == 1` and starts the call at the
//! slot's start. Slots are shared by every instance on the store, so at most `sync_qps` calls
//! fall in any sliding second, across steps and instances. Throttling answers (90018, 90002, 403 Qps…) end the step early with the work
//! done so far and `retry_after_ms` (1 s, doubling while it repeats, at most 16 s); the unfinished
//! page is read again. The monthly quota (90020), a missing permission
//! (`qyapi_get_department_list`, `qyapi_get_department_member`), a department outside the contact
//! scope (50004), the IP whitelist and bad credentials stop the step with a clear [`Failure`].
//!
//! # Key-value keys (per corp)
//!
//! | key | value |
//! |---|---|
//! | `sync:{corp}:ckpt` | checkpoint: `version`, current and previous state, void attempt ranges |
//! | `sync:{corp}:attempt` | counter: attempt ids |
//! | `sync:{corp}:born` | counter: > 0 once a checkpoint was committed (tells a lost one from none) |
//! | `synclease:{corp}:{pass}:{version}:{slot}` | counter: step lease (claim; expires) |
//! | `syncq:{corp}:{slot}` | counter: pacing slot claim (expires) |
//! | `syncdq:{corp}:{i}` | the pass's department queue, position `i` (overwritten each pass) |
//! | `syncd:{corp}:{dept_id}` | department record: slot, base/new state (present, last pass seen, managers), tag |
//! | `syncdi:{corp}:n`, `syncdi:{corp}:{i}` | counter and slots: index of department records |
//! | `syncm:{corp}:{userid}` | member record: slot, base/new state (present, last pass seen, departments), tag |
//! | `syncmi:{corp}:n`, `syncmi:{corp}:{i}` | counter and slots: index of member records |
//!
//! The indexes are walked slot by slot at the end of a pass (no list-keys); a slot whose record
//! does not point back to it (left by a crash) is skipped.

use crate::corps;
use crate::dingtalk::contacts;
use crate::dingtalk::records::ROOT_DEPT;
use crate::dingtalk::{ApiError, Client, Endpoints, Problem};
use crate::env::{Env, HttpRequest, HttpResponse, KvError, TransportError};
use crate::failure::Failure;
use crate::kv;
use crate::model::{Department, DirectoryChange, Member};
use crate::settings::Settings;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};

mod phases;
mod qps;
#[cfg(test)]
mod tests;

use qps::{Meter, QpsEnv};

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
/// Width of a lease slot.
pub const LEASE_MS: u64 = 30_000;
/// A step that ran longer than this does not commit (its lease may have run out).
const COMMIT_DEADLINE_MS: u64 = 25_000;
/// `user/list` page size (the API's maximum).
const PAGE_SIZE: u32 = 100;
const BUSY_RETRY_MS: u32 = 2_000;
const DEPT_PERMISSION: &str = "qyapi_get_department_list";
const MEMBER_PERMISSION: &str = "qyapi_get_department_member";

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

/// Runs one bounded step of the full sync for `corp_id` (empty: the configured corp).
pub fn step(env: &mut dyn Env, settings: &Settings, corp_id: &str) -> Result<SyncBatch, Failure> {
    step_with(
        env,
        settings,
        &StepRequest {
            corp_id: corp_id.to_string(),
            ..StepRequest::default()
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Persistent state

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Phase {
    /// Before the first pass, or the pass is complete.
    #[default]
    Done,
    /// Discovering, detailing and reporting departments.
    Tree,
    /// Reading members department by department.
    Members,
    /// Walking member records: deactivations.
    SweepMembers,
    /// Walking department records: removals.
    SweepDepts,
}

/// Where a pass stands. Queue positions are 0-based, record slots 1-based.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    pass: u64,
    /// The attempt that committed this state.
    attempt: u64,
    phase: Phase,
    /// Departments in the queue.
    known: u64,
    /// Queue entries with details (`department/get`) fetched.
    detailed: u64,
    /// Queue entries whose children were listed.
    expanded: u64,
    /// Queue entries reported in batches.
    reported: u64,
    /// Queue entry whose members are being read, and the `user/list` cursor in it.
    walk: u64,
    cursor: u64,
    members_seen: u64,
    /// Next record slot to examine at the end of the pass.
    sweep: u64,
    /// First attempt of this pass's sweep: void attempts before it no longer tag any record
    /// once the sweep is over.
    sweep_from: u64,
    /// Consecutive throttled steps.
    throttled: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Checkpoint {
    version: u64,
    cur: State,
    prev: Option<State>,
    /// Inclusive ranges of attempt ids that never committed (or were replayed).
    void: Vec<(u64, u64)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct MemberState {
    /// Member of the organisation as last reported (false once deactivated).
    present: bool,
    /// Last pass that reported the member (0: never).
    seen: u64,
    /// Departments as last reported, sorted.
    depts: Vec<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct DeptState {
    present: bool,
    seen: u64,
    /// `dept_manager_userid_list` of the pass that saw it.
    managers: Vec<String>,
}

/// A record with a pending write: `new` counts once attempt `tag` has committed, else `base`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Rec<S> {
    slot: u64,
    base: S,
    tag: Option<u64>,
    new: S,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct QueueEntry {
    dept: Department,
    /// Vanished during the pass (60003): not reported, not walked.
    #[serde(default)]
    gone: bool,
}

/// Which attempt ids count when reading tagged records during attempt `me`, which started
/// from a state committed by attempt `base`.
struct Validity {
    me: u64,
    base: u64,
    void: Vec<(u64, u64)>,
}

impl Validity {
    fn counts(&self, tag: u64) -> bool {
        tag == self.me
            || (tag <= self.base && !self.void.iter().any(|(lo, hi)| *lo <= tag && tag <= *hi))
    }

    fn effective<S: Clone>(&self, rec: &Rec<S>) -> S {
        match rec.tag {
            Some(t) if self.counts(t) => rec.new.clone(),
            _ => rec.base.clone(),
        }
    }
}

fn add_void(void: &mut Vec<(u64, u64)>, lo: u64, hi: u64) {
    if lo > hi {
        return;
    }
    void.push((lo, hi));
    void.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(void.len());
    for (lo, hi) in void.drain(..) {
        match merged.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    *void = merged;
}

fn token(s: &State) -> String {
    format!("{}.{}", s.pass, s.attempt)
}

struct Keys {
    corp: String,
}

impl Keys {
    fn ckpt(&self) -> String {
        format!("sync:{}:ckpt", self.corp)
    }
    fn born(&self) -> String {
        format!("sync:{}:born", self.corp)
    }
    fn attempt(&self) -> String {
        format!("sync:{}:attempt", self.corp)
    }
    fn lease(&self, pass: u64, version: u64, slot: u64) -> String {
        format!("synclease:{}:{pass}:{version}:{slot}", self.corp)
    }
    fn queue(&self, i: u64) -> String {
        format!("syncdq:{}:{i}", self.corp)
    }
    fn dept(&self, id: i64) -> String {
        format!("syncd:{}:{id}", self.corp)
    }
    fn dept_count(&self) -> String {
        format!("syncdi:{}:n", self.corp)
    }
    fn dept_slot(&self, i: u64) -> String {
        format!("syncdi:{}:{i}", self.corp)
    }
    fn member(&self, userid: &str) -> String {
        format!("syncm:{}:{userid}", self.corp)
    }
    fn member_count(&self) -> String {
        format!("syncmi:{}:n", self.corp)
    }
    fn member_slot(&self, i: u64) -> String {
        format!("syncmi:{}:{i}", self.corp)
    }
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

fn idle_batch(state: &State, cursor: String, retry_after_ms: u32) -> SyncBatch {
    SyncBatch {
        progress: progress_of(state, 0),
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
            Phase::Done | Phase::SweepMembers | Phase::SweepDepts => clamp(s.known),
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
    let base = match ack {
        None => ck.cur.clone(),
        Some(a) if a == token(&ck.cur) => ck.cur.clone(),
        Some(a) => match &ck.prev {
            Some(p) if a == token(p) => p.clone(),
            _ => return Err(stale_cursor()),
        },
    };
    let echo = ack.map(str::to_string).unwrap_or_else(|| token(&ck.cur));

    let started = env.now_ms();
    let slot = started / LEASE_MS;
    let leases = [
        keys.lease(ck.cur.pass, ck.version, slot),
        keys.lease(ck.cur.pass, ck.version, slot + 1),
    ];
    for (key, s) in leases.iter().zip([slot, slot + 1]) {
        if !kv::claim(env, key, (s + 2) * LEASE_MS)? {
            return Ok(idle_batch(&ck.cur, echo, BUSY_RETRY_MS));
        }
    }
    let me = match next_attempt(env, &keys, &ck) {
        Ok(me) => me,
        Err(f) => {
            release(env, &leases);
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
        };
        run.go(&base, request.restart)
    };
    let (state, mut batch) = match outcome {
        Ok(done) => done,
        Err(f) => {
            // Nothing of this attempt counts; let the next step run at once.
            release(env, &leases);
            return Err(f);
        }
    };
    if env.now_ms().saturating_sub(started) > COMMIT_DEADLINE_MS {
        env.log("sync: step ran past its lease; not committed, it will be redone");
        return Ok(idle_batch(&ck.cur, echo, 1_000));
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
    Ok(batch)
}

/// The checkpoint. When it is missing although attempts were made (the key was lost), the sync
/// resumes after every pass and attempt those could have used, so records of earlier passes
/// still compare as older; an unreadable checkpoint is a failure, never a silent restart.
fn load_checkpoint(env: &mut dyn Env, keys: &Keys) -> Result<Checkpoint, Failure> {
    match env.kv_get(&keys.ckpt())? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|_| {
            Failure::new(
                500,
                "sync_state_unreadable",
                format!("The sync checkpoint of organisation {} in the key-value store is unreadable. Delete the key sync:{}:ckpt to start over with a new pass.", keys.corp, keys.corp),
                format!("键值存储中组织 {} 的同步检查点无法读取。删除键 sync:{}:ckpt 即可从新的一轮重新开始。", keys.corp, keys.corp),
            )
        }),
        None => {
            if env.kv_increment(&keys.born(), 0)? <= 0 {
                return Ok(Checkpoint::default());
            }
            // Pass numbers never exceed attempt ids, so the next pass is newer than any record.
            // The void list is lost with it: every tag counts (crashes are rare, and the next
            // pass reports every member again anyway).
            let used = u64::try_from(env.kv_increment(&keys.attempt(), 0)?).unwrap_or(0);
            env.log("sync: checkpoint missing; resuming with a new pass after the last known attempt");
            Ok(Checkpoint {
                cur: State {
                    pass: used,
                    attempt: used,
                    ..State::default()
                },
                ..Checkpoint::default()
            })
        }
    }
}

/// A fresh attempt id, above every id the checkpoint knows (also if the counter was lost).
fn next_attempt(env: &mut dyn Env, keys: &Keys, ck: &Checkpoint) -> Result<u64, Failure> {
    let known = [
        ck.cur.attempt,
        ck.prev.as_ref().map_or(0, |p| p.attempt),
        ck.void.last().map_or(0, |v| v.1),
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    let mut n = env.kv_increment(&keys.attempt(), 1)?;
    let known = i64::try_from(known).map_err(|_| Failure::storage())?;
    if n <= known {
        n = env.kv_increment(&keys.attempt(), known - n + 1)?;
    }
    u64::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(Failure::storage)
}

fn release(env: &mut dyn Env, leases: &[String]) {
    for key in leases {
        if env.kv_delete(key).is_err() {
            env.log("sync: could not release the step lease; it expires by itself");
        }
    }
}

/// Why a unit of work stopped the step.
enum Halt {
    /// A DingTalk error, and the permission the call needs.
    Api(ApiError, &'static str),
    /// A failure to report as is.
    Fail(Failure),
}

impl From<KvError> for Halt {
    fn from(_: KvError) -> Self {
        Halt::Fail(Failure::storage())
    }
}

enum Flow {
    Continue,
    Stop,
}

struct Run<'k, 'c> {
    client: Client<'c>,
    keys: &'k Keys,
    valid: Validity,
    me: u64,
    pass: u64,
    dept_cache: HashMap<i64, DeptState>,
    meter: &'k Meter,
    max_calls: u32,
    started: u64,
}

fn backoff_ms(streak: u32) -> u32 {
    1_000u32 << streak.saturating_sub(1).min(4)
}

impl Run<'_, '_> {
    fn env(&mut self) -> &mut dyn Env {
        self.client.env()
    }

    fn corp(&self) -> String {
        self.keys.corp.clone()
    }

    /// Whether the step may make another DingTalk call: the token is fetched first (so its
    /// call is counted too), then the call and time budgets are checked.
    fn can_call(&mut self, permission: &'static str) -> Result<bool, Halt> {
        if self.meter.calls.get() >= self.max_calls
            || self.env().now_ms().saturating_sub(self.started) >= STEP_BUDGET_MS
        {
            return Ok(false);
        }
        self.client
            .app_token()
            .map_err(|e| Halt::Api(e, permission))?;
        Ok(self.meter.calls.get() < self.max_calls)
    }

    fn go(&mut self, base: &State, restart: bool) -> Result<(State, SyncBatch), Failure> {
        let meter = self.meter;
        let mut s = base.clone();
        s.attempt = self.me;
        if s.phase == Phase::Done || restart {
            s = State {
                pass: base.pass + 1,
                attempt: self.me,
                phase: Phase::Tree,
                ..State::default()
            };
        }
        self.pass = s.pass;
        let mut b = SyncBatch::default();
        let mut units = 0u32;
        loop {
            let before = meter.calls.get();
            let result = match s.phase {
                Phase::Tree => self.tree(&mut s, &mut b),
                Phase::Members => self.walk(&mut s, &mut b),
                Phase::SweepMembers => self.sweep_members(&mut s, &mut b),
                Phase::SweepDepts => self.sweep_depts(&mut s, &mut b),
                Phase::Done => break,
            };
            match result {
                Ok(Flow::Continue) => {
                    units += 1;
                    if meter.calls.get() > before {
                        s.throttled = 0;
                    }
                }
                Ok(Flow::Stop) => break,
                Err(Halt::Fail(f)) => return Err(f),
                Err(Halt::Api(e, permission)) => {
                    if meter.store_failed.get() {
                        return Err(Failure::storage());
                    }
                    if meter.out_of_time.get() {
                        b.retry_after_ms = Some(1_000);
                        break;
                    }
                    match e.problem() {
                        Problem::Throttled => {
                            s.throttled = s.throttled.saturating_add(1);
                            b.retry_after_ms = Some(backoff_ms(s.throttled));
                            self.env().log(&format!(
                                "sync: DingTalk throttled ({}); backing off",
                                e.code_text()
                            ));
                            break;
                        }
                        Problem::IpBanned => {
                            b.retry_after_ms = Some(60_000);
                            break;
                        }
                        Problem::MonthlyQuota
                        | Problem::MissingPermission
                        | Problem::OutOfScope
                        | Problem::IpNotWhitelisted
                        | Problem::BadCredentials
                        | Problem::OutboundDenied
                        | Problem::Storage => return Err(e.to_failure(permission)),
                        _ if units > 0 => {
                            self.env().log(&format!(
                                "sync: DingTalk error {}; step ends early",
                                e.code_text()
                            ));
                            b.retry_after_ms = Some(BUSY_RETRY_MS);
                            break;
                        }
                        _ => return Err(e.to_failure(permission)),
                    }
                }
            }
        }
        b.progress = progress_of(&s, meter.calls.get());
        Ok((s, b))
    }

    // ---- records ---------------------------------------------------------------------------

    fn alloc_slot(
        &mut self,
        count_key: String,
        slot_key: impl Fn(u64) -> String,
        id: &str,
    ) -> Result<u64, Halt> {
        let n = self.env().kv_increment(&count_key, 1)?;
        let n = u64::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or(Halt::Fail(Failure::storage()))?;
        self.env().kv_set(&slot_key(n), id.as_bytes())?;
        Ok(n)
    }

    fn dept_rec(&mut self, id: i64) -> Result<Option<Rec<DeptState>>, Halt> {
        let key = self.keys.dept(id);
        Ok(kv::get_json(self.env(), &key)?)
    }

    fn put_dept_rec(&mut self, id: i64, rec: &Rec<DeptState>) -> Result<(), Halt> {
        let key = self.keys.dept(id);
        kv::put_json(self.env(), &key, rec)?;
        self.dept_cache.insert(id, rec.new.clone());
        Ok(())
    }

    /// The department's state as this attempt sees it.
    fn dept_state(&mut self, id: i64) -> Result<DeptState, Halt> {
        if let Some(s) = self.dept_cache.get(&id) {
            return Ok(s.clone());
        }
        let state = match self.dept_rec(id)? {
            Some(r) => self.valid.effective(&r),
            None => DeptState::default(),
        };
        self.dept_cache.insert(id, state.clone());
        Ok(state)
    }

    fn queue_entry(&mut self, i: u64) -> Result<Option<QueueEntry>, Halt> {
        let key = self.keys.queue(i);
        Ok(kv::get_json(self.env(), &key)?)
    }

    fn put_queue_entry(&mut self, i: u64, entry: &QueueEntry) -> Result<(), Halt> {
        let key = self.keys.queue(i);
        kv::put_json(self.env(), &key, entry)?;
        Ok(())
    }

    /// Appends a department to the pass's queue unless this pass already has it.
    fn enqueue(&mut self, s: &mut State, dept: Department) -> Result<(), Halt> {
        if dept.dept_id < 1 {
            return Ok(());
        }
        let (eff, slot) = match self.dept_rec(dept.dept_id)? {
            Some(r) => (self.valid.effective(&r), r.slot),
            None => {
                let keys = self.keys;
                let slot = self.alloc_slot(
                    keys.dept_count(),
                    |i| keys.dept_slot(i),
                    &dept.dept_id.to_string(),
                )?;
                (DeptState::default(), slot)
            }
        };
        if eff.seen == self.pass {
            return Ok(());
        }
        let rec = Rec {
            slot,
            base: eff,
            tag: Some(self.me),
            new: DeptState {
                present: true,
                seen: self.pass,
                managers: Vec::new(),
            },
        };
        self.put_dept_rec(dept.dept_id, &rec)?;
        self.put_queue_entry(s.known, &QueueEntry { dept, gone: false })?;
        s.known += 1;
        Ok(())
    }

    fn set_managers(&mut self, id: i64, managers: Vec<String>) -> Result<(), Halt> {
        let Some(rec) = self.dept_rec(id)? else {
            return Ok(());
        };
        let rec = if rec.tag == Some(self.me) {
            Rec {
                new: DeptState {
                    managers,
                    ..rec.new.clone()
                },
                ..rec
            }
        } else {
            let eff = self.valid.effective(&rec);
            Rec {
                slot: rec.slot,
                tag: Some(self.me),
                new: DeptState {
                    managers,
                    ..eff.clone()
                },
                base: eff,
            }
        };
        self.put_dept_rec(id, &rec)
    }
}
