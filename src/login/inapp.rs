//! R1/R2, in-app free login from the DingTalk workbench (mobile and PC): without a code, the
//! JSAPI page (no key-value operation for the configured corp); with one,
//! `topapi/v2/user/getuserinfo` → userid, then the member's record from the directory mirror
//! (else `user/get`). Warm, that is one DingTalk call and one key-value write before the ticket.

use super::browser::{self, Purpose};
use super::{
    check_code, complete_profile, corp_param_failure, first_binding_rule, safe_return_to,
    spend_code_budget, LoginResult, LoginStep,
};
use crate::corps;
use crate::dingtalk::{contacts, Client, Endpoints};
use crate::env::Env;
use crate::failure::Failure;
use crate::model::{Identity, Via};
use crate::settings::{CorpApp, Settings};

/// The cookie that binds an in-app code exchange to the browser that loaded the JSAPI page.
pub const PAGE_COOKIE: &str = "__Host-dd_inapp";
/// How long the JSAPI page's cookie is honoured.
pub const PAGE_TTL_MS: u64 = 10 * 60_000;

/// An in-app login request as the router parsed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InappRequest {
    /// `corpId` (or `corpid`) from the workbench URL.
    pub corp_id: Option<String>,
    /// The JSAPI auth code, once the page came back with it.
    pub code: Option<String>,
    /// Where the platform should land the person afterwards.
    pub return_to: Option<String>,
    /// The browser's [`PAGE_COOKIE`], when it sent one.
    pub page_cookie: Option<String>,
}

/// The JSAPI page with a fresh cookie binding the coming code exchange to this browser.
/// `retry` tells the page a code came back without a valid cookie (so it does not loop).
fn jsapi_page(env: &mut dyn Env, app: &CorpApp, retry: bool) -> LoginStep {
    let value = browser::issue(
        env,
        &app.app_secret,
        Purpose::Inapp,
        &app.corp_id,
        PAGE_TTL_MS,
    );
    LoginStep::JsapiPage {
        corp_id: app.corp_id.clone(),
        client_id: app.app_key.clone(),
        set_cookie: browser::host_cookie(PAGE_COOKIE, &value, PAGE_TTL_MS / 1000),
        retry,
    }
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
        return Ok(jsapi_page(env, &app, false));
    };
    // Login CSRF: a code is exchanged only for the browser that loaded this corp's JSAPI page
    // moments ago. Anyone else (a link carrying a colleague's unused code) starts over, and
    // the page asks DingTalk for the code of whoever is actually using this browser.
    let bound = request.page_cookie.as_deref().is_some_and(|c| {
        browser::verify(
            &app.app_secret,
            Purpose::Inapp,
            &app.corp_id,
            c,
            env.now_ms(),
        )
        .is_some()
    });
    if !bound {
        env.log("in-app code without this browser's page cookie: serving the page again");
        return Ok(jsapi_page(env, &app, true));
    }
    check_code(
        &code,
        "The sign-in code in the address is malformed. Open the app from DingTalk again.",
        "地址中的登录授权码格式不正确，请从钉钉重新打开应用。",
    )?;
    let slot = spend_code_budget(env, settings)?;
    let endpoints = Endpoints::from_settings(settings);
    let person = {
        let mut client = Client::new(env, &endpoints, &app);
        contacts::user_info_by_code(&mut client, &code).map_err(|e| e.to_failure("qyapi_base"))?
    };
    let requires_sms_binding = first_binding_rule(env, settings, &app, &person.userid)?;
    let mut identity = Identity {
        corp_id: app.corp_id.clone(),
        userid: person.userid,
        unionid: person.unionid.unwrap_or_default(),
        name: person.name.unwrap_or_default(),
        mobile: None,
        email: None,
        avatar: None,
        dept_ids: Vec::new(),
        // 1 main admin, 2 sub-admin, 100 boss (docs/dingtalk-api.md §2.3).
        is_admin: person.sys || matches!(person.sys_level, 1 | 2 | 100),
        admin_level: person.sys_level,
        via,
        requires_sms_binding,
        return_to: safe_return_to(request.return_to),
    };
    complete_profile(&mut Client::new(env, &endpoints, &app), &mut identity)?;
    Ok(LoginStep::SignedIn(Box::new(identity), slot))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::tests::sample;
    use crate::testing::FakeEnv;
    use serde_json::json;

    fn script(env: &mut FakeEnv) {
        env.answer(
            "/topapi/v2/user/getuserinfo",
            json!({"errcode": 0, "result": {"userid": "u1", "name": "张三", "sys": false, "sys_level": 0}}),
        );
        env.answer(
            "/topapi/v2/user/get",
            json!({"errcode": 0, "result": {"userid": "u1", "name": "张三", "dept_id_list": [1]}}),
        );
    }

    fn request(code: Option<&str>, cookie: Option<String>) -> InappRequest {
        InappRequest {
            corp_id: Some("dingcorp123".into()),
            code: code.map(String::from),
            return_to: None,
            page_cookie: cookie,
        }
    }

    /// The cookie value from a JSAPI page step.
    fn page_cookie(step: &LoginStep) -> String {
        let LoginStep::JsapiPage { set_cookie, .. } = step else {
            panic!("expected the JSAPI page: {step:?}");
        };
        assert!(
            set_cookie.starts_with(&format!("{PAGE_COOKIE}=")),
            "{set_cookie}"
        );
        for attr in ["; Path=/;", "HttpOnly", "Secure", "SameSite=Lax"] {
            assert!(set_cookie.contains(attr), "{attr} in {set_cookie}");
        }
        set_cookie[PAGE_COOKIE.len() + 1..]
            .split(';')
            .next()
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_code_without_this_browsers_page_cookie_is_never_exchanged() {
        let mut env = FakeEnv::new();
        script(&mut env);
        let s = sample();
        // A forged, a token-shaped, an other-corp and an expired cookie: the page again.
        let mut other = s.clone();
        other.corp.corp_id = "dingother".into();
        let expired = browser::issue(
            &mut env,
            &s.corp.app_secret,
            Purpose::Inapp,
            "dingcorp123",
            1,
        );
        env.now += 2;
        let qr_kind = browser::issue(
            &mut env,
            &s.corp.app_secret,
            Purpose::Qr,
            "dingcorp123",
            60_000,
        );
        for cookie in [
            None,
            Some("a".repeat(48)),
            Some(expired),
            Some(qr_kind),
            Some("x.y.z".into()),
        ] {
            let step = sign_in(
                &mut env,
                &s,
                request(Some("colleaguecode"), cookie),
                Via::InappMobile,
            )
            .expect("the page again");
            assert!(
                matches!(step, LoginStep::JsapiPage { retry: true, .. }),
                "{step:?}"
            );
            let _ = page_cookie(&step);
        }
        assert!(
            env.requests.is_empty(),
            "no DingTalk call: {:?}",
            env.paths()
        );
    }

    #[test]
    fn the_browser_that_loaded_the_page_exchanges_its_code() {
        let mut env = FakeEnv::new();
        script(&mut env);
        let s = sample();
        let page = sign_in(&mut env, &s, request(None, None), Via::InappMobile).unwrap();
        assert!(matches!(page, LoginStep::JsapiPage { retry: false, .. }));
        let cookie = page_cookie(&page);
        assert!(!cookie.contains("app-secret"));
        env.now += PAGE_TTL_MS - 1;
        let step = sign_in(
            &mut env,
            &s,
            request(Some("code1"), Some(cookie.clone())),
            Via::InappPc,
        )
        .unwrap();
        let LoginStep::SignedIn(identity, _) = step else {
            panic!("signed in: {step:?}");
        };
        assert_eq!(identity.userid, "u1");
        assert_eq!(env.calls_to("/topapi/v2/user/getuserinfo"), 1);
        // Past its lifetime the cookie no longer binds.
        env.now += 2;
        let step = sign_in(
            &mut env,
            &s,
            request(Some("code2"), Some(cookie)),
            Via::InappPc,
        )
        .unwrap();
        assert!(matches!(step, LoginStep::JsapiPage { retry: true, .. }));
        assert_eq!(env.calls_to("/topapi/v2/user/getuserinfo"), 1);
    }

    #[test]
    fn a_bound_corps_first_inapp_login_needs_sms_binding_too() {
        let mut env = FakeEnv::new();
        script(&mut env);
        let mut s = sample();
        s.edition = crate::settings::Edition::Commercial;
        crate::kv::put_json(
            &mut env,
            "corp:dingB",
            &json!({"corp_id": "dingB", "corp_name": "乙", "agent_id": "2",
                "app_key": "dingappkeyB", "app_secret": "app-secret-of-b-123", "sso_secret": null}),
        )
        .unwrap();
        let request_b = |env: &mut FakeEnv, s: &Settings| {
            let b = s.clone();
            let page = sign_in(
                env,
                &b,
                InappRequest {
                    corp_id: Some("dingB".into()),
                    ..InappRequest::default()
                },
                Via::InappMobile,
            )
            .unwrap();
            let cookie = page_cookie(&page);
            sign_in(
                env,
                &b,
                InappRequest {
                    corp_id: Some("dingB".into()),
                    code: Some("code1".into()),
                    return_to: None,
                    page_cookie: Some(cookie),
                },
                Via::InappMobile,
            )
        };
        let off = request_b(&mut env, &s).unwrap_err();
        assert_eq!((off.status, off.code.as_str()), (403, "sms_required"));
        s.sms_enabled = true;
        let Ok(LoginStep::SignedIn(identity, _)) = request_b(&mut env, &s) else {
            panic!("signed in");
        };
        assert!(identity.requires_sms_binding);
        crate::login::confirm_binding(&mut env, "dingB", "u1").unwrap();
        let Ok(LoginStep::SignedIn(identity, _)) = request_b(&mut env, &s) else {
            panic!("signed in");
        };
        assert!(!identity.requires_sms_binding);
        // The configured corp never needs it.
        let page = sign_in(&mut env, &s, request(None, None), Via::InappMobile).unwrap();
        let step = sign_in(
            &mut env,
            &s,
            request(Some("c2"), Some(page_cookie(&page))),
            Via::InappPc,
        );
        assert!(matches!(step, Ok(LoginStep::SignedIn(ref i, _)) if !i.requires_sms_binding));
    }
}
