//! The set-up page's routes: `GET/HEAD/POST /dingding/setup` (the sign-in form or the guide;
//! sign-in and sign-out) and `POST /dingding/setup/sync` (one sync step for the page), each
//! refusing cross-site posts and checking the session's CSRF token before a state change.

use super::render::{guide_page, sign_in_page};
use super::session::{
    cookie, csrf_failure, csrf_ok, resume, rotate, session_key, sign_in_with_token, signed_out,
    with_cookie,
};
use super::{Lang, SESSION_COOKIE, SYNC_PATH};
use crate::env::Env;
use crate::failure::Failure;
use crate::settings::Settings;
use crate::setup;
use crate::web::http::{Request, Response, MAX_BODY};
use crate::web::router::Routed;
use serde::Deserialize;

fn form(request: &Request) -> Vec<(String, String)> {
    form_urlencoded::parse(&request.body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn field(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// Handles `GET/HEAD/POST /dingding/setup` and `POST /dingding/setup/sync`.
pub fn handle(env: &mut dyn Env, settings: &Settings, request: &Request) -> Routed {
    let lang = Lang::of(request);
    if request.body.len() > MAX_BODY {
        return Routed::page_failure(crate::web::router::body_too_large(
            crate::web::http::MAX_BODY,
        ));
    }
    if request.method == "POST" && request.header("sec-fetch-site") == Some("cross-site") {
        return Routed::page_failure(Failure::new(
            403,
            "cross_site",
            "The set-up page accepts forms from its own pages only.",
            "设置页面只接受来自本站页面的提交。",
        ));
    }
    let path = request.path.trim_end_matches('/');
    let answer = if path == SYNC_PATH {
        sync(env, settings, request, lang)
    } else if request.method == "POST" {
        post(env, settings, request, lang)
    } else {
        get(env, settings, request, lang)
    };
    match answer {
        Ok(response) => Routed::plain(response),
        Err(failure) if path == SYNC_PATH => Routed::json_failure(failure),
        Err(failure) => Routed::page_failure(failure),
    }
}

fn closed(lang: Lang) -> Response {
    sign_in_page(
        503,
        lang,
        Some(lang.pick(
            "设置页面未开启：请先在插件设置中填写 platform_token（至少 32 个字符）。",
            "The set-up page is closed: set platform_token (at least 32 characters) in the plugin settings first.",
        )),
    )
}

fn get(
    env: &mut dyn Env,
    settings: &Settings,
    request: &Request,
    lang: Lang,
) -> Result<Response, Failure> {
    if settings.platform_token.is_none() {
        return Ok(closed(lang));
    }
    let Some(mut session) = resume(env, request)? else {
        return Ok(sign_in_page(200, lang, None));
    };
    rotate(env, &mut session)?;
    let guide = setup::guide(env, settings);
    let now = env.now_ms();
    Ok(with_cookie(
        guide_page(&guide, settings, &session, lang, now),
        &session,
    ))
}

fn post(
    env: &mut dyn Env,
    settings: &Settings,
    request: &Request,
    lang: Lang,
) -> Result<Response, Failure> {
    let Some(expected) = settings.platform_token.as_ref() else {
        return Ok(closed(lang));
    };
    let pairs = form(request);
    if field(&pairs, "action").as_deref() == Some("sign_out") {
        if let Some(session) = resume(env, request)? {
            if !csrf_ok(&session, field(&pairs, "csrf").as_deref()) {
                return Err(csrf_failure());
            }
        }
        if let Some(id) = request.cookie(SESSION_COOKIE) {
            env.kv_delete(&session_key(&id))?;
        }
        return Ok(Response::redirect(303, &lang.page_url()).header("set-cookie", &cookie("", 0)));
    }
    let token = field(&pairs, "token").unwrap_or_default();
    sign_in_with_token(env, expected, &token, lang)
}

#[derive(Deserialize, Default)]
struct SyncCall {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    ack: Option<String>,
    #[serde(default)]
    start: bool,
}

/// `POST /dingding/setup/sync`: JSON from the page's script (one step, answered with the
/// [`SyncView`](setup::SyncView)), or the button's form without JavaScript (one step, then back
/// to the page).
fn sync(
    env: &mut dyn Env,
    settings: &Settings,
    request: &Request,
    lang: Lang,
) -> Result<Response, Failure> {
    let is_json = request
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json"));
    let call = if is_json {
        serde_json::from_slice::<SyncCall>(&request.body).map_err(|_| {
            Failure::bad_request(
                "invalid_json",
                "The body must be {\"csrf\": string, \"ack\"?: string, \"start\"?: bool}.",
                "请求体应为 {\"csrf\": 字符串, \"ack\"?: 字符串, \"start\"?: 布尔值}。",
            )
        })?
    } else {
        let pairs = form(request);
        SyncCall {
            csrf: field(&pairs, "csrf"),
            ack: None,
            start: true,
        }
    };
    let mut session = resume(env, request)?.ok_or_else(signed_out)?;
    let csrf = call
        .csrf
        .as_deref()
        .or_else(|| request.header("x-csrf-token"));
    if !csrf_ok(&session, csrf) {
        return Err(csrf_failure());
    }
    rotate(env, &mut session)?;
    let response =
        match setup::drive_sync(env, settings, &session.sid, call.ack.as_deref(), call.start) {
            Ok(view) if is_json => {
                Response::json(200, &serde_json::to_value(&view).unwrap_or_default())
            }
            Ok(_) => Response::redirect(303, &format!("{}#step-10", lang.page_url())),
            // The step failed: say why, and keep the (rotated) session.
            Err(failure) if is_json => Response::json_failure(&failure),
            Err(failure) => crate::web::pages::failure_page(&failure),
        };
    Ok(with_cookie(response, &session))
}

#[cfg(test)]
mod tests {
    use super::super::PAGE_PATH;
    use super::*;
    use crate::settings::tests::{sample, sample_raw};
    use crate::testing::FakeEnv;
    use crate::web::router::{self, Mode};

    #[test]
    fn the_page_is_closed_without_a_platform_token() {
        let mut raw = sample_raw();
        raw.remove("platform_token");
        let mut env = FakeEnv::new();
        for (method, body) in [("GET", ""), ("POST", "token=x")] {
            let request = Request::new(method, PAGE_PATH, vec![], body.as_bytes().to_vec());
            let r = router::handle(&mut env, &raw, &request, Mode::Http).response;
            assert_eq!(r.status, 503);
            assert!(String::from_utf8(r.body)
                .unwrap()
                .contains("platform_token"));
        }
        let _ = sample();
    }
}
