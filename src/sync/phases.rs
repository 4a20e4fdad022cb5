//! The phases of a sync pass that call DingTalk: the department tree (detail, expand), the
//! member walk, and the end-of-pass sweeps that report what was not seen.

use super::*;

impl Run<'_, '_> {
    // ---- phase: departments ----------------------------------------------------------------

    pub(super) fn tree(&mut self, s: &mut State, b: &mut SyncBatch) -> Result<Flow, Halt> {
        while s.reported < s.detailed && b.departments.len() < MAX_DEPARTMENTS_PER_BATCH {
            if let Some(e) = self.queue_entry(s.reported)? {
                if !e.gone {
                    b.departments.push(e.dept);
                }
            }
            s.reported += 1;
        }
        if s.reported < s.detailed {
            return Ok(Flow::Stop);
        }
        if s.known == 0 {
            let root = Department {
                corp_id: self.corp(),
                dept_id: ROOT_DEPT,
                parent_id: None,
                name: ROOT_DEPT.to_string(),
                order: None,
            };
            self.enqueue(s, root)?;
            return Ok(Flow::Continue);
        }
        // `>=`: a checkpoint whose counters passed `known` (a store edited by hand) must not stall.
        if s.detailed >= s.known && s.expanded >= s.known {
            s.phase = Phase::Members;
            s.walk = 0;
            s.cursor = 0;
            return Ok(Flow::Continue);
        }
        if !self.can_call(DEPT_PERMISSION)? {
            return Ok(Flow::Stop);
        }
        if s.detailed < s.known {
            self.detail(s)?;
        } else {
            self.expand(s)?;
        }
        Ok(Flow::Continue)
    }

    fn detail(&mut self, s: &mut State) -> Result<(), Halt> {
        let i = s.detailed;
        let Some(mut entry) = self.queue_entry(i)? else {
            s.detailed += 1;
            return Ok(());
        };
        let id = entry.dept.dept_id;
        match contacts::department_get(&mut self.client, id) {
            Ok(detail) => {
                if let Some(mut d) = detail.department.filter(|d| d.dept_id == id) {
                    if d.parent_id.is_none() && id != ROOT_DEPT {
                        d.parent_id = entry.dept.parent_id;
                    }
                    entry.dept = d;
                }
                self.put_queue_entry(i, &entry)?;
                self.set_managers(id, detail.managers)?;
            }
            // A department deleted since it was listed; never the root (that would empty the
            // whole directory).
            Err(e) if e.problem() == Problem::NotFound && id != ROOT_DEPT => {
                entry.gone = true;
                self.put_queue_entry(i, &entry)?;
            }
            Err(e) => return Err(Halt::Api(e, DEPT_PERMISSION)),
        }
        s.detailed += 1;
        Ok(())
    }

    fn expand(&mut self, s: &mut State) -> Result<(), Halt> {
        let i = s.expanded;
        let entry = self.queue_entry(i)?;
        let Some(entry) = entry.filter(|e| !e.gone) else {
            s.expanded += 1;
            return Ok(());
        };
        let parent = entry.dept.dept_id;
        match contacts::department_listsub(&mut self.client, parent) {
            Ok(listed) => {
                let children: Vec<Department> = listed
                    .into_iter()
                    .filter(|d| d.dept_id != parent && d.dept_id != ROOT_DEPT)
                    .map(|mut d| {
                        d.parent_id = Some(parent);
                        d
                    })
                    .collect();
                for child in children {
                    self.enqueue(s, child)?;
                }
            }
            Err(e) if e.problem() == Problem::NotFound && parent != ROOT_DEPT => {}
            Err(e) => return Err(Halt::Api(e, DEPT_PERMISSION)),
        }
        s.expanded += 1;
        Ok(())
    }

    // ---- phase: members --------------------------------------------------------------------

    pub(super) fn walk(&mut self, s: &mut State, b: &mut SyncBatch) -> Result<Flow, Halt> {
        if s.walk >= s.known {
            s.phase = Phase::SweepMembers;
            s.sweep = 1;
            s.sweep_from = self.me;
            return Ok(Flow::Continue);
        }
        let room = b.members.len() + PAGE_SIZE as usize <= MAX_MEMBERS_PER_BATCH;
        if !room || !self.can_call(MEMBER_PERMISSION)? {
            return Ok(Flow::Stop);
        }
        let entry = self.queue_entry(s.walk)?;
        let Some(entry) = entry.filter(|e| !e.gone) else {
            s.walk += 1;
            s.cursor = 0;
            return Ok(Flow::Continue);
        };
        let dept_id = entry.dept.dept_id;
        let page = match contacts::user_list(&mut self.client, dept_id, s.cursor, PAGE_SIZE) {
            Ok(page) => page,
            Err(e) if e.problem() == Problem::NotFound && dept_id != ROOT_DEPT => {
                s.walk += 1;
                s.cursor = 0;
                return Ok(Flow::Continue);
            }
            Err(e) => return Err(Halt::Api(e, MEMBER_PERMISSION)),
        };
        for m in page.members {
            self.member(s, b, m)?;
        }
        if page.has_more {
            let next = page.next_cursor.filter(|n| *n > s.cursor);
            let Some(next) = next else {
                return Err(Halt::Fail(Failure::new(
                    502,
                    "dingtalk_bad_cursor",
                    format!("DingTalk's user/list for department {dept_id} said has_more without a next_cursor past {}; the sync stops here rather than loop or skip members. Try again later.", s.cursor),
                    format!("钉钉 user/list（部门 {dept_id}）返回 has_more，但没有大于 {} 的 next_cursor；为避免死循环或漏人，同步在此停止，请稍后重试。", s.cursor),
                )));
            };
            s.cursor = next;
        } else {
            s.walk += 1;
            s.cursor = 0;
        }
        Ok(Flow::Continue)
    }

    /// Reports a member the first time this pass meets it, with the changes since the last pass.
    fn member(&mut self, s: &mut State, b: &mut SyncBatch, mut m: Member) -> Result<(), Halt> {
        let key = self.keys.member(&m.userid);
        let rec: Option<Rec<MemberState>> = kv::get_json(self.env(), &key)?;
        let (eff, slot) = match rec {
            Some(r) => (self.valid.effective(&r), r.slot),
            None => {
                let keys = self.keys;
                let slot =
                    self.alloc_slot(keys.member_count(), |i| keys.member_slot(i), &m.userid)?;
                (MemberState::default(), slot)
            }
        };
        if eff.seen == self.pass {
            return Ok(());
        }
        for d in m.dept_ids.clone() {
            if !m.leader_dept_ids.contains(&d) {
                let state = self.dept_state(d)?;
                if state.seen == self.pass && state.managers.contains(&m.userid) {
                    m.leader_dept_ids.push(d);
                }
            }
        }
        let depts: BTreeSet<i64> = m.dept_ids.iter().copied().collect();
        if eff.seen > 0 {
            if !eff.present {
                b.changes
                    .push(DirectoryChange::MemberUpserted { member: m.clone() });
            }
            let old: BTreeSet<i64> = eff.depts.iter().copied().collect();
            let added: Vec<i64> = depts.difference(&old).copied().collect();
            let removed: Vec<i64> = old.difference(&depts).copied().collect();
            if !added.is_empty() || !removed.is_empty() {
                b.changes.push(DirectoryChange::MemberMoved {
                    corp_id: m.corp_id.clone(),
                    userid: m.userid.clone(),
                    added_dept_ids: added,
                    removed_dept_ids: removed,
                });
            }
        }
        let rec = Rec {
            slot,
            base: eff,
            tag: Some(self.me),
            new: MemberState {
                present: true,
                seen: self.pass,
                depts: depts.into_iter().collect(),
            },
        };
        kv::put_json(self.env(), &key, &rec)?;
        s.members_seen += 1;
        b.members.push(m);
        Ok(())
    }

    // ---- phase: end of pass ----------------------------------------------------------------

    /// How many slots a sweep walks: the value of a slot counter (0 when never incremented).
    fn slot_count(&mut self, count_key: String) -> Result<u64, Halt> {
        Ok(u64::try_from(self.env().kv_increment(&count_key, 0)?).unwrap_or(0))
    }

    /// The id stored in a member or department slot, if any.
    fn slot_text(&mut self, slot_key: String) -> Result<Option<String>, Halt> {
        Ok(self
            .env()
            .kv_get(&slot_key)?
            .and_then(|v| String::from_utf8(v).ok()))
    }

    pub(super) fn sweep_members(&mut self, s: &mut State, b: &mut SyncBatch) -> Result<Flow, Halt> {
        let n = self.slot_count(self.keys.member_count())?;
        let mut examined = 0;
        while s.sweep <= n {
            if sweep_share_done(examined, b) {
                return Ok(Flow::Stop);
            }
            let i = s.sweep;
            if let Some(userid) = self.slot_text(self.keys.member_slot(i))? {
                let key = self.keys.member(&userid);
                let rec: Option<Rec<MemberState>> = kv::get_json(self.env(), &key)?;
                if let Some(rec) = rec.filter(|r| r.slot == i) {
                    let eff = self.valid.effective(&rec);
                    if eff.present && eff.seen > 0 && eff.seen < self.pass {
                        b.changes.push(DirectoryChange::MemberDeactivated {
                            corp_id: self.corp(),
                            userid,
                        });
                        let new = MemberState {
                            present: false,
                            ..eff.clone()
                        };
                        let rec = Rec {
                            slot: i,
                            base: eff,
                            tag: Some(self.me),
                            new,
                        };
                        kv::put_json(self.env(), &key, &rec)?;
                    } else if rec.tag.is_some_and(|t| !self.valid.counts(t)) {
                        // Left by an attempt that never committed: settle it on its base.
                        let rec = Rec {
                            slot: i,
                            base: eff.clone(),
                            tag: None,
                            new: eff,
                        };
                        kv::put_json(self.env(), &key, &rec)?;
                    }
                }
            }
            s.sweep += 1;
            examined += 1;
        }
        s.phase = Phase::SweepDepts;
        s.sweep = 1;
        Ok(Flow::Continue)
    }

    pub(super) fn sweep_depts(&mut self, s: &mut State, b: &mut SyncBatch) -> Result<Flow, Halt> {
        let n = self.slot_count(self.keys.dept_count())?;
        let mut examined = 0;
        while s.sweep <= n {
            if sweep_share_done(examined, b) {
                return Ok(Flow::Stop);
            }
            let i = s.sweep;
            let id = self.slot_text(self.keys.dept_slot(i))?;
            if let Some(id) = id.and_then(|t| t.parse::<i64>().ok()) {
                if let Some(rec) = self.dept_rec(id)?.filter(|r| r.slot == i) {
                    let eff = self.valid.effective(&rec);
                    if eff.present && eff.seen > 0 && eff.seen < self.pass {
                        b.changes.push(DirectoryChange::DepartmentRemoved {
                            corp_id: self.corp(),
                            dept_id: id,
                        });
                        let new = DeptState {
                            present: false,
                            ..eff.clone()
                        };
                        self.put_dept_rec(
                            id,
                            &Rec {
                                slot: i,
                                base: eff,
                                tag: Some(self.me),
                                new,
                            },
                        )?;
                    } else if rec.tag.is_some_and(|t| !self.valid.counts(t)) {
                        self.put_dept_rec(
                            id,
                            &Rec {
                                slot: i,
                                base: eff.clone(),
                                tag: None,
                                new: eff,
                            },
                        )?;
                    }
                }
            }
            s.sweep += 1;
            examined += 1;
        }
        s.phase = Phase::Done;
        Ok(Flow::Stop)
    }
}

/// Whether this step has swept its share: enough slots examined, or a full batch of changes.
fn sweep_share_done(examined: u64, b: &SyncBatch) -> bool {
    examined >= SWEEP_SLOTS_PER_STEP || b.changes.len() >= MAX_CHANGES_PER_BATCH
}
