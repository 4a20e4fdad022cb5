//! A DingTalk (钉钉) open-platform simulator on loopback, faithful to `docs/dingtalk-api.md`.
//!
//! One HTTP/1.1 server on `127.0.0.1:<ephemeral>` serves both API families on the same origin
//! (old `oapi.dingtalk.com` paths with HTTP 200 + `errcode`, new `api.dingtalk.com` `/v1.0/...`
//! paths with 4xx/5xx + `code`) and the browser login page of `login.dingtalk.com/oauth2/auth`.
//! Point `oapi_base_url`, `api_base_url` and `login_base_url` at [`Sim::base_url`].
//!
//! ```no_run
//! use dingtalk_sim::{Sim, CorpSpec};
//! let sim = Sim::demo().unwrap();
//! let creds = sim.credentials("dingdemocorp").unwrap();
//! let code = sim.mint_inapp_code("dingdemocorp", "zhangsan");
//! println!("{} {} {}", sim.base_url(), creds.app_key, code);
//! ```

#![deny(missing_docs)]

mod apis;
mod control;
pub mod crypto;
mod events;
pub mod org;
mod server;
mod state;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::json;

pub use control::{
    perms, CallRecord, ContactScope, CorpSpec, Credentials, DetailUrl, Event, EventShape, Fault,
    FaultId, FaultKind, OrgChange, SimError, TodoTask, WorkMessage,
};
pub use crypto::EventCrypto;
pub use events::{EventDelivery, EventOptions, EVENT_ANSWER_DEADLINE};
pub use org::{Department, Org, OrgError, OrgSpec, Role, User, ROOT_DEPT};

use state::{CodeRec, State, CODE_TTL_MS};

/// Builder for a [`Sim`].
#[derive(Debug, Clone)]
pub struct SimBuilder {
    corps: Vec<CorpSpec>,
    seed: u64,
    token_ttl_secs: i64,
    qps_limit: Option<u32>,
    addr: String,
}

impl SimBuilder {
    /// Adds a corp.
    pub fn corp(mut self, corp: CorpSpec) -> SimBuilder {
        self.corps.push(corp);
        self
    }

    /// Seed of the simulator's RNG (tokens, codes, random faults). Default `0x5EED`.
    pub fn seed(mut self, seed: u64) -> SimBuilder {
        self.seed = seed;
        self
    }

    /// Access-token lifetime in seconds (default 7200).
    pub fn token_ttl_secs(mut self, secs: i64) -> SimBuilder {
        self.token_ttl_secs = secs;
        self
    }

    /// Per-app per-API QPS limit (default `Some(20)`; `None` = unlimited).
    pub fn qps_limit(mut self, limit: Option<u32>) -> SimBuilder {
        self.qps_limit = limit;
        self
    }

    /// Listen address (default `127.0.0.1:0`, an ephemeral port).
    pub fn addr(mut self, addr: &str) -> SimBuilder {
        self.addr = addr.to_string();
        self
    }

    /// Starts the server.
    pub fn start(self) -> std::io::Result<Sim> {
        let mut st = State::new(self.seed, self.token_ttl_secs);
        st.qps_default = self.qps_limit;
        for c in self.corps {
            st.add_corp(c)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        }
        let shared = Arc::new(Mutex::new(st));
        let running = server::start(shared.clone(), &self.addr)?;
        Ok(Sim {
            base_url: format!("http://127.0.0.1:{}", running.port),
            shared,
            running,
        })
    }
}

/// A running simulator. All methods take `&self` and are thread-safe; dropping it stops the server.
pub struct Sim {
    shared: Arc<Mutex<State>>,
    running: server::Running,
    base_url: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.running.shutdown();
    }
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl Sim {
    /// A builder with no corps, seed `0x5EED`, TTL 7200 s, QPS 20.
    pub fn builder() -> SimBuilder {
        SimBuilder {
            corps: Vec::new(),
            seed: 0x5EED,
            token_ttl_secs: 7200,
            qps_limit: Some(20),
            addr: "127.0.0.1:0".to_string(),
        }
    }

    /// Starts a simulator with these corps and default settings.
    pub fn start(corps: Vec<CorpSpec>) -> std::io::Result<Sim> {
        corps
            .into_iter()
            .fold(Sim::builder(), |b, c| b.corp(c))
            .start()
    }

    /// Starts a simulator with only the demo corp ([`CorpSpec::demo`]).
    pub fn demo() -> std::io::Result<Sim> {
        Sim::start(vec![CorpSpec::demo()])
    }

    /// `http://127.0.0.1:PORT` (no trailing slash): the base for all three DingTalk hosts.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.running.port
    }

    fn st(&self) -> MutexGuard<'_, State> {
        apis::lock(&self.shared)
    }

    fn corp_idx(st: &State, corp_id: &str) -> Result<usize, SimError> {
        st.corp_index
            .get(corp_id)
            .copied()
            .ok_or_else(|| SimError::UnknownCorp(corp_id.to_string()))
    }

    // ----- corps ------------------------------------------------------------------------------

    /// Loads another corp while running; returns its credentials.
    pub fn add_corp(&self, corp: CorpSpec) -> Result<Credentials, SimError> {
        let creds = corp.creds.clone();
        self.st().add_corp(corp).map_err(SimError::DuplicateCorp)?;
        Ok(creds)
    }

    /// corpIds of the loaded corps, in load order.
    pub fn corp_ids(&self) -> Vec<String> {
        self.st()
            .corps
            .iter()
            .map(|c| c.creds.corp_id.clone())
            .collect()
    }

    /// Credentials of a corp.
    pub fn credentials(&self, corp_id: &str) -> Option<Credentials> {
        let st = self.st();
        let i = Self::corp_idx(&st, corp_id).ok()?;
        Some(st.corps[i].creds.clone())
    }

    /// The event crypto of a corp's app subscription (owner key = AppKey).
    pub fn event_crypto(&self, corp_id: &str) -> Option<EventCrypto> {
        let c = self.credentials(corp_id)?;
        EventCrypto::new(&c.event_token, &c.event_aes_key, &c.app_key).ok()
    }

    /// Runs `f` on a corp's directory.
    pub fn with_org<R>(&self, corp_id: &str, f: impl FnOnce(&Org) -> R) -> Option<R> {
        let st = self.st();
        let i = Self::corp_idx(&st, corp_id).ok()?;
        Some(f(&st.corps[i].org))
    }

    /// A copy of a corp's directory.
    pub fn org(&self, corp_id: &str) -> Option<Org> {
        self.with_org(corp_id, |o| o.clone())
    }

    /// A current member.
    pub fn user(&self, corp_id: &str, userid: &str) -> Option<User> {
        self.with_org(corp_id, |o| o.user(userid).cloned())
            .flatten()
    }

    // ----- clock and tokens -------------------------------------------------------------------

    /// Simulated time, ms since the epoch (real time plus the offset).
    pub fn now_ms(&self) -> i64 {
        self.st().now_ms()
    }

    /// Moves the simulated clock forward (tokens and codes expire, QPS windows pass).
    pub fn advance_clock(&self, secs: i64) {
        self.st().clock_offset_ms += secs * 1000;
    }

    /// Sets the lifetime of tokens issued from now on.
    pub fn set_token_ttl(&self, secs: i64) {
        self.st().token_ttl_s = secs;
    }

    /// Invalidates every app, user and SSO token (next use: 40014 / 400 InvalidAuthentication).
    pub fn expire_all_tokens(&self) {
        self.st().expire_all_tokens();
    }

    /// Issues (or returns the current) app token without an HTTP call (not logged).
    pub fn app_token(&self, corp_id: &str) -> Option<String> {
        let mut st = self.st();
        let i = Self::corp_idx(&st, corp_id).ok()?;
        Some(st.app_token(i).0)
    }

    // ----- one-time codes ---------------------------------------------------------------------

    fn mint(&self, which: u8, corp: Option<usize>, subject: &str, client: Option<usize>) -> String {
        let mut st = self.st();
        let code = st.new_code();
        let rec = CodeRec {
            corp,
            subject: subject.to_string(),
            client,
            expires_at: st.now_ms() + CODE_TTL_MS,
        };
        match which {
            0 => st.inapp_codes.insert(code.clone(), rec),
            1 => st.oauth_codes.insert(code.clone(), rec),
            _ => st.sso_codes.insert(code.clone(), rec),
        };
        code
    }

    /// An in-app login code (JSAPI `requestAuthCode`) for a member: single use, 5 minutes.
    pub fn mint_inapp_code(&self, corp_id: &str, userid: &str) -> String {
        let corp = self.st().corp_index.get(corp_id).copied();
        self.mint(0, corp, userid, None)
    }

    /// A QR-login `authCode` for a person (their first corp), usable by any app: single use, 5 min.
    pub fn mint_oauth_code(&self, unionid: &str) -> String {
        let corp = self.st().corps_of_unionid(unionid).first().copied();
        self.mint(1, corp, unionid, None)
    }

    /// A QR-login `authCode` for a person who picked corp `corp_id` (`corpId` of the token answer).
    pub fn mint_oauth_code_in(&self, corp_id: &str, unionid: &str) -> String {
        let corp = self.st().corp_index.get(corp_id).copied();
        self.mint(1, corp, unionid, None)
    }

    /// A QR-login `authCode` as corp `app_corp_id`'s login page would issue it when the person
    /// with `unionid` (their unionid under any corp's app) scans: bound to that app, single use,
    /// 5 min, and carrying the person's unionid under `app_corp_id`. Fails with
    /// [`SimError::NotAMember`] when the person is not a current member of `app_corp_id`
    /// (internal apps do not log in other orgs' members).
    pub fn mint_qr_code(&self, app_corp_id: &str, unionid: &str) -> Result<String, SimError> {
        let (app, subject) = {
            let st = self.st();
            let app = Self::corp_idx(&st, app_corp_id)?;
            let key = (0..st.corps.len()).find_map(|c| {
                st.corps[c]
                    .org
                    .user_by_unionid(unionid)
                    .and_then(|u| st.person_of(c, &u.userid))
            });
            let member = key.as_deref().and_then(|k| st.member_of_person(app, k));
            match member {
                Some(u) => (app, u.unionid.clone()),
                None => {
                    return Err(SimError::NotAMember(format!(
                        "{unionid} is not a member of {app_corp_id}"
                    )))
                }
            }
        };
        Ok(self.mint(1, Some(app), &subject, Some(app)))
    }

    /// [`Sim::mint_qr_code`] for a member named by userid in `app_corp_id`.
    pub fn mint_qr_code_for(&self, app_corp_id: &str, userid: &str) -> Result<String, SimError> {
        let unionid = self
            .user(app_corp_id, userid)
            .map(|u| u.unionid)
            .ok_or_else(|| {
                SimError::NotAMember(format!("{userid} is not a member of {app_corp_id}"))
            })?;
        self.mint_qr_code(app_corp_id, &unionid)
    }

    /// An admin-console SSO `code` for a member (admin or not): single use, 5 minutes.
    pub fn mint_sso_code(&self, corp_id: &str, userid: &str) -> String {
        let corp = self.st().corp_index.get(corp_id).copied();
        self.mint(2, corp, userid, None)
    }

    // ----- permissions and scope --------------------------------------------------------------

    /// Replaces the granted permission codes of a corp's app (see [`perms`]).
    pub fn set_permissions(&self, corp_id: &str, granted: &[&str]) -> Result<(), SimError> {
        let mut st = self.st();
        let i = Self::corp_idx(&st, corp_id)?;
        st.corps[i].perms = granted.iter().map(|s| s.to_string()).collect();
        Ok(())
    }

    /// Grants one permission.
    pub fn grant(&self, corp_id: &str, perm: &str) -> Result<(), SimError> {
        let mut st = self.st();
        let i = Self::corp_idx(&st, corp_id)?;
        st.corps[i].perms.insert(perm.to_string());
        Ok(())
    }

    /// Revokes one permission.
    pub fn revoke(&self, corp_id: &str, perm: &str) -> Result<(), SimError> {
        let mut st = self.st();
        let i = Self::corp_idx(&st, corp_id)?;
        st.corps[i].perms.remove(perm);
        Ok(())
    }

    /// The granted permission codes.
    pub fn permissions(&self, corp_id: &str) -> Vec<String> {
        let st = self.st();
        match Self::corp_idx(&st, corp_id) {
            Ok(i) => st.corps[i].perms.iter().cloned().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Limits the app's contact scope (通讯录权限范围) to these department subtrees (`None` = all);
    /// outside it, contact calls answer 50004.
    pub fn set_contact_scope(
        &self,
        corp_id: &str,
        scope: Option<Vec<i64>>,
    ) -> Result<(), SimError> {
        let mut st = self.st();
        let i = Self::corp_idx(&st, corp_id)?;
        st.corps[i].scope = scope;
        Ok(())
    }

    /// Authorises single members (`authed_user` of `/auth/scopes`) in addition to the
    /// department scope: `v2/user/get` answers them even outside the authorised departments.
    pub fn set_authed_users(&self, corp_id: &str, userids: &[&str]) -> Result<(), SimError> {
        let mut st = self.st();
        let i = Self::corp_idx(&st, corp_id)?;
        st.corps[i].authed_users = userids.iter().map(|s| s.to_string()).collect();
        Ok(())
    }

    /// The contact scope as `GET /auth/scopes` answers it.
    pub fn contact_scope(&self, corp_id: &str) -> Option<ContactScope> {
        let st = self.st();
        let i = Self::corp_idx(&st, corp_id).ok()?;
        Some(apis::contact_scope(&st, i))
    }

    /// Marks a member access-restricted (数据访问受限) or not: restricted members are left out of
    /// `v2/user/list` and `listsimple` unless the body has `contain_access_limit: true`.
    pub fn set_access_limited(
        &self,
        corp_id: &str,
        userid: &str,
        limited: bool,
    ) -> Result<(), SimError> {
        let mut st = self.st();
        let i = Self::corp_idx(&st, corp_id)?;
        st.corps[i]
            .org
            .modify_user(userid, |u| u.access_limited = limited)?;
        Ok(())
    }

    // ----- error modes ------------------------------------------------------------------------

    /// When `Some(status)`, every API call (not the login page) answers the egress-IP ban page:
    /// HTML, not JSON, with that status (403 or 200). `None` lifts the ban.
    pub fn set_ip_ban(&self, status: Option<u16>) {
        self.st().ip_ban = status;
    }

    /// Adds a latency fault of `ms` milliseconds on each of `apis` (every call, until removed).
    pub fn inject_latency(&self, apis: &[&str], ms: u64) -> Vec<FaultId> {
        apis.iter()
            .map(|a| self.inject(Fault::new(a, FaultKind::Latency(ms))))
            .collect()
    }

    /// How long a to-do create with a `sourceId` stays in flight (default zero). While one is in
    /// flight, another create for the same user and `sourceId` answers
    /// `400 todo.taskCreate.lockError`; the first one completes after `hold`.
    pub fn set_todo_create_in_flight(&self, hold: Duration) {
        self.st().todo_in_flight_ms = hold.as_millis() as u64;
    }

    /// When on, every API call of every app answers 60020 / `403 IpNotInWhiteList`.
    pub fn set_ip_whitelist_error(&self, on: bool) {
        self.st().ip_block_all = on;
    }

    /// The same, for one corp's app only.
    pub fn set_ip_whitelist_error_for(&self, corp_id: &str, on: bool) -> Result<(), SimError> {
        let mut st = self.st();
        let i = Self::corp_idx(&st, corp_id)?;
        st.corps[i].ip_blocked = on;
        Ok(())
    }

    /// The caller IP reported in whitelist errors (default `1.2.3.4`).
    pub fn set_request_ip(&self, ip: &str) {
        self.st().request_ip = ip.to_string();
    }

    /// Per-app per-API limit in calls per sliding second (`None` = unlimited); over it: 90018 /
    /// `403 QpsLimitForAppkeyAndApi`.
    pub fn set_qps_limit(&self, limit: Option<u32>) {
        self.st().qps_default = limit;
    }

    /// Overrides the per-app limit of one API (route pattern or path, e.g. `/topapi/v2/user/list`).
    pub fn set_api_qps_limit(&self, api: &str, limit: Option<u32>) {
        self.st().qps_api.insert(api.to_string(), limit);
    }

    /// Limit per API across all apps (`None` = off); over it: 90002 / `403 QpsLimitForApi`.
    pub fn set_global_qps_limit(&self, limit: Option<u32>) {
        self.st().global_qps = limit;
    }

    /// Monthly call quota per corp for non-exempt APIs (to-dos, work notifications); over it:
    /// 90020 / `403 ApiCountLimitForOrg`. `None` (default) = unlimited.
    pub fn set_monthly_quota(&self, quota: Option<u64>) {
        self.st().monthly_quota = quota;
    }

    /// Non-exempt calls counted this "month" for a corp.
    pub fn monthly_usage(&self, corp_id: &str) -> u64 {
        let st = self.st();
        match Self::corp_idx(&st, corp_id) {
            Ok(i) => st.monthly.get(&i).copied().unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// Starts a new month.
    pub fn reset_monthly_usage(&self) {
        self.st().monthly.clear();
    }

    /// Token errors (40014, 42001, 41001) come as `errcode 88` + `sub_code`.
    pub fn set_token_errors_as_88(&self, on: bool) {
        self.st().token_errors_88 = on;
    }

    /// Permission errors (60011) come as `errcode 88` + `sub_code "60011"`.
    pub fn set_permission_errors_as_88(&self, on: bool) {
        self.st().perm_errors_88 = on;
    }

    /// Injects a fault; returns its handle.
    pub fn inject(&self, fault: Fault) -> FaultId {
        let mut st = self.st();
        let id = st.next_fault_id;
        st.next_fault_id += 1;
        st.faults.push(state::FaultSlot {
            id,
            fault,
            fired: 0,
        });
        FaultId(id)
    }

    /// Removes one fault.
    pub fn remove_fault(&self, id: FaultId) {
        self.st().faults.retain(|f| f.id != id.0);
    }

    /// Removes all faults.
    pub fn clear_faults(&self) {
        self.st().faults.clear();
    }

    /// Number of faults still armed.
    pub fn active_faults(&self) -> usize {
        self.st().faults.len()
    }

    /// Shape of event payloads made by mutations from now on.
    pub fn set_event_shape(&self, shape: EventShape) {
        self.st().event_shape = shape;
    }

    // ----- call log ---------------------------------------------------------------------------

    /// Every request answered so far.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.st().calls.clone()
    }

    /// Calls to `api` (exact path or route pattern).
    pub fn calls_to(&self, api: &str) -> Vec<CallRecord> {
        self.st()
            .calls
            .iter()
            .filter(|c| c.is_to(api))
            .cloned()
            .collect()
    }

    /// Number of calls to `api`.
    pub fn count(&self, api: &str) -> usize {
        self.st().calls.iter().filter(|c| c.is_to(api)).count()
    }

    /// Clears the call log.
    pub fn reset_calls(&self) {
        self.st().calls.clear();
    }

    /// The largest number of calls to `api` that arrived within any 1-second window.
    pub fn max_calls_in_any_1s_window(&self, api: &str) -> usize {
        let mut ts: Vec<i64> = self
            .st()
            .calls
            .iter()
            .filter(|c| c.is_to(api))
            .map(|c| c.at_ms)
            .collect();
        ts.sort_unstable();
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..ts.len() {
            while ts[hi] - ts[lo] >= 1000 {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    }

    // ----- records ----------------------------------------------------------------------------

    /// To-dos created through the API for a corp (deleted ones included, flagged).
    pub fn todos(&self, corp_id: &str) -> Vec<TodoTask> {
        self.st()
            .todos
            .iter()
            .filter(|t| t.corp_id == corp_id)
            .cloned()
            .collect()
    }

    /// The live to-do with this `sourceId`.
    pub fn todo_by_source(&self, corp_id: &str, source_id: &str) -> Option<TodoTask> {
        self.st()
            .todos
            .iter()
            .find(|t| {
                !t.deleted && t.corp_id == corp_id && t.source_id.as_deref() == Some(source_id)
            })
            .cloned()
    }

    /// Work notifications accepted so far.
    pub fn messages(&self) -> Vec<WorkMessage> {
        self.st().messages.clone()
    }

    /// Event pushes made by [`Sim::send_event`] / [`Sim::send_event_with`], in order.
    pub fn event_pushes(&self) -> Vec<EventDelivery> {
        self.st().pushes.clone()
    }

    /// The pushes DingTalk would count as failed: a wrong answer or one later than the deadline.
    pub fn failed_pushes(&self) -> Vec<EventDelivery> {
        self.st()
            .pushes
            .iter()
            .filter(|p| !p.accepted)
            .cloned()
            .collect()
    }

    // ----- directory mutations ----------------------------------------------------------------

    /// After `after` more calls to `api` (path or route pattern, e.g. `/topapi/v2/user/list`) by
    /// the corp's app, applies `change` (right after answering the `after`-th call; 0 = before
    /// the next call is answered). The resulting events are in [`Sim::scheduled_events`]; a
    /// change the directory refuses is dropped.
    pub fn schedule_change(
        &self,
        corp_id: &str,
        api: &str,
        after: usize,
        change: OrgChange,
    ) -> Result<(), SimError> {
        let mut st = self.st();
        let i = Self::corp_idx(&st, corp_id)?;
        if after == 0 {
            if let Ok(e) = apply_change(&mut st, i, &change) {
                st.scheduled_events.push(e);
            }
            return Ok(());
        }
        st.scheduled.push(state::Scheduled {
            corp: i,
            api: api.to_string(),
            remaining: after,
            change,
        });
        Ok(())
    }

    /// Scheduled changes not applied yet.
    pub fn pending_changes(&self) -> usize {
        self.st().scheduled.len()
    }

    /// Events of the scheduled changes applied so far, in order.
    pub fn scheduled_events(&self) -> Vec<Event> {
        self.st().scheduled_events.clone()
    }

    /// The person behind member `userid` of `from_corp` joins `corp_id` as `new_userid` in
    /// `dept_ids` → `user_add_org`. The new record carries the person's account data (nick,
    /// account mobile and e-mail) and the person's unionid under `corp_id`'s app, which differs
    /// from their unionid in `from_corp` (a unionid is per developer account).
    pub fn add_existing_person(
        &self,
        corp_id: &str,
        from_corp: &str,
        userid: &str,
        new_userid: &str,
        dept_ids: &[i64],
    ) -> Result<Event, SimError> {
        let mut st = self.st();
        let to = Self::corp_idx(&st, corp_id)?;
        let from = Self::corp_idx(&st, from_corp)?;
        let src = st.corps[from]
            .org
            .user(userid)
            .cloned()
            .ok_or_else(|| SimError::Org(OrgError::NoSuchUser(userid.to_string())))?;
        let key = st.person_of(from, userid).unwrap_or(src.unionid.clone());
        if st.member_of_person(to, &key).is_some() {
            return Err(SimError::Org(OrgError::Duplicate(format!(
                "{userid} is already a member of {corp_id}"
            ))));
        }
        let unionid = if to == from {
            src.unionid.clone()
        } else {
            format!("{}iE", control::derive(&key, corp_id, 24, control::ALNUM))
        };
        let mut u = User::new(new_userid, &unionid, &src.name, dept_ids);
        u.nick = src.nick.clone();
        u.avatar = src.avatar.clone();
        u.account_mobile = src.account_mobile.clone();
        u.account_email = src.account_email.clone();
        u.state_code = src.state_code.clone();
        st.corps[to].org.add_user(u)?;
        st.corps[to].org.recompute_managers();
        st.person_key.insert((to, new_userid.to_string()), key);
        Ok(Self::event(
            &st,
            to,
            "user_add_org",
            vec![new_userid.to_string()],
            vec![],
        ))
    }

    /// Every current member record of the person behind `userid` of `corp_id`, as
    /// (corpId, record), in corp load order.
    pub fn person_records(&self, corp_id: &str, userid: &str) -> Vec<(String, User)> {
        let st = self.st();
        let Ok(i) = Self::corp_idx(&st, corp_id) else {
            return Vec::new();
        };
        let Some(key) = st.person_of(i, userid) else {
            return Vec::new();
        };
        (0..st.corps.len())
            .filter_map(|c| {
                st.member_of_person(c, &key)
                    .map(|u| (st.corps[c].creds.corp_id.clone(), u.clone()))
            })
            .collect()
    }

    fn event(st: &State, corp: usize, kind: &str, users: Vec<String>, depts: Vec<i64>) -> Event {
        Event {
            event_type: kind.to_string(),
            corp_id: st.corps[corp].creds.corp_id.clone(),
            user_ids: users,
            dept_ids: depts,
            time_ms: st.now_ms(),
            diff: None,
            shape: st.event_shape,
        }
    }

    /// Adds a member → `user_add_org`.
    pub fn add_user(&self, corp_id: &str, user: User) -> Result<Event, SimError> {
        let mut st = self.st();
        let i = Self::corp_idx(&st, corp_id)?;
        let uid = user.userid.clone();
        st.corps[i].org.add_user(user)?;
        st.corps[i].org.recompute_managers();
        Ok(Self::event(&st, i, "user_add_org", vec![uid], vec![]))
    }

    /// Changes a member's record → `user_modify_org` (with `diffInfo`).
    pub fn modify_user(
        &self,
        corp_id: &str,
        userid: &str,
        f: impl FnOnce(&mut User),
    ) -> Result<Event, SimError> {
        let mut st = self.st();
        let i = Self::corp_idx(&st, corp_id)?;
        let before = st.corps[i]
            .org
            .user(userid)
            .cloned()
            .ok_or_else(|| SimError::Org(OrgError::NoSuchUser(userid.to_string())))?;
        let after = st.corps[i].org.modify_user(userid, f)?;
        let mut e = Self::event(&st, i, "user_modify_org", vec![userid.to_string()], vec![]);
        e.diff = Some(diff(&before, &after));
        Ok(e)
    }

    /// Replaces a member's departments → `user_modify_org`.
    pub fn set_user_departments(
        &self,
        corp_id: &str,
        userid: &str,
        dept_ids: &[i64],
    ) -> Result<Event, SimError> {
        let mut st = self.st();
        let i = Self::corp_idx(&st, corp_id)?;
        let before = st.corps[i].org.user(userid).cloned();
        let after = st.corps[i].org.set_departments(userid, dept_ids)?;
        st.corps[i].org.recompute_managers();
        let mut e = Self::event(&st, i, "user_modify_org", vec![userid.to_string()], vec![]);
        e.diff = before.map(|b| diff(&b, &after));
        Ok(e)
    }

    /// Moves a member from one department to another → `user_modify_org`.
    pub fn move_user(
        &self,
        corp_id: &str,
        userid: &str,
        from: i64,
        to: i64,
    ) -> Result<Event, SimError> {
        let mut st = self.st();
        let i = Self::corp_idx(&st, corp_id)?;
        let before = st.corps[i].org.user(userid).cloned();
        let after = st.corps[i].org.move_user(userid, from, to)?;
        st.corps[i].org.recompute_managers();
        let mut e = Self::event(&st, i, "user_modify_org", vec![userid.to_string()], vec![]);
        e.diff = before.map(|b| diff(&b, &after));
        Ok(e)
    }

    /// A member leaves → `user_leave_org`.
    pub fn remove_user(&self, corp_id: &str, userid: &str) -> Result<Event, SimError> {
        let mut st = self.st();
        let i = Self::corp_idx(&st, corp_id)?;
        st.corps[i].org.remove_user(userid)?;
        st.corps[i].org.recompute_managers();
        Ok(Self::event(
            &st,
            i,
            "user_leave_org",
            vec![userid.to_string()],
            vec![],
        ))
    }

    /// A member who left comes back with the same userid/unionid → `user_add_org`.
    pub fn rehire_user(
        &self,
        corp_id: &str,
        userid: &str,
        dept_ids: &[i64],
    ) -> Result<Event, SimError> {
        let mut st = self.st();
        let i = Self::corp_idx(&st, corp_id)?;
        st.corps[i].org.rehire_user(userid, dept_ids)?;
        st.corps[i].org.recompute_managers();
        Ok(Self::event(
            &st,
            i,
            "user_add_org",
            vec![userid.to_string()],
            vec![],
        ))
    }

    /// A member activates DingTalk → `user_active_org`.
    pub fn activate_user(&self, corp_id: &str, userid: &str) -> Result<Event, SimError> {
        let mut st = self.st();
        let i = Self::corp_idx(&st, corp_id)?;
        st.corps[i].org.modify_user(userid, |u| u.active = true)?;
        Ok(Self::event(
            &st,
            i,
            "user_active_org",
            vec![userid.to_string()],
            vec![],
        ))
    }

    /// Sets the admin level (0 none, 1 main, 2 sub) → `org_admin_add` / `org_admin_remove`.
    pub fn set_admin(&self, corp_id: &str, userid: &str, level: u8) -> Result<Event, SimError> {
        let mut st = self.st();
        let i = Self::corp_idx(&st, corp_id)?;
        st.corps[i]
            .org
            .modify_user(userid, |u| u.admin_level = level)?;
        let kind = if level > 0 {
            "org_admin_add"
        } else {
            "org_admin_remove"
        };
        Ok(Self::event(&st, i, kind, vec![userid.to_string()], vec![]))
    }

    /// Adds a department → (its id, `org_dept_create`).
    pub fn add_department(
        &self,
        corp_id: &str,
        name: &str,
        parent: i64,
    ) -> Result<(i64, Event), SimError> {
        let mut st = self.st();
        let i = Self::corp_idx(&st, corp_id)?;
        let id = st.corps[i].org.add_department(name, parent)?;
        Ok((id, Self::event(&st, i, "org_dept_create", vec![], vec![id])))
    }

    /// Renames a department → `org_dept_modify`.
    pub fn rename_department(
        &self,
        corp_id: &str,
        dept_id: i64,
        name: &str,
    ) -> Result<Event, SimError> {
        let mut st = self.st();
        let i = Self::corp_idx(&st, corp_id)?;
        st.corps[i].org.rename_department(dept_id, name)?;
        Ok(Self::event(
            &st,
            i,
            "org_dept_modify",
            vec![],
            vec![dept_id],
        ))
    }

    /// Removes an empty department → `org_dept_remove`.
    pub fn remove_department(&self, corp_id: &str, dept_id: i64) -> Result<Event, SimError> {
        let mut st = self.st();
        let i = Self::corp_idx(&st, corp_id)?;
        st.corps[i].org.remove_department(dept_id)?;
        Ok(Self::event(
            &st,
            i,
            "org_dept_remove",
            vec![],
            vec![dept_id],
        ))
    }

    /// Sets the personal account e-mail that `/v1.0/contact/users/me` returns for a person
    /// (`None` = no e-mail), e.g. another member's org e-mail, to catch code that trusts it.
    pub fn set_account_email(&self, unionid: &str, email: Option<&str>) {
        self.st()
            .account_email_override
            .insert(unionid.to_string(), email.map(|s| s.to_string()));
    }

    // ----- events -----------------------------------------------------------------------------

    /// Encrypts and signs `payload` with the corp's subscription (owner key = AppKey), POSTs it to
    /// `url?msg_signature=&timestamp=&nonce=` and checks that the answer decrypts to `success`.
    pub fn send_event(&self, url: &str, corp_id: &str, payload: &str) -> EventDelivery {
        self.send_event_with(url, corp_id, payload, &EventOptions::default())
    }

    /// [`Sim::send_event`] with options (`signature=` spelling, fixed timestamp/nonce, another
    /// owner key such as the corpId, a wrong signature).
    pub fn send_event_with(
        &self,
        url: &str,
        corp_id: &str,
        payload: &str,
        opts: &EventOptions,
    ) -> EventDelivery {
        let d = match self.event_crypto(corp_id) {
            Some(c) => events::deliver(url, &c, payload, opts),
            None => EventDelivery {
                status: 0,
                body: String::new(),
                success: false,
                reply_plaintext: None,
                reply_owner_key: None,
                error: Some(format!("unknown corp {corp_id} or bad aes key")),
                elapsed: std::time::Duration::ZERO,
                on_time: false,
                accepted: false,
            },
        };
        self.st().pushes.push(d.clone());
        d
    }
}

/// Applies a scheduled directory change (with the state locked) and makes its event.
pub(crate) fn apply_change(
    st: &mut State,
    corp: usize,
    change: &OrgChange,
) -> Result<Event, SimError> {
    let org = &mut st.corps[corp].org;
    let (kind, userid, before) = match change {
        OrgChange::RemoveUser(u) => {
            org.remove_user(u)?;
            ("user_leave_org", u.clone(), None)
        }
        OrgChange::RemoveFromDepartment { userid, dept_id } => {
            let before = org
                .user(userid)
                .cloned()
                .ok_or_else(|| OrgError::NoSuchUser(userid.clone()))?;
            if !before.dept_ids.contains(dept_id) {
                return Err(OrgError::NoSuchDepartment(*dept_id).into());
            }
            let rest: Vec<i64> = before
                .dept_ids
                .iter()
                .copied()
                .filter(|d| d != dept_id)
                .collect();
            org.set_departments(userid, &rest)?;
            ("user_modify_org", userid.clone(), Some(before))
        }
        OrgChange::MoveUser { userid, from, to } => {
            let before = org.user(userid).cloned();
            org.move_user(userid, *from, *to)?;
            ("user_modify_org", userid.clone(), before)
        }
        OrgChange::AddUser(u) => {
            org.add_user((**u).clone())?;
            ("user_add_org", u.userid.clone(), None)
        }
    };
    org.recompute_managers();
    let after = org.user(&userid).cloned();
    let mut e = Sim::event(st, corp, kind, vec![userid], vec![]);
    if let (Some(b), Some(a)) = (before, after) {
        e.diff = Some(diff(&b, &a));
    }
    Ok(e)
}

fn diff(before: &User, after: &User) -> serde_json::Value {
    let mut prev = serde_json::Map::new();
    let mut curr = serde_json::Map::new();
    let mut field = |k: &str, a: serde_json::Value, b: serde_json::Value| {
        if a != b {
            prev.insert(k.to_string(), a);
            curr.insert(k.to_string(), b);
        }
    };
    field("name", json!(before.name), json!(after.name));
    field("mobile", json!(before.mobile), json!(after.mobile));
    field("email", json!(before.email), json!(after.email));
    field("title", json!(before.title), json!(after.title));
    field(
        "jobNumber",
        json!(before.job_number),
        json!(after.job_number),
    );
    field("deptIdList", json!(before.dept_ids), json!(after.dept_ids));
    field("active", json!(before.active), json!(after.active));
    json!({"prev": prev, "curr": curr, "userid": after.userid})
}
