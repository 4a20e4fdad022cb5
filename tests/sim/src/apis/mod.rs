//! Routing, the common request pipeline (faults, tokens, IP whitelist, QPS, quota, permissions)
//! and the two error shapes.

mod contacts;
mod login;
mod message;
mod page;
mod todo;
mod token;

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::control::{perms, CallRecord, FaultKind};

use crate::state::{State, TokenKind, TokenRec};
pub(crate) use contacts::contact_scope;

/// A parsed HTTP request.
pub(crate) struct Req {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn q(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }
}

/// What the server sends back.
pub(crate) enum Reply {
    Json(u16, Value),
    Raw(u16, String),
    Html(u16, String),
    Redirect(String),
    Drop,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Family {
    /// oapi.dingtalk.com: HTTP 200 + errcode.
    Old,
    /// api.dingtalk.com: 4xx/5xx + code.
    New,
    /// login.dingtalk.com pages.
    Page,
}

/// An API failure, rendered per family.
#[derive(Debug, Clone)]
pub(crate) enum ApiError {
    MissingToken,
    BadToken,
    ExpiredToken,
    Permission(Vec<&'static str>),
    IpBlocked {
        app_key: String,
    },
    Qps,
    GlobalQps,
    Quota,
    /// 40035 / 400 missingParameter.
    BadParam(String),
    /// An old-API errcode.
    Old(i64, String),
    /// A new-API error.
    New(u16, String, String),
    Busy,
}

pub(crate) type ApiResult = Result<Value, ApiError>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    None,
    App,
    User,
    Sso,
}

pub(crate) struct Ctx<'a> {
    pub req: &'a Req,
    pub params: Vec<(&'static str, String)>,
    /// Corp (index) of the caller's app / token.
    pub corp: Option<usize>,
    pub token: Option<TokenRec>,
    pub now: i64,
}

impl Ctx<'_> {
    pub fn param(&self, k: &str) -> &str {
        self.params
            .iter()
            .find(|(a, _)| *a == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// The caller's corp (always set for authenticated routes).
    pub fn corp(&self) -> Result<usize, ApiError> {
        self.corp.ok_or(ApiError::BadToken)
    }
}

type Handler = fn(&mut State, &Ctx) -> ApiResult;

struct Route {
    method: &'static str,
    pattern: &'static str,
    family: Family,
    auth: Auth,
    perm: Option<&'static str>,
    /// Counts toward the monthly quota (doc §9.1: to-dos and work notifications).
    metered: bool,
    handler: Handler,
}

macro_rules! route {
    ($m:expr, $p:expr, $f:ident, $a:ident, $perm:expr, $metered:expr, $h:path) => {
        Route {
            method: $m,
            pattern: $p,
            family: Family::$f,
            auth: Auth::$a,
            perm: $perm,
            metered: $metered,
            handler: $h,
        }
    };
}

static ROUTES: &[Route] = &[
    // Tokens.
    route!("GET", "/gettoken", Old, None, None, false, token::gettoken),
    route!(
        "POST",
        "/v1.0/oauth2/accessToken",
        New,
        None,
        None,
        false,
        token::access_token
    ),
    route!(
        "POST",
        "/v1.0/oauth2/{corpId}/token",
        New,
        None,
        None,
        false,
        token::corp_token
    ),
    // In-app login.
    route!(
        "POST",
        "/topapi/v2/user/getuserinfo",
        Old,
        App,
        Some(perms::QYAPI_BASE),
        false,
        login::getuserinfo
    ),
    // QR / browser login.
    route!(
        "POST",
        "/v1.0/oauth2/userAccessToken",
        New,
        None,
        None,
        false,
        login::user_access_token
    ),
    route!(
        "GET",
        "/v1.0/contact/users/{unionId}",
        New,
        User,
        Some(perms::CONTACT_USER_READ),
        false,
        login::users_me
    ),
    route!(
        "POST",
        "/topapi/user/getbyunionid",
        Old,
        App,
        Some(perms::QYAPI_GET_MEMBER),
        false,
        login::getbyunionid
    ),
    // Admin SSO.
    route!(
        "POST",
        "/v1.0/oauth2/ssoAccessToken",
        New,
        None,
        None,
        false,
        login::sso_access_token
    ),
    route!(
        "GET",
        "/v1.0/oauth2/ssoUserInfo",
        New,
        Sso,
        Some(perms::QYAPI_GET_OMP_SSO_USERINFO),
        false,
        login::sso_user_info
    ),
    route!(
        "GET",
        "/sso/gettoken",
        Old,
        None,
        None,
        false,
        login::sso_gettoken_old
    ),
    route!(
        "GET",
        "/sso/getuserinfo",
        Old,
        Sso,
        Some(perms::QYAPI_GET_OMP_SSO_USERINFO),
        false,
        login::sso_getuserinfo_old
    ),
    // Contacts.
    route!(
        "GET",
        "/auth/scopes",
        Old,
        App,
        None,
        false,
        contacts::auth_scopes
    ),
    route!(
        "POST",
        "/topapi/v2/department/listsub",
        Old,
        App,
        Some(perms::QYAPI_GET_DEPARTMENT_LIST),
        false,
        contacts::listsub
    ),
    route!(
        "POST",
        "/topapi/v2/department/listsubid",
        Old,
        App,
        Some(perms::QYAPI_GET_DEPARTMENT_LIST),
        false,
        contacts::listsubid
    ),
    route!(
        "POST",
        "/topapi/v2/department/get",
        Old,
        App,
        Some(perms::QYAPI_GET_DEPARTMENT_LIST),
        false,
        contacts::department_get
    ),
    route!(
        "POST",
        "/topapi/v2/user/list",
        Old,
        App,
        Some(perms::QYAPI_GET_DEPARTMENT_MEMBER),
        false,
        contacts::user_list
    ),
    route!(
        "POST",
        "/topapi/v2/user/get",
        Old,
        App,
        Some(perms::QYAPI_GET_MEMBER),
        false,
        contacts::user_get
    ),
    route!(
        "POST",
        "/topapi/user/listsimple",
        Old,
        App,
        Some(perms::QYAPI_GET_DEPARTMENT_MEMBER),
        false,
        contacts::listsimple
    ),
    route!(
        "POST",
        "/topapi/user/listid",
        Old,
        App,
        Some(perms::QYAPI_GET_MEMBER),
        false,
        contacts::listid
    ),
    // To-dos.
    route!(
        "POST",
        "/v1.0/todo/users/{unionId}/tasks",
        New,
        App,
        Some(perms::TODO_WRITE),
        true,
        todo::create
    ),
    route!(
        "GET",
        "/v1.0/todo/users/{unionId}/tasks/sources/{sourceId}",
        New,
        App,
        Some(perms::TODO_READ),
        true,
        todo::get_by_source
    ),
    route!(
        "PUT",
        "/v1.0/todo/users/{unionId}/tasks/{taskId}/executorStatus",
        New,
        App,
        Some(perms::TODO_WRITE),
        true,
        todo::executor_status
    ),
    route!(
        "PUT",
        "/v1.0/todo/users/{unionId}/tasks/{taskId}",
        New,
        App,
        Some(perms::TODO_WRITE),
        true,
        todo::update
    ),
    route!(
        "DELETE",
        "/v1.0/todo/users/{unionId}/tasks/{taskId}",
        New,
        App,
        Some(perms::TODO_WRITE),
        true,
        todo::delete
    ),
    route!(
        "GET",
        "/v1.0/todo/users/{unionId}/tasks/{taskId}",
        New,
        App,
        Some(perms::TODO_READ),
        true,
        todo::get
    ),
    route!(
        "POST",
        "/v1.0/todo/users/{unionId}/org/tasks/query",
        New,
        App,
        Some(perms::TODO_READ),
        true,
        todo::query
    ),
    // Work notifications.
    route!(
        "POST",
        "/topapi/message/corpconversation/asyncsend_v2",
        Old,
        App,
        Some(perms::QYAPI_BASE),
        true,
        message::asyncsend_v2
    ),
    route!(
        "POST",
        "/topapi/message/corpconversation/getsendresult",
        Old,
        App,
        Some(perms::QYAPI_BASE),
        true,
        message::getsendresult
    ),
];

fn match_pattern(pattern: &str, path: &str) -> Option<Vec<(&'static str, String)>> {
    let ps: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    let xs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if ps.len() != xs.len() {
        return None;
    }
    let mut out = Vec::new();
    for (p, x) in ps.iter().zip(xs.iter()) {
        if p.starts_with('{') && p.ends_with('}') {
            if x.is_empty() {
                return None;
            }
            let decoded = percent_encoding::percent_decode_str(x)
                .decode_utf8_lossy()
                .into_owned();
            out.push((param_name(p), decoded));
        } else if p != x {
            return None;
        }
    }
    Some(out)
}

fn param_name(p: &str) -> &'static str {
    match p {
        "{unionId}" => "unionId",
        "{taskId}" => "taskId",
        "{sourceId}" => "sourceId",
        "{corpId}" => "corpId",
        _ => "param",
    }
}

fn family_of_path(path: &str) -> Family {
    if path.starts_with("/v1.0/") || path.starts_with("/v2.0/") {
        Family::New
    } else if path.starts_with("/oauth2/") {
        Family::Page
    } else {
        Family::Old
    }
}

fn sub_msg(code: &str) -> &'static str {
    match code {
        "40014" => "不合法的access_token",
        "42001" => "access_token超时",
        "41001" => "缺少access_token参数",
        "60011" => "没有调用该接口的权限",
        "60020" => "访问ip不在白名单之中",
        "90018" => "当前应用调用该接口的QPS超过限制",
        "90002" => "服务器调用该接口的并发量超过限制",
        "40078" => "不存在的临时授权码",
        "90001" | "90003" | "90004" | "90005" | "90006" | "90007" | "90008" | "90017" => {
            temp_ban_msg(code.parse().unwrap_or(0))
        }
        _ => "鉴权异常",
    }
}

/// Messages of the temporary-ban codes (the doc names the codes only; wording is the sim's).
fn temp_ban_msg(code: i64) -> &'static str {
    match code {
        90001 => "您的服务器调用钉钉开放平台所有接口的请求都被暂时禁用了",
        90002 => "服务器调用该接口的并发量超过限制，请稍后重试",
        90003 => "您的企业调用钉钉开放平台所有接口的请求都被暂时禁用了",
        90004 => "您当前使用的应用被暂时禁用了",
        90005 => "您的企业调用当前接口次数过多，请求被暂时禁用了",
        90006 => "您当前使用的应用调用当前接口次数过多，请求被暂时禁用了",
        90007 => "您现在使用的access_token被暂时禁用了",
        90008 => "您现在使用的access_token调用当前接口次数过多，请求被暂时禁用了",
        90017 => "此IP调用钉钉开放平台接口的请求数过多，请求被暂时禁用了",
        90018 => "当前应用调用该接口的QPS超过限制，请稍后重试",
        _ => "请求被暂时禁用了",
    }
}

/// The egress-IP ban page (doc §9.1: HTML, not JSON); the wording is the sim's.
pub(crate) const IP_BAN_HTML: &str = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>访问被拒绝</title></head>\
<body><h1>访问被拒绝</h1><p>您的IP访问过于频繁，已被暂时禁止访问，请5分钟后再试。</p></body></html>\n";

const PERM_DOC: &str = "没有调用该接口的权限，接口权限申请参考：https://open.dingtalk.com/document/orgapp/add-api-permission";

/// Renders an error: (status, body, errcode, code).
pub(crate) fn render_error(
    st: &mut State,
    family: Family,
    err: &ApiError,
) -> (u16, Value, Option<i64>, Option<String>) {
    let ip = st.request_ip.clone();
    // (old errcode, old errmsg, 88 sub_code?, new status, new code, new message, extra)
    let (errcode, errmsg, sub88, status, code, message, extra): (
        i64,
        String,
        bool,
        u16,
        String,
        String,
        Option<Value>,
    ) = match err {
        ApiError::MissingToken => (
            41001,
            "缺少access_token参数".into(),
            st.token_errors_88,
            400,
            "InvalidAuthentication".into(),
            "不合法的access_token".into(),
            None,
        ),
        ApiError::BadToken => (
            40014,
            "不合法的access_token".into(),
            st.token_errors_88,
            400,
            "InvalidAuthentication".into(),
            "不合法的access_token".into(),
            None,
        ),
        ApiError::ExpiredToken => (
            42001,
            "access_token超时".into(),
            st.token_errors_88,
            400,
            "InvalidAuthentication".into(),
            "不合法的access_token".into(),
            None,
        ),
        ApiError::Permission(scopes) => {
            let list = scopes.join(",");
            (
                60011,
                format!("{PERM_DOC}, requiredScopes: [{list}]"),
                st.perm_errors_88,
                403,
                "Forbidden.AccessDenied.AccessTokenPermissionDenied".into(),
                format!("{PERM_DOC}, requiredScopes: [{list}]"),
                Some(json!({"requiredScopes": scopes})),
            )
        }
        ApiError::IpBlocked { app_key } => (
            60020,
            format!("访问ip不在白名单之中,request ip={ip} appKey({app_key})"),
            false,
            403,
            "Forbidden.AccessDenied.IpNotInWhiteList".into(),
            format!("访问ip不在白名单之中,request ip={ip} appKey({app_key})"),
            None,
        ),
        ApiError::Qps => (
            90018,
            "当前应用调用该接口的QPS超过限制，请稍后重试".into(),
            false,
            403,
            "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi".into(),
            "当前应用调用该接口的QPS超过限制，请稍后重试".into(),
            None,
        ),
        ApiError::GlobalQps => (
            90002,
            "服务器调用该接口的并发量超过限制，请稍后重试".into(),
            false,
            403,
            "Forbidden.AccessDenied.QpsLimitForApi".into(),
            "服务器调用该接口的并发量超过限制，请稍后重试".into(),
            None,
        ),
        ApiError::Quota => (
            90020,
            "当前企业调用该接口的次数超过月度限额".into(),
            false,
            403,
            "Forbidden.AccessDenied.ApiCountLimitForOrg".into(),
            "当前企业调用该接口的次数超过月度限额".into(),
            None,
        ),
        ApiError::BadParam(detail) => (
            40035,
            if detail.is_empty() {
                "不合法的参数".into()
            } else {
                format!("不合法的参数: {detail}")
            },
            false,
            400,
            "missingParameter".into(),
            if detail.is_empty() {
                "缺少参数".into()
            } else {
                detail.clone()
            },
            None,
        ),
        ApiError::Old(c, m) => (*c, m.clone(), false, 400, c.to_string(), m.clone(), None),
        ApiError::New(s, c, m) => {
            let rid = st.request_id_new();
            return (
                *s,
                json!({"code": c, "message": m, "requestid": rid}),
                None,
                Some(c.clone()),
            );
        }
        ApiError::Busy => (
            -1,
            "系统繁忙".into(),
            false,
            500,
            "systemBusy".into(),
            "系统繁忙".into(),
            None,
        ),
    };
    match family {
        Family::Old | Family::Page => {
            let rid = st.request_id_old();
            if sub88 {
                let sub = errcode.to_string();
                let sm = sub_msg(&sub);
                let body = json!({
                    "errcode": 88,
                    "sub_code": sub,
                    "sub_msg": sm,
                    "errmsg": format!("ding talk error[subcode={sub},submsg={sm}]"),
                    "request_id": rid,
                });
                (200, body, Some(88), None)
            } else {
                (
                    200,
                    json!({"errcode": errcode, "errmsg": errmsg, "request_id": rid}),
                    Some(errcode),
                    None,
                )
            }
        }
        Family::New => {
            let rid = st.request_id_new();
            let mut body = json!({"code": code, "message": message, "requestid": rid});
            if let Some(x) = extra {
                body["accessdenieddetail"] = x;
            }
            (status, body, None, Some(code))
        }
    }
}

fn render_fault(
    st: &mut State,
    family: Family,
    route: &str,
    kind: &FaultKind,
) -> (Reply, Option<i64>, Option<String>, u16) {
    match kind {
        FaultKind::OkWithoutResult => match family {
            Family::New => (Reply::Json(200, json!({})), None, None, 200),
            _ => {
                let rid = st.request_id_old();
                let mut body = json!({"errcode": 0, "errmsg": "ok", "request_id": rid});
                if route == "/topapi/v2/user/list" || route == "/topapi/user/listsimple" {
                    body["result"] = json!({"has_more": false});
                }
                (Reply::Json(200, body), Some(0), None, 200)
            }
        },
        FaultKind::IpBanPage(s) => (Reply::Html(*s, IP_BAN_HTML.to_string()), None, None, *s),
        FaultKind::IpBanJson => {
            let uuid = st.request_id_new().to_ascii_lowercase();
            let body =
                json!({"status": 1111, "wait": 5, "source": "x5", "punish": "deny", "uuid": uuid});
            (Reply::Json(200, body), None, None, 200)
        }
        FaultKind::TempBan(code) => {
            let msg = temp_ban_msg(*code).to_string();
            let err = match code {
                90002 => ApiError::GlobalQps,
                90018 => ApiError::Qps,
                _ if family == Family::New => {
                    ApiError::New(403, format!("Forbidden.AccessDenied.{code}"), msg)
                }
                _ => ApiError::Old(*code, msg),
            };
            let (s, b, e, c) = render_error(st, family, &err);
            (Reply::Json(s, b), e, c, s)
        }
        FaultKind::QpmLimit(status) => {
            let err = match family {
                Family::New => ApiError::New(
                    *status,
                    "Forbidden.AccessDenied.QpmLimitForAppkeyAndApi".into(),
                    "当前应用调用该接口的QPM超过限制，请稍后重试".into(),
                ),
                _ => ApiError::Qps,
            };
            let (s, b, e, c) = render_error(st, family, &err);
            (Reply::Json(s, b), e, c, s)
        }
        FaultKind::Errcode(c, m) => {
            let (s, b, e, c) = render_error(st, family, &ApiError::Old(*c, m.clone()));
            (Reply::Json(s, b), e, c, s)
        }
        FaultKind::SubCode88(sub) => {
            let rid = st.request_id_old();
            let sm = sub_msg(sub);
            let body = json!({
                "errcode": 88,
                "sub_code": sub,
                "sub_msg": sm,
                "errmsg": format!("ding talk error[subcode={sub},submsg={sm}]"),
                "request_id": rid,
            });
            (Reply::Json(200, body), Some(88), None, 200)
        }
        FaultKind::NewApi(s, c) => {
            let rid = st.request_id_new();
            let body =
                json!({"code": c, "message": format!("injected fault {c}"), "requestid": rid});
            (Reply::Json(*s, body), None, Some(c.clone()), *s)
        }
        FaultKind::Http(s, b) => (Reply::Raw(*s, b.clone()), None, None, *s),
        FaultKind::Busy => {
            let (s, b, e, c) = render_error(st, family, &ApiError::Busy);
            (Reply::Json(s, b), e, c, s)
        }
        FaultKind::Drop => (Reply::Drop, None, None, 0),
        FaultKind::Latency(_) => unreachable_latency(),
    }
}

fn unreachable_latency() -> (Reply, Option<i64>, Option<String>, u16) {
    // Latency faults never reach rendering; answer "busy" defensively instead of panicking.
    (Reply::Raw(500, String::new()), None, None, 500)
}

/// Whether a fault's `api` selects this call: the exact path or route pattern, a prefix ending at a
/// path-segment boundary (`/v1.0/todo` matches `/v1.0/todo/users/..`, but `/topapi/v2/user/get`
/// does not match `/topapi/v2/user/getuserinfo`), or any prefix when `api` ends with `*`.
pub(crate) fn fault_matches(api: &str, path: &str, route: &str) -> bool {
    if api == path || api == route {
        return true;
    }
    if let Some(prefix) = api.strip_suffix('*') {
        return path.starts_with(prefix) || route.starts_with(prefix);
    }
    if api.is_empty() {
        return false;
    }
    let on_boundary =
        |p: &str| p.starts_with(api) && (api.ends_with('/') || p[api.len()..].starts_with('/'));
    on_boundary(path) || on_boundary(route)
}

/// Selects the faults for this call: total latency and the first error fault.
fn pick_faults(st: &mut State, path: &str, route: &str) -> (u64, Option<FaultKind>) {
    let mut latency = 0u64;
    let mut err: Option<FaultKind> = None;
    let mut i = 0;
    while i < st.faults.len() {
        let matches = fault_matches(&st.faults[i].fault.api, path, route);
        if matches {
            let is_latency = matches!(st.faults[i].fault.kind, FaultKind::Latency(_));
            if is_latency || err.is_none() {
                let p = st.faults[i].fault.probability;
                let roll: f64 = rand::Rng::gen(&mut st.rng);
                if p >= 1.0 || roll < p {
                    let slot = &mut st.faults[i];
                    slot.fired += 1;
                    match &slot.fault.kind {
                        FaultKind::Latency(ms) => latency += *ms,
                        k => err = Some(k.clone()),
                    }
                    if slot.fault.times != 0 && slot.fired >= slot.fault.times {
                        st.faults.remove(i);
                        continue;
                    }
                }
            }
        }
        i += 1;
    }
    (latency, err)
}

fn hint_corp(st: &State, req: &Req) -> Option<usize> {
    for k in ["appkey", "client_id"] {
        if let Some(v) = req.q(k) {
            if let Some(i) = st.app_index.get(v) {
                return Some(*i);
            }
        }
    }
    if let Some(v) = req.q("corpid") {
        if let Some(i) = st.corp_index.get(v) {
            return Some(*i);
        }
    }
    if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&req.body) {
        for k in ["appKey", "clientId", "client_id"] {
            if let Some(i) = m
                .get(k)
                .and_then(|v| v.as_str())
                .and_then(|v| st.app_index.get(v))
            {
                return Some(*i);
            }
        }
        if let Some(i) = m
            .get("corpid")
            .and_then(|v| v.as_str())
            .and_then(|v| st.corp_index.get(v))
        {
            return Some(*i);
        }
    }
    None
}

/// Handles one request end to end and records it in the call log.
pub(crate) fn handle(shared: &Mutex<State>, req: &Req) -> Reply {
    let found = ROUTES.iter().find_map(|r| {
        match_pattern(r.pattern, &req.path)
            .filter(|_| r.method == req.method)
            .map(|p| (r, p))
    });
    let page_route = page::route_of(&req.method, &req.path);
    let (route_name, family): (String, Family) = match (&found, page_route) {
        (Some((r, _)), _) => (r.pattern.to_string(), r.family),
        (None, Some(p)) => (p.to_string(), Family::Page),
        (None, None) => (req.path.clone(), family_of_path(&req.path)),
    };

    // Phase 1: faults (before anything else, so tests can force any answer).
    let (latency, fault, arrival) = {
        let mut st = lock(shared);
        let now = st.now_ms();
        let (l, mut f) = pick_faults(&mut st, &req.path, &route_name);
        if let (Some(s), false) = (st.ip_ban, family == Family::Page) {
            f = Some(FaultKind::IpBanPage(s));
        }
        (l, f, now)
    };
    if latency > 0 {
        std::thread::sleep(Duration::from_millis(latency));
    }
    let mut st = lock(shared);
    let hint = hint_corp(&st, req);
    if let Some(kind) = fault {
        let (reply, errcode, code, status) = render_fault(&mut st, family, &route_name, &kind);
        let app_key = hint.map(|i| st.corps[i].creds.app_key.clone());
        let corp_id = hint.map(|i| st.corps[i].creds.corp_id.clone());
        let caller = hint.or_else(|| token_corp(&st, req));
        st.calls.push(CallRecord {
            method: req.method.clone(),
            api: req.path.clone(),
            route: route_name.clone(),
            app_key,
            corp_id,
            status,
            errcode,
            code,
            at_ms: arrival,
        });
        run_scheduled(&mut st, caller, &req.path, &route_name);
        return reply;
    }

    // A to-do create with a sourceId while another one for the same user and sourceId is in
    // flight: lockError; otherwise this one holds the lock for the in-flight time.
    let mut held: Option<(usize, String, String)> = None;
    if let Some((r, params)) = &found {
        if r.method == "POST"
            && r.pattern == "/v1.0/todo/users/{unionId}/tasks"
            && st.todo_in_flight_ms > 0
        {
            if let Some(key) = todo_lock_key(&st, req, params) {
                if st.todo_locks.contains(&key) {
                    let err = ApiError::New(
                        400,
                        "todo.taskCreate.lockError".into(),
                        "创建待办根据sourceId加锁失败".into(),
                    );
                    let (s, b, e, c) = render_error(&mut st, Family::New, &err);
                    let corp = Some(key.0);
                    let app_key = corp.map(|i| st.corps[i].creds.app_key.clone());
                    let corp_id = corp.map(|i| st.corps[i].creds.corp_id.clone());
                    st.calls.push(CallRecord {
                        method: req.method.clone(),
                        api: req.path.clone(),
                        route: route_name.clone(),
                        app_key,
                        corp_id,
                        status: s,
                        errcode: e,
                        code: c,
                        at_ms: arrival,
                    });
                    run_scheduled(&mut st, corp, &req.path, &route_name);
                    return Reply::Json(s, b);
                }
                let hold = st.todo_in_flight_ms;
                st.todo_locks.insert(key.clone());
                held = Some(key);
                drop(st);
                std::thread::sleep(Duration::from_millis(hold));
                st = lock(shared);
            }
        }
    }
    let (reply, corp, errcode, code, status) = if let Some((r, params)) = found {
        run_api(&mut st, req, r, params, hint)
    } else if let Some(p) = page_route {
        let (reply, corp) = page::handle(&mut st, req, p);
        let status = match &reply {
            Reply::Html(s, _) | Reply::Json(s, _) | Reply::Raw(s, _) => *s,
            Reply::Redirect(_) => 302,
            Reply::Drop => 0,
        };
        (reply, corp, None, None, status)
    } else {
        let (status, body, errcode, code) = match family {
            Family::New => {
                let rid = st.request_id_new();
                (
                    404,
                    json!({"code": "InvalidAction.NotFound", "message": "Specified api is not found, please check your url and method.", "requestid": rid}),
                    None,
                    Some("InvalidAction.NotFound".to_string()),
                )
            }
            _ => {
                let rid = st.request_id_old();
                (
                    404,
                    json!({"errcode": 404, "errmsg": "请求的URI地址不存在", "request_id": rid}),
                    Some(404),
                    None,
                )
            }
        };
        (Reply::Json(status, body), None, errcode, code, status)
    };
    let corp = corp.or(hint);
    let app_key = corp.map(|i| st.corps[i].creds.app_key.clone());
    let corp_id = corp.map(|i| st.corps[i].creds.corp_id.clone());
    st.calls.push(CallRecord {
        method: req.method.clone(),
        api: req.path.clone(),
        route: route_name.clone(),
        app_key,
        corp_id,
        status,
        errcode,
        code,
        at_ms: arrival,
    });
    if let Some(key) = held {
        st.todo_locks.remove(&key);
    }
    run_scheduled(&mut st, corp, &req.path, &route_name);
    reply
}

/// The corp of the token a request carries (query `access_token` or the new-API header).
fn token_corp(st: &State, req: &Req) -> Option<usize> {
    let t = req
        .q("access_token")
        .or_else(|| req.header("x-acs-dingtalk-access-token"))?;
    st.tokens.get(t).map(|r| r.corp)
}

/// (corp, owner unionId, sourceId) of a to-do create with a valid app token and a sourceId.
fn todo_lock_key(
    st: &State,
    req: &Req,
    params: &[(&'static str, String)],
) -> Option<(usize, String, String)> {
    let t = req.header("x-acs-dingtalk-access-token")?;
    let rec = st.tokens.get(t)?;
    if rec.kind != TokenKind::App || rec.expires_at <= st.now_ms() {
        return None;
    }
    let owner = params.iter().find(|(k, _)| *k == "unionId")?.1.clone();
    let body: Value = serde_json::from_slice(&req.body).ok()?;
    let sid = match body.get("sourceId")? {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some((rec.corp, owner, sid))
}

/// Counts this call toward the scheduled directory changes of the caller's corp and applies
/// those that are due.
fn run_scheduled(st: &mut State, corp: Option<usize>, path: &str, route: &str) {
    let Some(corp) = corp else { return };
    if st.scheduled.is_empty() {
        return;
    }
    let mut due = Vec::new();
    let mut i = 0;
    while i < st.scheduled.len() {
        let s = &mut st.scheduled[i];
        if s.corp == corp && (s.api == path || s.api == route) {
            s.remaining = s.remaining.saturating_sub(1);
            if s.remaining == 0 {
                due.push(st.scheduled.remove(i).change);
                continue;
            }
        }
        i += 1;
    }
    for change in due {
        if let Ok(e) = crate::apply_change(st, corp, &change) {
            st.scheduled_events.push(e);
        }
    }
}

pub(crate) fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type Outcome = (Reply, Option<usize>, Option<i64>, Option<String>, u16);

fn run_api(
    st: &mut State,
    req: &Req,
    r: &Route,
    params: Vec<(&'static str, String)>,
    hint: Option<usize>,
) -> Outcome {
    let now = st.now_ms();
    let result = pipeline(st, req, r, params, hint, now);
    let (res, corp) = result;
    match res {
        Ok(payload) => match r.family {
            Family::New => (Reply::Json(200, payload), corp, None, None, 200),
            _ => {
                let rid = st.request_id_old();
                let mut body = Map::new();
                body.insert("errcode".into(), json!(0));
                body.insert("errmsg".into(), json!("ok"));
                if let Value::Object(m) = payload {
                    for (k, v) in m {
                        body.insert(k, v);
                    }
                }
                body.insert("request_id".into(), json!(rid));
                (
                    Reply::Json(200, Value::Object(body)),
                    corp,
                    Some(0),
                    None,
                    200,
                )
            }
        },
        Err(e) => {
            let (s, b, errcode, code) = render_error(st, r.family, &e);
            (Reply::Json(s, b), corp, errcode, code, s)
        }
    }
}

fn pipeline(
    st: &mut State,
    req: &Req,
    r: &Route,
    params: Vec<(&'static str, String)>,
    hint: Option<usize>,
    now: i64,
) -> (ApiResult, Option<usize>) {
    // Token.
    let mut corp = hint;
    let mut token = None;
    if r.auth != Auth::None {
        let raw = match r.family {
            Family::New => req.header("x-acs-dingtalk-access-token"),
            _ => req.q("access_token"),
        };
        let raw = match raw {
            Some(t) if !t.is_empty() => t,
            _ => return (Err(ApiError::MissingToken), corp),
        };
        let rec = match st.tokens.get(raw) {
            None => return (Err(ApiError::BadToken), corp),
            Some(rec) => rec.clone(),
        };
        corp = Some(rec.corp);
        if rec.expires_at <= now {
            return (Err(ApiError::ExpiredToken), corp);
        }
        let kind_ok = matches!(
            (r.auth, &rec.kind),
            (Auth::App, TokenKind::App)
                | (Auth::User, TokenKind::User { .. })
                | (Auth::Sso, TokenKind::Sso)
        );
        if !kind_ok {
            let e = if r.auth == Auth::Sso && r.family == Family::New {
                ApiError::New(400, "invalidToken".into(), "无效的token".into())
            } else {
                ApiError::BadToken
            };
            return (Err(e), corp);
        }
        token = Some(rec);
    }
    // IP whitelist.
    if let Some(i) = corp {
        if st.ip_block_all || st.corps[i].ip_blocked {
            let app_key = st.corps[i].creds.app_key.clone();
            return (Err(ApiError::IpBlocked { app_key }), corp);
        }
        // Per-app per-API QPS.
        let app_key = st.corps[i].creds.app_key.clone();
        if !st.qps_admit(&app_key, r.pattern, now) {
            return (Err(ApiError::Qps), corp);
        }
    }
    if !st.global_admit(r.pattern, now) {
        return (Err(ApiError::GlobalQps), corp);
    }
    // Monthly quota.
    if r.metered {
        if let (Some(i), Some(q)) = (corp, st.monthly_quota) {
            let used = st.monthly.get(&i).copied().unwrap_or(0);
            if used >= q {
                return (Err(ApiError::Quota), corp);
            }
        }
        if let Some(i) = corp {
            *st.monthly.entry(i).or_insert(0) += 1;
        }
    }
    // Permission.
    if let (Some(p), Some(i)) = (r.perm, corp) {
        if !st.corps[i].perms.contains(p) {
            return (Err(ApiError::Permission(vec![p])), corp);
        }
    }
    let ctx = Ctx {
        req,
        params,
        corp,
        token,
        now,
    };
    let res = (r.handler)(st, &ctx);
    (res, corp)
}

// ---------------------------------------------------------------------------------------------
// Body helpers shared by the handlers.

/// Parses the body as a JSON object (old API also accepts a form body).
pub(crate) fn body_object(req: &Req) -> Result<Map<String, Value>, ApiError> {
    let ct = req
        .header("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    if ct.contains("application/x-www-form-urlencoded") {
        let mut m = Map::new();
        for (k, v) in url::form_urlencoded::parse(&req.body) {
            m.insert(k.into_owned(), Value::String(v.into_owned()));
        }
        if m.is_empty() {
            return Err(ApiError::BadParam(
                "body is mandatory for this action.".into(),
            ));
        }
        return Ok(m);
    }
    if req.body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::BadParam(
            "body is mandatory for this action.".into(),
        ));
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ApiError::BadParam("body is not a JSON object".into())),
    }
}

/// The new API only takes JSON.
pub(crate) fn body_json_only(req: &Req) -> Result<Map<String, Value>, ApiError> {
    if req.body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::BadParam(
            "body is mandatory for this action.".into(),
        ));
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ApiError::BadParam(
            "body is mandatory for this action.".into(),
        )),
    }
}

/// An integer field given as a number or a numeric string.
pub(crate) fn get_i64(m: &Map<String, Value>, k: &str) -> Result<Option<i64>, ApiError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| ApiError::BadParam(k.to_string())),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::BadParam(k.to_string())),
        Some(_) => Err(ApiError::BadParam(k.to_string())),
    }
}

/// A string field (numbers are accepted and stringified).
pub(crate) fn get_str(m: &Map<String, Value>, k: &str) -> Result<Option<String>, ApiError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(ApiError::BadParam(k.to_string())),
    }
}

/// A boolean field (`true`/`false` strings are accepted).
pub(crate) fn get_bool(m: &Map<String, Value>, k: &str) -> Result<Option<bool>, ApiError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s == "true" => Ok(Some(true)),
        Some(Value::String(s)) if s == "false" => Ok(Some(false)),
        Some(_) => Err(ApiError::BadParam(k.to_string())),
    }
}

/// An array of strings.
pub(crate) fn get_str_list(
    m: &Map<String, Value>,
    k: &str,
) -> Result<Option<Vec<String>>, ApiError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(|s| s.to_string())
                    .ok_or_else(|| ApiError::BadParam(k.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(ApiError::BadParam(k.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_api_matching() {
        let r = "/v1.0/todo/users/{unionId}/tasks";
        let p = "/v1.0/todo/users/abc/tasks";
        assert!(fault_matches(r, p, r));
        assert!(fault_matches(p, p, r));
        assert!(fault_matches("/v1.0/todo", p, r));
        assert!(fault_matches("/v1.0/todo/", p, r));
        assert!(!fault_matches("/v1.0/to", p, r));
        assert!(fault_matches("/v1.0/to*", p, r));
        let g = "/topapi/v2/user/getuserinfo";
        assert!(!fault_matches("/topapi/v2/user/get", g, g));
        assert!(fault_matches("/topapi/v2/user/get*", g, g));
        assert!(fault_matches("/topapi", g, g));
        assert!(!fault_matches("", g, g));
    }

    #[test]
    fn route_patterns() {
        let m = match_pattern(
            "/v1.0/todo/users/{unionId}/tasks/{taskId}",
            "/v1.0/todo/users/u%201/tasks/t",
        )
        .unwrap();
        assert_eq!(
            m,
            vec![("unionId", "u 1".to_string()), ("taskId", "t".to_string())]
        );
        assert!(match_pattern(
            "/v1.0/todo/users/{unionId}/tasks",
            "/v1.0/todo/users//tasks"
        )
        .is_none());
        assert!(match_pattern("/gettoken", "/gettoken/x").is_none());
    }
}
