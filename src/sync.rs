//! Full directory sync as bounded, resumable steps (issue 4). Being written.

use crate::env::Env;
use crate::failure::Failure;
use crate::model::{Department, DirectoryChange, Member};
use crate::settings::Settings;

/// Progress of the current pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncProgress {
    /// Pass number.
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
    /// Members read.
    pub members: Vec<Member>,
    /// Moves, removals and deactivations.
    pub changes: Vec<DirectoryChange>,
    /// Progress.
    pub progress: SyncProgress,
    /// Throttled: wait this long.
    pub retry_after_ms: Option<u32>,
}

/// Runs one bounded step of the full sync for `corp_id` (empty: the configured corp).
pub fn step(
    _env: &mut dyn Env,
    _settings: &Settings,
    _corp_id: &str,
) -> Result<SyncBatch, Failure> {
    Err(Failure::new(
        501,
        "not_ready",
        "sync is not available yet",
        "同步功能尚未就绪",
    ))
}
