//! R3, admin-backend login from DingTalk's admin console: DingTalk appends a `code`, which the
//! SSO token (from the SSOsecret) turns into the admin's userid (`v1.0/oauth2/ssoUserInfo`);
//! the rest of the identity (`unionid`, `dept_ids`, boss flag) comes from the directory mirror,
//! else `user/get`, like every other login (DESIGN §3). Warm: one DingTalk call.

use super::{
    check_code, complete_profile, corp_param_failure, first_binding_rule, safe_return_to,
    spend_code_budget, LoginResult, LoginStep,
};
use crate::corps;
use crate::dingtalk::{oauth, ApiError, Client, Endpoints, Problem};
use crate::env::Env;
use crate::failure::Failure;
use crate::model::{Identity, Via};
use crate::settings::Settings;

/// An admin-backend login request as the router parsed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminSsoRequest {
    /// `corpId` from the admin-backend URL.
    pub corp_id: Option<String>,
    /// The code DingTalk appended.
    pub code: Option<String>,
    /// Where the platform should land the admin afterwards.
    pub return_to: Option<String>,
}

/// R3: `code` from DingTalk's admin console → SSO user info → the admin's identity.
pub fn sign_in(env: &mut dyn Env, settings: &Settings, request: AdminSsoRequest) -> LoginResult {
    let corp_id = request.corp_id.ok_or_else(corp_param_failure)?;
    let app = corps::resolve(env, settings, Some(&corp_id))?;
    let code = request.code.ok_or_else(|| Failure::bad_request(
        "code_missing",
        "DingTalk did not pass a code. Enter the platform from the DingTalk admin console (oa.dingtalk.com → 工作台 → the app → 管理后台).",
        "钉钉未传入 code。请从钉钉管理后台（oa.dingtalk.com → 工作台 → 应用 → 管理后台）进入。",
    ))?;
    check_code(
        &code,
        "The code in the address is malformed. Enter again from the DingTalk admin console.",
        "地址中的 code 格式不正确，请从钉钉管理后台重新进入。",
    )?;
    let secret = app.sso_secret.clone().ok_or_else(|| Failure::new(
        503,
        "sso_secret_missing",
        "Admin-backend sign-in needs the SSOsecret. Copy it from 基本信息 → 开发信息（旧版） in the DingTalk developer console into the plugin settings (set-up step 9).",
        "管理后台免登需要 SSOsecret。请在钉钉开发者后台“基本信息 → 开发信息（旧版）”复制 SSOsecret 并填入插件设置（步骤 9）。",
    ))?;
    let slot = spend_code_budget(env, settings)?;
    let endpoints = Endpoints::from_settings(settings);
    let info = oauth::sso_user_info(&mut Client::new(env, &endpoints, &app), &secret, &code)
        .map_err(|e| sso_failure(&e))?;
    if let Some(reported) = info.corp_id.as_deref() {
        if reported != app.corp_id {
            return Err(corps::not_served(settings, reported));
        }
    }
    if !info.is_admin {
        return Err(Failure::new(
            403,
            "not_an_admin",
            "Only administrators of the organisation can enter the admin backend. Ask the organisation's main admin for admin rights in DingTalk.",
            "只有组织管理员才能进入管理后台，请联系组织主管理员在钉钉中授予管理员权限。",
        ));
    }
    let requires_sms_binding = first_binding_rule(env, settings, &app, &info.userid)?;
    let mut identity = Identity {
        corp_id: app.corp_id.clone(),
        userid: info.userid,
        unionid: String::new(),
        name: info.name.unwrap_or_default(),
        mobile: None,
        email: info.email,
        avatar: info.avatar,
        dept_ids: Vec::new(),
        is_admin: true,
        // DingTalk's SSO API says "admin" without the level: 1 unless the member record says
        // boss (100).
        admin_level: 0,
        via: Via::AdminSso,
        requires_sms_binding,
        return_to: safe_return_to(request.return_to),
    };
    complete_profile(&mut Client::new(env, &endpoints, &app), &mut identity)?;
    Ok(LoginStep::SignedIn(Box::new(identity), slot))
}

fn sso_failure(e: &ApiError) -> Failure {
    match e.problem() {
        Problem::BadCredentials => Failure::new(
            502,
            "bad_sso_secret",
            format!("DingTalk rejected the SSOsecret ({}). Copy it again from 基本信息 → 开发信息（旧版） in the DingTalk developer console (set-up step 9).", e.code_text()),
            format!("钉钉拒绝了 SSOsecret（{}）。请在钉钉开发者后台“基本信息 → 开发信息（旧版）”重新复制（步骤 9）。", e.code_text()),
        ),
        _ => e.to_failure("qyapi_get_omp_sso_userinfo"),
    }
}
