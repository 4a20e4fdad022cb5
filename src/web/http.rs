//! Incoming requests and outgoing responses of the plugin's own routes, host-independent.

use crate::failure::Failure;

/// Largest request body of every route but R6 (the platform API's JSON, the login pages).
pub const MAX_BODY: usize = 64 * 1024;

/// Largest body of a DingTalk event push (R6): an event naming 10,000 userids of up to 32
/// characters is about 360 KB of JSON, 480 KB once encrypted and Base64-encoded.
pub const MAX_EVENT_BODY: usize = 512 * 1024;

/// The body limit of the route at `path` (without the query).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub fn body_limit(path: &str) -> usize {
    if path == "/dingding/events" {
        MAX_EVENT_BODY
    } else {
        MAX_BODY
    }
}

/// What reading a request body with a size limit gave.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyRead {
    /// The whole body, at most the limit.
    Complete(Vec<u8>),
    /// More than the limit arrived; reading stopped there.
    TooLarge,
    /// The stream failed before its end.
    Failed,
}

/// Collects chunks from `next` (`None` = end of stream) until the end, or until the running
/// total passes `limit`: never holds more than `limit` bytes plus one chunk.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub fn read_limited<E>(
    mut next: impl FnMut() -> Option<Result<Vec<u8>, E>>,
    limit: usize,
) -> BodyRead {
    let mut body = Vec::new();
    while let Some(chunk) = next() {
        let Ok(chunk) = chunk else {
            return BodyRead::Failed;
        };
        if chunk.len() > limit.saturating_sub(body.len()) {
            return BodyRead::TooLarge;
        }
        body.extend_from_slice(&chunk);
    }
    BodyRead::Complete(body)
}

/// An incoming request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Upper-case method.
    pub method: String,
    /// Path, percent-encoded as received, without the query.
    pub path: String,
    /// Raw query string (without `?`), if any.
    pub query: Option<String>,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Request {
    /// Builds a request from a method and `path?query` (or an absolute URL).
    pub fn new(
        method: &str,
        path_with_query: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Self {
        let (path, query) = split_target(path_with_query);
        Request {
            method: method.to_ascii_uppercase(),
            path,
            query,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            body,
        }
    }

    /// First header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Query pairs, decoded; a key without `=` has an empty value.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query
            .as_deref()
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// First non-empty value of a query parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v)
    }

    /// A cookie's value.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "cookie")
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_string())
    }
}

/// Splits a request target (`/path?query`, or an absolute URL) into its percent-encoded path and
/// raw query, with the `url` crate: a `://` inside the query is just query text, never a scheme.
fn split_target(target: &str) -> (String, Option<String>) {
    let Ok(base) = url::Url::parse("http://plugin.invalid/") else {
        return ("/".into(), None);
    };
    // An absolute URL parses on its own; anything else is a path (origin-form) joined onto the
    // dummy base. A target that parses as neither becomes `/` (answered 404).
    let parsed = if target.starts_with('/') {
        base.join(target)
    } else {
        url::Url::parse(target).or_else(|_| base.join(target))
    };
    match parsed {
        Ok(u) => {
            let path = if u.cannot_be_a_base() || u.path().is_empty() {
                "/".to_string()
            } else {
                u.path().to_string()
            };
            (path, u.query().map(str::to_string))
        }
        Err(_) => ("/".into(), None),
    }
}

/// An outgoing response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

const SECURITY_HEADERS: [(&str, &str); 3] = [
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
];

impl Response {
    fn with(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        let mut headers = vec![("content-type".to_string(), content_type.to_string())];
        headers.extend(
            SECURITY_HEADERS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        Response {
            status,
            headers,
            body,
        }
    }

    /// An HTML page.
    pub fn html(status: u16, html: String) -> Self {
        let mut r = Self::with(status, "text/html; charset=utf-8", html.into_bytes());
        r.headers.push(("x-frame-options".into(), "DENY".into()));
        r
    }

    /// A JSON body.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::with(
            status,
            "application/json; charset=utf-8",
            serde_json::to_vec(value).unwrap_or_default(),
        )
    }

    /// The platform-API error body.
    pub fn json_failure(failure: &Failure) -> Self {
        Self::json(failure.status, &failure.to_json())
    }

    /// A redirect.
    pub fn redirect(status: u16, location: &str) -> Self {
        let mut r = Self::with(status, "text/plain; charset=utf-8", Vec::new());
        r.headers.push(("location".into(), location.to_string()));
        r
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// First header with this name.
    pub fn get_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn php_style_query() {
        let r = Request::new(
            "get",
            "/index.php?dingding/dd_client_callback&corpId=ding1&code=a%2Bb",
            vec![],
            vec![],
        );
        assert_eq!(r.path, "/index.php");
        let pairs = r.query_pairs();
        assert_eq!(
            pairs[0],
            ("dingding/dd_client_callback".into(), String::new())
        );
        assert_eq!(r.param("corpId").as_deref(), Some("ding1"));
        assert_eq!(r.param("code").as_deref(), Some("a+b"));
        assert_eq!(r.method, "GET");
    }

    #[test]
    fn absolute_url_and_cookies() {
        let r = Request::new(
            "GET",
            "http://host:3000/dingding/login?x=1#frag",
            vec![("Cookie".into(), "a=1; dd_state=abc ; b=2".into())],
            vec![],
        );
        assert_eq!(r.path, "/dingding/login");
        assert_eq!(r.query.as_deref(), Some("x=1"));
        assert_eq!(r.cookie("dd_state").as_deref(), Some("abc"));
        assert_eq!(r.cookie("missing"), None);
    }

    #[test]
    fn body_reading_stops_past_the_limit() {
        // An endless stream: reading must stop right after the limit, not run forever.
        let mut pulled = 0usize;
        let read = read_limited::<()>(
            || {
                pulled += 1;
                Some(Ok(vec![7u8; 1000]))
            },
            MAX_BODY,
        );
        assert_eq!(read, BodyRead::TooLarge);
        assert_eq!(pulled, MAX_BODY / 1000 + 1);
        let mut chunks = vec![Ok(vec![1u8; MAX_BODY - 1]), Ok(vec![2u8])].into_iter();
        let read = read_limited::<()>(|| chunks.next(), MAX_BODY);
        assert!(matches!(read, BodyRead::Complete(b) if b.len() == MAX_BODY));
        let mut chunks = vec![Ok(vec![1u8; MAX_BODY]), Ok(vec![2u8])].into_iter();
        assert_eq!(
            read_limited::<()>(|| chunks.next(), MAX_BODY),
            BodyRead::TooLarge
        );
        let mut chunks = vec![Ok(vec![1u8]), Err(())].into_iter();
        assert_eq!(read_limited(|| chunks.next(), MAX_BODY), BodyRead::Failed);
    }

    #[test]
    fn scheme_in_the_query_is_query_text() {
        // Before: the first `://` anywhere was taken as a scheme, so this routed to the API.
        let r = Request::new(
            "GET",
            "/dingding/dingding_auth_corp?x=https://h/dingding/api/corps",
            vec![],
            vec![],
        );
        assert_eq!(r.path, "/dingding/dingding_auth_corp");
        assert_eq!(r.query.as_deref(), Some("x=https://h/dingding/api/corps"));
        let r = Request::new(
            "GET",
            "https://h/index.php?dingding/dd_client_callback&corpId=C&r=http://x/dingding/api",
            vec![],
            vec![],
        );
        assert_eq!(r.path, "/index.php");
        assert_eq!(r.param("corpId").as_deref(), Some("C"));
        let r = Request::new(
            "GET",
            "/index.php?dingding/dd_client_callback&corpId=C",
            vec![],
            vec![],
        );
        assert_eq!(r.path, "/index.php");
        assert_eq!(
            r.query.as_deref(),
            Some("dingding/dd_client_callback&corpId=C")
        );
        for odd in ["", "*", "//evil/x?y", "http://", "/a/../dingding/api"] {
            let r = Request::new("GET", odd, vec![], vec![]);
            assert!(r.path.starts_with('/'), "{odd}: {}", r.path);
        }
        assert_eq!(
            Request::new("GET", "/a/../dingding/api", vec![], vec![]).path,
            "/dingding/api"
        );
    }
}
