//! QR / browser login. R5 starts it: in the commercial edition without `corpId` the person
//! first picks the organisation (the picker page), since an internal app logs in only its own
//! corp's members and a unionid means something only inside one corp's app (DESIGN §3,
//! docs/dingtalk-api.md §13.1). With the corp known, R5 issues a single-use `state` bound to
//! that corp and to this browser (a `__Host-` cookie) and sends the browser to DingTalk's login
//! page with that corp's own app. R4 is DingTalk's callback: the state names the corp, then code
//! → user token → unionId → userid in that corp (never a search across corps) → identity.

use super::browser::{self, Purpose};
use super::{
    check_code, complete_profile, corp_options, first_binding_rule, safe_return_to,
    spend_code_budget, LoginResult, LoginStep,
};
use crate::corps;
use crate::dingtalk::{contacts, oauth, Client, Endpoints};
use crate::env::{random_id, Env};
use crate::failure::Failure;
use crate::model::{Identity, Via};
use crate::secret::PlatformToken;
use crate::settings::{Edition, Settings};
use serde::{Deserialize, Serialize};

/// OAuth `state` lives this long.
pub const STATE_TTL_MS: u64 = 10 * 60_000;
/// The cookie that binds a QR login to the browser that started it. `__Host-`: `Secure`,
/// `Path=/`, no `Domain`, so a sibling subdomain cannot plant one.
pub const BINDING_COOKIE: &str = "__Host-dd_login";
/// How long a binding cookie (and the binding id it carries) lives.
pub const BINDING_TTL_MS: u64 = 6 * STATE_TTL_MS;

/// R5 as the router parsed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartRequest {
    /// The organisation to log in to (`corpId`), when the platform or the picker named one.
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

/// A state's record, signed into the state itself: the corp whose app the login goes through,
/// where to land, the browser binding's check value, a nonce, and the expiry.
#[derive(Serialize, Deserialize)]
struct LoginState {
    #[serde(rename = "c")]
    corp_id: String,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    return_to: Option<String>,
    #[serde(rename = "b")]
    binding: String,
    #[serde(rename = "n")]
    nonce: String,
    #[serde(rename = "e")]
    expires_ms: u64,
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

/// R5: the organisation picker (commercial edition, no `corpId`, several corps served), else a
/// fresh `state` bound to the corp and this browser, then off to DingTalk's login page with that
/// corp's app. No key-value write: the state is signed and carries its own record
/// ([`LoginState`]), so an anonymous page view costs the store nothing.
pub fn start(env: &mut dyn Env, settings: &Settings, request: StartRequest) -> LoginResult {
    if !settings.qr_login_enabled {
        return Err(qr_disabled());
    }
    let named = request
        .corp_id
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    if named.is_none() && settings.edition == Edition::Commercial {
        let apps = corps::all(env, settings)?;
        if apps.len() > 1 {
            return Ok(LoginStep::PickCorp {
                options: corp_options(&apps),
                return_to: safe_return_to(request.return_to),
            });
        }
    }
    let app = corps::resolve(env, settings, named)?;
    let binding = binding_for(env, settings, request.binding_cookie);
    let record = LoginState {
        corp_id: app.corp_id.clone(),
        return_to: safe_return_to(request.return_to),
        binding: binding_check(&binding),
        nonce: random_id(env, 8),
        expires_ms: env.now_ms() + STATE_TTL_MS,
    };
    // Strings and a number always serialise; an empty payload would only fail closed at R4.
    let payload = serde_json::to_vec(&record).unwrap_or_default();
    let state = browser::sign(&settings.corp.app_secret, Purpose::QrState, &payload);
    let redirect_uri = settings.site_path("/dingding/dd_or_code_corp_list");
    let pairs = [
        ("redirect_uri", redirect_uri.as_str()),
        ("response_type", "code"),
        ("client_id", app.app_key.as_str()),
        ("scope", "openid corpid"),
        ("state", state.as_str()),
        ("prompt", "consent"),
        ("corpId", app.corp_id.as_str()),
    ];
    Ok(LoginStep::ToDingTalk {
        location: super::handoff::with_query(
            &format!("{}/oauth2/auth", settings.login_base_url),
            &pairs,
        ),
        set_cookie: browser::host_cookie(BINDING_COOKIE, &binding, BINDING_TTL_MS / 1000),
    })
}

/// What a state records of the browser's binding: a SHA-256 prefix (hex), so the state, which
/// passes through DingTalk and the address bar, never carries the cookie's value.
fn binding_check(binding: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(binding.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A `Set-Cookie` value that removes the binding cookie: sent with every R4 answer (signed in,
/// cancelled or failed), so the browser cannot present the same state again (its one use,
/// RFC 9700 §4.7.1).
pub fn clear_binding_cookie() -> String {
    browser::host_cookie(BINDING_COOKIE, "", 0)
}

fn state_failure(code: &str, en: &str, zh: &str) -> Failure {
    Failure::bad_request(code, en, zh)
}

/// The longest `state` accepted: the signed record with a 1,024-byte `return_to`, in base64.
const STATE_MAX_LEN: usize = 2_048;

/// Verifies `state` against the browser's binding cookie. No key-value work: the state is a
/// signed record; its one use is the browser's (R4 clears the binding cookie) and
/// DingTalk's (an authorization code is accepted once).
/// R4's answer always clears the binding cookie ([`clear_binding_cookie`]).
fn verify_state(
    env: &mut dyn Env,
    settings: &Settings,
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
    let record = browser::open(
        &settings.corp.app_secret,
        Purpose::QrState,
        state,
        STATE_MAX_LEN,
    )
    .and_then(|payload| serde_json::from_slice::<LoginState>(&payload).ok())
    .filter(|r| r.expires_ms > env.now_ms())
    .ok_or_else(expired)?;
    let Some(cookie) = cookie else {
        return Err(state_failure(
            "state_cookie_missing",
            "This browser did not start this sign-in, or already finished it (its sign-in cookie is missing). Start again in the same browser, and allow cookies for this site.",
            "此浏览器没有发起该登录或已完成该登录（缺少登录 Cookie）。请在同一浏览器中重新发起，并允许本站使用 Cookie。",
        ));
    };
    if !PlatformToken::new(record.binding.clone()).matches(&binding_check(cookie)) {
        return Err(state_failure(
            "state_mismatch",
            "This sign-in was started in another browser. Start the DingTalk sign-in again here.",
            "该登录由其他浏览器发起，请在此浏览器中重新发起钉钉登录。",
        ));
    }
    Ok(record)
}

/// The person's unionId under the login corp's app: `userAccessToken`, then `users/me`. Only
/// the unionId is taken from the account profile; everything else comes from the org's record.
fn unionid_from_code(client: &mut Client<'_>, code: &str) -> Result<String, Failure> {
    let user_token =
        oauth::user_token(client, code).map_err(|e| e.to_failure("open_app_api_base"))?;
    let me = oauth::me(client, &user_token).map_err(|e| e.to_failure("Contact.User.Read"))?;
    Ok(me.union_id)
}

fn not_a_member(corp_name: &str) -> Failure {
    Failure::new(
        403,
        "not_a_member",
        format!("Your DingTalk account is not a member of {corp_name} (60121). Ask the organisation's admin to add you in DingTalk, pick your own organisation, or sign in another way."),
        format!("您的钉钉账号不是 {corp_name} 的成员（60121）。请联系该组织管理员在钉钉中添加您、选择您所在的组织，或使用其他方式登录。"),
    )
}

/// R4: the state (which names the corp), then code → user token → unionId → userid in that
/// corp → identity. Warm: three DingTalk calls (`userAccessToken`, `users/me`,
/// `getbyunionid`); the profile comes from the directory mirror.
pub fn callback(env: &mut dyn Env, settings: &Settings, request: CallbackRequest) -> LoginResult {
    if let Some(error) = request.error {
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
    let state = verify_state(
        env,
        settings,
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
    // The corp the state was issued for (it may have been unbound since: then 403).
    let app = corps::resolve(env, settings, Some(&state.corp_id))?;
    let slot = spend_code_budget(env, settings)?;
    let endpoints = Endpoints::from_settings(settings);
    let (unionid, userid) = {
        let mut client = Client::new(env, &endpoints, &app);
        let unionid = unionid_from_code(&mut client, &code)?;
        let userid = contacts::userid_by_unionid(&mut client, &unionid)
            .map_err(|e| e.to_failure("qyapi_get_member"))?;
        (unionid, userid)
    };
    let Some(userid) = userid else {
        let name = if app.corp_name.is_empty() {
            app.corp_id.clone()
        } else {
            app.corp_name.clone()
        };
        return Err(not_a_member(&name));
    };
    let requires_sms_binding = first_binding_rule(env, settings, &app, &userid)?;
    let mut identity = Identity {
        corp_id: app.corp_id.clone(),
        userid,
        unionid,
        name: String::new(),
        mobile: None,
        email: None,
        avatar: None,
        dept_ids: Vec::new(),
        is_admin: false,
        admin_level: 0,
        via: Via::Qr,
        requires_sms_binding,
        return_to: state.return_to,
    };
    complete_profile(&mut Client::new(env, &endpoints, &app), &mut identity)?;
    Ok(LoginStep::SignedIn(Box::new(identity), slot))
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
        let planted_fails = verify_state(&mut env, &s, Some(&state), Some(&planted));
        assert_eq!(
            planted_fails.err().map(|f| f.code),
            Some("state_mismatch".into())
        );
        // A second tab of the same browser keeps its (signed, live) binding.
        let (again, state2) = started(&mut env, &s, Some(issued.clone()));
        assert_eq!(again, issued);
        assert!(verify_state(&mut env, &s, Some(&state2), Some(&issued)).is_ok());
        // A binding near its end is replaced, so it outlives the state it binds.
        env.now += BINDING_TTL_MS - STATE_TTL_MS;
        let (renewed, _) = started(&mut env, &s, Some(issued.clone()));
        assert_ne!(renewed, issued);
    }

    #[test]
    fn a_state_is_signed_expires_and_carries_no_cookie_value() {
        let mut env = FakeEnv::new();
        let mut s = sample();
        s.qr_login_enabled = true;
        let (cookie, state) = started(&mut env, &s, None);
        assert!(!state.contains(&cookie) && !state.contains("app-secret"));
        assert_eq!(env.kv.len(), 0, "R5 writes nothing");
        let ok = verify_state(&mut env, &s, Some(&state), Some(&cookie)).ok();
        assert_eq!(ok.map(|r| r.corp_id), Some("dingcorp123".to_string()));
        // Altered (one character of the payload), signed under another AppSecret, or expired.
        let mut altered = state.clone().into_bytes();
        altered[3] = if altered[3] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        let mut other = sample();
        other.qr_login_enabled = true;
        other.corp.app_secret = crate::secret::AppSecret::new("a-different-app-secret-1");
        let (_, foreign) = started(&mut env, &other, None);
        for bad in [
            altered.as_str(),
            foreign.as_str(),
            &state[..state.len() - 1],
        ] {
            let refused = verify_state(&mut env, &s, Some(bad), Some(&cookie));
            assert_eq!(refused.err().map(|f| f.code), Some("state_invalid".into()));
        }
        env.now += STATE_TTL_MS;
        let expired = verify_state(&mut env, &s, Some(&state), Some(&cookie));
        assert_eq!(expired.err().map(|f| f.code), Some("state_invalid".into()));
    }

    /// Commercial settings with SMS ready and corp `dingB` bound (its record as `corps` stores it).
    fn commercial_with_b(env: &mut FakeEnv) -> Settings {
        let mut s = sample();
        s.qr_login_enabled = true;
        s.edition = Edition::Commercial;
        s.sms_enabled = true;
        crate::kv::put_json(
            env,
            "corp:dingB",
            &serde_json::json!({"corp_id": "dingB", "corp_name": "乙公司", "agent_id": "2",
                "app_key": "dingappkeyB", "app_secret": "app-secret-of-b-123", "sso_secret": null}),
        )
        .unwrap();
        env.kv_increment("corps:n", 1).unwrap();
        env.kv_set("corps:slot:1", b"dingB").unwrap();
        s
    }

    fn script_b(env: &mut FakeEnv) {
        use serde_json::json;
        env.answer(
            "/v1.0/oauth2/userAccessToken",
            json!({"accessToken": "ut", "expireIn": 7200}),
        );
        env.answer(
            "/v1.0/contact/users/me",
            json!({"unionId": "unB", "nick": "S"}),
        );
        env.answer(
            "/topapi/user/getbyunionid",
            json!({"errcode": 0, "result": {"contact_type": 0, "userid": "solo"}}),
        );
        env.answer(
            "/topapi/v2/user/get",
            json!({"errcode": 0, "result": {"userid": "solo", "name": "独行", "dept_id_list": [1]}}),
        );
    }

    fn state_of(location: &str) -> String {
        location
            .split("state=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .to_string()
    }

    #[test]
    fn commercial_without_corp_is_the_picker_and_self_use_goes_straight_on() {
        let mut env = FakeEnv::new();
        let s = commercial_with_b(&mut env);
        let step = start(&mut env, &s, StartRequest::default()).unwrap();
        let LoginStep::PickCorp { options, .. } = step else {
            panic!("the picker: {step:?}");
        };
        let ids: Vec<&str> = options.iter().map(|o| o.corp_id.as_str()).collect();
        assert_eq!(ids, ["dingcorp123", "dingB"]);
        assert_eq!(options[1].corp_name, "乙公司");
        let mut self_use = s.clone();
        self_use.edition = Edition::SelfUse;
        assert!(matches!(
            start(&mut env, &self_use, StartRequest::default()),
            Ok(LoginStep::ToDingTalk { .. })
        ));
    }

    #[test]
    fn a_bound_corps_member_signs_in_through_that_corps_app_and_state() {
        let mut env = FakeEnv::new();
        let s = commercial_with_b(&mut env);
        script_b(&mut env);
        let login = |env: &mut FakeEnv| {
            let req = StartRequest {
                corp_id: Some("dingB".into()),
                ..StartRequest::default()
            };
            let Ok(LoginStep::ToDingTalk {
                location,
                set_cookie,
            }) = start(env, &s, req)
            else {
                panic!("expected a redirect");
            };
            assert!(
                location.contains("client_id=dingappkeyB") && location.contains("corpId=dingB")
            );
            let cookie = set_cookie[BINDING_COOKIE.len() + 1..]
                .split(';')
                .next()
                .unwrap()
                .to_string();
            let cb = CallbackRequest {
                state: Some(state_of(&location)),
                code: Some("code1".into()),
                error: None,
                binding_cookie: Some(cookie),
            };
            match callback(env, &s, cb) {
                Ok(LoginStep::SignedIn(identity, _)) => identity,
                other => panic!("signed in: {other:?}"),
            }
        };
        let first = login(&mut env);
        assert_eq!(
            (
                first.corp_id.as_str(),
                first.userid.as_str(),
                first.unionid.as_str()
            ),
            ("dingB", "solo", "unB")
        );
        assert!(
            first.requires_sms_binding,
            "a first binding of a bound corp's member"
        );
        // One corp asked, through B's app: its token, never a search across corps.
        assert_eq!(env.calls_to("/topapi/user/getbyunionid"), 1);
        let token_bodies: Vec<serde_json::Value> = env
            .requests
            .iter()
            .filter(|r| crate::testing::path_of(r) == crate::testing::TOKEN_PATH)
            .map(crate::testing::body_of)
            .collect();
        assert!(
            token_bodies.iter().all(|b| b["appKey"] == "dingappkeyB"),
            "{token_bodies:?}"
        );
        crate::login::confirm_binding(&mut env, "dingB", "solo").unwrap();
        assert!(
            !login(&mut env).requires_sms_binding,
            "bound before: no SMS"
        );
        assert_eq!(
            env.calls_to("/topapi/v2/user/get"),
            1,
            "the second profile is mirrored"
        );
    }

    #[test]
    fn a_state_names_its_corp_and_is_refused_once_the_corp_is_unbound() {
        let mut env = FakeEnv::new();
        let s = commercial_with_b(&mut env);
        script_b(&mut env);
        let req = StartRequest {
            corp_id: Some("dingB".into()),
            ..StartRequest::default()
        };
        let Ok(LoginStep::ToDingTalk {
            location,
            set_cookie,
        }) = start(&mut env, &s, req)
        else {
            panic!("expected a redirect");
        };
        let cookie = set_cookie[BINDING_COOKIE.len() + 1..]
            .split(';')
            .next()
            .unwrap()
            .to_string();
        env.kv_delete("corp:dingB").unwrap();
        let cb = CallbackRequest {
            state: Some(state_of(&location)),
            code: Some("code1".into()),
            error: None,
            binding_cookie: Some(cookie),
        };
        let err = callback(&mut env, &s, cb).unwrap_err();
        assert_eq!((err.status, err.code.as_str()), (403, "corp_not_bound"));
        assert!(
            env.requests.is_empty(),
            "no DingTalk call: {:?}",
            env.paths()
        );
    }
}
