//! QR / browser login: R5 starts it (a single-use `state` bound to this browser by a cookie,
//! then DingTalk's login page), R4 is DingTalk's callback (the state, then code → user token →
//! unionId → userid in each candidate corp), and a person in several corps picks one.

use super::browser::{self, Purpose};
use super::{
    check_code, enrich, first_binding_rule, is_token_shaped, safe_return_to, spend_code_budget,
    LoginResult, LoginStep, ID_BYTES,
};
use crate::corps;
use crate::dingtalk::{contacts, oauth, Client, Endpoints};
use crate::env::{random_id, Env};
use crate::failure::Failure;
use crate::kv;
use crate::model::{CorpOption, Identity, Via};
use crate::secret::PlatformToken;
use crate::settings::{CorpApp, Settings};
use serde::{Deserialize, Serialize};

/// OAuth `state` lives this long.
pub const STATE_TTL_MS: u64 = 10 * 60_000;
/// A corp choice lives this long.
pub const CHOICE_TTL_MS: u64 = 5 * 60_000;
/// The cookie that binds a QR login to the browser that started it. `__Host-`: `Secure`,
/// `Path=/`, no `Domain`, so a sibling subdomain cannot plant one.
pub const BINDING_COOKIE: &str = "__Host-dd_login";
/// How long a binding cookie (and the binding id it carries) lives.
pub const BINDING_TTL_MS: u64 = 6 * STATE_TTL_MS;

/// R5 as the router parsed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartRequest {
    /// The organisation to log in to (`corpId`), when the platform named one.
    pub corp_id: Option<String>,
    /// Where the platform should land the person afterwards.
    pub return_to: Option<String>,
    /// The browser's binding cookie, when it has one.
    pub binding_cookie: Option<String>,
}

/// R4 (DingTalk's callback) as the router parsed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackRequest {
    /// The `state` R5 issued.
    pub state: Option<String>,
    /// `authCode`, else `code`.
    pub code: Option<String>,
    /// DingTalk's `error` when the person refused.
    pub error: Option<String>,
    /// The browser's binding cookie.
    pub binding_cookie: Option<String>,
}

/// The person's pick on the corp list, as the router parsed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChoiceRequest {
    /// The choice record's id.
    pub choice_id: String,
    /// The corp picked.
    pub corp_id: String,
    /// The browser's binding cookie.
    pub binding_cookie: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct LoginState {
    corp_id: Option<String>,
    return_to: Option<String>,
    binding: String,
}

#[derive(Serialize, Deserialize)]
struct Choice {
    binding: String,
    unionid: String,
    return_to: Option<String>,
    members: Vec<(String, String)>,
}

/// The binding id for this browser: the one it presents when the plugin signed it and it
/// outlives the new state (so several tabs share one), else a fresh signed one. An id the
/// plugin did not issue (planted by another site or subdomain) is never adopted.
fn binding_for(env: &mut dyn Env, settings: &Settings, presented: Option<String>) -> String {
    let secret = &settings.corp.app_secret;
    let corp = settings.corp.corp_id.as_str();
    let now = env.now_ms();
    presented
        .filter(|b| {
            browser::verify(secret, Purpose::Qr, corp, b, now)
                .is_some_and(|exp| exp > now + STATE_TTL_MS)
        })
        .unwrap_or_else(|| browser::issue(env, secret, Purpose::Qr, corp, BINDING_TTL_MS))
}

fn qr_disabled() -> Failure {
    Failure::new(
        403,
        "qr_login_disabled",
        "DingTalk QR login is switched off. The platform admin must switch on DingTalk QR login under 站点配置 → 注册登录 (set-up step 11).",
        "钉钉扫码登录未开启。请平台管理员在【站点配置】→【注册登录】中开启钉钉扫码登录（步骤 11）。",
    )
}

/// R5: a fresh single-use `state` bound to this browser, then off to DingTalk's login page.
pub fn start(env: &mut dyn Env, settings: &Settings, request: StartRequest) -> LoginResult {
    if !settings.qr_login_enabled {
        return Err(qr_disabled());
    }
    let app = corps::resolve(env, settings, request.corp_id.as_deref())?;
    let binding = binding_for(env, settings, request.binding_cookie);
    let state = random_id(env, ID_BYTES);
    let record = LoginState {
        corp_id: request.corp_id.is_some().then(|| app.corp_id.clone()),
        return_to: safe_return_to(request.return_to),
        binding: binding.clone(),
    };
    let expires = env.now_ms() + STATE_TTL_MS;
    kv::put_expiring(env, &format!("state:{state}"), &record, expires)?;
    let redirect_uri = settings.site_path("/dingding/dd_or_code_corp_list");
    let scope = if record.corp_id.is_some() {
        "openid corpid"
    } else {
        "openid"
    };
    let mut pairs = vec![
        ("redirect_uri", redirect_uri.as_str()),
        ("response_type", "code"),
        ("client_id", app.app_key.as_str()),
        ("scope", scope),
        ("state", state.as_str()),
        ("prompt", "consent"),
    ];
    if let Some(c) = record.corp_id.as_deref() {
        pairs.push(("corpId", c));
    }
    Ok(LoginStep::ToDingTalk {
        location: super::handoff::with_query(
            &format!("{}/oauth2/auth", settings.login_base_url),
            &pairs,
        ),
        set_cookie: browser::host_cookie(BINDING_COOKIE, &binding, BINDING_TTL_MS / 1000),
    })
}

fn state_failure(code: &str, en: &str, zh: &str) -> Failure {
    Failure::bad_request(code, en, zh)
}

/// Verifies and consumes `state` against the browser's binding cookie.
fn consume_state(
    env: &mut dyn Env,
    state: Option<&str>,
    cookie: Option<&str>,
) -> Result<LoginState, Failure> {
    let Some(state) = state else {
        return Err(state_failure(
            "state_missing",
            "The sign-in link is incomplete (no state). Start the DingTalk sign-in again from the platform's login page.",
            "登录链接不完整（缺少 state），请从平台登录页重新发起钉钉登录。",
        ));
    };
    let expired = || {
        state_failure(
            "state_invalid",
            "This sign-in link has expired or was already used. Start the DingTalk sign-in again from the platform's login page.",
            "该登录链接已过期或已被使用，请从平台登录页重新发起钉钉登录。",
        )
    };
    if !is_token_shaped(state) {
        return Err(expired());
    }
    let Some(cookie) = cookie else {
        return Err(state_failure(
            "state_cookie_missing",
            "This browser did not start this sign-in (its sign-in cookie is missing). Start again in the same browser, and allow cookies for this site.",
            "此浏览器没有发起该登录（缺少登录 Cookie）。请在同一浏览器中重新发起，并允许本站使用 Cookie。",
        ));
    };
    let key = format!("state:{state}");
    let Some(record) = kv::get_live::<LoginState>(env, &key)? else {
        return Err(expired());
    };
    if !PlatformToken::new(record.binding.clone()).matches(cookie) {
        return Err(state_failure(
            "state_mismatch",
            "This sign-in was started in another browser. Start the DingTalk sign-in again here.",
            "该登录由其他浏览器发起，请在此浏览器中重新发起钉钉登录。",
        ));
    }
    let expires = env.now_ms() + STATE_TTL_MS;
    if !kv::claim(env, &format!("claim:state:{state}"), expires)? {
        return Err(expired());
    }
    let _ = env.kv_delete(&key);
    Ok(record)
}

/// The person's unionId from a QR/OAuth code: `userAccessToken`, then `users/me`. Only the
/// unionId is taken from the account profile; everything else comes from the org's own record.
fn unionid_from_code(client: &mut Client<'_>, code: &str) -> Result<String, Failure> {
    let user_token =
        oauth::user_token(client, code).map_err(|e| e.to_failure("open_app_api_base"))?;
    let me = oauth::me(client, &user_token).map_err(|e| e.to_failure("Contact.User.Read"))?;
    Ok(me.union_id)
}

/// R4: `state` check, code → user token → unionId → userid per candidate corp → identity, or
/// the corp choice when the person is a member of several.
pub fn callback(env: &mut dyn Env, settings: &Settings, request: CallbackRequest) -> LoginResult {
    if let Some(error) = request.error {
        // Consume the state so the link cannot be reused; the outcome is the same either way.
        let _ = consume_state(
            env,
            request.state.as_deref(),
            request.binding_cookie.as_deref(),
        );
        let shown: String = error.chars().take(64).collect();
        return Err(Failure::new(
            403,
            "login_cancelled",
            format!("DingTalk sign-in was cancelled ({shown}). Start it again from the platform's login page if you want to sign in."),
            format!("钉钉登录已取消（{shown}）。如需登录，请从平台登录页重新发起。"),
        ));
    }
    if !settings.qr_login_enabled {
        return Err(qr_disabled());
    }
    let state = consume_state(
        env,
        request.state.as_deref(),
        request.binding_cookie.as_deref(),
    )?;
    let code = request.code.ok_or_else(|| {
        Failure::bad_request(
            "code_missing",
            "DingTalk did not pass an authorization code. Start the DingTalk sign-in again.",
            "钉钉未返回授权码，请重新发起钉钉登录。",
        )
    })?;
    check_code(
        &code,
        "The authorization code is malformed. Start the DingTalk sign-in again.",
        "授权码格式不正确，请重新发起钉钉登录。",
    )?;
    let login_app = corps::resolve(env, settings, state.corp_id.as_deref())?;
    spend_code_budget(env)?;
    let endpoints = Endpoints::from_settings(settings);
    let unionid = unionid_from_code(&mut Client::new(env, &endpoints, &login_app), &code)?;
    let candidates = match &state.corp_id {
        Some(_) => vec![login_app],
        None => corps::all(env, settings)?,
    };
    let mut members: Vec<(CorpApp, String)> = Vec::new();
    let mut last_error = None;
    for app in candidates {
        match contacts::userid_by_unionid(&mut Client::new(env, &endpoints, &app), &unionid) {
            Ok(Some(userid)) => members.push((app, userid)),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
    }
    if members.is_empty() {
        if let Some(e) = last_error {
            return Err(e.to_failure("qyapi_get_member"));
        }
        return Err(Failure::new(
            403,
            "not_a_member",
            "Your DingTalk account is not a member of any organisation bound to this platform (60121). Ask your organisation's admin to add you in DingTalk, or sign in another way.",
            "您的钉钉账号不是本平台所绑定任何组织的成员（60121）。请联系组织管理员在钉钉中添加您，或使用其他方式登录。",
        ));
    }
    if members.len() == 1 {
        let (app, userid) = members.remove(0);
        return finish(env, settings, &app, &userid, &unionid, state.return_to);
    }
    // Several corps: remember the candidates server-side, bound to this browser, single-use.
    let choice_id = random_id(env, ID_BYTES);
    let options: Vec<CorpOption> = members
        .iter()
        .map(|(app, _)| CorpOption {
            corp_id: app.corp_id.clone(),
            corp_name: app.corp_name.clone(),
        })
        .collect();
    let choice = Choice {
        binding: state.binding,
        unionid,
        return_to: state.return_to,
        members: members.into_iter().map(|(a, u)| (a.corp_id, u)).collect(),
    };
    let expires = env.now_ms() + CHOICE_TTL_MS;
    kv::put_expiring(env, &format!("choice:{choice_id}"), &choice, expires)?;
    Ok(LoginStep::ChooseCorp { choice_id, options })
}

/// The person picked a corp on the list: verify the choice is theirs and unused, then sign in.
pub fn choose(env: &mut dyn Env, settings: &Settings, request: ChoiceRequest) -> LoginResult {
    let invalid = || {
        state_failure(
            "choice_invalid",
            "This choice has expired or was already used. Start the DingTalk sign-in again.",
            "该选择已过期或已被使用，请重新发起钉钉登录。",
        )
    };
    if !is_token_shaped(&request.choice_id) {
        return Err(invalid());
    }
    let key = format!("choice:{}", request.choice_id);
    let Some(choice) = kv::get_live::<Choice>(env, &key)? else {
        return Err(invalid());
    };
    let cookie = request.binding_cookie.unwrap_or_default();
    if !PlatformToken::new(choice.binding.clone()).matches(&cookie) {
        return Err(state_failure(
            "choice_mismatch",
            "This choice belongs to another browser. Start the DingTalk sign-in again here.",
            "该选择属于其他浏览器，请在此浏览器中重新发起钉钉登录。",
        ));
    }
    let Some((_, userid)) = choice.members.iter().find(|(c, _)| *c == request.corp_id) else {
        return Err(state_failure(
            "choice_not_offered",
            "That organisation was not one of the choices. Pick one from the list.",
            "该组织不在可选列表中，请从列表中选择。",
        ));
    };
    let expires = env.now_ms() + CHOICE_TTL_MS;
    if !kv::claim(env, &format!("claim:choice:{}", request.choice_id), expires)? {
        return Err(invalid());
    }
    let _ = env.kv_delete(&key);
    let app = corps::resolve(env, settings, Some(&request.corp_id))?;
    finish(
        env,
        settings,
        &app,
        userid,
        &choice.unionid,
        choice.return_to.clone(),
    )
}

fn finish(
    env: &mut dyn Env,
    settings: &Settings,
    app: &CorpApp,
    userid: &str,
    unionid: &str,
    return_to: Option<String>,
) -> LoginResult {
    let requires_sms_binding = first_binding_rule(env, settings, app, userid)?;
    let mut identity = Identity {
        corp_id: app.corp_id.clone(),
        userid: userid.to_string(),
        unionid: unionid.to_string(),
        name: String::new(),
        mobile: None,
        email: None,
        avatar: None,
        dept_ids: Vec::new(),
        is_admin: false,
        admin_level: 0,
        via: Via::Qr,
        requires_sms_binding,
        return_to,
    };
    let endpoints = Endpoints::from_settings(settings);
    enrich(&mut Client::new(env, &endpoints, app), &mut identity)?;
    Ok(LoginStep::SignedIn(Box::new(identity)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::tests::sample;
    use crate::testing::FakeEnv;

    #[test]
    fn start_off_is_403_and_on_redirects_with_state_cookie() {
        let mut env = FakeEnv::new();
        let mut s = sample();
        let req = StartRequest {
            return_to: Some("//evil.com".into()),
            ..StartRequest::default()
        };
        assert_eq!(start(&mut env, &s, req.clone()).unwrap_err().status, 403);
        s.qr_login_enabled = true;
        let Ok(LoginStep::ToDingTalk {
            location,
            set_cookie,
        }) = start(&mut env, &s, req)
        else {
            panic!("expected a redirect to DingTalk");
        };
        assert!(location.starts_with("https://login.dingtalk.com/oauth2/auth?"));
        assert!(location.contains("client_id=dingappkey123"));
        assert!(location.contains("prompt=consent"));
        assert!(location.contains(
            "redirect_uri=https%3A%2F%2Fforms.example.com%2Fdingding%2Fdd_or_code_corp_list"
        ));
        assert!(
            set_cookie.contains("HttpOnly")
                && set_cookie.contains("Secure")
                && set_cookie.contains("SameSite=Lax")
        );
        assert!(!location.contains("evil"));
        assert!(
            set_cookie.starts_with("__Host-dd_login=") && set_cookie.contains("; Path=/;"),
            "{set_cookie}"
        );
        assert!(!set_cookie.to_ascii_lowercase().contains("domain="));
    }

    fn started(env: &mut FakeEnv, s: &Settings, cookie: Option<String>) -> (String, String) {
        let req = StartRequest {
            binding_cookie: cookie,
            ..StartRequest::default()
        };
        let Ok(LoginStep::ToDingTalk {
            location,
            set_cookie,
        }) = start(env, s, req)
        else {
            panic!("expected a redirect to DingTalk");
        };
        let value = set_cookie[BINDING_COOKIE.len() + 1..]
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let state = location
            .split("state=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .to_string();
        (value, state)
    }

    #[test]
    fn a_binding_the_plugin_did_not_issue_is_never_adopted() {
        let mut env = FakeEnv::new();
        let mut s = sample();
        s.qr_login_enabled = true;
        // Cookie tossing: an attacker plants a token-shaped binding, then would use a state
        // bound to it. The plugin issues its own instead.
        let planted = "ab".repeat(24);
        let (issued, state) = started(&mut env, &s, Some(planted.clone()));
        assert_ne!(issued, planted);
        assert!(browser::verify(
            &s.corp.app_secret,
            Purpose::Qr,
            "dingcorp123",
            &issued,
            env.now
        )
        .is_some());
        let planted_fails = consume_state(&mut env, Some(&state), Some(&planted));
        assert_eq!(
            planted_fails.err().map(|f| f.code),
            Some("state_mismatch".into())
        );
        // A second tab of the same browser keeps its (signed, live) binding.
        let (again, state2) = started(&mut env, &s, Some(issued.clone()));
        assert_eq!(again, issued);
        assert!(consume_state(&mut env, Some(&state2), Some(&issued)).is_ok());
        // A binding near its end is replaced, so it outlives the state it binds.
        env.now += BINDING_TTL_MS - STATE_TTL_MS;
        let (renewed, _) = started(&mut env, &s, Some(issued.clone()));
        assert_ne!(renewed, issued);
    }
}
