//! Login flows, each a function from a parsed request to a [`LoginStep`] or a [`Failure`]:
//! in-app free login (R1/R2, [`inapp`]), QR / browser login (R5 → R4, [`qr`]), admin-backend
//! SSO (R3, [`admin_sso`]), and the ticket hand-off that ends every successful login
//! ([`handoff`]). Flows never render: the router turns a step into a page, a redirect, a ticket
//! hand-off or a typed outcome (docs/http-contract.md §1–§3).

pub mod admin_sso;
pub mod browser;
pub mod handoff;
pub mod inapp;
pub mod qr;

pub use handoff::redeem_ticket;

use crate::dingtalk::{contacts, Client, Problem};
use crate::env::Env;
use crate::failure::Failure;
use crate::model::{CorpOption, Identity};
use crate::settings::{CorpApp, Edition, Settings};

/// Length in bytes of every random id a login flow issues (tickets, states, choices, bindings).
pub(crate) const ID_BYTES: usize = 24;

/// Where a login flow ended; the router renders it.
#[derive(Debug, Clone, PartialEq)]
pub enum LoginStep {
    /// The person is signed in: hand the identity off (ticket and redirect, or typed outcome).
    SignedIn(Box<Identity>),
    /// R1/R2 without a code: the page that asks DingTalk's JSAPI for an auth code.
    JsapiPage {
        /// The corp to ask the code for.
        corp_id: String,
        /// The app's AppKey (the JSAPI's `clientId`).
        client_id: String,
        /// The `set-cookie` value binding the coming code exchange to this browser.
        set_cookie: String,
        /// A code came back without this browser's cookie: the page asks again, once.
        retry: bool,
    },
    /// R5: off to DingTalk's login page, with a cookie binding the state to this browser.
    ToDingTalk {
        /// DingTalk's login page with client id, redirect URI and state.
        location: String,
        /// The `set-cookie` value binding the login to this browser.
        set_cookie: String,
    },
    /// R4 for a person who may enter several organisations: the choice to offer.
    ChooseCorp {
        /// The server-side, single-use record of this choice.
        choice_id: String,
        /// The organisations to pick from.
        options: Vec<CorpOption>,
    },
}

/// What every login flow returns.
pub type LoginResult = Result<LoginStep, Failure>;

/// DingTalk code exchanges (R1–R4) allowed per minute across every instance, so anonymous
/// well-formed junk codes cannot burn the corp's DingTalk API quota.
pub const CODE_EXCHANGES_PER_MINUTE: i64 = 600;

/// Counts one code exchange against this minute's budget ([`CODE_EXCHANGES_PER_MINUTE`]),
/// with an atomic increment shared by every instance; 429 past it.
pub(crate) fn spend_code_budget(env: &mut dyn Env) -> Result<(), Failure> {
    let minute = env.now_ms() / 60_000;
    let key = format!("budget:codes:{minute}");
    let n = env.kv_increment(&key, 1)?;
    if n == 1 {
        crate::kv::register_expiry(env, &key, (minute + 2) * 60_000)?;
    }
    if n > CODE_EXCHANGES_PER_MINUTE {
        return Err(Failure::new(
            429,
            "login_busy",
            "Too many DingTalk sign-ins are being attempted right now. Wait a minute and try again.",
            "当前钉钉登录请求过多，请稍候一分钟再试。",
        ));
    }
    Ok(())
}

/// Whether `s` has the shape of an id this plugin issues (48 hex digits).
pub(crate) fn is_token_shaped(s: &str) -> bool {
    s.len() == ID_BYTES * 2 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks a DingTalk one-time code as it may appear in a URL.
pub(crate) fn check_code(code: &str, en: &str, zh: &str) -> Result<(), Failure> {
    let ok = !code.is_empty()
        && code.len() <= 256
        && code.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'=' | b'+' | b'/')
        });
    if ok {
        Ok(())
    } else {
        Err(Failure::bad_request("code_malformed", en, zh))
    }
}

/// Keeps `return_to` only when it is a same-origin relative path.
pub fn safe_return_to(value: Option<String>) -> Option<String> {
    let v = value?;
    let ok = v.starts_with('/')
        && !v.starts_with("//")
        && !v.starts_with("/\\")
        && v.len() <= 1024
        && !v.chars().any(|c| c.is_control() || c == '\\');
    ok.then_some(v)
}

/// The failure for a workbench or admin URL without `corpId`.
pub(crate) fn corp_param_failure() -> Failure {
    Failure::bad_request(
        "corp_missing",
        "The address has no corpId. Open the app from the DingTalk workbench; the home page URL in the developer console must end with corpId=$CORPID$ (set-up step 5).",
        "地址中缺少 corpId。请从钉钉工作台打开应用；开发者后台中的应用首页地址须以 corpId=$CORPID$ 结尾（步骤 5）。",
    )
}

/// The key recording that the platform completed a first-time binding of this member.
fn known_binding_key(corp_id: &str, userid: &str) -> String {
    format!("bound:{corp_id}:{userid}")
}

/// Records that the platform completed a first-time binding (after its SMS verification).
pub fn confirm_binding(env: &mut dyn Env, corp_id: &str, userid: &str) -> Result<(), Failure> {
    env.kv_set(&known_binding_key(corp_id, userid), b"1")?;
    Ok(())
}

/// The commercial edition's first-time binding rule: a member of a bound corp other than the
/// configured one who has not been bound before needs SMS verification by the platform.
/// Returns whether the identity must carry `requires_sms_binding`.
pub(crate) fn first_binding_rule(
    env: &mut dyn Env,
    settings: &Settings,
    app: &CorpApp,
    userid: &str,
) -> Result<bool, Failure> {
    if settings.edition != Edition::Commercial || app.corp_id == settings.corp.corp_id {
        return Ok(false);
    }
    if env
        .kv_get(&known_binding_key(&app.corp_id, userid))?
        .is_some()
    {
        return Ok(false);
    }
    if !settings.sms_enabled {
        return Err(Failure::new(
            403,
            "sms_required",
            "Binding a DingTalk account of this organisation for the first time needs SMS verification, which is not set up. The platform admin must configure SMS (短信设置) and switch on sms_enabled.",
            "首次绑定该组织的钉钉账号需要短信验证，但平台尚未配置短信。请平台管理员完成【短信设置】并开启 sms_enabled。",
        ));
    }
    Ok(true)
}

/// Completes an identity from the member's record in `app`'s own org (`topapi/v2/user/get`):
/// name, departments, org email, mobile, avatar, admin flag. Only the org's own record is
/// trusted (never the cross-org account profile). A missing permission degrades the identity
/// (no departments) instead of failing the login.
pub(crate) fn enrich(client: &mut Client<'_>, identity: &mut Identity) -> Result<(), Failure> {
    let record = match contacts::user_get(client, &identity.userid) {
        Ok(record) => record,
        Err(e)
            if matches!(
                e.problem(),
                Problem::MissingPermission | Problem::OutOfScope
            ) =>
        {
            client.env().log(
                "user detail skipped: the app lacks qyapi_get_member; identity has no departments",
            );
            return Ok(());
        }
        Err(e) => return Err(e.to_failure("qyapi_get_member")),
    };
    if let Some(name) = record.name.clone() {
        identity.name = name;
    }
    if identity.unionid.is_empty() {
        identity.unionid = record.unionid.clone().unwrap_or_default();
    }
    identity.email = record.login_email().map(String::from);
    identity.mobile = record.mobile;
    identity.avatar = record.avatar;
    identity.dept_ids = record.dept_ids;
    identity.is_admin = identity.is_admin || record.admin.unwrap_or(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_must_be_same_origin_path() {
        assert_eq!(
            safe_return_to(Some("/forms/1?x=2".into())).as_deref(),
            Some("/forms/1?x=2")
        );
        for bad in [
            "//evil.com",
            "https://evil.com",
            "/\\evil.com",
            "evil",
            "/a\nb",
            "/a\\b",
            "",
        ] {
            assert_eq!(safe_return_to(Some(bad.into())), None, "{bad}");
        }
    }

    #[test]
    fn code_exchanges_have_a_budget_per_minute() {
        let mut env = crate::testing::FakeEnv::new();
        env.now = 60_000 * 1_000_000 + 5_000;
        for _ in 0..CODE_EXCHANGES_PER_MINUTE {
            spend_code_budget(&mut env).expect("within the budget");
        }
        let over = spend_code_budget(&mut env).unwrap_err();
        assert_eq!((over.status, over.code.as_str()), (429, "login_busy"));
        // The counter is one key per minute, registered for the sweep.
        assert!(env.kv.contains_key("budget:codes:1000000"));
        env.now += 60_000;
        assert!(
            spend_code_budget(&mut env).is_ok(),
            "a new minute, a new budget"
        );
    }

    #[test]
    fn every_code_route_spends_the_budget_before_calling_dingtalk() {
        use crate::settings::tests::sample;
        let mut env = crate::testing::FakeEnv::new();
        env.answer("/v1.0/oauth2/ssoUserInfo", serde_json::json!({}));
        for _ in 0..CODE_EXCHANGES_PER_MINUTE {
            spend_code_budget(&mut env).unwrap();
        }
        let s = sample();
        let r = admin_sso::sign_in(
            &mut env,
            &s,
            admin_sso::AdminSsoRequest {
                corp_id: Some("dingcorp123".into()),
                code: Some("junkcode".into()),
                return_to: None,
            },
        );
        assert_eq!(r.unwrap_err().status, 429);
        let cookie = browser::issue(
            &mut env,
            &s.corp.app_secret,
            browser::Purpose::Inapp,
            "dingcorp123",
            60_000,
        );
        let r = inapp::sign_in(
            &mut env,
            &s,
            inapp::InappRequest {
                corp_id: Some("dingcorp123".into()),
                code: Some("junkcode".into()),
                return_to: None,
                page_cookie: Some(cookie),
            },
            crate::model::Via::InappMobile,
        );
        assert_eq!(r.unwrap_err().status, 429);
        assert!(
            env.requests.is_empty(),
            "no DingTalk call: {:?}",
            env.paths()
        );
    }

    #[test]
    fn codes_are_checked_for_url_shape() {
        assert!(check_code("abc-DEF_1.2~=+/", "", "").is_ok());
        for bad in ["", "a b", "a&b", "<x>"] {
            assert_eq!(
                check_code(bad, "e", "z").unwrap_err().code,
                "code_malformed"
            );
        }
        assert!(check_code(&"a".repeat(257), "", "").is_err());
    }
}
