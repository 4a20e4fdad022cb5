//! The simulator's mutable state, behind one mutex.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::control::{
    CallRecord, CorpSpec, Credentials, Event, EventShape, Fault, OrgChange, TodoTask, WorkMessage,
};
use crate::events::EventDelivery;
use crate::org::Org;

/// Lifetime of one-time login codes (doc §2.2: 5 minutes).
pub(crate) const CODE_TTL_MS: i64 = 5 * 60 * 1000;
/// Lifetime of user refresh tokens (doc §3.3: 30 days).
pub(crate) const REFRESH_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

pub(crate) struct CorpState {
    pub creds: Credentials,
    pub org: Org,
    pub perms: BTreeSet<String>,
    /// 通讯录权限范围: `None` = whole org.
    pub scope: Option<Vec<i64>>,
    /// Members authorised one by one (`authed_user` of `/auth/scopes`).
    pub authed_users: Vec<String>,
    pub ip_blocked: bool,
}

/// A directory change waiting for `remaining` more calls to `api` by the corp's app.
pub(crate) struct Scheduled {
    pub corp: usize,
    pub api: String,
    pub remaining: usize,
    pub change: OrgChange,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenKind {
    App,
    /// A user token issued through `clientId` of corp `.0`'s app, for `unionid`.
    User {
        unionid: String,
    },
    Sso,
}

#[derive(Debug, Clone)]
pub(crate) struct TokenRec {
    pub kind: TokenKind,
    /// Index of the corp (app corp for user tokens).
    pub corp: usize,
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct CodeRec {
    pub corp: Option<usize>,
    /// userid (in-app, SSO) or unionid (OAuth).
    pub subject: String,
    /// OAuth: the app (corp index) the page was opened for.
    pub client: Option<usize>,
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct RefreshRec {
    pub app_corp: usize,
    pub user_corp: Option<usize>,
    pub unionid: String,
    pub expires_at: i64,
}

pub(crate) struct FaultSlot {
    pub id: u64,
    pub fault: Fault,
    pub fired: u32,
}

pub(crate) struct State {
    pub corps: Vec<CorpState>,
    pub corp_index: HashMap<String, usize>,
    pub app_index: HashMap<String, usize>,
    pub tokens: HashMap<String, TokenRec>,
    pub app_tokens: HashMap<usize, String>,
    pub sso_tokens: HashMap<usize, String>,
    pub refresh_tokens: HashMap<String, RefreshRec>,
    pub inapp_codes: HashMap<String, CodeRec>,
    pub oauth_codes: HashMap<String, CodeRec>,
    pub sso_codes: HashMap<String, CodeRec>,
    pub clock_offset_ms: i64,
    pub token_ttl_s: i64,
    pub ip_block_all: bool,
    pub request_ip: String,
    pub qps_default: Option<u32>,
    pub qps_api: HashMap<String, Option<u32>>,
    pub global_qps: Option<u32>,
    pub windows: HashMap<(String, String), VecDeque<i64>>,
    pub global_windows: HashMap<String, VecDeque<i64>>,
    pub monthly_quota: Option<u64>,
    pub monthly: HashMap<usize, u64>,
    pub token_errors_88: bool,
    pub perm_errors_88: bool,
    pub faults: Vec<FaultSlot>,
    pub next_fault_id: u64,
    pub rng: StdRng,
    pub calls: Vec<CallRecord>,
    pub todos: Vec<TodoTask>,
    pub messages: Vec<WorkMessage>,
    pub next_task_id: i64,
    pub event_shape: EventShape,
    pub account_email_override: HashMap<String, Option<String>>,
    /// (corp, userid) → person key, for members added as an existing person of another corp.
    /// Without an entry the person key is the member's unionid.
    pub person_key: HashMap<(usize, String), String>,
    pub scheduled: Vec<Scheduled>,
    pub scheduled_events: Vec<Event>,
    pub pushes: Vec<EventDelivery>,
    /// How long a to-do create with a `sourceId` stays in flight (0 = no window).
    pub todo_in_flight_ms: u64,
    /// (corp, owner unionId, sourceId) of creates in flight.
    pub todo_locks: HashSet<(usize, String, String)>,
    /// Egress-IP ban: every API call answers the HTML ban page with this status.
    pub ip_ban: Option<u16>,
}

impl State {
    pub fn new(seed: u64, token_ttl_s: i64) -> State {
        State {
            corps: Vec::new(),
            corp_index: HashMap::new(),
            app_index: HashMap::new(),
            tokens: HashMap::new(),
            app_tokens: HashMap::new(),
            sso_tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            inapp_codes: HashMap::new(),
            oauth_codes: HashMap::new(),
            sso_codes: HashMap::new(),
            clock_offset_ms: 0,
            token_ttl_s,
            ip_block_all: false,
            request_ip: "1.2.3.4".to_string(),
            qps_default: Some(20),
            qps_api: HashMap::new(),
            global_qps: None,
            windows: HashMap::new(),
            global_windows: HashMap::new(),
            monthly_quota: None,
            monthly: HashMap::new(),
            token_errors_88: false,
            perm_errors_88: false,
            faults: Vec::new(),
            next_fault_id: 1,
            rng: StdRng::seed_from_u64(seed),
            calls: Vec::new(),
            todos: Vec::new(),
            messages: Vec::new(),
            next_task_id: 256_271_667_526,
            event_shape: EventShape::Classic,
            account_email_override: HashMap::new(),
            person_key: HashMap::new(),
            scheduled: Vec::new(),
            scheduled_events: Vec::new(),
            pushes: Vec::new(),
            todo_in_flight_ms: 0,
            todo_locks: HashSet::new(),
            ip_ban: None,
        }
    }

    pub fn add_corp(&mut self, spec: CorpSpec) -> Result<usize, String> {
        if self.corp_index.contains_key(&spec.creds.corp_id) {
            return Err(format!("duplicate corp {}", spec.creds.corp_id));
        }
        if self.app_index.contains_key(&spec.creds.app_key) {
            return Err(format!("duplicate app key {}", spec.creds.app_key));
        }
        let idx = self.corps.len();
        self.corp_index.insert(spec.creds.corp_id.clone(), idx);
        self.app_index.insert(spec.creds.app_key.clone(), idx);
        self.corps.push(CorpState {
            creds: spec.creds,
            org: spec.org,
            perms: crate::control::perms::ALL
                .iter()
                .map(|s| s.to_string())
                .collect(),
            scope: None,
            authed_users: Vec::new(),
            ip_blocked: false,
        });
        Ok(idx)
    }

    pub fn now_ms(&self) -> i64 {
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        real + self.clock_offset_ms
    }

    pub fn random_string(&mut self, len: usize, alphabet: &[u8]) -> String {
        (0..len)
            .map(|_| alphabet[self.rng.gen_range(0..alphabet.len())] as char)
            .collect()
    }

    pub fn new_token(&mut self) -> String {
        self.random_string(32, b"0123456789abcdef")
    }

    pub fn new_code(&mut self) -> String {
        self.random_string(32, b"0123456789abcdef")
    }

    pub fn request_id_old(&mut self) -> String {
        self.random_string(13, b"abcdefghijklmnopqrstuvwxyz0123456789")
    }

    pub fn request_id_new(&mut self) -> String {
        let h = self.random_string(32, b"0123456789ABCDEF");
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    /// The app token of corp `idx`: the same one while valid (validity extended), else a new one.
    pub fn app_token(&mut self, idx: usize) -> (String, i64) {
        let now = self.now_ms();
        let ttl_ms = self.token_ttl_s * 1000;
        if let Some(t) = self.app_tokens.get(&idx).cloned() {
            if let Some(rec) = self.tokens.get_mut(&t) {
                if rec.expires_at > now {
                    rec.expires_at = now + ttl_ms;
                    return (t, self.token_ttl_s);
                }
            }
        }
        let t = self.new_token();
        self.tokens.insert(
            t.clone(),
            TokenRec {
                kind: TokenKind::App,
                corp: idx,
                expires_at: now + ttl_ms,
            },
        );
        self.app_tokens.insert(idx, t.clone());
        (t, self.token_ttl_s)
    }

    /// The SSO token of corp `idx` (same reuse rule as app tokens).
    pub fn sso_token(&mut self, idx: usize) -> (String, i64) {
        let now = self.now_ms();
        let ttl_ms = self.token_ttl_s * 1000;
        if let Some(t) = self.sso_tokens.get(&idx).cloned() {
            if let Some(rec) = self.tokens.get_mut(&t) {
                if rec.expires_at > now {
                    rec.expires_at = now + ttl_ms;
                    return (t, self.token_ttl_s);
                }
            }
        }
        let t = self.new_token();
        self.tokens.insert(
            t.clone(),
            TokenRec {
                kind: TokenKind::Sso,
                corp: idx,
                expires_at: now + ttl_ms,
            },
        );
        self.sso_tokens.insert(idx, t.clone());
        (t, self.token_ttl_s)
    }

    pub fn user_token(
        &mut self,
        app_corp: usize,
        user_corp: Option<usize>,
        unionid: &str,
    ) -> (String, String, i64) {
        let now = self.now_ms();
        let t = self.new_token();
        self.tokens.insert(
            t.clone(),
            TokenRec {
                kind: TokenKind::User {
                    unionid: unionid.to_string(),
                },
                corp: app_corp,
                expires_at: now + self.token_ttl_s * 1000,
            },
        );
        let r = self.new_token();
        self.refresh_tokens.insert(
            r.clone(),
            RefreshRec {
                app_corp,
                user_corp,
                unionid: unionid.to_string(),
                expires_at: now + REFRESH_TTL_MS,
            },
        );
        (t, r, self.token_ttl_s)
    }

    pub fn expire_all_tokens(&mut self) {
        self.tokens.clear();
        self.app_tokens.clear();
        self.sso_tokens.clear();
        self.refresh_tokens.clear();
    }

    /// Takes a one-time code out of `map` (single use), if present and not expired.
    pub fn take_code(map: &mut HashMap<String, CodeRec>, code: &str, now: i64) -> Option<CodeRec> {
        let rec = map.remove(code)?;
        // Also drop other expired codes so the map stays bounded.
        if map.len() > 1024 {
            map.retain(|_, r| r.expires_at > now);
        }
        (rec.expires_at > now).then_some(rec)
    }

    /// Per-app per-API QPS check; on success the call is counted in the window.
    pub fn qps_admit(&mut self, app_key: &str, route: &str, now: i64) -> bool {
        let limit = match self.qps_api.get(route) {
            Some(l) => *l,
            None => self.qps_default,
        };
        let Some(limit) = limit else { return true };
        let w = self
            .windows
            .entry((app_key.to_string(), route.to_string()))
            .or_default();
        while w.front().is_some_and(|t| *t <= now - 1000) {
            w.pop_front();
        }
        if w.len() as u32 >= limit {
            return false;
        }
        w.push_back(now);
        true
    }

    pub fn global_admit(&mut self, route: &str, now: i64) -> bool {
        let Some(limit) = self.global_qps else {
            return true;
        };
        let w = self.global_windows.entry(route.to_string()).or_default();
        while w.front().is_some_and(|t| *t <= now - 1000) {
            w.pop_front();
        }
        if w.len() as u32 >= limit {
            return false;
        }
        w.push_back(now);
        true
    }

    /// Personal account e-mail of a person (override, else the first org record found).
    pub fn account_email(&self, unionid: &str, record: Option<&str>) -> Option<String> {
        match self.account_email_override.get(unionid) {
            Some(v) => v.clone(),
            None => record.map(|s| s.to_string()),
        }
    }

    /// The person key of a member (current or departed) of corp `corp`.
    pub fn person_of(&self, corp: usize, userid: &str) -> Option<String> {
        if let Some(k) = self.person_key.get(&(corp, userid.to_string())) {
            return Some(k.clone());
        }
        let org = &self.corps[corp].org;
        org.user(userid)
            .or_else(|| org.departed_user(userid))
            .map(|u| u.unionid.clone())
    }

    /// The current member record of person `key` in corp `corp`.
    pub fn member_of_person(&self, corp: usize, key: &str) -> Option<&crate::org::User> {
        self.corps[corp]
            .org
            .users()
            .find(|u| self.person_of(corp, &u.userid).as_deref() == Some(key))
    }

    /// The corps where `unionid` is a current member.
    pub fn corps_of_unionid(&self, unionid: &str) -> Vec<usize> {
        (0..self.corps.len())
            .filter(|i| self.corps[*i].org.user_by_unionid(unionid).is_some())
            .collect()
    }
}
