//! Helpers shared by the fuzz targets: splitting text inputs and the invariants every routed
//! response must keep.

use dingtalk_plugin::fuzzing::{FuzzEnv, SAMPLE_SECRETS};
use dingtalk_plugin::{Request, Routed};

/// The input as text (lossy), split into at most `n` lines; the last part keeps the rest.
pub fn parts(data: &[u8], n: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(data);
    let mut out: Vec<String> = text.splitn(n, '\n').map(str::to_string).collect();
    out.resize(n, String::new());
    out
}

/// Picks a fixed string by index, or `custom` past the end of the list.
pub fn pick(list: &[&str], index: u8, custom: &str) -> String {
    list.get(usize::from(index))
        .map(|s| s.to_string())
        .unwrap_or_else(|| custom.to_string())
}

/// The `GET`/`HEAD` routes, by path (as `web::router::route_of` classifies them).
fn is_page_route(request: &Request) -> bool {
    let path = request.path.trim_end_matches('/');
    let index_key = request.query_pairs().into_iter().next().map(|(k, _)| k);
    matches!(
        path,
        "/dingding/dingding_auth_corp"
            | "/dingding/dd_or_code_corp_list"
            | "/dingding/login"
            | "/dingding/login/complete"
    ) || (path == "/index.php"
        && matches!(
            index_key.as_deref(),
            Some("dingding/dd_client_callback" | "dingding/dd_callback")
        ))
}

fn request_text(request: &Request) -> String {
    let mut s = format!("{} {} {:?} ", request.method, request.path, request.query);
    for (k, v) in &request.headers {
        s.push_str(k);
        s.push_str(v);
    }
    s.push_str(&String::from_utf8_lossy(&request.body));
    s
}

/// Invariants of any answer to `request` under the sample settings:
/// - never 500 (that status is reserved for an unreadable sync checkpoint, which a request
///   cannot produce from an empty or plugin-written store) and always a real HTTP status;
/// - the security headers are present; `HEAD` has no body;
/// - no secret of the settings leaks into the response or a log line, unless the request
///   itself carried it (or a piece of it: the check is on whole secret values).
pub fn check_routed(request: &Request, routed: &Routed, env: &FuzzEnv) {
    check_routed_with(request, routed, env, "");
}

/// [`check_routed`], where `also_sent` is what the request carried in a form the check cannot
/// see (an event's plaintext inside its encrypted body): secrets in it may be echoed.
pub fn check_routed_with(request: &Request, routed: &Routed, env: &FuzzEnv, also_sent: &str) {
    let r = &routed.response;
    assert!((200..600).contains(&r.status), "status {}", r.status);
    assert_ne!(
        r.status, 500,
        "internal error for {request:?}: {:?}",
        routed.outcome
    );
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "x-content-type-options" && v == "nosniff"),
        "missing nosniff: {:?}",
        r.headers
    );
    // `HEAD` has no body on the page routes. Not checked on unknown paths (404) or routes that
    // refuse `HEAD` (405): `handle` returns those before clearing the body (reported finding,
    // fuzz/artifacts-found/router/head-404-has-body, head-405-has-body).
    if request.method == "HEAD" && is_page_route(request) {
        assert!(r.body.is_empty(), "HEAD with a body");
    }
    let asked = request_text(request) + also_sent;
    let body = String::from_utf8_lossy(&r.body);
    for secret in SAMPLE_SECRETS {
        if asked.contains(secret) {
            continue;
        }
        assert!(!body.contains(secret), "secret in the response body");
        for (_, v) in &r.headers {
            assert!(!v.contains(secret), "secret in a response header");
        }
        for line in &env.logs {
            assert!(!line.contains(secret), "secret in a log line: {line}");
        }
        let outcome = format!("{:?}", routed.outcome);
        assert!(!outcome.contains(secret), "secret in the outcome");
    }
}
