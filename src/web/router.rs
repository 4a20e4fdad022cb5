//! Route table and dispatch (docs/http-contract.md §1): one function from a request to a response plus a typed
//! outcome, shared by the `wasi:http` entry and the typed `routes.handle` export.

use crate::env::Env;
use crate::events::apply::EventPush;
use crate::failure::Failure;
use crate::login::{admin_sso, handoff, inapp, qr, LoginResult, LoginStep};
use crate::model::{CorpOption, Identity, SequencedChange, Via};
use crate::settings::{RawSettings, Settings};
use crate::web::http::{Request, Response, MAX_EVENT_BODY};
use crate::web::pages;

/// Who is asking: the HTTP export (hand-off by ticket) or a typed call (identity returned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `wasi:http/incoming-handler`: logins end in a ticket and a redirect.
    Http,
    /// `dingtalk:plugin/routes.handle`: logins end in `Outcome::SignedIn`, no ticket.
    Typed,
}

/// What a request did, for a platform that embeds the plugin through `routes.handle`.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Nothing to report.
    None,
    /// A person signed in.
    SignedIn(Box<Identity>),
    /// The person was offered the organisations to sign in to (R5's picker, commercial edition).
    CorpChoice(Vec<CorpOption>),
    /// An event recorded directory changes.
    DirectoryChanged(Vec<SequencedChange>),
    /// The request failed.
    Failed(Failure),
}

/// A response plus the typed outcome of the request that produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    /// What to answer.
    pub response: Response,
    /// What happened.
    pub outcome: Outcome,
}

impl Routed {
    /// A response with no outcome.
    pub fn plain(response: Response) -> Self {
        Routed {
            response,
            outcome: Outcome::None,
        }
    }

    /// A failure shown to a person as a page.
    pub fn page_failure(failure: Failure) -> Self {
        Routed {
            response: pages::failure_page(&failure),
            outcome: Outcome::Failed(failure),
        }
    }

    /// A failure answered to a program as JSON.
    pub fn json_failure(failure: Failure) -> Self {
        Routed {
            response: Response::json_failure(&failure),
            outcome: Outcome::Failed(failure),
        }
    }
}

/// Which route a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// R1, `GET /dingding/dingding_auth_corp`: in-app login from the mobile workbench.
    InappMobile,
    /// R2, `GET /index.php?dingding/dd_client_callback`: in-app login from the PC client.
    InappPc,
    /// R3, `GET /index.php?dingding/dd_callback&usertype=admin`: admin-backend SSO.
    AdminSso,
    /// R4, `GET /dingding/dd_or_code_corp_list`: DingTalk's QR / browser login callback.
    QrCallback,
    /// R5, `GET /dingding/login`: starts QR / browser login.
    QrStart,
    /// R6, `POST /dingding/events`: DingTalk's contact events (HTTP push).
    Events,
    /// R7, `/dingding/api/*`: the platform API.
    Api,
    /// The default hand-off landing when the platform has none configured.
    LoginComplete,
    /// `/dingding/setup` and `/dingding/setup/sync`: the admin's set-up page.
    Setup,
}

/// Classifies a request by path (and, for `/index.php`, by its PHP-style first query key).
pub fn route_of(request: &Request) -> Option<Route> {
    let path = request.path.trim_end_matches('/');
    match path {
        "/dingding/dingding_auth_corp" => Some(Route::InappMobile),
        "/dingding/dd_or_code_corp_list" => Some(Route::QrCallback),
        "/dingding/login" => Some(Route::QrStart),
        "/dingding/login/complete" => Some(Route::LoginComplete),
        "/dingding/events" => Some(Route::Events),
        "/dingding/setup" | "/dingding/setup/sync" => Some(Route::Setup),
        "/index.php" => {
            let pairs = request.query_pairs();
            let first = pairs.first().map(|(k, _)| k.as_str());
            match first {
                Some("dingding/dd_client_callback") => Some(Route::InappPc),
                Some("dingding/dd_callback") => Some(Route::AdminSso),
                _ => None,
            }
        }
        p if p == "/dingding/api" || p.starts_with("/dingding/api/") => Some(Route::Api),
        _ => None,
    }
}

fn allowed_methods(route: Route) -> &'static [&'static str] {
    match route {
        Route::Events => &["POST"],
        Route::Api => &["GET", "POST", "DELETE", "PUT"],
        Route::Setup => &["GET", "HEAD", "POST"],
        _ => &["GET", "HEAD"],
    }
}

/// Handles one request. A `HEAD` request gets the headers of the `GET` answer and no body,
/// whatever the answer (a page, a 404, a 405, a failure).
pub fn handle(env: &mut dyn Env, raw: &RawSettings, request: &Request, mode: Mode) -> Routed {
    let mut routed = dispatch(env, raw, request, mode);
    if request.method == "HEAD" {
        routed.response.body.clear();
    }
    routed
}

fn dispatch(env: &mut dyn Env, raw: &RawSettings, request: &Request, mode: Mode) -> Routed {
    let Some(route) = route_of(request) else {
        return Routed::page_failure(Failure::new(
            404,
            "not_found",
            "There is no page at this address. Check the URL configured in the DingTalk developer console against the set-up guide.",
            "此地址没有页面。请对照配置指引检查钉钉开发者后台中填写的地址。",
        ));
    };
    if !allowed_methods(route).contains(&request.method.as_str()) {
        let failure = Failure::new(
            405,
            "method_not_allowed",
            format!(
                "{} is not allowed here; use {}.",
                request.method,
                allowed_methods(route).join(" or ")
            ),
            format!(
                "此地址不支持 {} 请求，请使用 {}。",
                request.method,
                allowed_methods(route).join(" 或 ")
            ),
        );
        let mut routed = if route == Route::Api || route == Route::Events {
            Routed::json_failure(failure)
        } else {
            Routed::page_failure(failure)
        };
        routed.response = routed
            .response
            .header("allow", &allowed_methods(route).join(", "));
        return routed;
    }
    let settings = match Settings::parse(raw) {
        Ok(s) => s,
        Err(issues) => {
            return match route {
                Route::Api => crate::web::platform_api::handle_unconfigured(request, raw, &issues),
                _ => {
                    let failure = pages::config_failure(&issues);
                    Routed {
                        response: pages::config_error_page(&issues),
                        outcome: Outcome::Failed(failure),
                    }
                }
            }
        }
    };
    let routed = match route {
        Route::LoginComplete => Routed::plain(pages::login_complete_page(&settings)),
        Route::Events => events(env, &settings, request),
        Route::Api => crate::web::platform_api::handle(env, &settings, request),
        Route::Setup => crate::web::setup_page::handle(env, &settings, request),
        login_route => {
            let result = sign_in(env, &settings, login_route, request);
            let mut routed = login(env, &settings, mode, result);
            if login_route == Route::QrCallback {
                // R4 ends the login in this browser whatever the outcome: the state's one use
                // there (src/login/qr.rs, verify_state).
                routed.response = routed
                    .response
                    .header("set-cookie", &qr::clear_binding_cookie());
            }
            routed
        }
    };
    if writes(route, request) {
        // A bounded slice of the clean-up of expired tickets, states and claims, only after
        // requests that write (never on the JSAPI page or a read); never fails the request.
        if let Err(e) = crate::kv::sweep(env) {
            env.log(&format!("sweep skipped: {e}"));
        }
    }
    routed
}

/// Whether a request may write to the key-value store, and so pays a slice of the sweep: code
/// exchanges (R1–R3 with `code`, R4), events, and the platform API's non-GET calls.
fn writes(route: Route, request: &Request) -> bool {
    match route {
        Route::InappMobile | Route::InappPc | Route::AdminSso => request.param("code").is_some(),
        Route::QrCallback | Route::Events => true,
        Route::Api => request.method != "GET" && request.method != "HEAD",
        // The default landing page, and any read-only route added later.
        _ => false,
    }
}

/// `corpId` (or `corpid`, as some DingTalk clients spell it) from the query.
fn corp_param(request: &Request) -> Option<String> {
    request.param("corpId").or_else(|| request.param("corpid"))
}

/// The answer to a body over the route's `limit` (`MAX_BODY`, or [`MAX_EVENT_BODY`] for R6).
pub fn body_too_large(limit: usize) -> Failure {
    Failure::new(
        413,
        "body_too_large",
        format!("The request body is larger than {} KiB.", limit / 1024),
        format!("请求体超过 {} KiB。", limit / 1024),
    )
}

/// Parses a login route's request and runs its flow.
fn sign_in(env: &mut dyn Env, settings: &Settings, route: Route, request: &Request) -> LoginResult {
    let return_to = request.param("return_to");
    match route {
        Route::InappMobile | Route::InappPc => {
            let via = if route == Route::InappPc {
                Via::InappPc
            } else {
                Via::InappMobile
            };
            let parsed = inapp::InappRequest {
                corp_id: corp_param(request),
                code: request.param("code"),
                return_to,
                page_cookie: request.cookie(inapp::PAGE_COOKIE),
            };
            inapp::sign_in(env, settings, parsed, via)
        }
        Route::AdminSso => {
            let parsed = admin_sso::AdminSsoRequest {
                corp_id: corp_param(request),
                code: request.param("code"),
                return_to,
            };
            admin_sso::sign_in(env, settings, parsed)
        }
        Route::QrStart => {
            let parsed = qr::StartRequest {
                corp_id: corp_param(request),
                return_to,
                binding_cookie: request.cookie(qr::BINDING_COOKIE),
            };
            qr::start(env, settings, parsed)
        }
        _ => {
            let parsed = qr::CallbackRequest {
                state: request.param("state"),
                code: request.param("authCode").or_else(|| request.param("code")),
                error: request.param("error"),
                binding_cookie: request.cookie(qr::BINDING_COOKIE),
            };
            qr::callback(env, settings, parsed)
        }
    }
}

/// Renders where a login flow ended: a page, a redirect, the organisation picker, or the hand-off of a
/// signed-in identity (a ticket and a redirect over HTTP, the identity itself when typed).
fn login(env: &mut dyn Env, settings: &Settings, mode: Mode, result: LoginResult) -> Routed {
    let step = match result {
        Ok(step) => step,
        Err(failure) if failure.status == 429 => {
            let mut routed = Routed::page_failure(failure);
            routed.response = routed.response.header("retry-after", "60");
            return routed;
        }
        Err(failure) => return Routed::page_failure(failure),
    };
    match step {
        LoginStep::JsapiPage {
            corp_id,
            client_id,
            set_cookie,
            retry,
        } => Routed::plain(
            pages::inapp_page(&corp_id, &client_id, retry).header("set-cookie", &set_cookie),
        ),
        LoginStep::ToDingTalk {
            location,
            set_cookie,
        } => Routed::plain(Response::redirect(302, &location).header("set-cookie", &set_cookie)),
        LoginStep::PickCorp { options, return_to } => Routed {
            response: pages::corp_picker_page(&options, return_to.as_deref()),
            outcome: Outcome::CorpChoice(options),
        },
        LoginStep::SignedIn(identity, slot) => match mode {
            Mode::Typed => Routed {
                response: Response::redirect(
                    302,
                    &handoff::landing_url(&settings.platform_login_url, None, &identity),
                ),
                outcome: Outcome::SignedIn(identity),
            },
            Mode::Http => match handoff::mint_ticket(env, slot, &identity) {
                Ok(ticket) => {
                    env.log(&format!(
                        "signed in via {:?}: corp {} (ticket issued)",
                        identity.via, identity.corp_id
                    ));
                    Routed::plain(Response::redirect(
                        302,
                        &handoff::landing_url(
                            &settings.platform_login_url,
                            Some(&ticket),
                            &identity,
                        ),
                    ))
                }
                Err(failure) => Routed::page_failure(failure),
            },
        },
    }
}

/// R6: parses an event push, hands it to [`crate::events::apply::receive`] and answers with the
/// encrypted `success` (or a JSON failure).
pub(crate) fn events(env: &mut dyn Env, settings: &Settings, request: &Request) -> Routed {
    if request.body.len() > MAX_EVENT_BODY {
        return Routed::json_failure(body_too_large(MAX_EVENT_BODY));
    }
    let push = EventPush {
        signature: request
            .param("msg_signature")
            .or_else(|| request.param("signature")),
        timestamp: request
            .param("timestamp")
            .or_else(|| request.param("timeStamp")),
        nonce: request.param("nonce"),
        body: request.body.clone(),
    };
    match crate::events::apply::receive(env, settings, &push) {
        Ok(answer) => Routed {
            // The set-up page shows when the subscription last worked.
            outcome: {
                crate::setup::note_verified_event(env);
                if answer.changes.is_empty() {
                    Outcome::None
                } else {
                    Outcome::DirectoryChanged(answer.changes)
                }
            },
            response: Response::json(200, &answer.reply),
        },
        Err(failure) => Routed::json_failure(failure),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str) -> Request {
        Request::new("GET", path, vec![], vec![])
    }

    /// Found by the `router` fuzz target (fuzz/artifacts-found/router/): HEAD on a 404 or 405
    /// carried the page's body.
    #[test]
    fn head_never_has_a_body() {
        let mut env = crate::testing::FakeEnv::new();
        let raw = crate::settings::tests::sample_raw();
        for path in ["/x", "/dingding/events", "/dingding/login"] {
            let r = handle(
                &mut env,
                &raw,
                &Request::new("HEAD", path, vec![], vec![]),
                Mode::Http,
            );
            assert!(
                r.response.body.is_empty(),
                "HEAD {path}: {}",
                r.response.status
            );
            assert!(r.response.status >= 200, "{path}");
        }
    }

    #[test]
    fn routes() {
        assert_eq!(
            route_of(&req("/dingding/dingding_auth_corp?corpId=x")),
            Some(Route::InappMobile)
        );
        assert_eq!(
            route_of(&req("/index.php?dingding/dd_client_callback&corpId=x")),
            Some(Route::InappPc)
        );
        assert_eq!(
            route_of(&req(
                "/index.php?dingding/dd_callback&usertype=admin&corpId=x&code=y"
            )),
            Some(Route::AdminSso)
        );
        assert_eq!(
            route_of(&req("/index.php?corpId=x&dingding/dd_callback")),
            None
        );
        assert_eq!(route_of(&req("/index.php")), None);
        assert_eq!(
            route_of(&req("/dingding/dd_or_code_corp_list?authCode=x")),
            Some(Route::QrCallback)
        );
        assert_eq!(route_of(&req("/dingding/login")), Some(Route::QrStart));
        assert_eq!(route_of(&req("/dingding/events")), Some(Route::Events));
        assert_eq!(
            route_of(&req("/dingding/api/tickets/redeem")),
            Some(Route::Api)
        );
        assert_eq!(route_of(&req("/dingding/apix")), None);
        assert_eq!(
            route_of(&req(
                "/dingding/dingding_auth_corp?x=https://h/dingding/api/corps"
            )),
            Some(Route::InappMobile)
        );
        assert_eq!(
            route_of(&req(
                "http://h:1/index.php?dingding/dd_client_callback&corpId=C"
            )),
            Some(Route::InappPc)
        );
        assert_eq!(route_of(&req("/")), None);
    }

    // ---- Logins at the floor (issue 12): DingTalk calls and key-value work per warm login.

    use crate::testing::FakeEnv;
    use serde_json::json;

    const BEARER: &str = "platform-token-0123456789abcdef0123";

    fn get(path: &str, cookie: Option<&str>) -> Request {
        let headers = cookie
            .map(|c| vec![("cookie".to_string(), c.to_string())])
            .unwrap_or_default();
        Request::new("GET", path, headers, vec![])
    }

    fn set_cookie_pair(r: &Routed) -> String {
        let line = r.response.get_header("set-cookie").expect("a cookie");
        line.split(';').next().unwrap().to_string()
    }

    fn location(r: &Routed) -> String {
        r.response
            .get_header("location")
            .expect("a redirect")
            .to_string()
    }

    fn redeem(env: &mut FakeEnv, raw: &RawSettings, landing: &str) -> Identity {
        let ticket = landing
            .split("ticket=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap();
        let body = json!({ "ticket": ticket }).to_string();
        let headers = vec![("authorization".to_string(), format!("Bearer {BEARER}"))];
        let r = handle(
            env,
            raw,
            &Request::new(
                "POST",
                "/dingding/api/tickets/redeem",
                headers,
                body.into_bytes(),
            ),
            Mode::Http,
        );
        assert_eq!(
            r.response.status,
            200,
            "{:?}",
            String::from_utf8_lossy(&r.response.body)
        );
        serde_json::from_slice(&r.response.body).unwrap()
    }

    /// The fake DingTalk of one corp where u1 is a sub-admin (sys_level 2) and the boss.
    fn script(env: &mut FakeEnv) {
        env.answer(
            "/topapi/v2/user/getuserinfo",
            json!({"errcode": 0, "result": {"userid": "u1", "unionid": "un1", "name": "张三", "sys": true, "sys_level": 2}}),
        );
        env.answer(
            "/topapi/v2/user/get",
            json!({"errcode": 0, "result": {"userid": "u1", "unionid": "un1", "name": "张三", "dept_id_list": [1, 7], "org_email": "z@corp", "admin": true, "boss": true}}),
        );
        env.answer(
            "/v1.0/oauth2/userAccessToken",
            json!({"accessToken": "ut", "expireIn": 7200}),
        );
        env.answer(
            "/v1.0/contact/users/me",
            json!({"unionId": "un1", "nick": "Z"}),
        );
        env.answer(
            "/topapi/user/getbyunionid",
            json!({"errcode": 0, "result": {"contact_type": 0, "userid": "u1"}}),
        );
        env.answer(
            "/v1.0/oauth2/ssoAccessToken",
            json!({"accessToken": "st", "expireIn": 7200}),
        );
        env.answer(
            "/v1.0/oauth2/ssoUserInfo",
            json!({"corpId": "dingcorp123", "userId": "u1", "userName": "张三", "isAdmin": true}),
        );
    }

    /// Starts counting: DingTalk calls and key-value operations from here on.
    fn reset(env: &mut FakeEnv) {
        // Let the sweep settle first, as it has in a store that has served for a while.
        for _ in 0..100 {
            let before = env.kv.clone();
            crate::kv::sweep(env).unwrap();
            if env.kv == before {
                break;
            }
        }
        env.requests.clear();
        env.kv_ops.clear();
    }

    fn writes(env: &FakeEnv) -> Vec<String> {
        env.kv_ops
            .iter()
            .filter(|(op, _)| *op != "get")
            .map(|(op, key)| format!("{op} {}", key.split(':').next().unwrap_or("")))
            .collect()
    }

    fn inapp(env: &mut FakeEnv, raw: &RawSettings) -> Identity {
        let page_path = "/dingding/dingding_auth_corp?corpId=dingcorp123";
        let page = handle(env, raw, &get(page_path, None), Mode::Http);
        assert_eq!(page.response.status, 200);
        let cookie = set_cookie_pair(&page);
        let r = handle(
            env,
            raw,
            &get(&format!("{page_path}&code=c1"), Some(&cookie)),
            Mode::Http,
        );
        assert_eq!(
            r.response.status,
            302,
            "{:?}",
            String::from_utf8_lossy(&r.response.body)
        );
        redeem(env, raw, &location(&r))
    }

    #[test]
    fn the_jsapi_page_touches_no_key_value_store() {
        let mut env = FakeEnv::new();
        let raw = crate::settings::tests::sample_raw();
        let r = handle(
            &mut env,
            &raw,
            &get("/dingding/dingding_auth_corp?corpId=dingcorp123", None),
            Mode::Http,
        );
        assert_eq!(r.response.status, 200);
        let r = handle(
            &mut env,
            &raw,
            &get(
                "/index.php?dingding/dd_client_callback&corpId=dingcorp123",
                None,
            ),
            Mode::Http,
        );
        assert_eq!(r.response.status, 200);
        // Nor does the QR login's start (self-use edition): its state is signed, not stored.
        let mut raw = raw;
        raw.insert("qr_login_enabled".into(), "true".into());
        let r = handle(&mut env, &raw, &get("/dingding/login", None), Mode::Http);
        assert_eq!(r.response.status, 302);
        assert!(env.kv_ops.is_empty(), "{:?}", env.kv_ops);
        assert!(env.requests.is_empty());
    }

    #[test]
    fn a_warm_inapp_login_is_one_call_and_three_writes_with_the_redeem() {
        let mut env = FakeEnv::new();
        script(&mut env);
        let raw = crate::settings::tests::sample_raw();
        // Cold: the app token and user/get; user/get's answer is mirrored.
        let cold = inapp(&mut env, &raw);
        assert_eq!(env.calls_to("/topapi/v2/user/get"), 1);
        reset(&mut env);
        let warm = inapp(&mut env, &raw);
        assert_eq!(
            env.paths(),
            ["/topapi/v2/user/getuserinfo"],
            "one DingTalk call"
        );
        assert_eq!(
            writes(&env),
            ["increment t", "set t", "increment t"],
            "budget/slot, ticket, redeem claim"
        );
        assert_eq!(cold, warm, "the mirror gives the identity user/get gave");
        assert_eq!(
            (warm.unionid.as_str(), warm.dept_ids.as_slice()),
            ("un1", &[1, 7][..])
        );
        assert!(warm.is_admin);
        assert_eq!(
            warm.admin_level, 100,
            "the boss flag outranks the sub-admin level"
        );
    }

    #[test]
    fn a_warm_admin_sso_login_is_one_call_with_the_full_identity() {
        let mut env = FakeEnv::new();
        script(&mut env);
        let raw = crate::settings::tests::sample_raw();
        let path = "/index.php?dingding/dd_callback&usertype=admin&corpId=dingcorp123&code=s1";
        let r = handle(&mut env, &raw, &get(path, None), Mode::Http);
        let _ = redeem(&mut env, &raw, &location(&r));
        reset(&mut env);
        let r = handle(&mut env, &raw, &get(path, None), Mode::Http);
        assert_eq!(r.response.status, 302);
        let id = redeem(&mut env, &raw, &location(&r));
        assert_eq!(env.paths().len(), 1, "{:?}", env.paths());
        assert!(env.paths()[0].starts_with("/v1.0/oauth2/ssoUserInfo"));
        assert_eq!(writes(&env), ["increment t", "set t", "increment t"]);
        assert_eq!(
            (id.unionid.as_str(), id.dept_ids.as_slice()),
            ("un1", &[1, 7][..])
        );
        assert_eq!(
            (id.is_admin, id.admin_level, id.via),
            (true, 100, Via::AdminSso)
        );
    }

    #[test]
    fn a_warm_qr_login_is_three_calls() {
        let mut env = FakeEnv::new();
        script(&mut env);
        let mut raw = crate::settings::tests::sample_raw();
        raw.insert("qr_login_enabled".into(), "true".into());
        let qr = |env: &mut FakeEnv| {
            let start = handle(env, &raw, &get("/dingding/login", None), Mode::Http);
            let cookie = set_cookie_pair(&start);
            let loc = location(&start);
            assert!(loc.contains("client_id=dingappkey123") && loc.contains("corpId=dingcorp123"));
            let state = loc
                .split("state=")
                .nth(1)
                .unwrap()
                .split('&')
                .next()
                .unwrap();
            let cb = format!("/dingding/dd_or_code_corp_list?authCode=a1&state={state}");
            let r = handle(env, &raw, &get(&cb, Some(&cookie)), Mode::Http);
            assert_eq!(
                r.response.status,
                302,
                "{:?}",
                String::from_utf8_lossy(&r.response.body)
            );
            let cleared = r.response.get_header("set-cookie").unwrap_or_default();
            assert!(
                cleared.starts_with("__Host-dd_login=;") && cleared.contains("Max-Age=0"),
                "a completed login clears the binding: {cleared}"
            );
            redeem(env, &raw, &location(&r))
        };
        let _ = qr(&mut env);
        reset(&mut env);
        let id = qr(&mut env);
        assert_eq!(
            env.paths()
                .iter()
                .map(|p| p.split('?').next().unwrap().to_string())
                .collect::<Vec<_>>(),
            [
                "/v1.0/oauth2/userAccessToken",
                "/v1.0/contact/users/me",
                "/topapi/user/getbyunionid"
            ]
        );
        assert_eq!(
            writes(&env),
            ["increment t", "set t", "increment t"],
            "budget/slot, ticket, redeem claim: the state is signed, not stored"
        );
        assert_eq!(
            (id.userid.as_str(), id.dept_ids.as_slice()),
            ("u1", &[1, 7][..])
        );
    }
}
