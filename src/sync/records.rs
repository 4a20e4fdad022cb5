//! The tagged department records and the pass's department queue, as an attempt reads and
//! writes them.

use super::*;

impl Run<'_, '_> {
    pub(super) fn alloc_slot(
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

    pub(super) fn dept_rec(&mut self, id: i64) -> Result<Option<Rec<DeptState>>, Halt> {
        let key = self.keys.dept(id);
        Ok(kv::get_json(self.env(), &key)?)
    }

    pub(super) fn put_dept_rec(&mut self, id: i64, rec: &Rec<DeptState>) -> Result<(), Halt> {
        let key = self.keys.dept(id);
        kv::put_json(self.env(), &key, rec)?;
        self.dept_cache.insert(id, rec.new.clone());
        Ok(())
    }

    /// The department's state as this attempt sees it.
    pub(super) fn dept_state(&mut self, id: i64) -> Result<DeptState, Halt> {
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

    pub(super) fn queue_entry(&mut self, i: u64) -> Result<Option<QueueEntry>, Halt> {
        let key = self.keys.queue(i);
        Ok(kv::get_json(self.env(), &key)?)
    }

    pub(super) fn put_queue_entry(&mut self, i: u64, entry: &QueueEntry) -> Result<(), Halt> {
        let key = self.keys.queue(i);
        kv::put_json(self.env(), &key, entry)?;
        Ok(())
    }

    /// Appends a department to the pass's queue unless this pass already has it.
    pub(super) fn enqueue(&mut self, s: &mut State, dept: Department) -> Result<(), Halt> {
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
            return self.adopt_parent(s, &eff, dept);
        }
        let rec = Rec {
            slot,
            base: eff.clone(),
            tag: Some(self.me),
            new: DeptState {
                present: eff.present,
                seen: self.pass,
                pos: Some(s.known),
            },
        };
        self.put_dept_rec(dept.dept_id, &rec)?;
        self.put_queue_entry(s.known, &QueueEntry { dept, gone: false })?;
        s.known += 1;
        Ok(())
    }

    /// An authorised department queued as a root (no parent: `/auth/scopes` does not say where
    /// it sits) and met again under a parent the walk can see (nested authorised departments):
    /// it takes that parent, unless it was already reported. One write, only in that case.
    fn adopt_parent(&mut self, s: &State, eff: &DeptState, dept: Department) -> Result<(), Halt> {
        let (Some(parent), Some(pos)) = (dept.parent_id, eff.pos) else {
            return Ok(());
        };
        if pos < s.reported {
            return Ok(());
        }
        if let Some(mut entry) = self.queue_entry(pos)? {
            if entry.dept.dept_id == dept.dept_id && entry.dept.parent_id.is_none() && !entry.gone {
                entry.dept.parent_id = Some(parent);
                self.put_queue_entry(pos, &entry)?;
            }
        }
        Ok(())
    }

    /// Marks a department as reported (its children were listed: it is visible), so that the
    /// end of a later pass that no longer finds it reports its removal.
    pub(super) fn listed(&mut self, id: i64) -> Result<(), Halt> {
        self.update_dept(id, |d| d.present = true)
    }

    fn update_dept(&mut self, id: i64, change: impl FnOnce(&mut DeptState)) -> Result<(), Halt> {
        let Some(rec) = self.dept_rec(id)? else {
            return Ok(());
        };
        let eff = self.valid.effective(&rec);
        let mut new = eff.clone();
        change(&mut new);
        if new == eff {
            return Ok(());
        }
        let base = if rec.tag == Some(self.me) {
            rec.base.clone()
        } else {
            eff
        };
        self.put_dept_rec(
            id,
            &Rec {
                slot: rec.slot,
                base,
                tag: Some(self.me),
                new,
            },
        )
    }

    /// Marks a queued department as not walked this pass (deleted, or outside the scope), so
    /// that no member waits for its page.
    pub(super) fn unwalkable(&mut self, id: i64) -> Result<(), Halt> {
        self.update_dept(id, |d| d.pos = None)
    }

    /// A member's record and the state this attempt sees (`None`: never recorded).
    pub(super) fn member_rec(
        &mut self,
        userid: &str,
    ) -> Result<Option<(Rec<MemberState>, MemberState)>, Halt> {
        let key = self.keys.member(userid);
        let rec: Option<Rec<MemberState>> = kv::get_json(self.env(), &key)?;
        Ok(rec.map(|r| {
            let eff = self.valid.effective(&r);
            (r, eff)
        }))
    }

    /// Writes `new` as this attempt's state of a member, keeping the state from before the
    /// attempt as the record's base (also when the attempt writes the record twice).
    pub(super) fn put_member(
        &mut self,
        userid: &str,
        old: Option<(Rec<MemberState>, MemberState)>,
        new: MemberState,
    ) -> Result<(), Halt> {
        let (slot, base) = match old {
            Some((rec, eff)) => {
                let base = if rec.tag == Some(self.me) {
                    rec.base
                } else {
                    eff
                };
                (rec.slot, base)
            }
            None => {
                let keys = self.keys;
                let slot = self.alloc_slot(keys.member_count(), |i| keys.member_slot(i), userid)?;
                (slot, MemberState::default())
            }
        };
        let key = self.keys.member(userid);
        let rec = Rec {
            slot,
            base,
            tag: Some(self.me),
            new,
        };
        kv::put_json(self.env(), &key, &rec)?;
        Ok(())
    }
}
