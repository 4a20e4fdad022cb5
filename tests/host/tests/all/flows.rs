//! The browser and platform steps of the login flows, as a person's browser and the platform's
//! server would do them.

use dingtalk_host::client::{path_and_query, query_param, Http, Resp};
use dingtalk_host::demo::{LOGIN_COMPLETE, PLATFORM_TOKEN, SITE_URL};
use dingtalk_sim::Sim;

/// The ticket of a successful hand-off: a 302 to `platform_login_url?ticket=T`.
#[track_caller]
pub fn ticket_of(resp: &Resp) -> String {
    assert_eq!(resp.status, 302, "expected the hand-off redirect: {resp}");
    let location = resp.location();
    assert!(
        location.starts_with(&format!("{LOGIN_COMPLETE}?ticket=")),
        "the hand-off goes to platform_login_url?ticket=…: {location}"
    );
    let ticket = query_param(location, "ticket").expect("ticket in the hand-off URL");
    assert!(
        ticket.len() >= 32 && ticket.bytes().all(|b| b.is_ascii_hexdigit()),
        "a ticket carries at least 128 random bits: {ticket}"
    );
    ticket
}

/// The cookie the JSAPI page (R1/R2 without a code) sets to bind the code exchange to the
/// browser that loaded it.
pub const INAPP_COOKIE: &str = "__Host-dd_inapp";
/// The QR login's binding cookie (R5 → R4).
pub const QR_COOKIE: &str = "__Host-dd_login";

/// The browser loads the JSAPI page at `path` (R1/R2 without a code): the `Cookie` header
/// value it keeps (`__Host-dd_inapp=…`).
#[track_caller]
pub fn inapp_page(http: &Http, path: &str) -> String {
    let page = http.get(path);
    assert_eq!(page.status, 200, "the JSAPI page: {page}");
    let value = page
        .set_cookie(INAPP_COOKIE)
        .unwrap_or_else(|| panic!("the JSAPI page set no {INAPP_COOKIE} cookie: {page}"));
    format!("{INAPP_COOKIE}={value}")
}

/// What the page's script does with the code DingTalk gave it: back to the same URL plus
/// `&code=`, with the page's cookie.
pub fn inapp_with_code(http: &Http, path: &str, code: &str, cookie: &str) -> Resp {
    http.get_with_cookie(&format!("{path}&code={code}"), cookie)
}

/// R1 as a browser in DingTalk does it: the JSAPI page, then a fresh in-app code for `userid`
/// with the page's cookie. The ticket.
#[track_caller]
pub fn inapp_login(http: &Http, sim: &Sim, corp_id: &str, userid: &str) -> String {
    let path = format!("/dingding/dingding_auth_corp?corpId={corp_id}");
    let cookie = inapp_page(http, &path);
    let code = sim.mint_inapp_code(corp_id, userid);
    ticket_of(&inapp_with_code(http, &path, &code, &cookie))
}

/// `POST /dingding/api/tickets/redeem` with the platform's bearer.
pub fn redeem(http: &Http, ticket: &str) -> Resp {
    let body = serde_json::json!({ "ticket": ticket }).to_string();
    http.api(
        "POST",
        "/dingding/api/tickets/redeem",
        Some(PLATFORM_TOKEN),
        Some(&body),
    )
}

/// What R5 handed the browser.
#[derive(Debug, Clone)]
pub struct QrStart {
    /// The `state` in the redirect to DingTalk's login page.
    pub state: String,
    /// The binding cookie, as a `Cookie` header value (`__Host-dd_login=…`).
    pub cookie: String,
    /// The redirect to the login page.
    pub location: String,
}

/// R5 (`/dingding/login` + `query`), with the browser's `cookie` if any.
#[track_caller]
pub fn qr_start(http: &Http, query: &str, cookie: Option<&str>) -> QrStart {
    let path = format!("/dingding/login{query}");
    let resp = match cookie {
        Some(c) => http.get_with_cookie(&path, c),
        None => http.get(&path),
    };
    assert_eq!(resp.status, 302, "R5 redirects to DingTalk: {resp}");
    let location = resp.location().to_string();
    let state = query_param(&location, "state").expect("state in the login redirect");
    let cookie = match resp.set_cookie(QR_COOKIE) {
        Some(v) => format!("{QR_COOKIE}={v}"),
        None => cookie
            .map(str::to_string)
            .unwrap_or_else(|| panic!("R5 set no {QR_COOKIE} cookie: {resp}")),
    };
    QrStart {
        state,
        cookie,
        location,
    }
}

/// The browser on DingTalk's login page (`start.location`) picks member `userid` ("scans"):
/// returns the path and query of the callback (R4) DingTalk redirects to.
#[track_caller]
pub fn scan_as(sim_http: &Http, start: &QrStart, userid: &str) -> String {
    let page = sim_http.get(&path_and_query(&start.location));
    assert_eq!(page.status, 200, "the simulator's login page: {page}");
    let marker = format!("data-userid=\"{userid}\"");
    let at = page
        .body
        .find(&marker)
        .unwrap_or_else(|| panic!("{userid} is not on the login page: {page}"));
    let rest = &page.body[at..];
    let href_at = rest.find("href=\"").expect("a link") + "href=\"".len();
    let href = &rest[href_at..];
    let href = href[..href.find('"').expect("end of link")].replace("&amp;", "&");
    let confirm = sim_http.get(&href);
    assert_eq!(confirm.status, 302, "DingTalk redirects back: {confirm}");
    let back = confirm.location();
    let callback = format!("{SITE_URL}/dingding/dd_or_code_corp_list");
    assert!(
        back.starts_with(&callback),
        "DingTalk returns to the registered callback {callback}: {back}"
    );
    path_and_query(back)
}

/// R4 with `state`, a fresh OAuth code for `unionid`, and the browser's cookie if any.
pub fn qr_callback(
    http: &Http,
    sim: &Sim,
    state: &str,
    unionid: &str,
    cookie: Option<&str>,
) -> Resp {
    let code = sim.mint_oauth_code(unionid);
    let path = format!("/dingding/dd_or_code_corp_list?authCode={code}&code={code}&state={state}");
    match cookie {
        Some(c) => http.get_with_cookie(&path, c),
        None => http.get(&path),
    }
}
