//! The DingTalk transport: one [`Client`] per app, over the host's [`Env`]. It builds requests
//! for both API families, decodes their two error envelopes, refreshes the app token once on a
//! token error and backs off on throttling. The endpoints themselves live in the sibling
//! modules ([`super::oauth`], [`super::contacts`], [`super::todo`], [`super::message`]).

use super::error::{self, ApiError, Problem};
use super::{oauth, Endpoints, CALL_TIMEOUT_MS};
use crate::env::{Env, HttpRequest, HttpResponse};
use crate::secret::AccessToken;
use crate::settings::CorpApp;
use serde_json::Value;

/// A DingTalk client for one app, over the host's [`Env`].
pub struct Client<'a> {
    env: &'a mut dyn Env,
    endpoints: &'a Endpoints,
    app: &'a CorpApp,
    /// DingTalk calls made through this client.
    pub calls: u32,
    /// How many times a throttled call is retried after backing off (0 = report at once).
    pub throttle_retries: u32,
    /// Per-call time budget.
    pub timeout_ms: u32,
}

impl<'a> Client<'a> {
    /// A client for `app`.
    pub fn new(env: &'a mut dyn Env, endpoints: &'a Endpoints, app: &'a CorpApp) -> Self {
        Client {
            env,
            endpoints,
            app,
            calls: 0,
            throttle_retries: 1,
            timeout_ms: CALL_TIMEOUT_MS,
        }
    }

    /// The environment, for flows that need the clock or the store between calls.
    pub fn env(&mut self) -> &mut dyn Env {
        self.env
    }

    /// The app this client calls for.
    pub fn app(&self) -> &CorpApp {
        self.app
    }

    /// The DingTalk hosts this client calls.
    pub fn endpoints(&self) -> &Endpoints {
        self.endpoints
    }

    /// Sends one request (counted and logged without its query), mapping transport failures.
    pub(super) fn send(&mut self, request: HttpRequest) -> Result<HttpResponse, ApiError> {
        self.calls += 1;
        let started = self.env.now_ms();
        let method = request.method;
        let path = path_of(request.redacted_url()).to_string();
        let result = self.env.http(request);
        let took = self.env.now_ms().saturating_sub(started);
        match &result {
            Ok(r) => self.env.log(&format!(
                "dingtalk {method} {path} -> {} in {took} ms",
                r.status
            )),
            Err(e) => self.env.log(&format!(
                "dingtalk {method} {path} -> failed ({e}) in {took} ms"
            )),
        }
        result.map_err(ApiError::Transport)
    }

    /// A JSON request with this client's time budget (no token attached).
    pub(super) fn request(
        &self,
        method: &'static str,
        url: String,
        body: Option<&Value>,
    ) -> HttpRequest {
        let mut headers = vec![("accept".to_string(), "application/json".to_string())];
        let body = match body {
            Some(b) => {
                headers.push(("content-type".into(), "application/json".into()));
                serde_json::to_vec(b).unwrap_or_default()
            }
            None => Vec::new(),
        };
        HttpRequest {
            method,
            url,
            headers,
            body,
            timeout_ms: self.timeout_ms,
        }
    }

    /// Backs off before retry number `throttled` (1 s, 2 s, 4 s … capped at 16 s).
    fn back_off(&mut self, throttled: u32) {
        self.env.sleep_ms(1_000 << throttled.min(4));
    }

    /// Runs `attempt` with the app token: refreshes once on a token error, backs off and retries
    /// on throttling, never refreshes on a permission error.
    fn with_app_token(
        &mut self,
        mut attempt: impl FnMut(&mut Self, &AccessToken) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let mut refreshed = false;
        let mut throttled = 0;
        loop {
            let token = oauth::app_token(self)?;
            match attempt(self, &token) {
                Err(e) if e.problem() == Problem::TokenInvalid && !refreshed => {
                    refreshed = true;
                    oauth::forget_app_token(self, &token)?;
                }
                Err(e)
                    if e.problem() == Problem::Throttled && throttled < self.throttle_retries =>
                {
                    self.back_off(throttled);
                    throttled += 1;
                }
                other => return other,
            }
        }
    }

    /// The app access token (see [`oauth::app_token`]); kept here for existing callers.
    pub fn app_token(&mut self) -> Result<AccessToken, ApiError> {
        oauth::app_token(self)
    }

    /// Old API: `POST {oapi}{path}?access_token=…` with a JSON body and the app token; the
    /// `errcode` envelope is checked. Prefer the typed endpoints of the sibling modules.
    pub fn oapi_post(&mut self, path: &str, body: &Value) -> Result<Value, ApiError> {
        let base = self.endpoints.oapi.clone();
        self.with_app_token(|c, token| {
            let url = format!(
                "{base}{path}?access_token={}",
                super::encode(token.expose())
            );
            let request = c.request("POST", url, Some(body));
            let response = c.send(request)?;
            decode_old(&response)
        })
    }

    /// Old API: `GET {oapi}{path}?access_token=…` with the app token; the `errcode` envelope is
    /// checked. Prefer the typed endpoints of the sibling modules.
    pub fn oapi_get(&mut self, path: &str) -> Result<Value, ApiError> {
        let base = self.endpoints.oapi.clone();
        self.with_app_token(|c, token| {
            let url = format!(
                "{base}{path}?access_token={}",
                super::encode(token.expose())
            );
            let request = c.request("GET", url, None);
            let response = c.send(request)?;
            decode_old(&response)
        })
    }

    /// New API: a call with the app token in the `x-acs-dingtalk-access-token` header. Prefer
    /// the typed endpoints of the sibling modules.
    pub fn api_call(
        &mut self,
        method: &'static str,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let base = self.endpoints.api.clone();
        self.with_app_token(|c, token| {
            let mut request = c.request(method, format!("{base}{path_and_query}"), body);
            request.headers.push((
                "x-acs-dingtalk-access-token".into(),
                token.expose().to_string(),
            ));
            let response = c.send(request)?;
            decode_new(&response)
        })
    }

    /// New API: a call with another token (user or SSO token) or none; retried after backing
    /// off when throttled, with no app-token handling. Prefer the typed endpoints.
    pub fn api_call_with(
        &mut self,
        method: &'static str,
        path_and_query: &str,
        token: Option<&AccessToken>,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let mut request = self.request(
            method,
            format!("{}{path_and_query}", self.endpoints.api),
            body,
        );
        if let Some(t) = token {
            request
                .headers
                .push(("x-acs-dingtalk-access-token".into(), t.expose().to_string()));
        }
        let mut throttled = 0;
        loop {
            let response = self.send(request.clone())?;
            match decode_new(&response) {
                Err(e)
                    if e.problem() == Problem::Throttled && throttled < self.throttle_retries =>
                {
                    self.back_off(throttled);
                    throttled += 1;
                }
                other => return other,
            }
        }
    }
}

fn path_of(url: &str) -> &str {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after_scheme..].find('/') {
        Some(i) => &url[after_scheme + i..],
        None => "/",
    }
}

/// Whether a non-JSON answer is DingTalk's IP-ban page: an HTML body with status 200 or 403
/// (docs/dingtalk-api.md §13.7). A proxy's 5xx HTML page stays "unavailable".
fn is_ban_page(response: &HttpResponse) -> bool {
    let html_type = response.headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("content-type") && v.to_ascii_lowercase().contains("text/html")
    });
    let starts_html = response
        .body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'<');
    matches!(response.status, 200 | 403) && (html_type || starts_html)
}

/// The error for an answer that is not a JSON object.
fn not_json(response: &HttpResponse) -> ApiError {
    if is_ban_page(response) {
        ApiError::IpBanned
    } else {
        ApiError::Http {
            status: response.status,
        }
    }
}

/// Decodes an old-API response: HTTP 200 and `errcode` 0, else the error.
pub fn decode_old(response: &HttpResponse) -> Result<Value, ApiError> {
    let value: Option<Value> = serde_json::from_slice(&response.body).ok();
    let Some(value) = value.filter(Value::is_object) else {
        return Err(not_json(response));
    };
    if value.get("punish").is_some() {
        return Err(ApiError::IpBanned);
    }
    let errcode = value.get("errcode").and_then(error::as_i64).unwrap_or(0);
    if response.status == 200 && errcode == 0 {
        return Ok(value);
    }
    if errcode == 0 {
        return Err(ApiError::Http {
            status: response.status,
        });
    }
    Err(ApiError::Old {
        errcode,
        sub_code: value.get("sub_code").and_then(error::as_string),
        errmsg: value
            .get("errmsg")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        request_id: value.get("request_id").and_then(error::as_string),
    })
}

/// Decodes a new-API response: 2xx is the payload, else `{"code","message","requestid"}`.
pub fn decode_new(response: &HttpResponse) -> Result<Value, ApiError> {
    let value: Option<Value> = serde_json::from_slice(&response.body).ok();
    if (200..300).contains(&response.status) && (value.is_some() || !is_ban_page(response)) {
        return Ok(value.unwrap_or(Value::Null));
    }
    let Some(value) = value.filter(Value::is_object) else {
        return Err(not_json(response));
    };
    if value.get("punish").is_some() {
        return Err(ApiError::IpBanned);
    }
    Err(ApiError::New {
        status: response.status,
        code: value
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        message: value
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        request_id: value
            .get("requestid")
            .or_else(|| value.get("requestId"))
            .and_then(error::as_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dingtalk::{oauth::EARLY_REFRESH_MS, Endpoints};
    use crate::settings::tests::sample;
    use crate::testing::{json_response, FakeEnv, TOKEN_PATH};
    use serde_json::json;

    const PATH: &str = "/topapi/v2/user/get";

    #[test]
    fn token_is_cached_and_refreshed_early() {
        let s = sample();
        let ep = Endpoints::from_settings(&s);
        let mut env = FakeEnv::new();
        env.answer(PATH, json!({"errcode": 0, "result": {}}));
        for _ in 0..3 {
            Client::new(&mut env, &ep, &s.corp)
                .oapi_post(PATH, &json!({"userid": "u"}))
                .unwrap();
        }
        assert_eq!(env.tokens_issued(), 1);
        env.now += 7200 * 1000 - EARLY_REFRESH_MS + 1;
        Client::new(&mut env, &ep, &s.corp)
            .oapi_post(PATH, &json!({"userid": "u"}))
            .unwrap();
        assert_eq!(env.tokens_issued(), 2);
    }

    #[test]
    fn token_error_refreshes_once_permission_error_never() {
        let s = sample();
        let ep = Endpoints::from_settings(&s);
        let mut env = FakeEnv::new();
        env.route(PATH, |r| {
            if r.url.contains("access_token=tok1") {
                json_response(
                    200,
                    r#"{"errcode":88,"sub_code":"40014","errmsg":"ding talk error[subcode=40014]"}"#,
                )
            } else {
                json_response(200, r#"{"errcode":60011,"errmsg":"没有调用该接口的权限"}"#)
            }
        });
        let before = env.now;
        let err = Client::new(&mut env, &ep, &s.corp)
            .oapi_post(PATH, &json!({}))
            .unwrap_err();
        assert_eq!(err.problem(), Problem::MissingPermission);
        assert!(
            env.now - before < 1000,
            "the refresh did not wait on the first fetch's lock"
        );
        assert_eq!(
            env.tokens_issued(),
            2,
            "one refresh after the token error, none after the permission error"
        );
        assert_eq!(env.requests.len(), 4);
        assert_eq!(env.calls_to(TOKEN_PATH), 2);
    }

    #[test]
    fn throttling_backs_off_then_retries() {
        let s = sample();
        let ep = Endpoints::from_settings(&s);
        let mut env = FakeEnv::new();
        env.answer_seq(
            "/x",
            vec![
                (200, json!({"errcode": 90018, "errmsg": "qps"})),
                (200, json!({"errcode": 0})),
            ],
        );
        let before = env.now;
        Client::new(&mut env, &ep, &s.corp)
            .oapi_post("/x", &json!({}))
            .unwrap();
        assert!(env.now - before >= 1000);
        assert_eq!(env.calls_to("/x"), 2);
    }

    #[test]
    fn no_secret_in_logs() {
        let s = sample();
        let ep = Endpoints::from_settings(&s);
        let mut env = FakeEnv::new();
        env.answer(PATH, json!({"errcode": 0}));
        Client::new(&mut env, &ep, &s.corp)
            .oapi_post(PATH, &json!({}))
            .unwrap();
        let logs = env.logs.join("\n");
        assert!(logs.contains(PATH));
        assert!(
            !logs.contains("tok1") && !logs.contains("app-secret"),
            "{logs}"
        );
    }
}
