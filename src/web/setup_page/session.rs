//! The set-up page's session: a random id in the `__Host-dd_setup` cookie, stored only as its
//! SHA-256, rotated on every use (the old id lives [`ROTATION_GRACE_MS`] for requests in
//! flight); the session's CSRF token and its constant-time check; the sign-in with the platform
//! token, limited to [`MAX_FAILURES_PER_MINUTE`] wrong tokens a minute.

use super::render::sign_in_page;
use super::{Lang, MAX_FAILURES_PER_MINUTE, ROTATION_GRACE_MS, SESSION_COOKIE, SESSION_TTL_MS};
use crate::env::{random_id, Env};
use crate::failure::Failure;
use crate::kv;
use crate::secret::PlatformToken;
use crate::web::http::{Request, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SessionRecord {
    /// Stable id of the session (drives the sync; never sent to the browser).
    sid: String,
    /// The CSRF token of the session.
    csrf: String,
    /// When this id was replaced by a newer one (it then lives for the grace period only).
    rotated_at: Option<u64>,
}

/// A session in use.
pub(super) struct Session {
    pub(super) sid: String,
    pub(super) csrf: String,
    /// The id the request presented, while it may still be rotated.
    pub(super) presented: Option<String>,
    /// The id to set in the cookie, when it was rotated by this request.
    pub(super) new_id: Option<String>,
}

pub(super) fn session_key(id: &str) -> String {
    let digest = Sha256::digest(id.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("setup:session:{hex}")
}

pub(super) fn cookie(id: &str, max_age_s: u64) -> String {
    format!("{SESSION_COOKIE}={id}; Path=/; Max-Age={max_age_s}; HttpOnly; Secure; SameSite=Strict")
}

fn store_session(env: &mut dyn Env, record: &SessionRecord) -> Result<String, Failure> {
    let id = random_id(env, 24);
    let exp = env.now_ms() + SESSION_TTL_MS;
    kv::put_expiring(env, &session_key(&id), record, exp)?;
    Ok(id)
}

/// The session behind the request's cookie; `None` without a live one. Call [`rotate`] once
/// the request is known to be a legitimate use.
pub(super) fn resume(env: &mut dyn Env, request: &Request) -> Result<Option<Session>, Failure> {
    let Some(id) = request.cookie(SESSION_COOKIE).filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let Some(record) = kv::get_live::<SessionRecord>(env, &session_key(&id))? else {
        return Ok(None);
    };
    let now = env.now_ms();
    let presented = match record.rotated_at {
        Some(at) if now >= at + ROTATION_GRACE_MS => return Ok(None),
        // Replaced already (a request in flight): served, never rotated again.
        Some(_) => None,
        None => Some(id),
    };
    Ok(Some(Session {
        sid: record.sid,
        csrf: record.csrf,
        presented,
        new_id: None,
    }))
}

/// Replaces the presented id by a new one (once: the first request to claim it); the old id
/// lives on for [`ROTATION_GRACE_MS`].
pub(super) fn rotate(env: &mut dyn Env, session: &mut Session) -> Result<(), Failure> {
    let Some(id) = session.presented.take() else {
        return Ok(());
    };
    let key = session_key(&id);
    let now = env.now_ms();
    if !kv::claim(env, &format!("{key}:used"), now + SESSION_TTL_MS)? {
        // Another request is rotating this id right now: it sets the new cookie.
        return Ok(());
    }
    let record = SessionRecord {
        sid: session.sid.clone(),
        csrf: session.csrf.clone(),
        rotated_at: None,
    };
    session.new_id = Some(store_session(env, &record)?);
    let old = SessionRecord {
        rotated_at: Some(now),
        ..record
    };
    kv::put_expiring(env, &key, &old, now + ROTATION_GRACE_MS)?;
    Ok(())
}

pub(super) fn with_cookie(mut response: Response, session: &Session) -> Response {
    if let Some(id) = &session.new_id {
        response = response.header("set-cookie", &cookie(id, SESSION_TTL_MS / 1000));
    }
    response
}

pub(super) fn csrf_ok(session: &Session, candidate: Option<&str>) -> bool {
    candidate.is_some_and(|c| {
        c.len() == session.csrf.len() && bool::from(c.as_bytes().ct_eq(session.csrf.as_bytes()))
    })
}

/// Opens a session when `token` is the platform token (`expected`): 303 back to the page with
/// the new cookie. A wrong token is answered 401 with the form, and past
/// [`MAX_FAILURES_PER_MINUTE`] wrong tokens a minute (across instances) 429.
pub(super) fn sign_in_with_token(
    env: &mut dyn Env,
    expected: &PlatformToken,
    token: &str,
    lang: Lang,
) -> Result<Response, Failure> {
    let minute = env.now_ms() / 60_000;
    let failures_key = format!("setup:signin-failures:{minute}");
    if env.kv_increment(&failures_key, 0)? >= MAX_FAILURES_PER_MINUTE {
        return Ok(sign_in_page(
            429,
            lang,
            Some(lang.pick(
                "尝试次数过多，请一分钟后再试。",
                "Too many attempts; try again in a minute.",
            )),
        )
        .header("retry-after", "60"));
    }
    if !expected.matches(token.trim()) {
        if env.kv_increment(&failures_key, 1)? == 1 {
            kv::register_expiry(env, &failures_key, (minute + 2) * 60_000)?;
        }
        env.log("set-up page: a sign-in with a wrong token");
        return Ok(sign_in_page(
            401,
            lang,
            Some(lang.pick(
                "令牌不正确：请输入插件设置中的 platform_token。",
                "Wrong token: enter the platform_token of the plugin settings.",
            )),
        ));
    }
    let record = SessionRecord {
        sid: random_id(env, 16),
        csrf: random_id(env, 24),
        rotated_at: None,
    };
    let id = store_session(env, &record)?;
    Ok(Response::redirect(303, &lang.page_url())
        .header("set-cookie", &cookie(&id, SESSION_TTL_MS / 1000)))
}

pub(super) fn csrf_failure() -> Failure {
    Failure::new(
        403,
        "csrf_token_invalid",
        "This form is out of date: reload the set-up page and try again.",
        "表单已过期：请刷新设置页面后重试。",
    )
}

pub(super) fn signed_out() -> Failure {
    Failure::new(
        401,
        "setup_session_missing",
        "The set-up session has ended: reload the page and sign in with the platform token.",
        "设置会话已结束：请刷新页面并用平台令牌重新登录。",
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{body, call, csrf_of, set_id, sign_in, TOKEN};
    use super::super::{PAGE_PATH, SYNC_PATH};
    use super::*;
    use crate::settings::tests::sample_raw;
    use crate::testing::FakeEnv;
    use crate::web::router::{self, Mode};

    #[test]
    fn sign_in_sets_a_strict_host_cookie_and_a_wrong_token_is_401() {
        let mut env = FakeEnv::new();
        let r = call(&mut env, "GET", PAGE_PATH, None, "");
        assert_eq!(r.status, 200);
        assert!(body(&r).contains("name=\"token\"") && body(&r).contains("lang=\"zh-CN\""));
        let r = call(&mut env, "POST", PAGE_PATH, None, "token=wrong");
        assert_eq!(r.status, 401);
        assert!(body(&r).contains("令牌不正确") && body(&r).contains("name=\"token\""));
        assert!(r.get_header("set-cookie").is_none());
        let r = call(
            &mut env,
            "POST",
            "/dingding/setup?lang=en",
            None,
            &format!("token={TOKEN}"),
        );
        assert_eq!(r.status, 303);
        assert_eq!(r.get_header("location"), Some("/dingding/setup?lang=en"));
        let c = r.get_header("set-cookie").unwrap();
        for part in [
            "__Host-dd_setup=",
            "Path=/",
            "Max-Age=1800",
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
        ] {
            assert!(c.contains(part), "{c}");
        }
        assert!(!c.contains("Domain"));
        // Stored only as a hash.
        let id = set_id(&r);
        assert!(env.kv.keys().all(|k| !k.contains(&id)));
    }

    #[test]
    fn too_many_wrong_tokens_are_429() {
        let mut env = FakeEnv::new();
        for _ in 0..MAX_FAILURES_PER_MINUTE {
            assert_eq!(
                call(&mut env, "POST", PAGE_PATH, None, "token=x").status,
                401
            );
        }
        let r = call(&mut env, "POST", PAGE_PATH, None, &format!("token={TOKEN}"));
        assert_eq!(r.status, 429);
        env.now += 60_000;
        assert_eq!(
            call(&mut env, "POST", PAGE_PATH, None, &format!("token={TOKEN}")).status,
            303
        );
    }

    #[test]
    fn each_use_rotates_the_id_and_the_old_one_dies_after_the_grace() {
        let mut env = FakeEnv::new();
        let first = sign_in(&mut env);
        let r = call(&mut env, "GET", PAGE_PATH, Some(&first), "");
        assert_eq!(r.status, 200);
        let second = set_id(&r);
        assert_ne!(first, second);
        assert!(
            body(&r).contains("id=\"step-11\""),
            "the guide, not the form"
        );
        // In flight with the old id: still served, no new id.
        let r = call(&mut env, "GET", PAGE_PATH, Some(&first), "");
        assert!(body(&r).contains("id=\"step-1\"") && r.get_header("set-cookie").is_none());
        env.now += ROTATION_GRACE_MS;
        let r = call(&mut env, "GET", PAGE_PATH, Some(&first), "");
        assert!(body(&r).contains("name=\"token\""), "the old id is gone");
        let r = call(&mut env, "GET", PAGE_PATH, Some(&second), "");
        assert!(body(&r).contains("id=\"step-1\""));
        let third = set_id(&r);
        env.now += SESSION_TTL_MS;
        let r = call(&mut env, "GET", PAGE_PATH, Some(&third), "");
        assert!(
            body(&r).contains("name=\"token\""),
            "30 minutes idle end the session"
        );
    }

    #[test]
    fn state_changes_need_the_session_csrf_token() {
        let mut env = FakeEnv::new();
        let id = sign_in(&mut env);
        let r = call(&mut env, "GET", PAGE_PATH, Some(&id), "");
        let csrf = csrf_of(&body(&r));
        let id = set_id(&r);
        let r = call(
            &mut env,
            "POST",
            SYNC_PATH,
            Some(&id),
            r#"{"csrf":"nope","start":true}"#,
        );
        assert_eq!(r.status, 403);
        let id = set_id(&call(&mut env, "GET", PAGE_PATH, Some(&id), ""));
        let r = call(
            &mut env,
            "POST",
            SYNC_PATH,
            None,
            &format!("{{\"csrf\":\"{csrf}\"}}"),
        );
        assert_eq!(r.status, 401);
        let r = call(
            &mut env,
            "POST",
            PAGE_PATH,
            Some(&id),
            "action=sign_out&csrf=bad",
        );
        assert_eq!(r.status, 403);
        let id = set_id(&call(&mut env, "GET", PAGE_PATH, Some(&id), ""));
        let r = call(
            &mut env,
            "POST",
            PAGE_PATH,
            Some(&id),
            &format!("action=sign_out&csrf={csrf}"),
        );
        assert_eq!(r.status, 303);
        assert!(r.get_header("set-cookie").unwrap().contains("Max-Age=0"));
        let r = call(&mut env, "GET", PAGE_PATH, Some(&id), "");
        assert!(body(&r).contains("name=\"token\""), "signed out");
        // A cross-site POST is refused before anything else.
        let request = Request::new(
            "POST",
            PAGE_PATH,
            vec![("sec-fetch-site".into(), "cross-site".into())],
            format!("token={TOKEN}").into_bytes(),
        );
        assert_eq!(
            router::handle(&mut env, &sample_raw(), &request, Mode::Http)
                .response
                .status,
            403
        );
    }
}
