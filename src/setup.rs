//! The admin's set-up guide (seed steps 2, 4, 5, 6, 8, 9, 10, 11): the exact values to paste into
//! the DingTalk developer console, the permissions to enable, and live checks that call DingTalk
//! once each and name the one action that fixes a failure.

use crate::dingtalk::records::ROOT_DEPT;
use crate::dingtalk::{contacts, oauth, ApiError, Client, Endpoints, Problem};
use crate::env::Env;
use crate::settings::Settings;
use serde::Serialize;

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

/// One live check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable name.
    pub name: &'static str,
    /// Passed.
    pub passed: bool,
    /// What was found.
    pub detail: String,
    /// The one action that fixes a failure.
    pub action: Option<String>,
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
    /// The steps with values filled in.
    pub steps: Vec<String>,
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

fn check_from(name: &'static str, result: Result<String, ApiError>, permission: &str) -> Check {
    match result {
        Ok(detail) => Check {
            name,
            passed: true,
            detail,
            action: None,
        },
        Err(e) => {
            let f = e.to_failure(permission);
            Check {
                name,
                passed: false,
                detail: format!("DingTalk answered {}", e.code_text()),
                action: Some(f.message),
            }
        }
    }
}

/// Builds the guide and runs the live checks (four DingTalk calls at most).
pub fn guide(env: &mut dyn Env, settings: &Settings) -> Guide {
    let (mobile_home_url, pc_home_url, admin_url, login_callback_url, events_url) = urls(settings);
    let endpoints = Endpoints::from_settings(settings);
    let mut checks = Vec::new();
    {
        let mut client = Client::new(env, &endpoints, &settings.corp);
        client.throttle_retries = 0;
        // 1. Credentials: a fresh token (never the cached one).
        let credentials = oauth::fresh_app_token(&mut client)
            .map(|_| "AppKey and AppSecret accepted; a token was issued".to_string());
        let credentials_ok = credentials.is_ok();
        checks.push(check_from("app_credentials", credentials, "qyapi_base"));
        if credentials_ok {
            // 2. Contacts permission: one user-list page of the root department.
            let contacts = contacts::user_list(&mut client, ROOT_DEPT, 0, 1)
                .map(|_| "the app may read departments' members".to_string());
            checks.push(check_from(
                "contacts_permission",
                contacts,
                "qyapi_get_department_member",
            ));
            // 4. IP whitelist: a login exchange with a dummy code passes the whitelist and fails on the code.
            let ip = match contacts::user_info_by_code(&mut client, "setup-check") {
                // An answer, even one without a user, passed the whitelist.
                Ok(_) | Err(ApiError::Parse(_)) => {
                    Ok("the server's egress IP is accepted".to_string())
                }
                Err(e) if e.problem() == Problem::IpNotWhitelisted => Err(e),
                Err(e)
                    if matches!(
                        e.problem(),
                        Problem::CodeInvalid | Problem::InvalidParameter
                    ) =>
                {
                    Ok("the server's egress IP is accepted".to_string())
                }
                Err(e) => Err(e),
            };
            checks.push(check_from("ip_whitelist", ip, "qyapi_base"));
        }
    }
    // 3. SSOsecret.
    match &settings.corp.sso_secret {
        None => checks.push(Check {
            name: "sso_secret",
            passed: false,
            detail: "no SSOsecret configured".into(),
            action: Some("Copy the SSOsecret from 基本信息 → 开发信息（旧版） in the DingTalk developer console into sso_secret (set-up step 9).".into()),
        }),
        Some(secret) => {
            // Like the login's SSO client: the default throttling retry.
            let mut client = Client::new(env, &endpoints, &settings.corp);
            let r = oauth::fresh_sso_token(&mut client, secret).map(|_| "the SSOsecret is accepted".to_string());
            let mut check = check_from("sso_secret", r, "qyapi_get_omp_sso_userinfo");
            if !check.passed {
                check.action = Some("Copy the SSOsecret again from 基本信息 → 开发信息（旧版） in the DingTalk developer console (set-up step 9); an admin must click 查看 to reveal it.".into());
            }
            checks.push(check);
        }
    }
    let steps = vec![
        format!(
            "2. CorpId: {}  CorpName: {}",
            settings.corp.corp_id, settings.corp.corp_name
        ),
        format!(
            "4. 应用凭证: AgentId {}, AppKey {}, AppSecret (stored, hidden)",
            settings.corp.agent_id, settings.corp.app_key
        ),
        format!("5. 应用首页地址: {mobile_home_url}"),
        format!("5. PC端首页地址: {pc_home_url}"),
        format!("5. 后台管理地址: {admin_url}"),
        format!(
            "6. 权限管理: {}",
            PERMISSIONS
                .iter()
                .map(|p| format!("{} ({})", p.name, p.code))
                .collect::<Vec<_>>()
                .join("、")
        ),
        "6. 通讯录字段权限（可选）: 企业员工手机号信息、邮箱等个人信息 — members' mobile and email in the directory; enable them under 权限管理 → 通讯录管理 if the platform needs them".to_string(),
        format!("8. 回调域名: {login_callback_url}"),
        format!(
            "9. SSOsecret: {}",
            if settings.corp.sso_secret.is_some() {
                "configured"
            } else {
                "missing"
            }
        ),
        "10. 安装钉钉初始化: POST /dingding/api/sync until progress.complete is true".to_string(),
        format!(
            "11. 钉钉扫码登录: {}",
            if settings.qr_login_enabled {
                "on"
            } else {
                "off (switch on qr_login_enabled)"
            }
        ),
        format!("事件订阅 请求网址: {events_url}"),
    ];
    Guide {
        mobile_home_url,
        pc_home_url,
        admin_url,
        login_callback_url,
        events_url,
        permissions: PERMISSIONS.to_vec(),
        checks,
        steps,
    }
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
        assert_eq!(env.requests.len(), 4, "one DingTalk call per check");
        let printed = serde_json::to_string(&g).unwrap();
        assert!(!printed.contains("app-secret-value") && !printed.contains("sso-secret-value"));
    }
}
