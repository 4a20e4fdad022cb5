//! The guide's live checks: each calls DingTalk once (app credentials with a fresh token, the
//! contacts permission, the contact scope from `/auth/scopes`, the IP whitelist, the SSOsecret)
//! and names the one action that fixes a failure; the event subscription's check reads when a
//! push was last verified.

use super::model::{t, Check, Status, Text};
use crate::dingtalk::records::ROOT_DEPT;
use crate::dingtalk::{contacts, oauth, ApiError, Client, Endpoints, Problem};
use crate::env::Env;
use crate::kv;
use crate::settings::Settings;

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

pub(super) fn events_check(env: &mut dyn Env, settings: &Settings, events_url: &str) -> Check {
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

/// Runs the live checks (five DingTalk calls at most).
pub(super) fn live_checks(env: &mut dyn Env, settings: &Settings) -> Vec<Check> {
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

#[cfg(test)]
mod tests {
    use crate::settings::tests::sample;
    use crate::setup::guide;
    use crate::testing::FakeEnv;
    use serde_json::json;

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
