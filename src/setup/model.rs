//! The set-up guide's model: what a step, a live check, a value to paste and a permission are,
//! the permissions of step 6, the console URLs, and the walk as numbered lines (the typed
//! export's view). Independent of how the page renders it.

use super::sync_driver::SyncView;
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

/// A text in Simplified Chinese (the default) and English.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Text {
    /// Simplified Chinese.
    pub zh: String,
    /// English.
    pub en: String,
}

pub(super) fn t(zh: impl Into<String>, en: impl Into<String>) -> Text {
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
    pub(super) fn worst(self, other: Status) -> Status {
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
    pub(super) fn new(
        name: &'static str,
        status: Status,
        detail: Text,
        action: Option<Text>,
    ) -> Check {
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

/// The walk as numbered lines in Chinese, with the values filled in.
pub(super) fn legacy_lines(walk: &[Step], settings: &Settings) -> Vec<String> {
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
}
