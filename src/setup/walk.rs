//! Builds the guide: runs the live checks, reads the sync's progress, and walks the seed's
//! steps in order, each with its status, what was found, the one action, the values to paste
//! and the settings it needs.

use super::checks::{events_check, live_checks};
use super::model::{
    legacy_lines, t, urls, Check, CopyValue, Guide, SettingState, Status, Step, Text, PERMISSIONS,
};
use super::sync_driver::{sync_status, view, SyncRecord};
use crate::env::Env;
use crate::settings::Settings;

fn setting(key: &'static str, set: bool) -> SettingState {
    SettingState { key, set }
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
