//! Helpers shared by the set-up page's tests: requests through the router, the cookie a
//! response sets, a signed-in session, the page's CSRF token.

use super::{PAGE_PATH, SESSION_COOKIE};
use crate::settings::tests::sample_raw;
use crate::testing::FakeEnv;
use crate::web::http::{Request, Response};
use crate::web::router::{self, Mode};

pub(super) const TOKEN: &str = "platform-token-0123456789abcdef0123";

pub(super) fn call(
    env: &mut FakeEnv,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: &str,
) -> Response {
    let mut headers = vec![];
    if let Some(c) = cookie {
        headers.push(("cookie".to_string(), format!("{SESSION_COOKIE}={c}")));
    }
    if body.starts_with('{') {
        headers.push(("content-type".to_string(), "application/json".to_string()));
    }
    let request = Request::new(method, path, headers, body.as_bytes().to_vec());
    router::handle(env, &sample_raw(), &request, Mode::Http).response
}

pub(super) fn body(r: &Response) -> String {
    String::from_utf8(r.body.clone()).unwrap()
}

/// The id set by a response's `set-cookie`.
pub(super) fn set_id(r: &Response) -> String {
    let c = r.get_header("set-cookie").expect("a cookie");
    c.split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

pub(super) fn sign_in(env: &mut FakeEnv) -> String {
    let r = call(env, "POST", PAGE_PATH, None, &format!("token={TOKEN}"));
    assert_eq!(r.status, 303);
    set_id(&r)
}

pub(super) fn csrf_of(html: &str) -> String {
    let at = html.find("\"csrf\":\"").unwrap() + 8;
    html[at..at + 48].to_string()
}
