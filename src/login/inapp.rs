//! R1/R2, in-app free login from the DingTalk workbench (mobile and PC): without a code, the
//! JSAPI page; with one, `topapi/v2/user/getuserinfo` → userid, then the member's record.

use super::{check_code, corp_param_failure, enrich, safe_return_to, LoginResult, LoginStep};
use crate::corps;
use crate::dingtalk::{contacts, Client, Endpoints};
use crate::env::Env;
use crate::failure::Failure;
use crate::model::{Identity, Via};
use crate::settings::Settings;

/// An in-app login request as the router parsed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InappRequest {
    /// `corpId` (or `corpid`) from the workbench URL.
    pub corp_id: Option<String>,
    /// The JSAPI auth code, once the page came back with it.
    pub code: Option<String>,
    /// Where the platform should land the person afterwards.
    pub return_to: Option<String>,
}

/// R1/R2: the JSAPI page without a code; the exchange and the signed-in identity with one.
pub fn sign_in(
    env: &mut dyn Env,
    settings: &Settings,
    request: InappRequest,
    via: Via,
) -> LoginResult {
    let corp_id = request.corp_id.ok_or_else(corp_param_failure)?;
    if corp_id.contains("$CORPID$") {
        return Err(Failure::bad_request(
            "outside_dingtalk",
            "This address is meant to be opened from the DingTalk workbench, which fills in $CORPID$. Open the app inside DingTalk.",
            "此地址需从钉钉工作台打开（钉钉会替换 $CORPID$），请在钉钉内打开应用。",
        ));
    }
    let app = corps::resolve(env, settings, Some(&corp_id))?;
    let Some(code) = request.code else {
        return Ok(LoginStep::JsapiPage {
            corp_id: app.corp_id.clone(),
            client_id: app.app_key.clone(),
        });
    };
    check_code(
        &code,
        "The sign-in code in the address is malformed. Open the app from DingTalk again.",
        "地址中的登录授权码格式不正确，请从钉钉重新打开应用。",
    )?;
    let endpoints = Endpoints::from_settings(settings);
    let mut client = Client::new(env, &endpoints, &app);
    let person =
        contacts::user_info_by_code(&mut client, &code).map_err(|e| e.to_failure("qyapi_base"))?;
    let mut identity = Identity {
        corp_id: app.corp_id.clone(),
        userid: person.userid,
        unionid: person.unionid.unwrap_or_default(),
        name: person.name.unwrap_or_default(),
        mobile: None,
        email: None,
        avatar: None,
        dept_ids: Vec::new(),
        is_admin: person.sys || matches!(person.sys_level, 1 | 2),
        admin_level: person.sys_level,
        via,
        requires_sms_binding: false,
        return_to: safe_return_to(request.return_to),
    };
    enrich(&mut client, &mut identity)?;
    Ok(LoginStep::SignedIn(Box::new(identity)))
}
