//! The admin's set-up guide: the seed's eleven steps (plus the event subscription), each with its
//! status, the exact values to paste into the DingTalk developer console, which settings are set
//! (never their values), the permissions to enable, and live checks that call DingTalk once each
//! and name the one action that fixes a failure. One model for the set-up page
//! (`web::setup_page`), the platform API (`GET /dingding/api/setup`) and the typed
//! `config.setup-guide`. Step 10 is driven from the page by [`drive_sync`].

use crate::dingtalk::records::ROOT_DEPT;
use crate::dingtalk::{contacts, oauth, ApiError, Client, Endpoints, Problem};
use crate::env::Env;
use crate::failure::Failure;
use crate::kv;
use crate::model::DirectoryChange;
use crate::settings::Settings;
use crate::sync::{StepRequest, SyncBatch};
use serde::{Deserialize, Serialize};

/// A permission point to enable (seed step 6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Permission {
    /// DingTalk's code, as the API page's 权限要求 row prints it.
    pub code: &'static str,
    /// Its name in the console.
    pub name: &'static str,
    /// Why the plugin needs it.
    pub purpose: &'static str,
    /// The DingTalk page that names this code (docs/dingtalk-api.md §13.10).
    pub source: &'static str,
}

/// The permissions of seed step 6 (contacts + to-dos) and the login ones: only codes a DingTalk
/// page states. The members' mobile and email need field permissions (企业员工手机号信息,
/// 邮箱等个人信息) whose codes no DingTalk page states, so the guide names them in step 6's
/// text instead of listing a code (docs/dingtalk-api.md §13.10).
pub const PERMISSIONS: &[Permission] = &[
    Permission {
        code: "qyapi_base",
        name: "调用企业API时需要具备的基本权限",
        purpose: "every call: access token, in-app sign-in (getuserinfo), work notifications, the contact scope",
        source: "https://open.dingtalk.com/document/development/obtain-corpsecret-authorization-scope",
    },
    Permission {
        code: "qyapi_get_member",
        name: "成员信息读权限",
        purpose: "sign-in: the member's departments and org email; QR login: userid by unionId; to-dos: userid → unionId",
        source: "https://open.dingtalk.com/document/development/query-a-user-by-the-union-id",
    },
    Permission {
        code: "qyapi_get_department_list",
        name: "通讯录部门信息读权限",
        purpose: "full sync: the department tree",
        source: "https://open.dingtalk.com/document/development/user-management-acquires-the-list-departments",
    },
    Permission {
        code: "qyapi_get_department_member",
        name: "通讯录部门成员读权限",
        purpose: "full sync: members of each department",
        source: "https://open.dingtalk.com/document/development/queries-the-complete-information-of-a-department-user",
    },
    Permission {
        code: "open_app_api_base",
        name: "获取钉钉开放接口用户访问凭证的基础权限",
        purpose: "QR login: the user access token",
        source: "https://open.dingtalk.com/document/development/obtain-user-token",
    },
    Permission {
        code: "Contact.User.Read",
        name: "通讯录个人信息读权限",
        purpose: "QR login: the signed-in person's unionId",
        source: "https://open.dingtalk.com/document/development/dingtalk-retrieve-user-information",
    },
    Permission {
        code: "qyapi_get_omp_sso_userinfo",
        name: "企业OA后台免登访问权限",
        purpose: "admin-backend sign-in with the SSOsecret",
        source: "https://open.dingtalk.com/document/development/obtains-the-identity-of-an-application-administrator",
    },
    Permission {
        code: "Todo.Todo.Write",
        name: "待办应用中待办写权限",
        purpose: "create, complete and delete to-dos",
        source: "https://open.dingtalk.com/document/development/add-dingtalk-to-do-task",
    },
    Permission {
        code: "Todo.Todo.Read",
        name: "待办应用中待办读权限",
        purpose: "find a to-do by the platform's id; complete a to-do",
        source: "https://open.dingtalk.com/document/development/add-dingtalk-to-do-task",
    },
];

/// A text in Simplified Chinese (the default) and English.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Text {
    /// Simplified Chinese.
    pub zh: String,
    /// English.
    pub en: String,
}

fn t(zh: impl Into<String>, en: impl Into<String>) -> Text {
    Text {
        zh: zh.into(),
        en: en.into(),
    }
}

/// Where a step or a check stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// ✅ Verified, nothing to do.
    Done,
    /// ⚠ The plugin cannot verify it, or it is optional: check it by hand.
    Check,
    /// ❌ Wrong: do the step's action.
    Wrong,
}

impl Status {
    /// The sign shown next to a step.
    pub fn sign(self) -> &'static str {
        match self {
            Status::Done => "✅",
            Status::Check => "⚠",
            Status::Wrong => "❌",
        }
    }

    /// The worse of two.
    fn worst(self, other: Status) -> Status {
        match (self, other) {
            (Status::Wrong, _) | (_, Status::Wrong) => Status::Wrong,
            (Status::Check, _) | (_, Status::Check) => Status::Check,
            _ => Status::Done,
        }
    }
}

/// One live check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable name.
    pub name: &'static str,
    /// Passed (`status` is `done`).
    pub passed: bool,
    /// Done, to check, or wrong.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What was found, in Chinese.
    pub detail_zh: String,
    /// The one action that fixes a failure.
    pub action: Option<String>,
    /// The action, in Chinese.
    pub action_zh: Option<String>,
}

impl Check {
    fn new(name: &'static str, status: Status, detail: Text, action: Option<Text>) -> Check {
        let (action_zh, action) = match action {
            Some(a) => (Some(a.zh), Some(a.en)),
            None => (None, None),
        };
        Check {
            name,
            passed: status == Status::Done,
            status,
            detail: detail.en,
            detail_zh: detail.zh,
            action,
            action_zh,
        }
    }
}

/// A value the admin pastes into the DingTalk developer console, exactly as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyValue {
    /// The console field, as the console names it.
    pub field: &'static str,
    /// The value.
    pub value: String,
}

/// Whether a setting is set: never its value, length or prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettingState {
    /// The settings key.
    pub key: &'static str,
    /// Set (non-empty).
    pub set: bool,
}

/// One step of the seed's walk, with what the plugin found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The seed's step number (12: the event subscription, not in the seed).
    pub number: u8,
    /// The seed's title.
    pub title: Text,
    /// Where the step stands: the worst of its checks, or what the settings tell.
    pub status: Status,
    /// What the plugin found.
    pub found: Text,
    /// The one thing to do, when not done.
    pub action: Option<Text>,
    /// Values to paste into the console.
    pub values: Vec<CopyValue>,
    /// Settings of this step and whether each is set.
    pub settings: Vec<SettingState>,
    /// Names of the live checks behind the status.
    pub checks: Vec<&'static str>,
}

/// The guide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Guide {
    /// 应用首页地址 (R1).
    pub mobile_home_url: String,
    /// PC端首页地址 (R2).
    pub pc_home_url: String,
    /// 后台管理地址 (R3).
    pub admin_url: String,
    /// 回调域名 (R4).
    pub login_callback_url: String,
    /// Event subscription URL (R6).
    pub events_url: String,
    /// Permissions to enable.
    pub permissions: Vec<Permission>,
    /// Live checks.
    pub checks: Vec<Check>,
    /// The steps with values filled in, one line each (the typed export's view of `walk`).
    pub steps: Vec<String>,
    /// The seed's steps in order, each with its status.
    pub walk: Vec<Step>,
    /// Step 10: the full sync as last driven from the set-up page.
    pub sync: SyncView,
    /// Step 11: DingTalk QR login is switched on.
    pub qr_login_enabled: bool,
}

/// The console values only, without network calls.
pub fn urls(settings: &Settings) -> (String, String, String, String, String) {
    (
        settings.site_path("/dingding/dingding_auth_corp?corpId=$CORPID$"),
        settings.site_path("/index.php?dingding/dd_client_callback&corpId=$CORPID$"),
        settings.site_path(&format!(
            "/index.php?dingding/dd_callback&usertype=admin&corpId={}",
            settings.corp.corp_id
        )),
        settings.site_path("/dingding/dd_or_code_corp_list"),
        settings.site_path("/dingding/events"),
    )
}

fn check_from(name: &'static str, result: Result<Text, ApiError>, permission: &str) -> Check {
    match result {
        Ok(detail) => Check::new(name, Status::Done, detail, None),
        Err(e) => {
            let f = e.to_failure(permission);
            let code = e.code_text();
            Check::new(
                name,
                Status::Wrong,
                t(
                    format!("钉钉返回 {code}"),
                    format!("DingTalk answered {code}"),
                ),
                Some(t(f.message_zh, f.message)),
            )
        }
    }
}

/// The app's contact scope (通讯录权限范围) as DingTalk reports it (`GET /auth/scopes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Authorised department subtrees (`1`: the whole organisation).
    pub authed_dept: Vec<i64>,
    /// Members authorised one by one.
    pub authed_user: Vec<String>,
}

/// Asks DingTalk for the app's contact scope (`GET /auth/scopes`, one call).
fn contact_scope(client: &mut Client<'_>) -> Option<Result<Scope, ApiError>> {
    Some(
        crate::dingtalk::contacts::auth_scopes(client).map(|s| Scope {
            authed_dept: s.authed_dept,
            authed_user: s.authed_user,
        }),
    )
}

fn scope_check(found: Option<Result<Scope, ApiError>>) -> Check {
    let widen = || {
        t(
            "如需全员使用，请在钉钉开发者后台“权限管理 → 通讯录权限范围”中选择全部员工（步骤 6），然后发布新版本（步骤 7）。",
            "If everyone should use the platform, choose 全部员工 under 权限管理 → 通讯录权限范围 in the DingTalk developer console (step 6), then publish a new version (step 7).",
        )
    };
    match found {
        None => Check::new(
            "visible_scope",
            Status::Check,
            t(
                "无法读取应用的通讯录权限范围",
                "the app's contact scope could not be read",
            ),
            Some(widen()),
        ),
        Some(Ok(scope)) if scope.authed_dept.contains(&ROOT_DEPT) => Check::new(
            "visible_scope",
            Status::Done,
            t(
                "通讯录权限范围：全部员工",
                "contact scope: the whole organisation",
            ),
            None,
        ),
        Some(Ok(scope)) => {
            let depts = scope
                .authed_dept
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let users = scope.authed_user.len();
            Check::new(
                "visible_scope",
                Status::Check,
                t(
                    format!("通讯录权限范围只含部分组织：部门 [{depts}]，另有 {users} 名单独授权的成员；范围外的成员不会同步"),
                    format!("the contact scope is part of the organisation: departments [{depts}] and {users} members authorised one by one; members outside it are not synced"),
                ),
                Some(widen()),
            )
        }
        Some(Err(e)) => check_from("visible_scope", Err(e), "qyapi_base"),
    }
}

// ---------------------------------------------------------------------------------------------
// The event subscription's last verified event

const LAST_EVENT_KEY: &str = "setup:events:last";

/// Records that an event push was verified just now (called by the router after a verified
/// push): the set-up page shows when the subscription last worked. One store write.
pub fn note_verified_event(env: &mut dyn Env) {
    let now = env.now_ms();
    if kv::put_json(env, LAST_EVENT_KEY, &now).is_err() {
        env.log("set-up: could not record the last verified event");
    }
}

fn ago(now_ms: u64, at_ms: u64) -> Text {
    let minutes = now_ms.saturating_sub(at_ms) / 60_000;
    match minutes {
        0 => t("刚刚", "just now"),
        m if m < 120 => t(format!("{m} 分钟前"), format!("{m} minutes ago")),
        m if m < 48 * 60 => t(
            format!("{} 小时前", m / 60),
            format!("{} hours ago", m / 60),
        ),
        m => t(
            format!("{} 天前", m / 1440),
            format!("{} days ago", m / 1440),
        ),
    }
}

fn events_check(env: &mut dyn Env, settings: &Settings, events_url: &str) -> Check {
    let subscribe = |zh: &str, en: &str| {
        t(
            format!("在钉钉开发者后台“事件订阅”中选择 HTTP 推送，请求网址填 {events_url}{zh}"),
            format!("In 事件订阅 of the DingTalk developer console choose HTTP 推送 and set the request URL to {events_url}{en}"),
        )
    };
    if settings.events.is_none() {
        return Check::new(
            "event_subscription",
            Status::Check,
            t(
                "未配置事件订阅（event_token、event_aes_key 未设置）：通讯录变化要等下一次全量同步才会反映",
                "no event subscription (event_token and event_aes_key unset): directory changes wait for the next full sync",
            ),
            Some(subscribe(
                "，并把页面上的签名 token 和加密 aes_key 分别填入 event_token 和 event_aes_key。",
                ", and copy its 签名 token and 加密 aes_key into event_token and event_aes_key.",
            )),
        );
    }
    let now = env.now_ms();
    match kv::get_json::<u64>(env, LAST_EVENT_KEY) {
        Ok(Some(at)) => {
            let when = ago(now, at);
            Check::new(
                "event_subscription",
                Status::Done,
                t(
                    format!("密钥已设置；最近一次验证通过的事件：{}", when.zh),
                    format!("keys set; last verified event: {}", when.en),
                ),
                None,
            )
        }
        _ => Check::new(
            "event_subscription",
            Status::Check,
            t(
                "密钥已设置；尚未收到验证通过的事件",
                "keys set; no verified event received yet",
            ),
            Some(subscribe(
                "，然后点击保存：钉钉会发送 check_url 事件验证该地址。",
                ", then save: DingTalk sends a check_url event to verify it.",
            )),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Step 10: the full sync driven from the set-up page

/// A page driving the sync that did not step for this long has let go: another may drive.
pub const DRIVER_QUIET_MS: u64 = 15_000;

/// What the set-up page knows of the full sync (`setup:sync:{corp}`), written after every step
/// the page drives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct SyncRecord {
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

fn view(record: &SyncRecord, sync_qps: u32, following: bool, retry_after_ms: u32) -> SyncView {
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

// ---------------------------------------------------------------------------------------------
// The guide

fn setting(key: &'static str, set: bool) -> SettingState {
    SettingState { key, set }
}

/// Runs the live checks (five DingTalk calls at most).
fn live_checks(env: &mut dyn Env, settings: &Settings) -> Vec<Check> {
    let endpoints = Endpoints::from_settings(settings);
    let mut checks = Vec::new();
    {
        let mut client = Client::new(env, &endpoints, &settings.corp);
        client.throttle_retries = 0;
        // 1. Credentials: a fresh token (never the cached one).
        let credentials = oauth::fresh_app_token(&mut client).map(|_| {
            t(
                "AppKey 和 AppSecret 有效，已取得访问凭证",
                "AppKey and AppSecret accepted; a token was issued",
            )
        });
        let credentials_ok = credentials.is_ok();
        match credentials {
            // The whitelist refused the very first call: that is the one thing to fix.
            Err(e) if e.problem() == Problem::IpNotWhitelisted => {
                checks.push(Check::new(
                    "app_credentials",
                    Status::Check,
                    t(
                        "钉钉先拒绝了服务器出口 IP，尚未核对凭证",
                        "DingTalk refused the server's egress IP first; the credentials are not verified yet",
                    ),
                    None,
                ));
                checks.push(check_from("ip_whitelist", Err(e), "qyapi_base"));
            }
            credentials => checks.push(check_from("app_credentials", credentials, "qyapi_base")),
        }
        if credentials_ok {
            // 2. Contacts permission: one user-list page of the root department.
            let contacts = contacts::user_list(&mut client, ROOT_DEPT, 0, 1).map(|_| {
                t(
                    "应用可以读取部门成员",
                    "the app may read departments' members",
                )
            });
            checks.push(check_from(
                "contacts_permission",
                contacts,
                "qyapi_get_department_member",
            ));
            // 3. The part of the organisation the app sees.
            checks.push(scope_check(contact_scope(&mut client)));
            // 4. IP whitelist: a login exchange with a dummy code passes the whitelist and fails on the code.
            let accepted = || {
                Ok(t(
                    "服务器出口 IP 在白名单内",
                    "the server's egress IP is accepted",
                ))
            };
            let ip = match contacts::user_info_by_code(&mut client, "setup-check") {
                // An answer, even one without a user, passed the whitelist.
                Ok(_) | Err(ApiError::Parse(_)) => accepted(),
                Err(e) if e.problem() == Problem::IpNotWhitelisted => Err(e),
                Err(e)
                    if matches!(
                        e.problem(),
                        Problem::CodeInvalid | Problem::InvalidParameter
                    ) =>
                {
                    accepted()
                }
                Err(e) => Err(e),
            };
            checks.push(check_from("ip_whitelist", ip, "qyapi_base"));
        }
    }
    // 5. SSOsecret.
    let copy_again = t(
        "请在钉钉开发者后台“基本信息 → 开发信息（旧版）”中重新复制 SSOsecret（步骤 9），需管理员点击“查看”。",
        "Copy the SSOsecret again from 基本信息 → 开发信息（旧版） in the DingTalk developer console (set-up step 9); an admin must click 查看 to reveal it.",
    );
    match &settings.corp.sso_secret {
        None => checks.push(Check::new(
            "sso_secret",
            Status::Wrong,
            t("未设置 SSOsecret", "no SSOsecret configured"),
            Some(t(
                "请从钉钉开发者后台“基本信息 → 开发信息（旧版）”复制 SSOsecret，填入 sso_secret（步骤 9）。",
                "Copy the SSOsecret from 基本信息 → 开发信息（旧版） in the DingTalk developer console into sso_secret (set-up step 9).",
            )),
        )),
        Some(secret) => {
            // Like the login's SSO client: the default throttling retry.
            let mut client = Client::new(env, &endpoints, &settings.corp);
            let r = oauth::fresh_sso_token(&mut client, secret)
                .map(|_| t("SSOsecret 有效", "the SSOsecret is accepted"));
            let mut check = check_from("sso_secret", r, "qyapi_get_omp_sso_userinfo");
            if !check.passed {
                check.action_zh = Some(copy_again.zh);
                check.action = Some(copy_again.en);
            }
            checks.push(check);
        }
    }
    checks
}

/// A step whose status is the worst of `names`' checks (`Check` when none ran), found and
/// action taken from the first check that is not done, else `ok`.
fn step_from_checks(
    checks: &[Check],
    names: &[&'static str],
    ok: Text,
    when_absent: Text,
) -> (Status, Text, Option<Text>) {
    let ran: Vec<&Check> = checks.iter().filter(|c| names.contains(&c.name)).collect();
    if ran.is_empty() {
        return (Status::Check, when_absent, None);
    }
    let status = ran.iter().fold(Status::Done, |s, c| s.worst(c.status));
    match ran
        .iter()
        .filter(|c| c.status != Status::Done)
        .max_by_key(|c| c.status == Status::Wrong)
    {
        None => (status, ok, None),
        Some(c) => (
            status,
            t(c.detail_zh.clone(), c.detail.clone()),
            c.action
                .clone()
                .map(|en| t(c.action_zh.clone().unwrap_or_default(), en)),
        ),
    }
}

/// Builds the guide: the live checks (five DingTalk calls at most) and the walk.
pub fn guide(env: &mut dyn Env, settings: &Settings) -> Guide {
    let (mobile_home_url, pc_home_url, admin_url, login_callback_url, events_url) = urls(settings);
    let mut checks = live_checks(env, settings);
    checks.push(events_check(env, settings, &events_url));
    let sync = sync_status(env, settings)
        .unwrap_or_else(|_| view(&SyncRecord::default(), settings.sync_qps, false, 0));
    let corp = &settings.corp;
    let credentials_ok = checks
        .iter()
        .any(|c| c.name == "app_credentials" && c.passed);
    let console = "https://open-dev.dingtalk.com/v2/fe/app#/corp/app";
    let not_verified = t(
        "插件无法核对此项，请按下方数值在钉钉开发者后台中确认",
        "the plugin cannot verify this; confirm the values below in the DingTalk developer console",
    );
    let mut walk = Vec::new();
    let mut push = |number: u8,
                    title: Text,
                    (status, found, action): (Status, Text, Option<Text>),
                    values: Vec<CopyValue>,
                    settings: Vec<SettingState>,
                    checks: Vec<&'static str>| {
        walk.push(Step {
            number,
            title,
            status,
            found,
            action,
            values,
            settings,
            checks,
        })
    };
    let after_credentials = |zh: &str, en: &str| {
        if credentials_ok {
            (Status::Done, t(zh, en), None)
        } else {
            (
                Status::Check,
                t(
                    "应用凭证尚未通过验证（见步骤 4）",
                    "the app credentials are not accepted yet (see step 4)",
                ),
                Some(t(
                    format!("登录钉钉开放平台 {console}，找到本应用。"),
                    format!(
                        "Sign in to the DingTalk developer console at {console} and open the app."
                    ),
                )),
            )
        }
    };
    push(
        1,
        t(
            "登录钉钉开放平台",
            "Sign in to the DingTalk developer console",
        ),
        after_credentials(
            "已能以本应用调用钉钉接口",
            "DingTalk accepts calls from this app",
        ),
        vec![CopyValue {
            field: "钉钉开放平台",
            value: "https://open-dev.dingtalk.com".into(),
        }],
        vec![],
        vec!["app_credentials"],
    );
    push(
        2,
        t("团队名称和 CorpId", "Organisation name and CorpId"),
        if corp.corp_name.is_empty() {
            (
                Status::Check,
                t(
                    format!(
                        "CorpId {} 已设置；CorpName 未设置（扫码登录时显示）",
                        corp.corp_id
                    ),
                    format!(
                        "CorpId {} is set; CorpName is not (shown at QR login)",
                        corp.corp_id
                    ),
                ),
                Some(t(
                    "把扫码登录时显示的企业名称填入 corp_name。",
                    "Set corp_name to the organisation name DingTalk shows at QR login.",
                )),
            )
        } else {
            (
                Status::Done,
                t(
                    format!("CorpId {}，CorpName {}", corp.corp_id, corp.corp_name),
                    format!("CorpId {}, CorpName {}", corp.corp_id, corp.corp_name),
                ),
                None,
            )
        },
        vec![],
        vec![
            setting("corp_id", !corp.corp_id.is_empty()),
            setting("corp_name", !corp.corp_name.is_empty()),
        ],
        vec![],
    );
    push(
        3,
        t("创建钉钉应用", "Create the DingTalk app"),
        after_credentials(
            "应用已创建（企业内部开发）",
            "the app exists (企业内部开发)",
        ),
        vec![CopyValue {
            field: "应用开发 → 企业内部应用",
            value: console.into(),
        }],
        vec![],
        vec!["app_credentials"],
    );
    push(
        4,
        t("填写应用凭证", "Fill in the app credentials"),
        step_from_checks(
            &checks,
            &["app_credentials"],
            t(
                format!(
                    "AgentId {}、AppKey {} 与 AppSecret 有效",
                    corp.agent_id, corp.app_key
                ),
                format!(
                    "AgentId {}, AppKey {} and AppSecret accepted",
                    corp.agent_id, corp.app_key
                ),
            ),
            not_verified.clone(),
        ),
        vec![],
        vec![
            setting("agent_id", !corp.agent_id.is_empty()),
            setting("app_key", !corp.app_key.is_empty()),
            setting("app_secret", !corp.app_secret.expose().is_empty()),
        ],
        vec!["app_credentials"],
    );
    {
        let (status, found, action) = step_from_checks(
            &checks,
            &["ip_whitelist"],
            not_verified.clone(),
            not_verified.clone(),
        );
        let action = action.or_else(|| {
            Some(t(
                "在“网页应用”能力中逐字粘贴以下三个地址。",
                "In the 网页应用 capability, paste these three addresses exactly.",
            ))
        });
        push(
            5,
            t("配置访问地址", "Configure the access URLs"),
            (status.worst(Status::Check), found, action),
            vec![
                CopyValue {
                    field: "应用首页地址",
                    value: mobile_home_url.clone(),
                },
                CopyValue {
                    field: "PC端首页地址",
                    value: pc_home_url.clone(),
                },
                CopyValue {
                    field: "后台管理地址",
                    value: admin_url.clone(),
                },
            ],
            vec![setting("site_url", !settings.site_url.is_empty())],
            vec!["ip_whitelist"],
        );
    }
    push(
        6,
        t("开通权限", "Enable the permissions"),
        step_from_checks(
            &checks,
            &["contacts_permission", "visible_scope"],
            t(
                "通讯录权限已开通，范围为全部员工",
                "contacts permission granted, scope: whole organisation",
            ),
            t(
                "应用凭证通过后才能检查权限（见步骤 4）",
                "permissions are checked once the credentials are accepted (see step 4)",
            ),
        ),
        vec![],
        vec![],
        vec!["contacts_permission", "visible_scope"],
    );
    push(7, t("发布应用", "Publish the app"),
        (Status::Check, not_verified.clone(), Some(t("在“版本管理与发布”中创建新版本并直接发布；每次修改权限后都需重新发布。", "Under 版本管理与发布 create a new version and publish it; publish again after every permission change."))),
        vec![], vec![], vec![]);
    push(
        8,
        t("接入登录", "Connect the login"),
        (
            Status::Check,
            not_verified.clone(),
            Some(t(
                "在“分享设置”（登录与分享）中把回调域名设为下方地址。",
                "Under 分享设置 (登录与分享) set the callback domain to the address below.",
            )),
        ),
        vec![CopyValue {
            field: "回调域名",
            value: login_callback_url.clone(),
        }],
        vec![],
        vec![],
    );
    push(
        9,
        t("获取 SSOsecret", "Get the SSOsecret"),
        step_from_checks(
            &checks,
            &["sso_secret"],
            t("SSOsecret 有效", "the SSOsecret is accepted"),
            not_verified.clone(),
        ),
        vec![CopyValue {
            field: "开发信息（旧版）",
            value: "https://open-dev.dingtalk.com/v2/fe/old#/corpAuthInfo".into(),
        }],
        vec![setting("sso_secret", corp.sso_secret.is_some())],
        vec!["sso_secret"],
    );
    push(
        10,
        t("安装钉钉初始化", "Install: the first directory sync"),
        match sync.state {
            "complete" => (
                Status::Done,
                t(
                    format!(
                        "第 {} 轮同步完成：{} 名成员，{} 个部门，{} 人停用",
                        sync.pass, sync.members_seen, sync.departments_known, sync.deactivated
                    ),
                    format!(
                        "pass {} complete: {} members, {} departments, {} deactivated",
                        sync.pass, sync.members_seen, sync.departments_known, sync.deactivated
                    ),
                ),
                None,
            ),
            "running" => (
                Status::Check,
                t(
                    format!(
                        "第 {} 轮同步进行中：{}/{} 个部门",
                        sync.pass, sync.departments_done, sync.departments_known
                    ),
                    format!(
                        "pass {} under way: {}/{} departments",
                        sync.pass, sync.departments_done, sync.departments_known
                    ),
                ),
                Some(t(
                    "在设置页面点击“继续同步”。",
                    "Press Resume sync on the set-up page.",
                )),
            ),
            _ => (
                Status::Check,
                t(
                    "尚未从设置页面同步通讯录",
                    "the directory has not been synced from the set-up page",
                ),
                Some(t(
                    "在设置页面点击“安装钉钉初始化”。",
                    "Press 安装钉钉初始化 (install) on the set-up page.",
                )),
            ),
        },
        vec![],
        vec![],
        vec![],
    );
    push(
        11,
        t("开启扫码登录", "Switch on QR login"),
        if settings.qr_login_enabled {
            (
                Status::Done,
                t("钉钉扫码登录已开启", "DingTalk QR login is on"),
                None,
            )
        } else {
            (Status::Check, t("钉钉扫码登录未开启", "DingTalk QR login is off"), Some(t("在【站点配置】→【注册登录】中开启钉钉扫码登录开关（设置 qr_login_enabled = true）。", "Switch on DingTalk QR login under 站点配置 → 注册登录 (setting qr_login_enabled = true).")))
        },
        vec![],
        vec![setting("qr_login_enabled", settings.qr_login_enabled)],
        vec![],
    );
    push(
        12,
        t(
            "事件订阅（通讯录变化）",
            "Event subscription (directory changes)",
        ),
        {
            let works = checks
                .iter()
                .find(|c| c.name == "event_subscription")
                .map(|c| t(c.detail_zh.clone(), c.detail.clone()))
                .unwrap_or_else(|| not_verified.clone());
            step_from_checks(&checks, &["event_subscription"], works, not_verified)
        },
        vec![CopyValue {
            field: "请求网址",
            value: events_url.clone(),
        }],
        vec![
            setting("event_token", settings.events.is_some()),
            setting("event_aes_key", settings.events.is_some()),
        ],
        vec!["event_subscription"],
    );
    let steps = legacy_lines(&walk, settings);
    Guide {
        mobile_home_url,
        pc_home_url,
        admin_url,
        login_callback_url,
        events_url,
        permissions: PERMISSIONS.to_vec(),
        checks,
        steps,
        walk,
        sync,
        qr_login_enabled: settings.qr_login_enabled,
    }
}

/// The walk as numbered lines in Chinese, with the values filled in.
fn legacy_lines(walk: &[Step], settings: &Settings) -> Vec<String> {
    let mut lines = Vec::new();
    for step in walk {
        lines.push(format!(
            "{}. {} {}: {}",
            step.number,
            step.status.sign(),
            step.title.zh,
            step.found.zh
        ));
        for v in &step.values {
            lines.push(format!("{}. {}: {}", step.number, v.field, v.value));
        }
        if step.number == 6 {
            lines.push(format!(
                "6. 权限管理: {}",
                PERMISSIONS
                    .iter()
                    .map(|p| format!("{} ({})", p.name, p.code))
                    .collect::<Vec<_>>()
                    .join("、")
            ));
            lines.push("6. 通讯录字段权限（可选）: 企业员工手机号信息、邮箱等个人信息 — members' mobile and email in the directory; enable them under 权限管理 → 通讯录管理 if the platform needs them".to_string());
        }
        if let Some(a) = &step.action {
            lines.push(format!("{}. → {}", step.number, a.zh));
        }
    }
    let _ = settings;
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::tests::sample;
    use crate::testing::FakeEnv;
    use serde_json::json;

    #[test]
    fn exact_console_urls() {
        let (m, p, a, c, e) = urls(&sample());
        assert_eq!(
            m,
            "https://forms.example.com/dingding/dingding_auth_corp?corpId=$CORPID$"
        );
        assert_eq!(
            p,
            "https://forms.example.com/index.php?dingding/dd_client_callback&corpId=$CORPID$"
        );
        assert_eq!(a, "https://forms.example.com/index.php?dingding/dd_callback&usertype=admin&corpId=dingcorp123");
        assert_eq!(c, "https://forms.example.com/dingding/dd_or_code_corp_list");
        assert_eq!(e, "https://forms.example.com/dingding/events");
    }

    #[test]
    fn checks_decode_each_failure() {
        let mut env = FakeEnv::new();
        env.answer(
            "/v1.0/oauth2/accessToken",
            json!({"accessToken": "t", "expireIn": 7200}),
        );
        env.answer(
            "/topapi/v2/user/list",
            json!({"errcode": 88, "sub_code": "60011", "errmsg": "no permission"}),
        );
        env.answer(
            "/topapi/v2/user/getuserinfo",
            json!({"errcode": 60020, "errmsg": "访问ip不在白名单之中 request ip=198.51.100.9 appKey(x)"}),
        );
        env.answer_status(
            "/v1.0/oauth2/ssoAccessToken",
            400,
            json!({"code": "invalidClientIdOrSecret", "message": "bad"}),
        );
        let g = guide(&mut env, &sample());
        let by = |n: &str| g.checks.iter().find(|c| c.name == n).unwrap().clone();
        assert!(by("app_credentials").passed);
        let contacts = by("contacts_permission");
        assert!(!contacts.passed);
        assert!(contacts
            .action
            .unwrap()
            .contains("qyapi_get_department_member"));
        let ip = by("ip_whitelist");
        assert!(!ip.passed && ip.action.unwrap().contains("198.51.100.9"));
        assert!(!by("sso_secret").passed);
        assert_eq!(
            env.requests.len(),
            5,
            "one DingTalk call per check, the scope included"
        );
        let printed = serde_json::to_string(&g).unwrap();
        assert!(!printed.contains("app-secret-value") && !printed.contains("sso-secret-value"));
    }
}
