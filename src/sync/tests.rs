use super::*;
use crate::settings::tests::sample_raw;
use crate::testing::{body_of, json_response, path_of, FakeEnv};
use serde_json::{json, Value};
use std::cell::Cell;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;

const CORP: &str = "dingcorp123";

#[derive(Clone)]
struct U {
    id: String,
    depts: Vec<i64>,
    leads: Vec<i64>,
    admin: bool,
}

fn u(id: &str, depts: &[i64]) -> U {
    U {
        id: id.into(),
        depts: depts.to_vec(),
        leads: vec![],
        admin: false,
    }
}

/// A scripted DingTalk organisation.
struct Org {
    /// (id, parent (0 for the root), name).
    depts: Vec<(i64, i64, String)>,
    users: Vec<U>,
    page: usize,
    /// (path suffix, n-th call of that path (0-based), answer body).
    inject: Vec<(String, usize, String)>,
    counts: BTreeMap<String, usize>,
    /// Contact scope: authorised department subtrees (`None`: the whole org).
    scope: Option<Vec<i64>>,
    /// Members authorised one by one (`authed_user`).
    authed_users: Vec<String>,
    /// Access-restricted members (数据访问受限): left out of `user/list` unless
    /// `contain_access_limit: true`.
    restricted: HashSet<String>,
    /// (n, userid): the member leaves right after the n-th `user/list` answer (1-based).
    leave_after_list: Vec<(usize, String)>,
}

impl Org {
    fn sample() -> Org {
        let mut boss = u("boss", &[1]);
        boss.admin = true;
        boss.leads = vec![1];
        let mut d = u("d", &[2, 3]);
        d.leads = vec![3];
        let mut users = vec![boss, u("a", &[2, 4]), u("b", &[3]), u("c", &[4]), d];
        users.extend((1..=5).map(|i| u(&format!("e{i}"), &[5])));
        Org {
            depts: vec![
                (1, 0, "公司".into()),
                (2, 1, "研发".into()),
                (3, 1, "销售".into()),
                (4, 2, "后端".into()),
                (5, 2, "前端".into()),
            ],
            users,
            page: 2,
            inject: vec![],
            counts: BTreeMap::new(),
            scope: None,
            authed_users: vec![],
            restricted: HashSet::new(),
            leave_after_list: vec![],
        }
    }

    /// Whether department `d` lies in the subtree of `top`.
    fn within(&self, d: i64, top: i64) -> bool {
        let mut cur = d;
        for _ in 0..64 {
            if cur == top {
                return true;
            }
            match self.depts.iter().find(|x| x.0 == cur) {
                Some((_, parent, _)) if *parent != 0 => cur = *parent,
                _ => return false,
            }
        }
        false
    }

    fn visible(&self, d: i64) -> bool {
        self.scope
            .as_ref()
            .is_none_or(|tops| tops.iter().any(|t| self.within(d, *t)))
    }

    fn inject(&mut self, path: &str, nth: usize, body: &str) {
        self.inject.push((path.into(), nth, body.into()));
    }

    fn answer(&mut self, path: &str, body: &Value) -> String {
        let n = self.counts.entry(path.to_string()).or_insert(0);
        let nth = *n;
        *n += 1;
        if let Some(i) = self
            .inject
            .iter()
            .position(|(p, k, _)| path.ends_with(p.as_str()) && *k == nth)
        {
            return self.inject.remove(i).2;
        }
        let ok =
            |result: Value| json!({"errcode": 0, "errmsg": "ok", "result": result}).to_string();
        let gone = r#"{"errcode":60003,"errmsg":"部门不存在"}"#.to_string();
        let outside = r#"{"errcode":50004,"errmsg":"企业部门不在授权范围"}"#.to_string();
        let dept_id = body["dept_id"].as_i64().unwrap_or(0);
        if path.ends_with("/auth/scopes") {
            let depts = self.scope.clone().unwrap_or_else(|| vec![1]);
            return json!({"errcode": 0, "errmsg": "ok", "auth_user_field": ["userid"],
                "auth_org_scopes": {"authed_dept": depts, "authed_user": self.authed_users}})
            .to_string();
        }
        if path.ends_with("/user/get") {
            let userid = body["userid"].as_str().unwrap_or("");
            let Some(u) = self.users.iter().find(|u| u.id == userid) else {
                return r#"{"errcode":60121,"errmsg":"找不到该用户"}"#.to_string();
            };
            if !u.depts.iter().any(|d| self.visible(*d)) && !self.authed_users.contains(&u.id) {
                return outside;
            }
            let leader_in: Vec<Value> = u
                .depts
                .iter()
                .map(|d| json!({"dept_id": d, "leader": u.leads.contains(d)}))
                .collect();
            return ok(
                json!({"userid": u.id, "unionid": format!("un-{}", u.id), "name": format!("N {}", u.id),
                "dept_id_list": u.depts, "leader_in_dept": leader_in, "admin": u.admin,
                "boss": u.id == "boss", "active": true}),
            );
        }
        if self.depts.iter().any(|d| d.0 == dept_id) && !self.visible(dept_id) {
            return outside;
        }
        if path.ends_with("/department/get") {
            let Some((id, parent, name)) = self.depts.iter().find(|d| d.0 == dept_id).cloned()
            else {
                return gone;
            };
            let managers: Vec<&str> = self
                .users
                .iter()
                .filter(|u| u.leads.contains(&id))
                .map(|u| u.id.as_str())
                .collect();
            let mut r = json!({"dept_id": id, "name": name, "order": id * 10, "dept_manager_userid_list": managers});
            if parent != 0 {
                r["parent_id"] = json!(parent);
            }
            return ok(r);
        }
        if path.ends_with("/department/listsub") {
            if !self.depts.iter().any(|d| d.0 == dept_id) {
                return gone;
            }
            let children: Vec<Value> = self
                .depts
                .iter()
                .filter(|d| d.1 == dept_id)
                .map(|d| json!({"dept_id": d.0, "name": d.2, "parent_id": d.1}))
                .collect();
            return ok(json!(children));
        }
        if path.ends_with("/user/list") {
            if !self.depts.iter().any(|d| d.0 == dept_id) {
                return gone;
            }
            let cursor = body["cursor"].as_u64().unwrap_or(0) as usize;
            let size = (body["size"].as_u64().unwrap_or(0) as usize).min(self.page);
            let all_asked = body["contain_access_limit"] == json!(true);
            let mut members: Vec<&U> = self
                .users
                .iter()
                .filter(|u| u.depts.contains(&dept_id))
                .collect();
            members.sort_by(|a, b| a.id.cmp(&b.id));
            let end = (cursor + size).min(members.len());
            let list: Vec<Value> = members[cursor.min(end)..end]
                .iter()
                .filter(|u| all_asked || !self.restricted.contains(&u.id))
                .map(|u| {
                    json!({"userid": u.id, "unionid": format!("un-{}", u.id), "name": format!("N {}", u.id),
                        "dept_id_list": u.depts, "leader": u.leads.contains(&dept_id), "admin": u.admin,
                        "boss": u.id == "boss", "active": true})
                })
                .collect();
            let mut r = json!({"has_more": end < members.len(), "list": list});
            if end < members.len() {
                r["next_cursor"] = json!(end);
            }
            let listed = self.counts.get(path).copied().unwrap_or(0);
            let leaving: Vec<String> = self
                .leave_after_list
                .iter()
                .filter(|(n, _)| *n == listed)
                .map(|(_, u)| u.clone())
                .collect();
            self.users.retain(|u| !leaving.contains(&u.id));
            return ok(r);
        }
        r#"{"errcode":40035,"errmsg":"不合法的参数"}"#.to_string()
    }
}

/// Serves `org` through the shared fake DingTalk: its three contacts endpoints answer from the
/// organisation (and its injected answers); tokens come from the fake itself.
fn fake(env: &mut FakeEnv, org: Org) -> Rc<RefCell<Org>> {
    let org = Rc::new(RefCell::new(org));
    for path in [
        "/topapi/v2/department/get",
        "/topapi/v2/department/listsub",
        "/topapi/v2/user/list",
        "/topapi/v2/user/get",
        "/auth/scopes",
    ] {
        let o = org.clone();
        env.route(path, move |r| {
            let answer = o.borrow_mut().answer(&path_of(r), &body_of(r));
            json_response(200, &answer)
        });
    }
    org
}

fn settings(qps: u32) -> Settings {
    let mut raw = sample_raw();
    raw.insert("sync_qps".into(), qps.to_string());
    Settings::parse(&raw).unwrap()
}

/// An environment over a [`FakeEnv`] that records when calls were made and can "die": after
/// `writes_left` store writes every store operation and call fails.
struct Probe<'a> {
    inner: &'a mut FakeEnv,
    times: Vec<u64>,
    writes_left: Option<usize>,
    dead: bool,
}

impl<'a> Probe<'a> {
    fn new(inner: &'a mut FakeEnv) -> Self {
        Probe {
            inner,
            times: vec![],
            writes_left: None,
            dead: false,
        }
    }
    fn dying(inner: &'a mut FakeEnv, writes: usize) -> Self {
        Probe {
            writes_left: Some(writes),
            ..Probe::new(inner)
        }
    }
    fn write(&mut self) -> Result<(), KvError> {
        if self.dead {
            return Err(KvError("dead".into()));
        }
        match &mut self.writes_left {
            Some(0) => {
                self.dead = true;
                Err(KvError("dead".into()))
            }
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl Env for Probe<'_> {
    fn now_ms(&self) -> u64 {
        self.inner.now
    }
    fn random_bytes(&mut self, buf: &mut [u8]) {
        self.inner.random_bytes(buf)
    }
    fn http(&mut self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        if self.dead {
            return Err(TransportError::Unreachable("dead".into()));
        }
        if !request.url.ends_with("/v1.0/oauth2/accessToken") {
            self.times.push(self.inner.now);
        }
        self.inner.http(request)
    }
    fn sleep_ms(&mut self, ms: u64) {
        self.inner.sleep_ms(ms)
    }
    fn kv_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        if self.dead {
            return Err(KvError("dead".into()));
        }
        self.inner.kv_get(key)
    }
    fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.write()?;
        self.inner.kv_set(key, value)
    }
    fn kv_delete(&mut self, key: &str) -> Result<(), KvError> {
        self.write()?;
        self.inner.kv_delete(key)
    }
    fn kv_increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError> {
        if delta != 0 {
            self.write()?;
        } else if self.dead {
            return Err(KvError("dead".into()));
        }
        self.inner.kv_increment(key, delta)
    }
    fn log(&mut self, line: &str) {
        self.inner.log(line)
    }
}

/// Steps until the pass completes, waiting as told.
fn run_pass(env: &mut FakeEnv, s: &Settings) -> Vec<SyncBatch> {
    let mut out = vec![];
    for _ in 0..2000 {
        let b = step(env, s, "").unwrap();
        env.now += u64::from(b.retry_after_ms.unwrap_or(0));
        let done = b.progress.complete;
        out.push(b);
        if done {
            return out;
        }
    }
    panic!("the pass never completed");
}

fn members(batches: &[SyncBatch]) -> Vec<Member> {
    batches.iter().flat_map(|b| b.members.clone()).collect()
}

fn changes(batches: &[SyncBatch]) -> Vec<DirectoryChange> {
    batches.iter().flat_map(|b| b.changes.clone()).collect()
}

/// Every department once, parents first; every member once with all its departments.
fn assert_complete(batches: &[SyncBatch], org: &Org) {
    let mut seen_depts: Vec<i64> = vec![];
    for d in batches.iter().flat_map(|b| b.departments.iter()) {
        if let Some(p) = d.parent_id {
            assert!(
                seen_depts.contains(&p),
                "department {} before its parent {p}",
                d.dept_id
            );
        }
        assert!(
            !seen_depts.contains(&d.dept_id),
            "department {} twice",
            d.dept_id
        );
        seen_depts.push(d.dept_id);
    }
    let mut want: Vec<i64> = org.depts.iter().map(|d| d.0).collect();
    want.sort_unstable();
    seen_depts.sort_unstable();
    assert_eq!(seen_depts, want);

    let ms = members(batches);
    let mut ids: Vec<&str> = ms.iter().map(|m| m.userid.as_str()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "a member was reported twice: {ids:?}"
    );
    ids.sort_unstable();
    let mut want: Vec<&str> = org.users.iter().map(|u| u.id.as_str()).collect();
    want.sort_unstable();
    assert_eq!(ids, want);
    for m in &ms {
        let o = org.users.iter().find(|x| x.id == m.userid).unwrap();
        let mut got = m.dept_ids.clone();
        got.sort_unstable();
        let mut exp = o.depts.clone();
        exp.sort_unstable();
        assert_eq!(got, exp, "departments of {}", m.userid);
        let mut leads = m.leader_dept_ids.clone();
        leads.sort_unstable();
        assert_eq!(leads, o.leads, "leader flags of {}", m.userid);
        assert_eq!(m.is_admin, o.admin);
    }
}

#[test]
fn first_pass_reports_the_whole_org_once() {
    let s = settings(2);
    let mut env = FakeEnv::new();
    let org = fake(&mut env, Org::sample());
    let batches = run_pass(&mut env, &s);
    assert_complete(&batches, &org.borrow());
    assert!(
        changes(&batches).is_empty(),
        "the first pass has nothing to compare with"
    );
    let last = batches.last().unwrap();
    assert_eq!(last.progress.pass, 1);
    assert_eq!(last.progress.departments_known, 5);
    assert_eq!(last.progress.departments_done, 5);
    assert_eq!(last.progress.members_seen, 10);
    let root = &batches[0].departments[0];
    // The root is named after the organisation's display name in the settings (no
    // department/get: listsub does not name the department it lists).
    assert_eq!(
        (root.dept_id, root.parent_id, root.name.as_str(), root.order),
        (1, None, "示例公司", None)
    );
    // No per-user or per-department detail calls, no scope call while the root is visible.
    for path in [
        "/topapi/v2/user/get",
        "/topapi/v2/department/get",
        "/auth/scopes",
    ] {
        assert_eq!(env.calls_to(path), 0, "{path}");
    }
    assert_eq!(
        visible_scope(&mut env, CORP).unwrap(),
        Some(AuthScopes {
            authed_dept: vec![1],
            authed_user: vec![]
        })
    );
    // The next call starts pass 2.
    let b = step(&mut env, &s, "").unwrap();
    assert_eq!(b.progress.pass, 2);
    assert!(!b.progress.complete);
}

#[test]
fn leave_move_removal_and_rehire_across_passes() {
    let s = settings(15);
    let mut env = FakeEnv::new();
    let org = fake(&mut env, Org::sample());
    run_pass(&mut env, &s);
    {
        let mut o = org.borrow_mut();
        o.users.retain(|u| u.id != "b");
        let d = o.users.iter_mut().find(|u| u.id == "d").unwrap();
        d.depts = vec![4];
        d.leads = vec![];
        o.depts.retain(|d| d.0 != 3);
    }
    let pass2 = run_pass(&mut env, &s);
    assert_complete(&pass2, &org.borrow());
    for b in &pass2[..pass2.len() - 1] {
        assert!(
            !b.changes.iter().any(|c| matches!(
                c,
                DirectoryChange::MemberDeactivated { .. }
                    | DirectoryChange::DepartmentRemoved { .. }
            )),
            "deactivation before the pass was complete"
        );
    }
    let all = changes(&pass2);
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(all.contains(&DirectoryChange::MemberMoved {
        corp_id: CORP.into(),
        userid: "d".into(),
        added_dept_ids: vec![4],
        removed_dept_ids: vec![2, 3],
    }));
    let last = &pass2.last().unwrap().changes;
    assert!(last.contains(&DirectoryChange::MemberDeactivated {
        corp_id: CORP.into(),
        userid: "b".into()
    }));
    assert!(last.contains(&DirectoryChange::DepartmentRemoved {
        corp_id: CORP.into(),
        dept_id: 3
    }));

    // Rehired into department 2.
    org.borrow_mut().users.push(u("b", &[2]));
    let pass3 = run_pass(&mut env, &s);
    assert_complete(&pass3, &org.borrow());
    let all = changes(&pass3);
    assert_eq!(all.len(), 2, "{all:?}");
    match &all[0] {
        DirectoryChange::MemberUpserted { member } => {
            assert!(member.userid == "b" && member.active && member.dept_ids == vec![2])
        }
        other => panic!("expected the comeback first, got {other:?}"),
    }
    assert_eq!(
        all[1],
        DirectoryChange::MemberMoved {
            corp_id: CORP.into(),
            userid: "b".into(),
            added_dept_ids: vec![2],
            removed_dept_ids: vec![3]
        }
    );

    // Nothing changed: nothing to report.
    let pass4 = run_pass(&mut env, &s);
    assert!(changes(&pass4).is_empty());
}

#[test]
fn a_crash_at_any_write_loses_and_duplicates_nothing() {
    let s = settings(1);
    let mut env = FakeEnv::new();
    let org = fake(&mut env, Org::sample());
    let mut crashes = 0;
    for pass in 1..=2 {
        if pass == 2 {
            let mut o = org.borrow_mut();
            o.users.retain(|u| u.id != "c");
            o.users.iter_mut().find(|u| u.id == "a").unwrap().depts = vec![5];
        }
        let mut delivered: Vec<SyncBatch> = vec![];
        for _ in 0..500 {
            // Instances that die after 0, 2, 4, … store writes, their results lost, until one
            // gets through the whole step.
            let mut writes = 0;
            let b = loop {
                match step(&mut Probe::dying(&mut env, writes), &s, "") {
                    Ok(b) => break b,
                    Err(_) => {
                        crashes += 1;
                        writes += 2;
                        env.now += 2 * lease::LEASE_MS;
                    }
                }
            };
            env.now += u64::from(b.retry_after_ms.unwrap_or(0));
            let done = b.progress.complete;
            delivered.push(b);
            if done {
                break;
            }
        }
        assert!(delivered.last().unwrap().progress.complete);
        assert_eq!(delivered.last().unwrap().progress.pass, pass);
        assert_complete(&delivered, &org.borrow());
        let all = changes(&delivered);
        if pass == 1 {
            assert!(all.is_empty());
        } else {
            assert_eq!(all.len(), 2, "{all:?}");
            assert!(all.contains(&DirectoryChange::MemberDeactivated {
                corp_id: CORP.into(),
                userid: "c".into()
            }));
            assert!(all.contains(&DirectoryChange::MemberMoved {
                corp_id: CORP.into(),
                userid: "a".into(),
                added_dept_ids: vec![5],
                removed_dept_ids: vec![2, 4],
            }));
        }
    }
    assert!(crashes > 150, "crashes: {crashes}");
}

#[test]
fn a_lost_response_is_replayed_when_acknowledged() {
    let s = settings(1);
    let mut env = FakeEnv::new();
    let org = fake(&mut env, Org::sample());
    let req = |ack: Option<&str>| StepRequest {
        corp_id: String::new(),
        ack: ack.map(String::from),
        restart: false,
    };
    let b1 = step_with(&mut env, &s, &req(None)).unwrap();
    let mut delivered = vec![b1.clone()];
    let mut ack = b1.cursor.clone();
    let mut replays = 0;
    for i in 0..200 {
        let b = step_with(&mut env, &s, &req(Some(&ack))).unwrap();
        env.now += u64::from(b.retry_after_ms.unwrap_or(0));
        if i % 2 == 1 && !b.progress.complete {
            // The response is lost on the way: ask again with the same ack.
            let again = step_with(&mut env, &s, &req(Some(&ack))).unwrap();
            assert_eq!(
                (&again.departments, &again.members, &again.changes),
                (&b.departments, &b.members, &b.changes)
            );
            assert_ne!(again.cursor, b.cursor);
            replays += 1;
            ack = again.cursor.clone();
            delivered.push(again);
            continue;
        }
        ack = b.cursor.clone();
        let done = b.progress.complete;
        delivered.push(b);
        if done {
            break;
        }
    }
    assert!(replays >= 2, "replays: {replays}");
    assert_complete(&delivered, &org.borrow());
    let stale = step_with(&mut env, &s, &req(Some("7.77"))).unwrap_err();
    assert_eq!(
        (stale.status, stale.code.as_str()),
        (409, "sync_cursor_stale")
    );
}

#[test]
fn replay_after_the_org_changed_still_loses_nothing() {
    let s = settings(1);
    let mut env = FakeEnv::new();
    let org = fake(&mut env, Org::sample());
    let req = |ack: Option<String>| StepRequest {
        ack,
        ..StepRequest::default()
    };
    let mut delivered = vec![];
    let mut ack: Option<String> = None;
    let mut dropped_one = false;
    for _ in 0..300 {
        let b = step_with(&mut env, &s, &req(ack.clone())).unwrap();
        env.now += u64::from(b.retry_after_ms.unwrap_or(0));
        if !dropped_one && b.members.iter().any(|m| m.userid == "e1") {
            // Lost; meanwhile e1 leaves and f joins department 5.
            dropped_one = true;
            let mut o = org.borrow_mut();
            o.users.retain(|u| u.id != "e1");
            o.users.push(u("f", &[5]));
            continue;
        }
        ack = Some(b.cursor.clone());
        let done = b.progress.complete;
        delivered.push(b);
        if done {
            break;
        }
    }
    assert!(dropped_one);
    assert_complete(&delivered, &org.borrow());
}

#[test]
fn throttling_mid_page_backs_off_and_rereads_the_page() {
    let s = settings(15);
    let mut env = FakeEnv::new();
    let org = fake(&mut env, Org::sample());
    {
        let mut o = org.borrow_mut();
        o.inject(
            "/topapi/v2/user/list",
            3,
            r#"{"errcode":90018,"errmsg":"当前应用调用该接口的QPS超过限制"}"#,
        );
        o.inject(
            "/topapi/v2/user/list",
            4,
            r#"{"errcode":88,"sub_code":"90018","errmsg":"qps"}"#,
        );
    }
    let batches = run_pass(&mut env, &s);
    let waits: Vec<u32> = batches.iter().filter_map(|b| b.retry_after_ms).collect();
    assert_eq!(
        waits,
        vec![1000, 2000],
        "backs off, doubling while throttled"
    );
    let throttled = batches
        .iter()
        .position(|b| b.retry_after_ms.is_some())
        .unwrap();
    assert!(
        !batches[throttled].members.is_empty(),
        "the work before the throttled call is kept"
    );
    assert_complete(&batches, &org.borrow());
    // Both throttled pages were read again.
    assert!(org.borrow().inject.is_empty());
}

fn checkpoint(env: &FakeEnv) -> Option<Vec<u8>> {
    env.kv.get(&format!("sync:{CORP}:ckpt")).cloned()
}

#[test]
fn monthly_quota_stops_without_advancing() {
    let s = settings(2);
    let mut env = FakeEnv::new();
    let org = fake(&mut env, Org::sample());
    let first = step(&mut env, &s, "").unwrap();
    assert!(!first.progress.complete);
    org.borrow_mut().inject(
        "/topapi/v2/user/list",
        0,
        r#"{"errcode":90020,"errmsg":"月调用量超限"}"#,
    );
    let mut failure = None;
    for _ in 0..20 {
        let before = checkpoint(&env);
        match step(&mut env, &s, "") {
            Ok(_) => {}
            Err(f) => {
                assert_eq!(
                    checkpoint(&env),
                    before,
                    "a failed step must not advance the checkpoint"
                );
                failure = Some(f);
                break;
            }
        }
    }
    let f = failure.expect("the quota error stops the sync");
    assert_eq!((f.status, f.code.as_str()), (503, "dingtalk_monthly_quota"));
    // Next month: it carries on and completes.
    let mut rest = run_pass(&mut env, &s);
    rest.insert(0, first);
    assert!(rest.last().unwrap().progress.complete);
}

#[test]
fn missing_permissions_are_named() {
    let s = settings(15);
    for (path, permission) in [
        ("/topapi/v2/department/listsub", "qyapi_get_department_list"),
        ("/topapi/v2/user/list", "qyapi_get_department_member"),
    ] {
        let mut env = FakeEnv::new();
        let org = fake(&mut env, Org::sample());
        org.borrow_mut().inject(
            path,
            0,
            r#"{"errcode":60011,"errmsg":"没有调用该接口的权限"}"#,
        );
        let f = (0..10)
            .find_map(|_| step(&mut env, &s, "").err())
            .expect("fails");
        assert_eq!(f.code, "missing_permission");
        assert!(f.message.contains(permission), "{path}: {}", f.message);
    }
}

#[test]
fn outside_the_contact_scope_is_a_clear_failure() {
    let s = settings(15);
    let mut env = FakeEnv::new();
    let org = fake(&mut env, Org::sample());
    // The root answers 50004 while /auth/scopes says the whole org is authorised.
    org.borrow_mut().inject(
        "/topapi/v2/department/listsub",
        0,
        r#"{"errcode":50004,"errmsg":"企业部门不在授权范围"}"#,
    );
    let f = step(&mut env, &s, "").unwrap_err();
    assert_eq!(f.code, "outside_contact_scope");
    assert_eq!(checkpoint(&env), None);
    // The lease was released: the retry runs at once.
    assert!(step(&mut env, &s, "").unwrap().retry_after_ms.is_none());
}

#[test]
fn a_cursor_that_does_not_advance_stops_the_sync() {
    let s = settings(15);
    let mut env = FakeEnv::new();
    let org = fake(&mut env, Org::sample());
    org.borrow_mut().inject(
        "/topapi/v2/user/list",
        0,
        r#"{"errcode":0,"result":{"has_more":true,"list":[]}}"#,
    );
    let f = (0..10)
        .find_map(|_| step(&mut env, &s, "").err())
        .expect("fails");
    assert_eq!(f.code, "dingtalk_bad_cursor");
}

#[test]
fn qps_is_never_exceeded_also_with_another_instance() {
    let s = settings(3);
    let mut env = FakeEnv::new();
    let mut big = Org::sample();
    big.users
        .extend((0..40).map(|i| u(&format!("x{i:02}"), &[4, 5])));
    let org = fake(&mut env, big);
    // Another instance already holds the next three pacing slots (1050 / 3 = 350 ms each).
    let width = 350;
    let first_slot = env.now.div_ceil(width);
    for slot in first_slot..first_slot + 3 {
        env.kv_increment(&format!("syncq:{CORP}:{slot}"), 1)
            .unwrap();
    }
    let mut times = vec![];
    let mut batches = vec![];
    for _ in 0..500 {
        let mut probe = Probe::new(&mut env);
        let b = step(&mut probe, &s, "").unwrap();
        times.extend(probe.times);
        env.now += u64::from(b.retry_after_ms.unwrap_or(0));
        let done = b.progress.complete;
        assert!(
            b.progress.calls <= 2 * 3,
            "calls per step: {}",
            b.progress.calls
        );
        batches.push(b);
        if done {
            break;
        }
    }
    assert_complete(&batches, &org.borrow());
    assert!(
        times[0] >= (first_slot + 3) * width,
        "the first call waited for the other instance's slots"
    );
    // No sliding second holds more than 3 calls.
    for w in times.windows(4) {
        assert!(w[3] - w[0] >= 1000, "4 calls within one second: {w:?}");
    }
    // ... and the pace is used: some sliding second holds exactly 3.
    assert!(times.windows(3).any(|w| w[2] - w[0] < 1000));
}

/// Another instance on the same store: its own clock (`offset` from the shared fake's), and
/// `on_sleep` standing for what other instances do while it sleeps.
struct Instance<'a> {
    inner: &'a mut FakeEnv,
    offset: i64,
    on_sleep: Box<dyn FnMut(&mut FakeEnv) + 'a>,
    on_http: Box<dyn FnMut(&mut FakeEnv) + 'a>,
}

impl<'a> Instance<'a> {
    fn plain(inner: &'a mut FakeEnv, offset: i64) -> Self {
        Instance {
            inner,
            offset,
            on_sleep: Box::new(|_: &mut FakeEnv| {}),
            on_http: Box::new(|_: &mut FakeEnv| {}),
        }
    }
}

impl Env for Instance<'_> {
    fn now_ms(&self) -> u64 {
        self.inner.now.saturating_add_signed(self.offset)
    }
    fn random_bytes(&mut self, buf: &mut [u8]) {
        self.inner.random_bytes(buf)
    }
    fn http(&mut self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        (self.on_http)(self.inner);
        self.inner.http(request)
    }
    fn sleep_ms(&mut self, ms: u64) {
        self.inner.sleep_ms(ms);
        (self.on_sleep)(self.inner);
    }
    fn kv_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.inner.kv_get(key)
    }
    fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.inner.kv_set(key, value)
    }
    fn kv_delete(&mut self, key: &str) -> Result<(), KvError> {
        self.inner.kv_delete(key)
    }
    fn kv_increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.inner.kv_increment(key, delta)
    }
    fn log(&mut self, line: &str) {
        self.inner.log(line)
    }
}

const TEN_MINUTES: i64 = 10 * 60 * 1000;

/// Instance A takes the lease of the current checkpoint as its step would.
fn hold_lease(env: &mut FakeEnv) -> lease::Lease {
    let keys = Keys { corp: CORP.into() };
    let ck = load_checkpoint(env, &keys).unwrap();
    lease::claim(env, &keys, &ck).unwrap().expect("free lease")
}

#[test]
fn a_concurrent_step_gets_an_empty_batch_whatever_its_clock() {
    let s = settings(15);
    for offset in [0, TEN_MINUTES, -TEN_MINUTES, 3 * 3600 * 1000] {
        let mut env = FakeEnv::new();
        fake(&mut env, Org::sample());
        let a = hold_lease(&mut env);
        let heartbeat = a.heartbeat_key();
        // A is alive: it renews its lease every 500 ms while B watches.
        let mut since = 0;
        let mut b_env = Instance {
            inner: &mut env,
            offset,
            on_sleep: Box::new(move |e: &mut FakeEnv| {
                since += 200;
                if since >= 500 {
                    since = 0;
                    lease::beat(e, &heartbeat).unwrap();
                }
            }),
            on_http: Box::new(|_: &mut FakeEnv| {}),
        };
        let b = step(&mut b_env, &s, "").unwrap();
        drop(b_env);
        assert_eq!(b.retry_after_ms, Some(BUSY_RETRY_MS), "offset {offset}");
        assert!(b.departments.is_empty() && b.members.is_empty() && b.changes.is_empty());
        assert!(
            env.requests.is_empty(),
            "B stole A's live lease (offset {offset})"
        );
        assert_eq!(checkpoint(&env), None);
        assert!(a.still_held(&mut env).unwrap());
    }
}

#[test]
fn a_lease_whose_holder_died_is_taken_over_after_the_local_lease_time() {
    let s = settings(15);
    for offset in [0, TEN_MINUTES, -TEN_MINUTES] {
        let mut env = FakeEnv::new();
        fake(&mut env, Org::sample());
        // A claims the lease and dies.
        let a = hold_lease(&mut env);
        let started = env.now;
        let b = step(&mut Instance::plain(&mut env, offset), &s, "").unwrap();
        assert!(
            !b.departments.is_empty(),
            "B did not take over (offset {offset}): {b:?}"
        );
        assert!(checkpoint(&env).is_some());
        // B watched A's heartbeat for the lease time of its own clock, and not much longer.
        let first_call = env.requests.len();
        assert!(first_call > 0);
        let waited = env.now - started;
        assert!(
            (lease::LEASE_MS..lease::LEASE_MS + 3_000).contains(&waited),
            "waited {waited} ms"
        );
        // A, should it wake up, finds it was taken over and does not commit.
        assert!(!a.still_held(&mut env).unwrap());
    }
}

#[test]
fn a_holder_taken_over_mid_step_does_not_commit() {
    let s = settings(15);
    let mut env = FakeEnv::new();
    fake(&mut env, Org::sample());
    // A's step stalls (say, a paused VM) at its first DingTalk call; meanwhile B, whose clock is
    // 10 minutes behind, watches the silent lease and takes it over.
    let mut taken_over = false;
    let mut a_env = Instance {
        inner: &mut env,
        offset: 0,
        on_sleep: Box::new(|_: &mut FakeEnv| {}),
        on_http: Box::new(move |e: &mut FakeEnv| {
            if !taken_over {
                taken_over = true;
                let mut b_env = Instance::plain(e, -TEN_MINUTES);
                let keys = Keys { corp: CORP.into() };
                let ck = load_checkpoint(&mut b_env, &keys).unwrap();
                assert!(lease::claim(&mut b_env, &keys, &ck).unwrap().is_some());
            }
        }),
    };
    let a = step(&mut a_env, &s, "").unwrap();
    drop(a_env);
    assert!(
        a.departments.is_empty(),
        "A's batch was not withheld: {a:?}"
    );
    assert_eq!(a.retry_after_ms, Some(BUSY_RETRY_MS));
    assert_eq!(checkpoint(&env), None, "A committed after losing its lease");
}

#[test]
fn batches_stay_bounded_in_large_orgs() {
    let s = settings(20);
    let mut env = FakeEnv::new();
    let mut org = Org::sample();
    org.page = 100;
    org.depts
        .extend((100..1300).map(|i| (i, 1, format!("D{i}"))));
    org.users
        .extend((0..1234).map(|i| u(&format!("m{i:04}"), &[2])));
    let org = fake(&mut env, org);
    let batches = run_pass(&mut env, &s);
    for b in &batches {
        assert!(b.departments.len() <= MAX_DEPARTMENTS_PER_BATCH);
        assert!(b.members.len() <= MAX_MEMBERS_PER_BATCH);
        assert!(b.changes.len() <= MAX_CHANGES_PER_BATCH);
        assert!(b.progress.calls <= MAX_CALLS_PER_STEP);
    }
    assert_complete(&batches, &org.borrow());
    // Everyone in the big department leaves: deactivations come in bounded batches too.
    org.borrow_mut().users.retain(|u| !u.id.starts_with('m'));
    let pass2 = run_pass(&mut env, &s);
    let deactivated = changes(&pass2)
        .iter()
        .filter(|c| matches!(c, DirectoryChange::MemberDeactivated { .. }))
        .count();
    assert_eq!(deactivated, 1234);
    assert!(pass2
        .iter()
        .all(|b| b.changes.len() <= MAX_CHANGES_PER_BATCH));
}

#[test]
fn restart_abandons_the_pass_without_deactivating() {
    let s = settings(2);
    let mut env = FakeEnv::new();
    let org = fake(&mut env, Org::sample());
    run_pass(&mut env, &s);
    org.borrow_mut().users.retain(|u| u.id != "b");
    let partial = step(&mut env, &s, "").unwrap();
    assert_eq!(partial.progress.pass, 2);
    let restarted = step_with(
        &mut env,
        &s,
        &StepRequest {
            ack: Some(partial.cursor.clone()),
            restart: true,
            ..StepRequest::default()
        },
    )
    .unwrap();
    assert_eq!(restarted.progress.pass, 3);
    let mut rest = run_pass(&mut env, &s);
    rest.insert(0, restarted);
    assert_complete(&rest, &org.borrow());
    assert_eq!(
        changes(&rest),
        vec![DirectoryChange::MemberDeactivated {
            corp_id: CORP.into(),
            userid: "b".into()
        }]
    );
}

#[test]
fn void_ranges_merge() {
    let mut v = vec![];
    add_void(&mut v, 5, 7);
    add_void(&mut v, 8, 9);
    add_void(&mut v, 1, 2);
    add_void(&mut v, 4, 3);
    assert_eq!(v, vec![(1, 2), (5, 9)]);
}

#[test]
fn other_corps_are_refused() {
    let s = settings(15);
    let mut env = FakeEnv::new();
    assert_eq!(step(&mut env, &s, "dingother").unwrap_err().status, 403);
}

#[test]
fn a_lost_checkpoint_still_deactivates_and_a_corrupt_one_fails() {
    let s = settings(15);
    let mut env = FakeEnv::new();
    let org = fake(&mut env, Org::sample());
    run_pass(&mut env, &s);
    let key = format!("sync:{CORP}:ckpt");
    env.kv.remove(&key);
    org.borrow_mut().users.retain(|u| u.id != "b");
    let pass = run_pass(&mut env, &s);
    assert!(pass.last().unwrap().progress.pass > 1);
    assert_eq!(
        changes(&pass),
        vec![DirectoryChange::MemberDeactivated {
            corp_id: CORP.into(),
            userid: "b".into()
        }]
    );
    env.kv.insert(key, b"{oops".to_vec());
    assert_eq!(
        step(&mut env, &s, "").unwrap_err().code,
        "sync_state_unreadable"
    );
}

#[test]
fn a_missing_root_never_empties_the_directory() {
    let s = settings(15);
    let mut env = FakeEnv::new();
    let org = fake(&mut env, Org::sample());
    run_pass(&mut env, &s);
    // DingTalk wrongly says the root department does not exist, twice.
    for nth in [5, 6] {
        org.borrow_mut().inject(
            "/topapi/v2/department/listsub",
            nth,
            r#"{"errcode":60003,"errmsg":"部门不存在"}"#,
        );
    }
    let (mut pass, mut errors) = (vec![], 0);
    while !pass.last().is_some_and(|b: &SyncBatch| b.progress.complete) {
        match step(&mut env, &s, "") {
            Ok(b) => {
                env.now += u64::from(b.retry_after_ms.unwrap_or(0));
                pass.push(b);
            }
            Err(f) => {
                assert_eq!(f.code, "dingtalk_error");
                errors += 1;
            }
        }
        assert!(pass.len() + errors < 50);
    }
    assert!(org.borrow().inject.is_empty());
    assert_eq!(
        errors + pass.iter().filter(|b| b.retry_after_ms.is_some()).count(),
        2
    );
    assert_complete(&pass, &org.borrow());
    assert!(changes(&pass).is_empty());
}

#[test]
fn the_http_body_is_lenient() {
    let r: StepRequest = serde_json::from_str("{}").unwrap();
    assert_eq!(r, StepRequest::default());
    let r: StepRequest =
        serde_json::from_str(r#"{"corp_id":"c","ack":"3.41","restart":true,"extra":1}"#).unwrap();
    assert_eq!(
        (r.corp_id.as_str(), r.ack.as_deref(), r.restart),
        ("c", Some("3.41"), true)
    );
    // An empty ack is no ack.
    let s = settings(15);
    let mut env = FakeEnv::new();
    fake(&mut env, Org::sample());
    let b = step_with(
        &mut env,
        &s,
        &StepRequest {
            ack: Some(" ".into()),
            ..StepRequest::default()
        },
    )
    .unwrap();
    assert_eq!(b.progress.pass, 1);
    assert!(!b.cursor.is_empty());
}

/// Found by the `sync_checkpoint` fuzz target (fuzz/artifacts-found/sync_checkpoint/): a stored
/// checkpoint whose `expanded` passed `known` made a step loop forever without a DingTalk call.
#[test]
fn a_checkpoint_with_counters_past_known_still_ends_its_step() {
    let s = settings(15);
    let mut env = FakeEnv::new();
    let _org = fake(&mut env, Org::sample());
    let stored = br#"{"version":1,"cur":{"pass":1,"attempt":2,"phase":"tree","known":2,"detailed":2,"expanded":3,"reported":0,"walk":0,"cursor":0,"members_seen":0,"sweep":0,"sweep_from":0,"throttled":0},"prev":null,"void":[]}"#;
    env.kv.insert(format!("sync:{CORP}:ckpt"), stored.to_vec());
    env.kv
        .insert(format!("sync:{CORP}:born"), 1i64.to_le_bytes().to_vec());
    // The step ends (it used to spin here forever); whatever it answers, it answers.
    let _ = step(&mut env, &s, "");
}

// ---------------------------------------------------------------------------------------------
// Real DingTalk (issue 10 items 2–5, issue 12)

fn ids_of(batches: &[SyncBatch]) -> Vec<String> {
    let mut ids: Vec<String> = members(batches).into_iter().map(|m| m.userid).collect();
    ids.sort();
    ids
}

#[test]
fn restricted_members_are_listed_and_never_flap() {
    let s = settings(15);
    let mut env = FakeEnv::new();
    let mut o = Org::sample();
    o.restricted.insert("c".into());
    let org = fake(&mut env, o);
    let pass1 = run_pass(&mut env, &s);
    assert_complete(&pass1, &org.borrow());
    assert!(env
        .requests
        .iter()
        .filter(|r| path_of(r) == "/topapi/v2/user/list")
        .all(|r| body_of(r)["contain_access_limit"] == json!(true)));
    // A restriction switched on between passes: still listed, nobody to confirm or deactivate.
    org.borrow_mut().restricted.insert("b".into());
    let pass2 = run_pass(&mut env, &s);
    assert_complete(&pass2, &org.borrow());
    assert!(changes(&pass2).is_empty(), "{:?}", changes(&pass2));
    assert_eq!(env.calls_to("/topapi/v2/user/get"), 0);
}

#[test]
fn a_member_leaving_mid_walk_deactivates_only_them() {
    let s = settings(15);
    let mut env = FakeEnv::new();
    let org = fake(&mut env, Org::sample());
    run_pass(&mut env, &s);
    // Pass 2 lists departments 1–4 with one page each, then department 5 (e1..e5) in pages
    // of 2. e1 leaves right after the first page of department 5: the offset cursor then skips
    // e3 (now at offset 1), which used to deactivate e3 at the end of the pass.
    let pass1_calls = env.calls_to("/topapi/v2/user/list");
    org.borrow_mut().leave_after_list = vec![(pass1_calls + 5, "e1".into())];
    let pass2 = run_pass(&mut env, &s);
    assert!(org.borrow().users.iter().all(|u| u.id != "e1"), "e1 left");
    assert!(changes(&pass2).is_empty(), "{:?}", changes(&pass2));
    // e3, skipped by the shifted page, was confirmed with user/get and reported as present.
    assert_eq!(
        ids_of(&pass2).len(),
        10,
        "e1 was read before leaving, e3 after the pass"
    );
    assert!(ids_of(&pass2).contains(&"e3".to_string()));
    assert_eq!(
        env.calls_to("/topapi/v2/user/get"),
        1,
        "only e3 was confirmed"
    );
    // Pass 3: e1 is absent and confirmed departed; everybody else stays active.
    let pass3 = run_pass(&mut env, &s);
    assert_eq!(
        changes(&pass3),
        vec![DirectoryChange::MemberDeactivated {
            corp_id: CORP.into(),
            userid: "e1".into()
        }]
    );
    assert_complete(&pass3, &org.borrow());
    assert_eq!(env.calls_to("/topapi/v2/user/get"), 2);
    let pass4 = run_pass(&mut env, &s);
    assert!(changes(&pass4).is_empty());
    assert_complete(&pass4, &org.borrow());
}

#[test]
fn calls_are_at_the_floor_with_no_departures() {
    let s = settings(20);
    let mut env = FakeEnv::new();
    let mut o = Org::sample();
    o.page = 100;
    o.depts
        .extend((10..40).map(|i| (i, 2 + i % 4, format!("D{i}"))));
    o.users.extend((0..730).map(|i| {
        let mut m = u(&format!("m{i:03}"), &[10 + (i % 30) as i64]);
        if i % 7 == 0 {
            m.depts.push(2);
            m.leads = vec![2];
        }
        m
    }));
    // Everybody in department 2 and its first members: > 100 members there.
    let org = fake(&mut env, o);
    for pass in 1..=2 {
        let before = env.requests.len();
        let batches = run_pass(&mut env, &s);
        assert_complete(&batches, &org.borrow());
        let calls = env.requests[before..]
            .iter()
            .filter(|r| path_of(r) != crate::testing::TOKEN_PATH)
            .count();
        let o = org.borrow();
        let minimum: usize = o
            .depts
            .iter()
            .map(|d| {
                1 + o
                    .users
                    .iter()
                    .filter(|u| u.depts.contains(&d.0))
                    .count()
                    .div_ceil(100)
                    .max(1)
            })
            .sum();
        assert_eq!(
            calls as f64 / minimum as f64,
            1.0,
            "pass {pass}: {calls} calls for a minimum of {minimum}"
        );
    }
}

#[test]
fn a_partial_scope_walks_the_authorised_subtrees_and_users() {
    let s = settings(15);
    let mut env = FakeEnv::new();
    let mut o = Org::sample();
    o.scope = Some(vec![2]);
    o.authed_users = vec!["b".into()];
    let org = fake(&mut env, o);
    let pass1 = run_pass(&mut env, &s);
    assert_eq!(tree_of(&pass1), [(2, None), (4, Some(2)), (5, Some(2))]);
    assert_eq!(
        ids_of(&pass1),
        vec!["a", "b", "c", "d", "e1", "e2", "e3", "e4", "e5"],
        "the boss (department 1 only) is outside the scope; b is authorised by name"
    );
    assert_eq!(
        visible_scope(&mut env, CORP).unwrap(),
        Some(AuthScopes {
            authed_dept: vec![2],
            authed_user: vec!["b".into()]
        })
    );
    // Second pass: the scope is known, so no listsub(1); nothing changes, nobody is deactivated
    // (d's department 3 is outside the scope, yet d stays).
    let listsub_root = |env: &FakeEnv| {
        env.requests
            .iter()
            .filter(|r| {
                path_of(r) == "/topapi/v2/department/listsub" && body_of(r)["dept_id"] == json!(1)
            })
            .count()
    };
    assert_eq!(listsub_root(&env), 1);
    let pass2 = run_pass(&mut env, &s);
    assert_eq!(listsub_root(&env), 1);
    assert!(changes(&pass2).is_empty(), "{:?}", changes(&pass2));
    // The scope grows back to the whole org: the next pass walks from the root again.
    org.borrow_mut().scope = None;
    org.borrow_mut().authed_users.clear();
    let pass3 = run_pass(&mut env, &s);
    assert_complete(&pass3, &org.borrow());
}

#[test]
fn a_nested_authorised_department_keeps_its_visible_parent() {
    let s = settings(15);
    let mut env = FakeEnv::new();
    let mut o = Org::sample();
    // 4 sits under 2: both authorised, so 4 is queued as a root first, then met under 2.
    o.scope = Some(vec![2, 4]);
    fake(&mut env, o);
    let pass = run_pass(&mut env, &s);
    assert_eq!(tree_of(&pass), [(2, None), (4, Some(2)), (5, Some(2))]);
}

/// The departments a pass reported, as sorted `(id, parent)` pairs.
fn tree_of(pass: &[SyncBatch]) -> Vec<(i64, Option<i64>)> {
    let mut depts: Vec<(i64, Option<i64>)> = pass
        .iter()
        .flat_map(|b| b.departments.iter().map(|d| (d.dept_id, d.parent_id)))
        .collect();
    depts.sort_unstable();
    depts
}

#[test]
fn answers_without_data_are_retried_never_empty_departments() {
    let s = settings(15);
    let mut env = FakeEnv::new();
    let org = fake(&mut env, Org::sample());
    run_pass(&mut env, &s);
    {
        let mut o = org.borrow_mut();
        let listed = 0; // relative injection below
        let _ = listed;
        o.inject(
            "/topapi/v2/user/list",
            9,
            r#"{"errcode":0,"errmsg":"ok","result":{"has_more":false}}"#,
        );
        o.inject(
            "/topapi/v2/department/listsub",
            6,
            r#"{"errcode":0,"errmsg":"ok"}"#,
        );
    }
    let mut pass = vec![];
    let mut errors = 0;
    while !pass.last().is_some_and(|b: &SyncBatch| b.progress.complete) {
        match step(&mut env, &s, "") {
            Ok(b) => {
                env.now += u64::from(b.retry_after_ms.unwrap_or(0));
                pass.push(b);
            }
            Err(f) => {
                assert_eq!(f.code, "dingtalk_unavailable", "{f:?}");
                errors += 1;
            }
        }
        assert!(pass.len() + errors < 50);
    }
    assert!(org.borrow().inject.is_empty(), "both were answered");
    assert_complete(&pass, &org.borrow());
    assert!(changes(&pass).is_empty(), "{:?}", changes(&pass));
    assert_eq!(env.calls_to("/topapi/v2/user/get"), 0);
}

#[test]
fn a_batch_is_delivered_until_acknowledged() {
    let s = settings(15);
    let mut env = FakeEnv::new();
    let org = fake(&mut env, Org::sample());
    run_pass(&mut env, &s);
    org.borrow_mut().users.retain(|u| u.id != "b");
    // Step pass 2 to its end, acknowledging each batch, but not the last one.
    let mut ack = checkpoint_token(&mut env);
    let last = loop {
        let b = step_with(
            &mut env,
            &s,
            &StepRequest {
                ack: Some(ack.clone()),
                ..StepRequest::default()
            },
        )
        .unwrap();
        if b.progress.complete {
            break b;
        }
        ack = b.cursor.clone();
    };
    let deactivated = DirectoryChange::MemberDeactivated {
        corp_id: CORP.into(),
        userid: "b".into(),
    };
    assert_eq!(last.changes, vec![deactivated.clone()]);
    // The platform did not acknowledge it: no ack, or the ack before it, gets it again.
    for again in [None, Some(ack.clone()), None] {
        let b = step_with(
            &mut env,
            &s,
            &StepRequest {
                ack: again,
                ..StepRequest::default()
            },
        )
        .unwrap();
        assert_eq!(b.changes, vec![deactivated.clone()]);
        assert!(b.progress.complete);
        assert_eq!(b.progress.pass, 2);
    }
    // Acknowledged: the next step starts pass 3 and never repeats it.
    let cursor = {
        let b = step_with(&mut env, &s, &StepRequest::default()).unwrap();
        b.cursor
    };
    let next = step_with(
        &mut env,
        &s,
        &StepRequest {
            ack: Some(cursor),
            ..StepRequest::default()
        },
    )
    .unwrap();
    assert_eq!(next.progress.pass, 3);
    assert!(next.changes.is_empty());
    // The mirror has every member but b.
    assert!(env
        .kv
        .contains_key(&crate::directory::mirror::key(CORP, "a")));
    assert!(!env
        .kv
        .contains_key(&crate::directory::mirror::key(CORP, "b")));
}

fn checkpoint_token(env: &mut FakeEnv) -> String {
    let ck = load_checkpoint(env, &Keys { corp: CORP.into() }).unwrap();
    token(&ck.cur)
}

// ---------------------------------------------------------------------------------------------
// Key-value faults in the sync bookkeeping (issue 13 fault matrix)

/// How the i-th key-value operation fails.
#[derive(Clone, Copy, Debug)]
enum KvFault {
    /// Not applied; an error at once.
    Down,
    /// Applied, then an error (the reply was lost).
    Timeout,
}

/// A [`FakeEnv`] whose `target`-th key-value operation (1-based, counted from creation) fails.
struct FailingKv<'a> {
    inner: &'a mut FakeEnv,
    ops: &'a Cell<u64>,
    target: u64,
    kind: KvFault,
}

impl FailingKv<'_> {
    fn op<T>(&mut self, f: impl FnOnce(&mut FakeEnv) -> Result<T, KvError>) -> Result<T, KvError> {
        self.ops.set(self.ops.get() + 1);
        if self.ops.get() != self.target {
            return f(self.inner);
        }
        match self.kind {
            KvFault::Down => Err(KvError("store down".into())),
            KvFault::Timeout => {
                f(self.inner)?;
                Err(KvError("timeout".into()))
            }
        }
    }
}

impl Env for FailingKv<'_> {
    fn now_ms(&self) -> u64 {
        self.inner.now
    }
    fn random_bytes(&mut self, buf: &mut [u8]) {
        self.inner.random_bytes(buf)
    }
    fn http(&mut self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        self.inner.http(request)
    }
    fn sleep_ms(&mut self, ms: u64) {
        self.inner.sleep_ms(ms)
    }
    fn kv_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.op(|e| e.kv_get(key))
    }
    fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.op(|e| e.kv_set(key, value))
    }
    fn kv_delete(&mut self, key: &str) -> Result<(), KvError> {
        self.op(|e| e.kv_delete(key))
    }
    fn kv_increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.op(|e| e.kv_increment(key, delta))
    }
    fn log(&mut self, line: &str) {
        self.inner.log(line)
    }
}

/// One pass as a platform drives it over HTTP: it acknowledges every batch it received, and
/// after a failed step asks again with the same ack. Returns the batches received.
fn platform_pass(
    env: &mut FakeEnv,
    s: &Settings,
    ack: &mut Option<String>,
    fault: Option<(u64, KvFault)>,
) -> Vec<SyncBatch> {
    let ops = Cell::new(0);
    let mut out = vec![];
    for _ in 0..300 {
        let request = StepRequest {
            ack: ack.clone(),
            ..StepRequest::default()
        };
        let result = match fault {
            Some((target, kind)) => step_with(
                &mut FailingKv {
                    inner: env,
                    ops: &ops,
                    target,
                    kind,
                },
                s,
                &request,
            ),
            None => step_with(env, s, &request),
        };
        match result {
            Ok(b) => {
                env.now += u64::from(b.retry_after_ms.unwrap_or(0));
                *ack = Some(b.cursor.clone());
                let done = b.progress.complete;
                out.push(b);
                if done {
                    return out;
                }
            }
            // A step that failed (say, its lease is left unreleased) may block the next for the
            // lease time.
            Err(_) => env.now += 2 * lease::LEASE_MS,
        }
    }
    panic!("the pass never completed");
}

#[test]
fn a_kv_operation_failing_once_loses_and_duplicates_nothing() {
    let s = settings(15);
    // How many key-value operations a fault-free second pass makes.
    let total = {
        let mut env = FakeEnv::new();
        let org = fake(&mut env, Org::sample());
        let mut ack = None;
        platform_pass(&mut env, &s, &mut ack, None);
        org.borrow_mut().users.retain(|u| u.id != "b");
        let ops = Cell::new(0);
        let mut counting = FailingKv {
            inner: &mut env,
            ops: &ops,
            target: 0,
            kind: KvFault::Down,
        };
        let mut ack2 = ack.clone();
        loop {
            let b = step_with(
                &mut counting,
                &s,
                &StepRequest {
                    ack: ack2.clone(),
                    ..StepRequest::default()
                },
            )
            .unwrap();
            ack2 = Some(b.cursor.clone());
            if b.progress.complete {
                break;
            }
        }
        ops.get()
    };
    assert!(total > 50, "{total} operations");
    for target in 1..=total {
        for kind in [KvFault::Down, KvFault::Timeout] {
            let mut env = FakeEnv::new();
            let org = fake(&mut env, Org::sample());
            let mut ack = None;
            platform_pass(&mut env, &s, &mut ack, None);
            {
                let mut o = org.borrow_mut();
                o.users.retain(|u| u.id != "b");
                o.users.iter_mut().find(|u| u.id == "a").unwrap().depts = vec![5];
            }
            let pass2 = platform_pass(&mut env, &s, &mut ack, Some((target, kind)));
            let what = format!("op {target}/{total} {kind:?}");
            assert_complete(&pass2, &org.borrow());
            let mut all = changes(&pass2);
            all.sort_by_key(|c| format!("{c:?}"));
            assert_eq!(
                all,
                vec![
                    DirectoryChange::MemberDeactivated {
                        corp_id: CORP.into(),
                        userid: "b".into()
                    },
                    DirectoryChange::MemberMoved {
                        corp_id: CORP.into(),
                        userid: "a".into(),
                        added_dept_ids: vec![5],
                        removed_dept_ids: vec![2, 4],
                    },
                ],
                "{what}"
            );
            // The next pass works and has nothing new to say.
            let pass3 = platform_pass(&mut env, &s, &mut ack, None);
            assert_complete(&pass3, &org.borrow());
            assert!(changes(&pass3).is_empty(), "{what}: {:?}", changes(&pass3));
            // The mirror ends right: everyone but b.
            let mirrored: Vec<String> = env
                .kv
                .keys()
                .filter_map(|k| k.strip_prefix(&format!("dir:{CORP}:")).map(String::from))
                .collect();
            assert_eq!(mirrored.len(), 9, "{what}: {mirrored:?}");
            assert!(!mirrored.contains(&"b".to_string()), "{what}");
        }
    }
}

#[test]
fn an_idle_step_after_a_complete_pass_is_not_complete() {
    let s = settings(15);
    let mut env = FakeEnv::new();
    fake(&mut env, Org::sample());
    run_pass(&mut env, &s);
    // Another instance holds the step when the platform asks for the next pass.
    let _a = hold_lease(&mut env);
    let mut watching = Instance::plain(&mut env, 0);
    let heartbeat = _a.heartbeat_key();
    watching.on_sleep = Box::new(move |e: &mut FakeEnv| {
        lease::beat(e, &heartbeat).unwrap();
    });
    let ack = {
        let ck = load_checkpoint(&mut watching, &Keys { corp: CORP.into() }).unwrap();
        token(&ck.cur)
    };
    let b = step_with(
        &mut watching,
        &s,
        &StepRequest {
            ack: Some(ack.clone()),
            ..StepRequest::default()
        },
    )
    .unwrap();
    assert_eq!(b.retry_after_ms, Some(BUSY_RETRY_MS));
    assert!(b.members.is_empty());
    assert!(
        !b.progress.complete,
        "an empty batch must not end the platform's pass"
    );
    assert_eq!(b.cursor, ack, "the same cursor: nothing to acknowledge");
}
