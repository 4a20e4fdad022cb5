//! Route table and dispatch (docs/http-contract.md §1): one function from a request to a response plus a typed
//! outcome, shared by the `wasi:http` entry and the typed `routes.handle` export.

use crate::env::Env;
use crate::events::apply::EventPush;
use crate::failure::Failure;
use crate::login::{admin_sso, handoff, inapp, qr, LoginResult, LoginStep};
use crate::model::{CorpOption, Identity, SequencedChange, Via};
use crate::settings::{RawSettings, Settings};
use crate::web::http::{Request, Response, MAX_BODY};
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
    /// The person was offered a choice of organisations.
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
    // Opportunistic clean-up of expired tickets, states and claims; never fails the request.
    if let Err(e) = crate::kv::sweep(env) {
        env.log(&format!("sweep skipped: {e}"));
    }
    match route {
        Route::LoginComplete => Routed::plain(pages::login_complete_page(&settings)),
        Route::Events => events(env, &settings, request),
        Route::Api => crate::web::platform_api::handle(env, &settings, request),
        Route::Setup => crate::web::setup_page::handle(env, &settings, request),
        login_route => {
            let result = sign_in(env, &settings, login_route, request);
            login(env, &settings, mode, result)
        }
    }
}

/// `corpId` (or `corpid`, as some DingTalk clients spell it) from the query.
fn corp_param(request: &Request) -> Option<String> {
    request.param("corpId").or_else(|| request.param("corpid"))
}

/// The answer to a body over [`MAX_BODY`].
pub fn body_too_large() -> Failure {
    Failure::new(
        413,
        "body_too_large",
        format!("The request body is larger than {} KiB.", MAX_BODY / 1024),
        format!("请求体超过 {} KiB。", MAX_BODY / 1024),
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
            let binding_cookie = request.cookie(qr::BINDING_COOKIE);
            match request.param("choice") {
                Some(choice_id) => {
                    let parsed = qr::ChoiceRequest {
                        choice_id,
                        corp_id: request.param("corp").unwrap_or_default(),
                        binding_cookie,
                    };
                    qr::choose(env, settings, parsed)
                }
                None => {
                    let parsed = qr::CallbackRequest {
                        state: request.param("state"),
                        code: request.param("authCode").or_else(|| request.param("code")),
                        error: request.param("error"),
                        binding_cookie,
                    };
                    qr::callback(env, settings, parsed)
                }
            }
        }
    }
}

/// Renders where a login flow ended: a page, a redirect, the corp choice, or the hand-off of a
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
        LoginStep::ChooseCorp { choice_id, options } => Routed {
            response: pages::corp_choice_page(&choice_id, &options),
            outcome: Outcome::CorpChoice(options),
        },
        LoginStep::SignedIn(identity) => match mode {
            Mode::Typed => Routed {
                response: Response::redirect(
                    302,
                    &handoff::landing_url(&settings.platform_login_url, None, &identity),
                ),
                outcome: Outcome::SignedIn(identity),
            },
            Mode::Http => match handoff::mint_ticket(env, &identity) {
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
    if request.body.len() > MAX_BODY {
        return Routed::json_failure(body_too_large());
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
}
