//! Public control types: corps and credentials, permissions, faults, the call log, recorded
//! to-dos, work notifications and directory events.

use serde_json::{json, Value};

use crate::org::{Org, OrgError, OrgSpec, User};

/// Permission codes the simulator knows (an app gets all of them by default).
pub mod perms {
    /// 基础权限 (in-app login, work notifications).
    pub const QYAPI_BASE: &str = "qyapi_base";
    /// 成员信息读权限 (`v2/user/get`, `getbyunionid`, `listid`).
    pub const QYAPI_GET_MEMBER: &str = "qyapi_get_member";
    /// 通讯录部门信息读权限 (`department/*`).
    pub const QYAPI_GET_DEPARTMENT_LIST: &str = "qyapi_get_department_list";
    /// 通讯录部门成员读权限 (`v2/user/list`, `listsimple`).
    pub const QYAPI_GET_DEPARTMENT_MEMBER: &str = "qyapi_get_department_member";
    /// 个人信息读权限 (`/v1.0/contact/users/me`).
    pub const CONTACT_USER_READ: &str = "Contact.User.Read";
    /// 个人手机号信息 (`mobile` of `/v1.0/contact/users/me`).
    pub const CONTACT_USER_MOBILE: &str = "Contact.User.mobile";
    /// 微应用后台管理员免登 (`ssoUserInfo`, `sso/getuserinfo`).
    pub const QYAPI_GET_OMP_SSO_USERINFO: &str = "qyapi_get_omp_sso_userinfo";
    /// 待办应用中待办写权限.
    pub const TODO_WRITE: &str = "Todo.Todo.Write";
    /// 待办应用中待办读权限.
    pub const TODO_READ: &str = "Todo.Todo.Read";
    /// 企业员工手机号信息: `mobile`/`state_code` in old-API user records (simulator's code name).
    pub const FIELD_MOBILE: &str = "fieldMobile";
    /// 邮箱等个人信息: `email`, `org_email`, `work_place`, `remark`, `extension` (simulator's code name).
    pub const FIELD_EMAIL: &str = "fieldEmail";

    /// Every permission above.
    pub const ALL: &[&str] = &[
        QYAPI_BASE,
        QYAPI_GET_MEMBER,
        QYAPI_GET_DEPARTMENT_LIST,
        QYAPI_GET_DEPARTMENT_MEMBER,
        CONTACT_USER_READ,
        CONTACT_USER_MOBILE,
        QYAPI_GET_OMP_SSO_USERINFO,
        TODO_WRITE,
        TODO_READ,
        FIELD_MOBILE,
        FIELD_EMAIL,
    ];
}

/// Credentials and settings of one corp and its single internal app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// corpId.
    pub corp_id: String,
    /// Corp display name.
    pub corp_name: String,
    /// AppKey / Client ID.
    pub app_key: String,
    /// AppSecret / Client Secret.
    pub app_secret: String,
    /// AgentId.
    pub agent_id: i64,
    /// The corp's SSOSecret (admin-console login).
    pub sso_secret: String,
    /// Event subscription signing token.
    pub event_token: String,
    /// Event subscription EncodingAESKey (43 characters).
    pub event_aes_key: String,
}

/// A corp to load into the simulator: credentials plus its directory.
#[derive(Debug, Clone)]
pub struct CorpSpec {
    /// Credentials and app settings.
    pub creds: Credentials,
    /// The directory.
    pub org: Org,
}

pub(crate) fn derive(seed: &str, salt: &str, len: usize, alphabet: &[u8]) -> String {
    use rand::{Rng, SeedableRng};
    let mut h: u64 = 0xcbf29ce484222325;
    for b in seed.bytes().chain(salt.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(h);
    (0..len)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

pub(crate) const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

impl CorpSpec {
    /// The fixed demo corp for the dev runner: corp_id `dingdemocorp`, app_key `dingdemoappkey`,
    /// agent_id `1000001`, 3 departments (1 root, 2 研发部, 3 市场部) and 6 members (张三 boss and main
    /// admin, 李四 sub-admin and leader of 研发部, 王五, 赵六 in two departments whose personal e-mail is
    /// 李四's org e-mail, 钱七 without mobile, 孙八 inactive and without e-mail).
    pub fn demo() -> CorpSpec {
        CorpSpec {
            creds: Credentials {
                corp_id: "dingdemocorp".to_string(),
                corp_name: "演示科技有限公司".to_string(),
                app_key: "dingdemoappkey".to_string(),
                app_secret: "demo-app-secret-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJK"
                    .to_string(),
                agent_id: 1_000_001,
                sso_secret: "demo-sso-secret-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"
                    .to_string(),
                event_token: "demoeventtoken".to_string(),
                event_aes_key: "demoAesKey0123456789abcdefghijklmnopqrstuvw".to_string(),
            },
            org: Org::demo(),
        }
    }

    /// A corp with credentials derived from `corp_id` (stable across runs) and the given directory.
    pub fn new(corp_id: &str, corp_name: &str, org: Org) -> CorpSpec {
        let agent: i64 = derive(corp_id, "agent", 9, b"123456789")
            .parse()
            .unwrap_or(1_000_002);
        CorpSpec {
            creds: Credentials {
                corp_id: corp_id.to_string(),
                corp_name: corp_name.to_string(),
                app_key: format!("ding{}", derive(corp_id, "appkey", 16, LOWER)),
                app_secret: derive(corp_id, "appsecret", 64, ALNUM),
                agent_id: agent,
                sso_secret: derive(corp_id, "sso", 64, ALNUM),
                event_token: derive(corp_id, "token", 16, ALNUM),
                event_aes_key: derive(corp_id, "aeskey", 43, ALNUM),
            },
            org,
        }
    }

    /// A corp whose directory is generated from `spec` (see [`OrgSpec`]).
    pub fn generated(corp_id: &str, spec: &OrgSpec) -> CorpSpec {
        let name = format!("{corp_id} 科技有限公司");
        let org = Org::generate(&name, spec);
        CorpSpec::new(corp_id, &name, org)
    }
}

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Old-API error `{"errcode": n, "errmsg": msg}` (HTTP 200); on a new-API path: 400 with `code` = n.
    Errcode(i64, String),
    /// Old-API `errcode` 88 with this `sub_code` (sub_msg from the known table).
    SubCode88(String),
    /// New-API error: HTTP status and `code` (message generic).
    NewApi(u16, String),
    /// Any HTTP status with a raw body.
    Http(u16, String),
    /// Delay the answer by this many milliseconds, then answer normally.
    Latency(u64),
    /// Break the connection without a valid HTTP response.
    Drop,
    /// "System busy": old `errcode -1`, new `500 systemBusy`.
    Busy,
    /// HTTP 200 with `errcode 0` but no data: `v2/user/list` and `listsimple` answer
    /// `result: {"has_more": false}` without `list`, `listsub` answers no `result` array, other
    /// old APIs answer no `result`; a new API answers `200 {}`.
    OkWithoutResult,
    /// The egress-IP ban (doc §9.1): an HTML page, not JSON, with this status (403 or 200), on
    /// both API families.
    IpBanPage(u16),
    /// The other IP-ban answer of doc §9.1: `{"status":1111,"wait":5,"source":"x5","punish":"deny","uuid":..}`
    /// (HTTP 200, no `errcode`).
    IpBanJson,
    /// A temporary-ban / throttling errcode of the global table (90001, 90002, 90003–90008,
    /// 90017, 90018) with its message; on a new-API path 403 with the matching code
    /// (`QpsLimitForApi` for 90002, `QpsLimitForAppkeyAndApi` for 90018, else the number).
    TempBan(i64),
    /// New API `Forbidden.AccessDenied.QpmLimitForAppkeyAndApi` with this status (403 or 429);
    /// on an old-API path `errcode 90018` (the old API has no QPM code).
    QpmLimit(u16),
}

/// A fault to inject on calls selected by `api`: the exact path or route pattern, a prefix ending
/// at a path-segment boundary (`/v1.0/todo` matches every to-do call, `/topapi/v2/user/get` does
/// not match `/topapi/v2/user/getuserinfo`), or any prefix written with a trailing `*`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Path, route pattern, segment prefix (e.g. `/topapi/v2/user/list`, `/v1.0/todo`) or `prefix*`.
    pub api: String,
    /// What happens.
    pub kind: FaultKind,
    /// How many times it fires (0 = forever).
    pub times: u32,
    /// Probability of firing on a matching call (seeded RNG).
    pub probability: f64,
}

impl Fault {
    /// A fault that fires on every matching call, forever.
    pub fn new(api: &str, kind: FaultKind) -> Fault {
        Fault {
            api: api.to_string(),
            kind,
            times: 0,
            probability: 1.0,
        }
    }

    /// Fire at most `n` times (0 = forever).
    pub fn times(mut self, n: u32) -> Fault {
        self.times = n;
        self
    }

    /// Fire with probability `p`.
    pub fn probability(mut self, p: f64) -> Fault {
        self.probability = p;
        self
    }
}

/// Handle of an injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultId(pub u64);

/// One request the simulator answered. Never holds an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// HTTP method.
    pub method: String,
    /// Path without the query string.
    pub api: String,
    /// Route pattern (e.g. `/v1.0/todo/users/{unionId}/tasks`); equals `api` for fixed paths.
    pub route: String,
    /// AppKey of the caller when known.
    pub app_key: Option<String>,
    /// corpId of the caller when known.
    pub corp_id: Option<String>,
    /// HTTP status sent (0 = connection dropped).
    pub status: u16,
    /// Old-API `errcode` (0 on success).
    pub errcode: Option<i64>,
    /// New-API error `code`.
    pub code: Option<String>,
    /// Simulated time of arrival, ms since the epoch.
    pub at_ms: i64,
}

impl CallRecord {
    /// Whether this call is to `api` (exact path or route pattern).
    pub fn is_to(&self, api: &str) -> bool {
        self.api == api || self.route == api
    }

    /// Whether the call succeeded (2xx/3xx and errcode 0 when present).
    pub fn ok(&self) -> bool {
        (200..400).contains(&self.status) && self.errcode.unwrap_or(0) == 0 && self.code.is_none()
    }
}

/// `detailUrl` of a to-do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DetailUrl {
    /// `appUrl`.
    pub app_url: String,
    /// `pcUrl`.
    pub pc_url: String,
}

/// A to-do task as stored by the simulator.
#[derive(Debug, Clone, PartialEq)]
pub struct TodoTask {
    /// `id` (taskId).
    pub id: String,
    /// Corp of the app that created it.
    pub corp_id: String,
    /// `{unionId}` of the path (owner/creator).
    pub owner_union_id: String,
    /// `operatorId` query value.
    pub operator_id: Option<String>,
    /// `sourceId`.
    pub source_id: Option<String>,
    /// `subject`.
    pub subject: String,
    /// `description`.
    pub description: Option<String>,
    /// `dueTime` (ms).
    pub due_time: Option<i64>,
    /// `done`.
    pub done: bool,
    /// `executorIds`.
    pub executor_ids: Vec<String>,
    /// `participantIds`.
    pub participant_ids: Vec<String>,
    /// Per-executor completion (`executorStatus`).
    pub executor_done: Vec<(String, bool)>,
    /// `detailUrl`.
    pub detail_url: Option<DetailUrl>,
    /// `priority`.
    pub priority: Option<i64>,
    /// `createdTime`.
    pub created_time: i64,
    /// `modifiedTime`.
    pub modified_time: i64,
    /// Deleted through the API (kept for assertions).
    pub deleted: bool,
    /// The create request body as received.
    pub create_body: Value,
}

/// A work notification accepted by `asyncsend_v2`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkMessage {
    /// `task_id` returned.
    pub task_id: i64,
    /// Corp of the sending app.
    pub corp_id: String,
    /// `agent_id`.
    pub agent_id: i64,
    /// `userid_list`, split.
    pub userids: Vec<String>,
    /// `dept_id_list`, split.
    pub dept_ids: Vec<i64>,
    /// `to_all_user`.
    pub to_all_user: bool,
    /// `msgtype`.
    pub msgtype: String,
    /// `msg` object.
    pub msg: Value,
    /// Simulated time, ms.
    pub at_ms: i64,
}

/// Shape of a contact-event payload (doc §8.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventShape {
    /// `{"EventType","TimeStamp","UserId"|"DeptId","CorpId"}` (register_call_back / production parsers).
    #[default]
    Classic,
    /// `{"EventType","EventTime","CorpId","BizId","eventId","timeStamp","userId"|"deptId"}` (current pages).
    Current,
}

/// A directory event DingTalk would push after a change.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `EventType`, e.g. `user_add_org`.
    pub event_type: String,
    /// `CorpId`.
    pub corp_id: String,
    /// Affected userids (user events).
    pub user_ids: Vec<String>,
    /// Affected department ids (department events).
    pub dept_ids: Vec<i64>,
    /// Simulated time, ms.
    pub time_ms: i64,
    /// `diffInfo` of `user_modify_org` in the current shape.
    pub diff: Option<Value>,
    /// Shape used by [`Event::payload`] (the simulator's setting when the event was made).
    pub shape: EventShape,
}

impl Event {
    /// The `check_url` event.
    pub fn check_url() -> Event {
        Event {
            event_type: "check_url".to_string(),
            corp_id: String::new(),
            user_ids: Vec::new(),
            dept_ids: Vec::new(),
            time_ms: 0,
            diff: None,
            shape: EventShape::Classic,
        }
    }

    /// The decrypted JSON payload in this event's shape.
    pub fn payload(&self) -> String {
        self.payload_shape(self.shape)
    }

    /// The decrypted JSON payload in the given shape.
    pub fn payload_shape(&self, shape: EventShape) -> String {
        if self.event_type == "check_url" {
            return json!({"EventType": "check_url"}).to_string();
        }
        let mut v = match shape {
            EventShape::Classic => json!({
                "EventType": self.event_type,
                "TimeStamp": self.time_ms.to_string(),
                "CorpId": self.corp_id,
            }),
            EventShape::Current => json!({
                "EventType": self.event_type,
                "EventTime": self.time_ms,
                "CorpId": self.corp_id,
                "BizId": format!("{}", self.time_ms),
                "eventId": format!("{:032x}", (self.time_ms as u128) << 20 ^ fnv(&self.event_type) as u128),
                "timeStamp": self.time_ms.to_string(),
            }),
        };
        let (ukey, dkey) = match shape {
            EventShape::Classic => ("UserId", "DeptId"),
            EventShape::Current => ("userId", "deptId"),
        };
        if self.event_type.starts_with("org_dept") {
            v[dkey] = json!(self.dept_ids);
        } else if !self.user_ids.is_empty() {
            v[ukey] = json!(self.user_ids);
        }
        if shape == EventShape::Current {
            if let Some(d) = &self.diff {
                v["diffInfo"] = d.clone();
            }
        }
        v.to_string()
    }
}

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Why a control call on the simulator failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    /// No corp with this corpId.
    UnknownCorp(String),
    /// The directory refused the change.
    Org(OrgError),
    /// A corp with this corpId or AppKey is already loaded.
    DuplicateCorp(String),
    /// The person is not a member of the corp whose app was asked (internal apps only log in
    /// their own corp's members).
    NotAMember(String),
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimError::UnknownCorp(c) => write!(f, "unknown corp {c}"),
            SimError::Org(e) => write!(f, "{e}"),
            SimError::DuplicateCorp(c) => write!(f, "{c}"),
            SimError::NotAMember(m) => write!(f, "not a member: {m}"),
        }
    }
}

impl std::error::Error for SimError {}

impl From<OrgError> for SimError {
    fn from(e: OrgError) -> Self {
        SimError::Org(e)
    }
}

/// A directory change the simulator applies by itself after a number of calls (see
/// [`crate::Sim::schedule_change`]), to reproduce changes in the middle of a paged walk.
#[derive(Debug, Clone, PartialEq)]
pub enum OrgChange {
    /// The member leaves the org (`user_leave_org`).
    RemoveUser(String),
    /// The member is taken out of one department (`user_modify_org`); refused when it is their
    /// only department.
    RemoveFromDepartment {
        /// userid.
        userid: String,
        /// The department left.
        dept_id: i64,
    },
    /// The member moves from one department to another (`user_modify_org`).
    MoveUser {
        /// userid.
        userid: String,
        /// From this department.
        from: i64,
        /// To this one.
        to: i64,
    },
    /// A new member joins (`user_add_org`).
    AddUser(Box<User>),
}

/// The app's contact scope as `GET /auth/scopes` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContactScope {
    /// `auth_org_scopes.authed_dept` (`[1]` = the whole org).
    pub authed_dept: Vec<i64>,
    /// `auth_org_scopes.authed_user`: members authorised one by one.
    pub authed_user: Vec<String>,
    /// `auth_user_field`: the member fields the app may read.
    pub auth_user_field: Vec<String>,
}
