//! Step 10: the full sync driven from the set-up page's button, one bounded step per call, with
//! the page's record of its progress (`setup:sync:{corp}`) and who drives it.

use crate::env::Env;
use crate::failure::Failure;
use crate::kv;
use crate::model::DirectoryChange;
use crate::settings::Settings;
use crate::sync::{StepRequest, SyncBatch};
use serde::{Deserialize, Serialize};

/// A page driving the sync that did not step for this long has let go: another may drive.
pub const DRIVER_QUIET_MS: u64 = 15_000;

/// What the set-up page knows of the full sync (`setup:sync:{corp}`), written after every step
/// the page drives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SyncRecord {
    cursor: String,
    pass: u64,
    departments_done: u32,
    departments_known: u32,
    members_seen: u32,
    deactivated: u32,
    complete: bool,
    updated_ms: u64,
    /// Who drives the steps (an opaque id of a set-up session, never the session cookie).
    driver: String,
}

fn sync_key(corp_id: &str) -> String {
    format!("setup:sync:{corp_id}")
}

/// How the sync stands, for the page's progress bar and the guide's step 10.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncView {
    /// `idle` (never run from the page), `running` (a pass is under way), `complete`.
    pub state: &'static str,
    /// This caller follows another page that drives the steps.
    pub following: bool,
    /// Pass number.
    pub pass: u64,
    /// Departments whose members were all read.
    pub departments_done: u32,
    /// Departments discovered.
    pub departments_known: u32,
    /// Distinct members seen in this pass.
    pub members_seen: u32,
    /// Members deactivated at the end of this pass.
    pub deactivated: u32,
    /// 0–100; 100 only when the pass is complete.
    pub percent: u32,
    /// Estimated seconds left, from the work left and `sync_qps`.
    pub eta_seconds: Option<u32>,
    /// Wait this long before the next step.
    pub retry_after_ms: u32,
    /// Send as `ack` with the next step.
    pub cursor: String,
    /// When a page last stepped the sync (Unix ms, 0: never).
    pub updated_ms: u64,
}

pub(super) fn view(
    record: &SyncRecord,
    sync_qps: u32,
    following: bool,
    retry_after_ms: u32,
) -> SyncView {
    let state = if record.complete {
        "complete"
    } else if record.pass == 0 {
        "idle"
    } else {
        "running"
    };
    let known = record.departments_known;
    let done = record.departments_done.min(known);
    let percent = if record.complete {
        100
    } else if known == 0 {
        0
    } else {
        (u64::from(done) * 100 / u64::from(known)).min(99) as u32
    };
    // Calls left: the tree walk (two calls a department) while no department is done, then one
    // `user/list` page per department, more for large ones.
    let eta_seconds = (state == "running" && known > 0).then(|| {
        let pages_per_dept = if done == 0 {
            1
        } else {
            u64::from(record.members_seen)
                .div_ceil(u64::from(done) * 100)
                .max(1)
        };
        let mut calls = u64::from(known - done) * pages_per_dept;
        if done == 0 {
            calls += 2 * u64::from(known);
        }
        u32::try_from(calls.div_ceil(u64::from(sync_qps.max(1)))).unwrap_or(u32::MAX)
    });
    SyncView {
        state,
        following,
        pass: record.pass,
        departments_done: done,
        departments_known: known,
        members_seen: record.members_seen,
        deactivated: record.deactivated,
        percent,
        eta_seconds,
        retry_after_ms,
        cursor: record.cursor.clone(),
        updated_ms: record.updated_ms,
    }
}

fn load_record(env: &mut dyn Env, settings: &Settings) -> Result<SyncRecord, Failure> {
    Ok(kv::get_json(env, &sync_key(&settings.corp.corp_id))?.unwrap_or_default())
}

/// How the sync stands, without stepping it.
pub fn sync_status(env: &mut dyn Env, settings: &Settings) -> Result<SyncView, Failure> {
    let record = load_record(env, settings)?;
    Ok(view(&record, settings.sync_qps, false, 0))
}

/// One step of the configured corp's full sync on behalf of the set-up page `driver`. `start`:
/// the admin pressed the button (a new pass may begin); otherwise a complete or never-run sync
/// is only reported.
///
/// While another page drove a step less than [`DRIVER_QUIET_MS`] ago, nothing is stepped: the
/// caller follows that page's progress (and its cursor, so it can take over). Otherwise one
/// bounded step runs with `ack` (the cursor the caller received last; none: the last one the
/// page recorded), and the batch's counts are recorded; its members and departments are already
/// in the directory mirror, so the page keeps only counts. A stale ack (another worker stepped
/// meanwhile) answers the latest recorded cursor to retry with. Two pages pressing at once
/// therefore run one sync, and the sync's own lease keeps it to one step at a time.
pub fn drive_sync(
    env: &mut dyn Env,
    settings: &Settings,
    driver: &str,
    ack: Option<&str>,
    start: bool,
) -> Result<SyncView, Failure> {
    let mut record = load_record(env, settings)?;
    let now = env.now_ms();
    if !start && (record.complete || record.pass == 0) {
        // Only a press of the button starts a pass; a page that follows stops at the result.
        return Ok(view(&record, settings.sync_qps, record.driver != driver, 0));
    }
    let active = now.saturating_sub(record.updated_ms) < DRIVER_QUIET_MS;
    if record.driver != driver && active && !record.complete && record.pass > 0 {
        return Ok(view(&record, settings.sync_qps, true, 1_000));
    }
    let ack = ack
        .filter(|a| !a.trim().is_empty())
        .map(str::to_string)
        .or_else(|| Some(record.cursor.clone()).filter(|c| !c.is_empty()));
    let request = StepRequest {
        corp_id: String::new(),
        ack,
        restart: false,
    };
    let batch: SyncBatch = match crate::sync::step_with(env, settings, &request) {
        Ok(batch) => batch,
        Err(f) if f.code == "sync_cursor_stale" && !record.cursor.is_empty() => {
            // Retry with the latest cursor a page recorded.
            return Ok(view(&record, settings.sync_qps, true, 500));
        }
        Err(f) => return Err(f),
    };
    let p = &batch.progress;
    if p.pass != record.pass {
        record.deactivated = 0;
    }
    let deactivated = batch
        .changes
        .iter()
        .filter(|c| matches!(c, DirectoryChange::MemberDeactivated { .. }))
        .count();
    record = SyncRecord {
        cursor: batch.cursor.clone(),
        pass: p.pass,
        departments_done: p.departments_done,
        departments_known: p.departments_known,
        members_seen: p.members_seen,
        deactivated: record
            .deactivated
            .saturating_add(u32::try_from(deactivated).unwrap_or(u32::MAX)),
        complete: p.complete,
        updated_ms: now,
        driver: driver.to_string(),
    };
    kv::put_json(env, &sync_key(&settings.corp.corp_id), &record)?;
    Ok(view(
        &record,
        settings.sync_qps,
        false,
        batch.retry_after_ms.unwrap_or(0),
    ))
}
