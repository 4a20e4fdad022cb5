//! Route table and dispatch (DESIGN §3): one function from a request to a response plus a typed
//! outcome, shared by the `wasi:http` entry and the typed `routes.handle` export.

use crate::env::Env;
use crate::failure::Failure;
use crate::web::http::{Request, Response};
use crate::model::{Identity, SequencedChange};
use crate::settings::{RawSettings, Settings};

/// Who is asking: the HTTP export (hand-off by ticket) or a typed call (identity returned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `wasi:http/incoming-handler`: logins end in a ticket and a redirect.
    Http,
    /// `dingtalk:plugin/routes.handle`: logins end in `Outcome::SignedIn`, no ticket.
    Typed,
}

/// A corp a person may pick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpOption {
    /// Organisation.
    pub corp_id: String,
    /// Display name.
    pub corp_name: String,
}

/// What a request did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Nothing to report.
    None,
    /// A person signed in.
    SignedIn(Box<Identity>),
    /// The corp list was shown.
    CorpChoice(Vec<CorpOption>),
    /// An event was applied.
    DirectoryChanged(Vec<SequencedChange>),
    /// The request failed.
    Failed(Failure),
}

/// Response plus outcome.
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

    /// A failure shown as a page.
    pub fn page_failure(failure: Failure) -> Self {
        Routed {
            response: crate::web::pages::failure_page(&failure),
            outcome: Outcome::Failed(failure),
        }
    }

    /// A failure answered as platform-API JSON.
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
    /// R1.
    InappMobile,
    /// R2.
    InappPc,
    /// R3.
    AdminSso,
    /// R4.
    QrCallback,
    /// R5.
    QrStart,
    /// R6.
    Events,
    /// R7.
    Api,
    /// The default hand-off landing when the platform has none configured.
    LoginComplete,
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
        _ => &["GET", "HEAD"],
    }
}

/// Handles one request.
pub fn handle(env: &mut dyn Env, raw: &RawSettings, request: &Request, mode: Mode) -> Routed {
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
                Route::Api => crate::web::platform_api::handle_unconfigured(request, &issues),
                _ => {
                    let failure = crate::web::pages::config_failure(&issues);
                    Routed {
                        response: crate::web::pages::config_error_page(&issues),
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
    let mut routed = match route {
        Route::InappMobile => crate::login::inapp(
            env,
            &settings,
            request,
            crate::model::Via::InappMobile,
            mode,
        ),
        Route::InappPc => {
            crate::login::inapp(env, &settings, request, crate::model::Via::InappPc, mode)
        }
        Route::AdminSso => crate::login::admin_sso(env, &settings, request, mode),
        Route::QrStart => crate::login::qr_start(env, &settings, request),
        Route::QrCallback => crate::login::qr_callback(env, &settings, request, mode),
        Route::LoginComplete => Routed::plain(crate::web::pages::login_complete_page(&settings)),
        Route::Events => crate::events::apply::handle(env, &settings, request),
        Route::Api => crate::web::platform_api::handle(env, &settings, request),
    };
    if request.method == "HEAD" {
        routed.response.body.clear();
    }
    routed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str) -> Request {
        Request::new("GET", path, vec![], vec![])
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
        assert_eq!(route_of(&req("/")), None);
    }
}
