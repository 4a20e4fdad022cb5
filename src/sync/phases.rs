//! The phases of a sync pass that call DingTalk: the visible department tree (scope, listing),
//! the member walk, the members authorised one by one, and the end-of-pass sweeps, which confirm
//! each member not seen with `user/get` before reporting them as departed.

use super::*;

/// Whether a `user/get` error says the member has left the organisation: `60121` (找不到该用户)
/// or `33012` (无效的 userid) (docs/dingtalk-api.md §13.4).
fn departed(e: &ApiError) -> bool {
    matches!(e.problem(), Problem::NotMember | Problem::NotFound)
}

impl Run<'_, '_> {
    // ---- phase: departments ----------------------------------------------------------------

    pub(super) fn tree(&mut self, s: &mut State, b: &mut SyncBatch) -> Result<Flow, Halt> {
        // A department is reported once its children were listed (so one outside the scope,
        // or deleted meanwhile, never is), in queue order: parents first.
        while s.reported < s.expanded.min(s.known)
            && b.departments.len() < MAX_DEPARTMENTS_PER_BATCH
        {
            if let Some(e) = self.queue_entry(s.reported)? {
                if !e.gone {
                    b.departments.push(e.dept);
                }
            }
            s.reported += 1;
        }
        if s.reported < s.expanded.min(s.known) {
            return Ok(Flow::Stop);
        }
        if !s.roots_ready {
            return self.roots(s);
        }
        // `>=`: a checkpoint whose counters passed `known` (a store edited by hand) must not stall.
        if s.expanded >= s.known {
            s.phase = Phase::Members;
            s.walk = 0;
            s.cursor = 0;
            return Ok(Flow::Continue);
        }
        if !self.can_call(DEPT_PERMISSION)? {
            return Ok(Flow::Stop);
        }
        self.expand(s)?;
        Ok(Flow::Continue)
    }

    /// Puts the pass's walk roots in the queue. While the whole organisation is visible (or
    /// nothing is known yet) that is the root department, with no call: `listsub(1)` answering
    /// 50004 tells the scope shrank. Otherwise `GET /auth/scopes` names the authorised
    /// departments, each read with `department/get` (for its name) and reported without a parent
    /// (its parent is outside the scope) — unless the walk meets it under another authorised
    /// department first, which then becomes its parent (`Run::adopt_parent`).
    fn roots(&mut self, s: &mut State) -> Result<Flow, Halt> {
        let whole = s.scope.as_ref().is_none_or(AuthScopes::whole_org);
        if whole && !s.root_denied && !s.scope_checked {
            let root = self.root_department();
            self.enqueue(s, root)?;
            if s.scope.is_none() {
                s.scope = Some(AuthScopes {
                    authed_dept: vec![ROOT_DEPT],
                    authed_user: Vec::new(),
                });
            }
            s.roots_ready = true;
            return Ok(Flow::Continue);
        }
        if !s.scope_checked {
            if !self.can_call(BASE_PERMISSION)? {
                return Ok(Flow::Stop);
            }
            let scopes = contacts::auth_scopes(&mut self.client)
                .map_err(|e| Halt::Api(e, BASE_PERMISSION))?;
            if scopes.whole_org() && s.root_denied {
                // The scope says "everything" while the root said 50004: nothing sensible to walk.
                return Err(Halt::Api(out_of_scope(), DEPT_PERMISSION));
            }
            s.scope = Some(scopes);
            s.scope_checked = true;
            s.roots = 0;
            if s.scope.as_ref().is_some_and(AuthScopes::whole_org) {
                let root = self.root_department();
                self.enqueue(s, root)?;
                s.roots_ready = true;
            }
            return Ok(Flow::Continue);
        }
        let mut authed: Vec<i64> = s
            .scope
            .as_ref()
            .map(|sc| sc.authed_dept.clone())
            .unwrap_or_default();
        authed.sort_unstable();
        authed.dedup();
        let Some(&id) = usize::try_from(s.roots).ok().and_then(|i| authed.get(i)) else {
            s.roots_ready = true;
            return Ok(Flow::Continue);
        };
        if !self.can_call(DEPT_PERMISSION)? {
            return Ok(Flow::Stop);
        }
        match contacts::department_get(&mut self.client, id) {
            Ok(detail) => {
                let corp = self.corp();
                let mut dept = detail
                    .department
                    .filter(|d| d.dept_id == id)
                    .unwrap_or_else(|| Department {
                        corp_id: corp,
                        dept_id: id,
                        parent_id: None,
                        name: id.to_string(),
                        order: None,
                    });
                dept.parent_id = None;
                self.enqueue(s, dept)?;
            }
            // Deleted since it was authorised, or the scope changed again: nothing to walk there.
            Err(e) if matches!(e.problem(), Problem::NotFound | Problem::OutOfScope) => {}
            Err(e) => return Err(Halt::Api(e, DEPT_PERMISSION)),
        }
        s.roots += 1;
        Ok(Flow::Continue)
    }

    /// The root department as reported: DingTalk's `listsub` does not name the department it
    /// lists, so its name is the organisation's display name from the settings (else the corp id).
    fn root_department(&mut self) -> Department {
        let corp = self.corp();
        let name = self.client.app().corp_name.trim().to_string();
        Department {
            name: if name.is_empty() { corp.clone() } else { name },
            corp_id: corp,
            dept_id: ROOT_DEPT,
            parent_id: None,
            order: None,
        }
    }

    fn expand(&mut self, s: &mut State) -> Result<(), Halt> {
        let i = s.expanded;
        let entry = self.queue_entry(i)?;
        let Some(mut entry) = entry.filter(|e| !e.gone) else {
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
                self.listed(parent)?;
                for child in children {
                    self.enqueue(s, child)?;
                }
            }
            Err(e)
                if e.problem() == Problem::OutOfScope
                    && parent == ROOT_DEPT
                    && !s.scope_checked =>
            {
                // The app sees part of the organisation only: start over from /auth/scopes.
                self.env().log(
                    "sync: the root department is outside the contact scope; reading /auth/scopes",
                );
                s.root_denied = true;
                s.roots_ready = false;
                s.known = 0;
                s.expanded = 0;
                s.reported = 0;
                return Ok(());
            }
            // A department deleted since it was listed (never the root: that would empty the
            // whole directory), or one outside the contact scope: skip its subtree, never fail
            // the pass; its members are confirmed one by one at the end of the pass.
            Err(e)
                if (e.problem() == Problem::NotFound && parent != ROOT_DEPT)
                    || e.problem() == Problem::OutOfScope =>
            {
                entry.gone = true;
                self.put_queue_entry(i, &entry)?;
                self.unwalkable(parent)?;
            }
            Err(e) => return Err(Halt::Api(e, DEPT_PERMISSION)),
        }
        s.expanded += 1;
        Ok(())
    }

    // ---- phase: members --------------------------------------------------------------------

    pub(super) fn walk(&mut self, s: &mut State, b: &mut SyncBatch) -> Result<Flow, Halt> {
        if s.walk >= s.known {
            s.phase = Phase::Users;
            s.users = 0;
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
            Err(e)
                if (e.problem() == Problem::NotFound && dept_id != ROOT_DEPT)
                    || e.problem() == Problem::OutOfScope =>
            {
                self.unwalkable(dept_id)?;
                s.walk += 1;
                s.cursor = 0;
                return Ok(Flow::Continue);
            }
            Err(e) => return Err(Halt::Api(e, MEMBER_PERMISSION)),
        };
        for m in page.members {
            self.member(s, b, m, Some(s.walk))?;
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

    /// Meets member `m` in the department at queue position `at` (`None`: read with `user/get`,
    /// which carries every leader flag). The member is reported once per pass, when met in the
    /// last of their departments this pass walks (each `user/list` item's `leader` flag is about
    /// the listed department only); until then the flags gathered so far are kept in the record.
    /// Reporting writes the mirror and the changes since the last pass.
    pub(super) fn member(
        &mut self,
        s: &mut State,
        b: &mut SyncBatch,
        mut m: Member,
        at: Option<u64>,
    ) -> Result<(), Halt> {
        let old = self.member_rec(&m.userid)?;
        let eff = old.as_ref().map(|(_, e)| e.clone()).unwrap_or_default();
        if eff.seen == self.pass {
            return Ok(());
        }
        if eff.gathering == self.pass {
            for d in &eff.leads {
                if !m.leader_dept_ids.contains(d) {
                    m.leader_dept_ids.push(*d);
                }
            }
        }
        if let Some(at) = at {
            let mut last = at;
            for d in m.dept_ids.clone() {
                let state = self.dept_state(d)?;
                if state.seen == self.pass {
                    if let Some(pos) = state.pos {
                        last = last.max(pos);
                    }
                }
            }
            if last > at {
                let new = MemberState {
                    gathering: self.pass,
                    leads: m.leader_dept_ids.clone(),
                    ..eff
                };
                return self.put_member(&m.userid, old, new);
            }
        }
        let depts = sorted_unique(&m.dept_ids);
        if eff.seen > 0 {
            if !eff.present {
                b.changes
                    .push(DirectoryChange::MemberUpserted { member: m.clone() });
            }
            let old_depts = sorted_unique(&eff.depts);
            let added = not_in(&depts, &old_depts);
            let removed = not_in(&old_depts, &depts);
            if !added.is_empty() || !removed.is_empty() {
                b.changes.push(DirectoryChange::MemberMoved {
                    corp_id: m.corp_id.clone(),
                    userid: m.userid.clone(),
                    added_dept_ids: added,
                    removed_dept_ids: removed,
                });
            }
        }
        let new = MemberState {
            present: true,
            seen: self.pass,
            depts,
            gathering: 0,
            leads: Vec::new(),
        };
        self.put_member(&m.userid, old, new)?;
        mirror::store(self.env(), &m)?;
        s.members_seen += 1;
        b.members.push(m);
        Ok(())
    }

    // ---- phase: members authorised one by one ----------------------------------------------

    /// Reads the `authed_user` members of a partial scope with `user/get` (one call each, only
    /// for those no department page reported this pass).
    pub(super) fn users(&mut self, s: &mut State, b: &mut SyncBatch) -> Result<Flow, Halt> {
        let authed: Vec<String> = match &s.scope {
            Some(sc) if s.scope_checked && !sc.whole_org() => sc.authed_user.clone(),
            _ => Vec::new(),
        };
        let Some(userid) = usize::try_from(s.users).ok().and_then(|i| authed.get(i)) else {
            s.phase = Phase::SweepMembers;
            s.sweep = 1;
            s.sweep_from = self.me;
            return Ok(Flow::Continue);
        };
        let reported = self
            .member_rec(userid)?
            .is_some_and(|(_, eff)| eff.seen == self.pass);
        if !reported {
            if b.members.len() >= MAX_MEMBERS_PER_BATCH
                || !self.can_call(MEMBER_DETAIL_PERMISSION)?
            {
                return Ok(Flow::Stop);
            }
            match contacts::user_get(&mut self.client, userid) {
                Ok(record) => {
                    let corp = self.corp();
                    let Some(m) = record.to_member(&corp).filter(|m| &m.userid == userid) else {
                        return Err(Halt::Api(
                            ApiError::Parse("result.userid"),
                            MEMBER_DETAIL_PERMISSION,
                        ));
                    };
                    self.member(s, b, m, None)?;
                }
                Err(e) if departed(&e) || e.problem() == Problem::OutOfScope => {}
                Err(e) => return Err(Halt::Api(e, MEMBER_DETAIL_PERMISSION)),
            }
        }
        s.users += 1;
        Ok(Flow::Continue)
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

    /// Walks the member records: each member this pass did not report (absent from every page,
    /// which an offset cursor allows while the org changes, or still waiting for a department
    /// whose page skipped them) is confirmed with `user/get`: `60121` / `33012` → deactivated;
    /// found → reported as present; outside the scope (50004) → left as it is.
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
                    let absent = eff.present && eff.seen > 0 && eff.seen < self.pass;
                    let waiting = eff.gathering == self.pass && eff.seen < self.pass;
                    if absent || waiting {
                        if b.members.len() >= MAX_MEMBERS_PER_BATCH
                            || !self.can_call(MEMBER_DETAIL_PERMISSION)?
                        {
                            return Ok(Flow::Stop);
                        }
                        match contacts::user_get(&mut self.client, &userid) {
                            Ok(record) => {
                                let corp = self.corp();
                                let Some(m) =
                                    record.to_member(&corp).filter(|m| m.userid == userid)
                                else {
                                    return Err(Halt::Api(
                                        ApiError::Parse("result.userid"),
                                        MEMBER_DETAIL_PERMISSION,
                                    ));
                                };
                                self.member(s, b, m, None)?;
                            }
                            Err(e) if departed(&e) => {
                                if absent {
                                    b.changes.push(DirectoryChange::MemberDeactivated {
                                        corp_id: self.corp(),
                                        userid: userid.clone(),
                                    });
                                }
                                let new = MemberState {
                                    present: false,
                                    gathering: 0,
                                    leads: Vec::new(),
                                    ..eff.clone()
                                };
                                self.put_member(&userid, Some((rec, eff)), new)?;
                                let corp = self.corp();
                                mirror::forget(self.env(), &corp, &userid)?;
                            }
                            // Not visible to the app any more: neither departed nor confirmed.
                            Err(e) if e.problem() == Problem::OutOfScope => {}
                            Err(e) => return Err(Halt::Api(e, MEMBER_DETAIL_PERMISSION)),
                        }
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

/// Department ids ascending, each once. (A sorted `Vec` rather than a `BTreeSet`: member lists
/// are short, and the set's code costs the component about 12 KB.)
fn sorted_unique(ids: &[i64]) -> Vec<i64> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The ids of `ids` missing from `others`, in the order of `ids`.
fn not_in(ids: &[i64], others: &[i64]) -> Vec<i64> {
    ids.iter()
        .filter(|id| !others.contains(id))
        .copied()
        .collect()
}
