//! The admin's set-up page, `GET/POST /dingding/setup` and `POST /dingding/setup/sync`
//! (docs/http-contract.md §1): the seed's steps rendered from [`crate::setup::Guide`], behind a
//! session opened with the platform token.
//!
//! **Session.** `POST /dingding/setup` with the form field `token` (compared in constant time
//! with `platform_token`) opens a session: a random id in the `__Host-dd_setup` cookie (HttpOnly,
//! Secure, SameSite=Strict, `Path=/`, 30 minutes), stored in the key-value store only as its
//! SHA-256. Every use rotates the id: the request that first presents it (claimed with
//! `increment`) gets a new one; the old id keeps working for [`ROTATION_GRACE_MS`] so requests
//! already in flight (a second tab) are not signed out, then it is gone. Each session has a CSRF
//! token, fixed for its life, that every state-changing form and call carries; cross-site POSTs
//! (`Sec-Fetch-Site: cross-site`) are refused. Wrong tokens are answered 401 with the form, and
//! more than [`MAX_FAILURES_PER_MINUTE`] a minute (across instances) 429.
//!
//! **Language.** Chinese; English with `?lang=en` or an `Accept-Language` preferring English.
//!
//! Parts: `handlers` (the routes: dispatch, sign-in form post, sign-out, sync steps), `session`
//! (the `__Host-dd_setup` session, its rotation, CSRF, the token check and its rate limit) and
//! `render` (the HTML: sign-in form, guide, sync block, CSP-pinned style and script).

mod handlers;
mod render;
mod session;
#[cfg(test)]
mod test_support;

pub use handlers::handle;

use crate::setup::Text;
use crate::web::http::Request;

/// The page.
pub const PAGE_PATH: &str = "/dingding/setup";
/// Where the page's button posts sync steps.
pub const SYNC_PATH: &str = "/dingding/setup/sync";
/// The session cookie.
pub const SESSION_COOKIE: &str = "__Host-dd_setup";
/// A session ends this long after its last use.
pub const SESSION_TTL_MS: u64 = 30 * 60 * 1000;
/// A rotated id keeps working this long, for requests already in flight.
pub const ROTATION_GRACE_MS: u64 = 10_000;
/// Wrong tokens accepted per minute before the sign-in answers 429.
pub const MAX_FAILURES_PER_MINUTE: i64 = 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lang {
    Zh,
    En,
}

impl Lang {
    fn of(request: &Request) -> Lang {
        match request.param("lang").as_deref() {
            Some("en") => return Lang::En,
            Some("zh") | Some("zh-CN") => return Lang::Zh,
            _ => {}
        }
        // The first language the browser prefers.
        let first = request
            .header("accept-language")
            .and_then(|h| h.split(',').next())
            .map(|l| l.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if first.starts_with("en") {
            Lang::En
        } else {
            Lang::Zh
        }
    }

    fn pick<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }

    fn of_text(self, t: &Text) -> &str {
        self.pick(&t.zh, &t.en)
    }

    fn code(self) -> &'static str {
        self.pick("zh", "en")
    }

    fn page_url(self) -> String {
        format!("{PAGE_PATH}?lang={}", self.code())
    }
}
