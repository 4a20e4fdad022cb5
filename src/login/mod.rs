//! Login flows: in-app free login (R1/R2), QR / browser login (R5 → R4), admin-backend SSO (R3),
//! and the hand-off by single-use ticket (DESIGN §3).

use crate::corps;
use crate::dingtalk::{ApiError, Client, Endpoints, Problem};
use crate::env::{random_id, Env};
use crate::failure::Failure;
use crate::web::http::{Request, Response};
use crate::kv;
use crate::model::{Identity, Via};
use crate::web::router::{CorpOption, Mode, Outcome, Routed};
use crate::secret::{AccessToken, SsoSecret};
use crate::settings::{CorpApp, Edition, Settings};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Tickets live this long (DESIGN §3: 60 s).
pub const TICKET_TTL_MS: u64 = 60_000;
/// OAuth `state` lives this long.
pub const STATE_TTL_MS: u64 = 10 * 60_000;
/// A corp choice lives this long.
pub const CHOICE_TTL_MS: u64 = 5 * 60_000;
/// The cookie that binds a QR login to the browser that started it.
pub const BINDING_COOKIE: &str = "dd_login";

const ID_BYTES: usize = 24;

fn is_token_shaped(s: &str) -> bool {
    s.len() == ID_BYTES * 2 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A DingTalk one-time code as it may appear in a URL.
fn valid_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 256
        && code.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'=' | b'+' | b'/')
        })
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

fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = base.to_string();
    let mut sep = if base.contains('?') { '&' } else { '?' };
    for (k, v) in pairs {
        url.push(sep);
        url.push_str(&crate::dingtalk::encode(k));
        url.push('=');
        url.push_str(&crate::dingtalk::encode(v).replace('+', "%20"));
        sep = '&';
    }
    url
}

// ---------------------------------------------------------------------------------------------
// Hand-off

/// Stores the identity under a fresh single-use ticket.
pub fn mint_ticket(env: &mut dyn Env, identity: &Identity) -> Result<String, Failure> {
    let ticket = random_id(env, ID_BYTES);
    let expires = env.now_ms() + TICKET_TTL_MS;
    kv::put_expiring(env, &format!("ticket:{ticket}"), identity, expires)?;
    Ok(ticket)
}

fn ticket_gone() -> Failure {
    Failure::new(
        410,
        "ticket_invalid",
        "This ticket is unknown, expired (tickets live 60 s) or already redeemed. Start the DingTalk sign-in again.",
        "该票据不存在、已过期（有效期 60 秒）或已被使用，请重新发起钉钉登录。",
    )
}

/// Redeems a ticket: the identity once, then 410 forever.
pub fn redeem_ticket(env: &mut dyn Env, ticket: &str) -> Result<Identity, Failure> {
    let ticket = ticket.trim();
    if !is_token_shaped(ticket) {
        return Err(Failure::new(
            404,
            "ticket_unknown",
            "This is not a ticket issued by the DingTalk plugin.",
            "这不是钉钉插件签发的票据。",
        ));
    }
    let key = format!("ticket:{ticket}");
    let Some(identity) = kv::get_live::<Identity>(env, &key)? else {
        return Err(ticket_gone());
    };
    let expires = env.now_ms() + TICKET_TTL_MS;
    if !kv::claim(env, &format!("claim:ticket:{ticket}"), expires)? {
        return Err(ticket_gone());
    }
    env.kv_delete(&key)?;
    Ok(identity)
}

/// Ends a successful login: a ticket and a redirect (HTTP), or the identity itself (typed).
fn hand_off(env: &mut dyn Env, settings: &Settings, identity: Identity, mode: Mode) -> Routed {
    let return_to = identity.return_to.clone();
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if let Some(r) = return_to.as_deref() {
        pairs.push(("return_to", r));
    }
    match mode {
        Mode::Typed => Routed {
            response: Response::redirect(302, &with_query(&settings.platform_login_url, &pairs)),
            outcome: Outcome::SignedIn(Box::new(identity)),
        },
        Mode::Http => match mint_ticket(env, &identity) {
            Ok(ticket) => {
                let mut all = vec![("ticket", ticket.as_str())];
                all.extend(pairs);
                env.log(&format!(
                    "signed in via {:?}: corp {} (ticket issued)",
                    identity.via, identity.corp_id
                ));
                Routed::plain(Response::redirect(
                    302,
                    &with_query(&settings.platform_login_url, &all),
                ))
            }
            Err(f) => Routed::page_failure(f),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Member details

/// The member's record in `app`'s org (`topapi/v2/user/get`): departments, org email, mobile.
/// Optional: a missing permission degrades the identity instead of failing the login.
fn enrich(client: &mut Client<'_>, identity: &mut Identity) -> Result<(), ApiError> {
    let result = client.oapi_post("/topapi/v2/user/get", &json!({"userid": identity.userid}));
    let value = match result {
        Ok(v) => v,
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
        Err(e) => return Err(e),
    };
    let r = value.get("result").cloned().unwrap_or(Value::Null);
    let s = |k: &str| {
        r.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from)
    };
    if let Some(name) = s("name") {
        identity.name = name;
    }
    if identity.unionid.is_empty() {
        identity.unionid = s("unionid").unwrap_or_default();
    }
    identity.mobile = s("mobile");
    identity.email = s("org_email").or_else(|| s("email"));
    identity.avatar = s("avatar");
    identity.dept_ids = r
        .get("dept_id_list")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    if let Some(admin) = r.get("admin").and_then(Value::as_bool) {
        identity.is_admin = identity.is_admin || admin;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// R1 / R2: in-app free login

fn corp_param_failure() -> Failure {
    Failure::bad_request(
        "corp_missing",
        "The address has no corpId. Open the app from the DingTalk workbench; the home page URL in the developer console must end with corpId=$CORPID$ (set-up step 5).",
        "地址中缺少 corpId。请从钉钉工作台打开应用；开发者后台中的应用首页地址须以 corpId=$CORPID$ 结尾（步骤 5）。",
    )
}

/// R1/R2: the JSAPI page without a code, the exchange and hand-off with one.
pub fn inapp(
    env: &mut dyn Env,
    settings: &Settings,
    request: &Request,
    via: Via,
    mode: Mode,
) -> Routed {
    let corp_id = request.param("corpId").or_else(|| request.param("corpid"));
    let Some(corp_id) = corp_id else {
        return Routed::page_failure(corp_param_failure());
    };
    if corp_id.contains("$CORPID$") {
        return Routed::page_failure(Failure::bad_request(
            "outside_dingtalk",
            "This address is meant to be opened from the DingTalk workbench, which fills in $CORPID$. Open the app inside DingTalk.",
            "此地址需从钉钉工作台打开（钉钉会替换 $CORPID$），请在钉钉内打开应用。",
        ));
    }
    let app = match corps::resolve(env, settings, Some(&corp_id)) {
        Ok(app) => app,
        Err(f) => return Routed::page_failure(f),
    };
    let Some(code) = request.param("code") else {
        return Routed::plain(crate::web::pages::inapp_page(&app.corp_id, &app.app_key));
    };
    if !valid_code(&code) {
        return Routed::page_failure(Failure::bad_request(
            "code_malformed",
            "The sign-in code in the address is malformed. Open the app from DingTalk again.",
            "地址中的登录授权码格式不正确，请从钉钉重新打开应用。",
        ));
    }
    let endpoints = Endpoints::from_settings(settings);
    let mut client = Client::new(env, &endpoints, &app);
    let info = match client.oapi_post("/topapi/v2/user/getuserinfo", &json!({"code": code})) {
        Ok(v) => v,
        Err(e) => return Routed::page_failure(e.to_failure("qyapi_base")),
    };
    let r = info.get("result").cloned().unwrap_or(Value::Null);
    let Some(userid) = r
        .get("userid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
    else {
        return Routed::page_failure(ApiError::Parse("result.userid").to_failure("qyapi_base"));
    };
    let sys_level = r.get("sys_level").and_then(Value::as_u64).unwrap_or(0) as u32;
    let mut identity = Identity {
        corp_id: app.corp_id.clone(),
        userid: userid.to_string(),
        unionid: r
            .get("unionid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        name: r
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        mobile: None,
        email: None,
        avatar: None,
        dept_ids: Vec::new(),
        is_admin: r.get("sys").and_then(Value::as_bool).unwrap_or(false)
            || matches!(sys_level, 1 | 2),
        admin_level: sys_level,
        via,
        requires_sms_binding: false,
        return_to: safe_return_to(request.param("return_to")),
    };
    if let Err(e) = enrich(&mut client, &mut identity) {
        return Routed::page_failure(e.to_failure("qyapi_get_member"));
    }
    hand_off(env, settings, identity, mode)
}

// ---------------------------------------------------------------------------------------------
// R3: admin backend

#[derive(Serialize, Deserialize)]
struct CachedSso {
    t: String,
    exp: u64,
}

/// Fetches an SSO access token (`v1.0/oauth2/ssoAccessToken`) and caches it per corp.
pub fn fetch_sso_token(
    env: &mut dyn Env,
    endpoints: &Endpoints,
    corp_id: &str,
    sso_secret: &SsoSecret,
) -> Result<AccessToken, ApiError> {
    let app = CorpApp {
        corp_id: corp_id.to_string(),
        corp_name: String::new(),
        agent_id: String::new(),
        app_key: String::new(),
        app_secret: crate::secret::AppSecret::new(""),
        sso_secret: None,
    };
    let mut client = Client::new(env, endpoints, &app);
    let value = client.api_call_with(
        "POST",
        "/v1.0/oauth2/ssoAccessToken",
        None,
        Some(&json!({"corpid": corp_id, "ssoSecret": sso_secret.expose()})),
    )?;
    let token = value
        .get("accessToken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Parse("accessToken"))?
        .to_string();
    let expire_in = value
        .get("expireIn")
        .and_then(Value::as_u64)
        .unwrap_or(3600)
        .clamp(60, 7 * 24 * 3600);
    let exp = env.now_ms() + expire_in * 1000;
    kv::put_json(
        env,
        &format!("tok:sso:{corp_id}"),
        &CachedSso {
            t: token.clone(),
            exp,
        },
    )
    .map_err(ApiError::Store)?;
    Ok(AccessToken::new(token))
}

fn sso_token(
    env: &mut dyn Env,
    endpoints: &Endpoints,
    corp_id: &str,
    secret: &SsoSecret,
) -> Result<AccessToken, ApiError> {
    let cached: Option<CachedSso> =
        kv::get_json(env, &format!("tok:sso:{corp_id}")).map_err(ApiError::Store)?;
    match cached {
        Some(c) if c.exp > env.now_ms() + 60_000 => Ok(AccessToken::new(c.t)),
        _ => fetch_sso_token(env, endpoints, corp_id, secret),
    }
}

/// R3: `code` from DingTalk's admin console → SSO user info → admin identity.
pub fn admin_sso(env: &mut dyn Env, settings: &Settings, request: &Request, mode: Mode) -> Routed {
    let Some(corp_id) = request.param("corpId").or_else(|| request.param("corpid")) else {
        return Routed::page_failure(corp_param_failure());
    };
    let app = match corps::resolve(env, settings, Some(&corp_id)) {
        Ok(app) => app,
        Err(f) => return Routed::page_failure(f),
    };
    let Some(code) = request.param("code") else {
        return Routed::page_failure(Failure::bad_request(
            "code_missing",
            "DingTalk did not pass a code. Enter the platform from the DingTalk admin console (oa.dingtalk.com → 工作台 → the app → 管理后台).",
            "钉钉未传入 code。请从钉钉管理后台（oa.dingtalk.com → 工作台 → 应用 → 管理后台）进入。",
        ));
    };
    if !valid_code(&code) {
        return Routed::page_failure(Failure::bad_request(
            "code_malformed",
            "The code in the address is malformed. Enter again from the DingTalk admin console.",
            "地址中的 code 格式不正确，请从钉钉管理后台重新进入。",
        ));
    }
    let Some(secret) = app.sso_secret.clone() else {
        return Routed::page_failure(Failure::new(
            503,
            "sso_secret_missing",
            "Admin-backend sign-in needs the SSOsecret. Copy it from 基本信息 → 开发信息（旧版） in the DingTalk developer console into the plugin settings (set-up step 9).",
            "管理后台免登需要 SSOsecret。请在钉钉开发者后台“基本信息 → 开发信息（旧版）”复制 SSOsecret 并填入插件设置（步骤 9）。",
        ));
    };
    let endpoints = Endpoints::from_settings(settings);
    let path = format!(
        "/v1.0/oauth2/ssoUserInfo?code={}",
        crate::dingtalk::encode(&code)
    );
    let mut attempt = 0;
    let info = loop {
        let token = match sso_token(env, &endpoints, &app.corp_id, &secret) {
            Ok(t) => t,
            Err(e) => return Routed::page_failure(sso_failure(&e)),
        };
        let mut client = Client::new(env, &endpoints, &app);
        match client.api_call_with("GET", &path, Some(&token), None) {
            Ok(v) => break v,
            Err(e) if e.problem() == Problem::TokenInvalid && attempt == 0 => {
                attempt += 1;
                if let Err(e) = env.kv_delete(&format!("tok:sso:{}", app.corp_id)) {
                    return Routed::page_failure(e.into());
                }
            }
            Err(e) => return Routed::page_failure(sso_failure(&e)),
        }
    };
    let s = |k: &str| {
        info.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from)
    };
    if let Some(reported) = s("corpId") {
        if reported != app.corp_id {
            return Routed::page_failure(corps::not_served(settings, &reported));
        }
    }
    let Some(userid) = s("userId") else {
        return Routed::page_failure(
            ApiError::Parse("userId").to_failure("qyapi_get_omp_sso_userinfo"),
        );
    };
    if !info
        .get("isAdmin")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return Routed::page_failure(Failure::new(
            403,
            "not_an_admin",
            "Only administrators of the organisation can enter the admin backend. Ask the organisation's main admin for admin rights in DingTalk.",
            "只有组织管理员才能进入管理后台，请联系组织主管理员在钉钉中授予管理员权限。",
        ));
    }
    let identity = Identity {
        corp_id: app.corp_id.clone(),
        userid,
        unionid: String::new(),
        name: s("userName").unwrap_or_default(),
        mobile: None,
        email: s("email"),
        avatar: s("avatar"),
        dept_ids: Vec::new(),
        is_admin: true,
        // DingTalk's SSO API says "admin" without the level; 1 = administrator.
        admin_level: 1,
        via: Via::AdminSso,
        requires_sms_binding: false,
        return_to: safe_return_to(request.param("return_to")),
    };
    hand_off(env, settings, identity, mode)
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

// ---------------------------------------------------------------------------------------------
// R5: start QR / browser login

#[derive(Serialize, Deserialize)]
struct LoginState {
    corp_id: Option<String>,
    return_to: Option<String>,
    binding: String,
}

fn binding_cookie(value: &str, max_age_s: u64) -> String {
    format!("{BINDING_COOKIE}={value}; Path=/dingding; Max-Age={max_age_s}; HttpOnly; Secure; SameSite=Lax")
}

/// R5: a fresh single-use `state` bound to this browser, then off to DingTalk's login page.
pub fn qr_start(env: &mut dyn Env, settings: &Settings, request: &Request) -> Routed {
    if !settings.qr_login_enabled {
        return Routed::page_failure(Failure::new(
            403,
            "qr_login_disabled",
            "DingTalk QR login is switched off. The platform admin must switch on DingTalk QR login under 站点配置 → 注册登录 (set-up step 11).",
            "钉钉扫码登录未开启。请平台管理员在【站点配置】→【注册登录】中开启钉钉扫码登录（步骤 11）。",
        ));
    }
    let corp = request.param("corpId").or_else(|| request.param("corpid"));
    let app = match corps::resolve(env, settings, corp.as_deref()) {
        Ok(app) => app,
        Err(f) => return Routed::page_failure(f),
    };
    let binding = request
        .cookie(BINDING_COOKIE)
        .filter(|b| is_token_shaped(b))
        .unwrap_or_else(|| random_id(env, ID_BYTES));
    let state = random_id(env, ID_BYTES);
    let record = LoginState {
        corp_id: corp.is_some().then(|| app.corp_id.clone()),
        return_to: safe_return_to(request.param("return_to")),
        binding: binding.clone(),
    };
    let expires = env.now_ms() + STATE_TTL_MS;
    if let Err(e) = kv::put_expiring(env, &format!("state:{state}"), &record, expires) {
        return Routed::page_failure(e.into());
    }
    let redirect_uri = settings.site_path("/dingding/dd_or_code_corp_list");
    let mut pairs = vec![
        ("redirect_uri", redirect_uri.as_str()),
        ("response_type", "code"),
        ("client_id", app.app_key.as_str()),
        (
            "scope",
            if record.corp_id.is_some() {
                "openid corpid"
            } else {
                "openid"
            },
        ),
        ("state", state.as_str()),
        ("prompt", "consent"),
    ];
    if let Some(c) = record.corp_id.as_deref() {
        pairs.push(("corpId", c));
    }
    let location = with_query(&format!("{}/oauth2/auth", settings.login_base_url), &pairs);
    Routed::plain(Response::redirect(302, &location).header(
        "set-cookie",
        &binding_cookie(&binding, STATE_TTL_MS / 1000 * 6),
    ))
}

// ---------------------------------------------------------------------------------------------
// R4: QR / browser login callback

fn state_failure(code: &str, en: &str, zh: &str) -> Failure {
    Failure::bad_request(code, en, zh)
}

/// Verifies and consumes `state` against the browser's binding cookie.
fn consume_state(env: &mut dyn Env, request: &Request) -> Result<LoginState, Failure> {
    let Some(state) = request.param("state") else {
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
    if !is_token_shaped(&state) {
        return Err(expired());
    }
    let Some(cookie) = request.cookie(BINDING_COOKIE) else {
        return Err(state_failure(
            "state_cookie_missing",
            "This browser did not start this sign-in (its sign-in cookie is missing). Start again in the same browser, and allow cookies for this site.",
            "此浏览器没有发起该登录（缺少登录 Cookie）。请在同一浏览器中重新发起，并允许本站使用 Cookie。",
        ));
    };
    let key = format!("state:{state}");
    let record: Option<LoginState> = kv::get_live(env, &key)?;
    let Some(record) = record else {
        return Err(expired());
    };
    if !crate::secret::PlatformToken::new(record.binding.clone()).matches(&cookie) {
        return Err(state_failure(
            "state_mismatch",
            "This sign-in was started in another browser. Start the DingTalk sign-in again here.",
            "该登录由其他浏览器发起，请在此浏览器中重新发起钉钉登录。",
        ));
    }
    let expires = env.now_ms() + STATE_TTL_MS;
    match kv::claim(env, &format!("claim:state:{state}"), expires) {
        Ok(true) => {}
        Ok(false) => return Err(expired()),
        Err(e) => return Err(e.into()),
    }
    let _ = env.kv_delete(&key);
    Ok(record)
}

#[derive(Serialize, Deserialize)]
struct Choice {
    binding: String,
    unionid: String,
    return_to: Option<String>,
    members: Vec<(String, String)>,
}

/// R4: `state` check, code → user token → unionId → userid per bound corp → identity.
pub fn qr_callback(
    env: &mut dyn Env,
    settings: &Settings,
    request: &Request,
    mode: Mode,
) -> Routed {
    if request.param("choice").is_some() {
        return complete_choice(env, settings, request, mode);
    }
    if let Some(error) = request.param("error") {
        // Consume the state so the link cannot be reused; the outcome is the same either way.
        let _ = consume_state(env, request);
        let shown: String = error.chars().take(64).collect();
        return Routed::page_failure(Failure::new(
            403,
            "login_cancelled",
            format!("DingTalk sign-in was cancelled ({shown}). Start it again from the platform's login page if you want to sign in."),
            format!("钉钉登录已取消（{shown}）。如需登录，请从平台登录页重新发起。"),
        ));
    }
    if !settings.qr_login_enabled {
        return qr_start(env, settings, request);
    }
    let state = match consume_state(env, request) {
        Ok(s) => s,
        Err(f) => return Routed::page_failure(f),
    };
    let Some(code) = request.param("authCode").or_else(|| request.param("code")) else {
        return Routed::page_failure(Failure::bad_request(
            "code_missing",
            "DingTalk did not pass an authorization code. Start the DingTalk sign-in again.",
            "钉钉未返回授权码，请重新发起钉钉登录。",
        ));
    };
    if !valid_code(&code) {
        return Routed::page_failure(Failure::bad_request(
            "code_malformed",
            "The authorization code is malformed. Start the DingTalk sign-in again.",
            "授权码格式不正确，请重新发起钉钉登录。",
        ));
    }
    let login_app = match corps::resolve(env, settings, state.corp_id.as_deref()) {
        Ok(app) => app,
        Err(f) => return Routed::page_failure(f),
    };
    let endpoints = Endpoints::from_settings(settings);
    let mut client = Client::new(env, &endpoints, &login_app);
    let user_token = match client.api_call_with(
        "POST",
        "/v1.0/oauth2/userAccessToken",
        None,
        Some(&json!({
            "clientId": login_app.app_key,
            "clientSecret": login_app.app_secret.expose(),
            "code": code,
            "grantType": "authorization_code",
        })),
    ) {
        Ok(v) => v,
        Err(e) => return Routed::page_failure(e.to_failure("open_app_api_base")),
    };
    let Some(access) = user_token
        .get("accessToken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    else {
        return Routed::page_failure(
            ApiError::Parse("accessToken").to_failure("open_app_api_base"),
        );
    };
    let access = AccessToken::new(access);
    let me = match client.api_call_with("GET", "/v1.0/contact/users/me", Some(&access), None) {
        Ok(v) => v,
        Err(e) => return Routed::page_failure(e.to_failure("Contact.User.Read")),
    };
    let Some(unionid) = me
        .get("unionId")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
    else {
        return Routed::page_failure(ApiError::Parse("unionId").to_failure("Contact.User.Read"));
    };
    // Only the org's own records are trusted (peers.md P8): users/me gives the unionId, nothing more.
    let candidates = match &state.corp_id {
        Some(_) => vec![login_app.clone()],
        None => match corps::all(env, settings) {
            Ok(all) => all,
            Err(f) => return Routed::page_failure(f),
        },
    };
    let mut members: Vec<(CorpApp, String)> = Vec::new();
    let mut last_error = None;
    for app in candidates {
        let mut client = Client::new(env, &endpoints, &app);
        match client.oapi_post("/topapi/user/getbyunionid", &json!({"unionid": unionid})) {
            Ok(v) => {
                let userid = v
                    .pointer("/result/userid")
                    .and_then(Value::as_str)
                    .filter(|u| !u.is_empty())
                    .map(String::from);
                let external = v.pointer("/result/contact_type").and_then(Value::as_i64) == Some(1);
                if let (Some(u), false) = (userid, external) {
                    members.push((app, u));
                }
            }
            Err(e) if e.problem() == Problem::NotMember => {}
            Err(e) => last_error = Some(e),
        }
    }
    if members.is_empty() {
        if let Some(e) = last_error {
            return Routed::page_failure(e.to_failure("qyapi_get_member"));
        }
        return Routed::page_failure(Failure::new(
            403,
            "not_a_member",
            "Your DingTalk account is not a member of any organisation bound to this platform (60121). Ask your organisation's admin to add you in DingTalk, or sign in another way.",
            "您的钉钉账号不是本平台所绑定任何组织的成员（60121）。请联系组织管理员在钉钉中添加您，或使用其他方式登录。",
        ));
    }
    if members.len() == 1 {
        let (app, userid) = members.remove(0);
        return finish_qr(env, settings, &app, &userid, unionid, state.return_to, mode);
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
        unionid: unionid.to_string(),
        return_to: state.return_to,
        members: members.into_iter().map(|(a, u)| (a.corp_id, u)).collect(),
    };
    let expires = env.now_ms() + CHOICE_TTL_MS;
    if let Err(e) = kv::put_expiring(env, &format!("choice:{choice_id}"), &choice, expires) {
        return Routed::page_failure(e.into());
    }
    Routed {
        response: crate::web::pages::corp_choice_page(&choice_id, &options),
        outcome: Outcome::CorpChoice(options),
    }
}

/// The person picked a corp on the list: verify the choice is theirs and unused, then sign in.
fn complete_choice(
    env: &mut dyn Env,
    settings: &Settings,
    request: &Request,
    mode: Mode,
) -> Routed {
    let invalid = || {
        Routed::page_failure(state_failure(
            "choice_invalid",
            "This choice has expired or was already used. Start the DingTalk sign-in again.",
            "该选择已过期或已被使用，请重新发起钉钉登录。",
        ))
    };
    let choice_id = request.param("choice").unwrap_or_default();
    let corp_id = request.param("corp").unwrap_or_default();
    if !is_token_shaped(&choice_id) {
        return invalid();
    }
    let key = format!("choice:{choice_id}");
    let choice: Option<Choice> = match kv::get_live(env, &key) {
        Ok(c) => c,
        Err(e) => return Routed::page_failure(e.into()),
    };
    let Some(choice) = choice else {
        return invalid();
    };
    let cookie = request.cookie(BINDING_COOKIE).unwrap_or_default();
    if !crate::secret::PlatformToken::new(choice.binding.clone()).matches(&cookie) {
        return Routed::page_failure(state_failure(
            "choice_mismatch",
            "This choice belongs to another browser. Start the DingTalk sign-in again here.",
            "该选择属于其他浏览器，请在此浏览器中重新发起钉钉登录。",
        ));
    }
    let Some((_, userid)) = choice.members.iter().find(|(c, _)| *c == corp_id) else {
        return Routed::page_failure(state_failure(
            "choice_not_offered",
            "That organisation was not one of the choices. Pick one from the list.",
            "该组织不在可选列表中，请从列表中选择。",
        ));
    };
    let expires = env.now_ms() + CHOICE_TTL_MS;
    match kv::claim(env, &format!("claim:choice:{choice_id}"), expires) {
        Ok(true) => {}
        Ok(false) => return invalid(),
        Err(e) => return Routed::page_failure(e.into()),
    }
    let _ = env.kv_delete(&key);
    let app = match corps::resolve(env, settings, Some(&corp_id)) {
        Ok(app) => app,
        Err(f) => return Routed::page_failure(f),
    };
    let userid = userid.clone();
    finish_qr(
        env,
        settings,
        &app,
        &userid,
        &choice.unionid,
        choice.return_to,
        mode,
    )
}

/// Whether this person has been signed in before (commercial first-time binding check).
fn known_binding_key(corp_id: &str, userid: &str) -> String {
    format!("bound:{corp_id}:{userid}")
}

/// Records that the platform completed a first-time binding (after its SMS verification).
pub fn confirm_binding(env: &mut dyn Env, corp_id: &str, userid: &str) -> Result<(), Failure> {
    env.kv_set(&known_binding_key(corp_id, userid), b"1")?;
    Ok(())
}

fn finish_qr(
    env: &mut dyn Env,
    settings: &Settings,
    app: &CorpApp,
    userid: &str,
    unionid: &str,
    return_to: Option<String>,
    mode: Mode,
) -> Routed {
    let mut requires_sms_binding = false;
    if settings.edition == Edition::Commercial && app.corp_id != settings.corp.corp_id {
        let known = match env.kv_get(&known_binding_key(&app.corp_id, userid)) {
            Ok(v) => v.is_some(),
            Err(e) => return Routed::page_failure(e.into()),
        };
        if !known {
            if !settings.sms_enabled {
                return Routed::page_failure(Failure::new(
                    403,
                    "sms_required",
                    "Binding a DingTalk account of this organisation for the first time needs SMS verification, which is not set up. The platform admin must configure SMS (短信设置) and switch on sms_enabled.",
                    "首次绑定该组织的钉钉账号需要短信验证，但平台尚未配置短信。请平台管理员完成【短信设置】并开启 sms_enabled。",
                ));
            }
            requires_sms_binding = true;
        }
    }
    let endpoints = Endpoints::from_settings(settings);
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
    let mut client = Client::new(env, &endpoints, app);
    if let Err(e) = enrich(&mut client, &mut identity) {
        return Routed::page_failure(e.to_failure("qyapi_get_member"));
    }
    hand_off(env, settings, identity, mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::tests::sample;
    use crate::testing::FakeEnv;

    fn identity() -> Identity {
        Identity {
            corp_id: "dingcorp123".into(),
            userid: "u1".into(),
            unionid: "un1".into(),
            name: "张三".into(),
            mobile: None,
            email: None,
            avatar: None,
            dept_ids: vec![1],
            is_admin: false,
            admin_level: 0,
            via: Via::InappMobile,
            requires_sms_binding: false,
            return_to: None,
        }
    }

    #[test]
    fn ticket_redeems_once_and_expires() {
        let mut env = FakeEnv::new();
        let t = mint_ticket(&mut env, &identity()).unwrap();
        assert_eq!(t.len(), 48);
        assert_eq!(redeem_ticket(&mut env, &t).unwrap(), identity());
        assert_eq!(redeem_ticket(&mut env, &t).unwrap_err().status, 410);
        let t2 = mint_ticket(&mut env, &identity()).unwrap();
        env.now += TICKET_TTL_MS + 1;
        assert_eq!(redeem_ticket(&mut env, &t2).unwrap_err().status, 410);
        assert_eq!(redeem_ticket(&mut env, "nope").unwrap_err().status, 404);
    }

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
    fn qr_start_off_is_403_and_on_redirects_with_state_cookie() {
        let mut env = FakeEnv::new();
        let mut s = sample();
        let req = Request::new(
            "GET",
            "/dingding/login?return_to=//evil.com",
            vec![],
            vec![],
        );
        assert_eq!(qr_start(&mut env, &s, &req).response.status, 403);
        s.qr_login_enabled = true;
        let r = qr_start(&mut env, &s, &req);
        assert_eq!(r.response.status, 302);
        let loc = r.response.get_header("location").unwrap();
        assert!(loc.starts_with("https://login.dingtalk.com/oauth2/auth?"));
        assert!(loc.contains("client_id=dingappkey123"));
        assert!(loc.contains("prompt=consent"));
        assert!(loc.contains(
            "redirect_uri=https%3A%2F%2Fforms.example.com%2Fdingding%2Fdd_or_code_corp_list"
        ));
        let cookie = r.response.get_header("set-cookie").unwrap();
        assert!(
            cookie.contains("HttpOnly")
                && cookie.contains("Secure")
                && cookie.contains("SameSite=Lax")
        );
        assert!(!loc.contains("evil"));
    }
}
