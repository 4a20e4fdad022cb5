//! What a sync keeps between steps: the checkpoint (current and previous pass state, void
//! attempts), the tagged per-department and per-member records, the department queue entries,
//! their key-value keys, and loading the checkpoint and allocating attempt ids.

use super::*;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Phase {
    /// Before the first pass, or the pass is complete.
    #[default]
    Done,
    /// Finding the visible departments (scope), listing and reporting them.
    Tree,
    /// Reading members department by department.
    Members,
    /// Reading the members authorised one by one (`authed_user`), outside the departments.
    Users,
    /// Walking member records: deactivations.
    SweepMembers,
    /// Walking department records: removals.
    SweepDepts,
}

/// Where a pass stands. Queue positions are 0-based, record slots 1-based.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct State {
    pub(super) pass: u64,
    /// The attempt that committed this state.
    pub(super) attempt: u64,
    pub(super) phase: Phase,
    /// The app's visible contact scope as last learned (kept from pass to pass): the whole
    /// organisation once `listsub(1)` answered, else `GET /auth/scopes`. `None` before.
    pub(super) scope: Option<AuthScopes>,
    /// This pass asked `GET /auth/scopes`.
    pub(super) scope_checked: bool,
    /// This pass's `listsub(1)` answered 50004 (the scope is part of the org).
    pub(super) root_denied: bool,
    /// Every walk root of this pass is in the queue.
    pub(super) roots_ready: bool,
    /// Authorised departments (partial scope) looked at so far.
    pub(super) roots: u64,
    /// Departments in the queue.
    pub(super) known: u64,
    /// Queue entries whose children were listed.
    pub(super) expanded: u64,
    /// Queue entries reported in batches.
    pub(super) reported: u64,
    /// Queue entry whose members are being read, and the `user/list` cursor in it.
    pub(super) walk: u64,
    pub(super) cursor: u64,
    pub(super) members_seen: u64,
    /// `authed_user` entries looked at (phase `Users`).
    pub(super) users: u64,
    /// Next record slot to examine at the end of the pass.
    pub(super) sweep: u64,
    /// First attempt of this pass's sweep: void attempts before it no longer tag any record
    /// once the sweep is over.
    pub(super) sweep_from: u64,
    /// Consecutive throttled steps.
    pub(super) throttled: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Checkpoint {
    pub(super) version: u64,
    pub(super) cur: State,
    pub(super) prev: Option<State>,
    /// Inclusive ranges of attempt ids that never committed (or were replayed).
    pub(super) void: Vec<(u64, u64)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct MemberState {
    /// Member of the organisation as last reported (false once deactivated).
    pub(super) present: bool,
    /// Last pass that reported the member (0: never).
    pub(super) seen: u64,
    /// Departments as last reported, sorted.
    pub(super) depts: Vec<i64>,
    /// Pass in which the member was met in a department listed before their last one: the
    /// report waits for that department's page (leader flags are per listed department).
    pub(super) gathering: u64,
    /// Departments the member leads, gathered in pass `gathering`.
    pub(super) leads: Vec<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct DeptState {
    pub(super) present: bool,
    pub(super) seen: u64,
    /// Queue position in pass `seen` while its members are still to be read (`None`: skipped).
    pub(super) pos: Option<u64>,
}

/// A record with a pending write: `new` counts once attempt `tag` has committed, else `base`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Rec<S> {
    pub(super) slot: u64,
    pub(super) base: S,
    pub(super) tag: Option<u64>,
    pub(super) new: S,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct QueueEntry {
    pub(super) dept: Department,
    /// Vanished during the pass (60003): not reported, not walked.
    #[serde(default)]
    pub(super) gone: bool,
}

/// Which attempt ids count when reading tagged records during attempt `me`, which started
/// from a state committed by attempt `base`.
pub(super) struct Validity {
    pub(super) me: u64,
    pub(super) base: u64,
    pub(super) void: Vec<(u64, u64)>,
}

impl Validity {
    pub(super) fn counts(&self, tag: u64) -> bool {
        tag == self.me
            || (tag <= self.base && !self.void.iter().any(|(lo, hi)| *lo <= tag && tag <= *hi))
    }

    pub(super) fn effective<S: Clone>(&self, rec: &Rec<S>) -> S {
        match rec.tag {
            Some(t) if self.counts(t) => rec.new.clone(),
            _ => rec.base.clone(),
        }
    }
}

pub(super) fn add_void(void: &mut Vec<(u64, u64)>, lo: u64, hi: u64) {
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

pub(super) fn token(s: &State) -> String {
    format!("{}.{}", s.pass, s.attempt)
}

pub(super) struct Keys {
    pub(super) corp: String,
}

impl Keys {
    pub(super) fn ckpt(&self) -> String {
        format!("sync:{}:ckpt", self.corp)
    }
    pub(super) fn born(&self) -> String {
        format!("sync:{}:born", self.corp)
    }
    fn attempt(&self) -> String {
        format!("sync:{}:attempt", self.corp)
    }
    pub(super) fn lease(&self, pass: u64, version: u64) -> String {
        format!("synclease:{}:{pass}:{version}", self.corp)
    }
    pub(super) fn queue(&self, i: u64) -> String {
        format!("syncdq:{}:{i}", self.corp)
    }
    pub(super) fn dept(&self, id: i64) -> String {
        format!("syncd:{}:{id}", self.corp)
    }
    pub(super) fn dept_count(&self) -> String {
        format!("syncdi:{}:n", self.corp)
    }
    pub(super) fn dept_slot(&self, i: u64) -> String {
        format!("syncdi:{}:{i}", self.corp)
    }
    pub(super) fn member(&self, userid: &str) -> String {
        format!("syncm:{}:{userid}", self.corp)
    }
    pub(super) fn member_count(&self) -> String {
        format!("syncmi:{}:n", self.corp)
    }
    pub(super) fn member_slot(&self, i: u64) -> String {
        format!("syncmi:{}:{i}", self.corp)
    }
}

/// The checkpoint. When it is missing although attempts were made (the key was lost), the sync
/// resumes after every pass and attempt those could have used, so records of earlier passes
/// still compare as older; an unreadable checkpoint is a failure, never a silent restart.
pub(super) fn load_checkpoint(env: &mut dyn Env, keys: &Keys) -> Result<Checkpoint, Failure> {
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
pub(super) fn next_attempt(
    env: &mut dyn Env,
    keys: &Keys,
    ck: &Checkpoint,
) -> Result<u64, Failure> {
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
