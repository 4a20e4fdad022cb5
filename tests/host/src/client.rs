//! A plain HTTP client for the tests and the benchmark: reqwest (blocking), redirects never followed, no proxy,
//! cookies handled by hand (the tests send exactly the `Cookie` header they mean to).

use serde_json::Value;
use std::time::Duration;

/// One answer: status, headers (lower-case names, in order) and body text.
#[derive(Debug, Clone)]
pub struct Resp {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body, lossily decoded.
    pub body: String,
}

impl Resp {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `Location` of a redirect; panics with the whole answer when there is none.
    pub fn location(&self) -> &str {
        self.header("location")
            .unwrap_or_else(|| panic!("expected a redirect, got {self}"))
    }

    /// The body as JSON; panics with the whole answer when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self}"))
    }

    /// The value of cookie `name` from this answer's `Set-Cookie` headers.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookie_line(name).and_then(|line| {
            let pair = line.split(';').next()?;
            let (n, v) = pair.split_once('=')?;
            (n.trim() == name).then(|| v.trim().to_string())
        })
    }

    /// The whole `Set-Cookie` line that sets cookie `name`.
    pub fn set_cookie_line(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .find(|v| {
                v.split(';')
                    .next()
                    .and_then(|p| p.split_once('='))
                    .is_some_and(|(n, _)| n.trim() == name)
            })
    }

    /// `error.code` of a platform-API JSON failure.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.code in {self}"))
            .to_string()
    }

    /// Whether an HTML failure page names this failure code (pages show `status · code`).
    pub fn page_has_code(&self, code: &str) -> bool {
        self.body.contains(&format!("· {code}<"))
    }
}

impl std::fmt::Display for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body: String = self.body.chars().take(2000).collect();
        write!(f, "HTTP {} {:?}\n{body}", self.status, self.headers)
    }
}

/// A client for one origin (`http://127.0.0.1:PORT`).
#[derive(Clone)]
pub struct Http {
    client: reqwest::blocking::Client,
    base: String,
}

impl Http {
    /// A client for `base` (no trailing slash).
    pub fn new(base: &str) -> Http {
        let client = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_secs(40))
            .build()
            .expect("building the HTTP client");
        Http {
            client,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    /// The origin.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `base` + `path_and_query`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// Sends a request; `path_and_query` starts with `/`.
    pub fn send(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Resp {
        let url = self.url(path_and_query);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a valid method");
        let mut req = self.client.request(method.clone(), &url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let res = req
            .send()
            .unwrap_or_else(|e| panic!("{method} {url} failed: {e}"));
        let status = res.status().as_u16();
        let headers = res
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = res.text().unwrap_or_default();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// GET.
    pub fn get(&self, path_and_query: &str) -> Resp {
        self.send("GET", path_and_query, &[], None)
    }

    /// GET with a `Cookie` header.
    pub fn get_with_cookie(&self, path_and_query: &str, cookie: &str) -> Resp {
        self.send("GET", path_and_query, &[("cookie", cookie)], None)
    }

    /// A platform-API call (R7) with `Authorization: Bearer <bearer>` when given.
    pub fn api(&self, method: &str, path: &str, bearer: Option<&str>, body: Option<&str>) -> Resp {
        let auth = bearer.map(|b| format!("Bearer {b}"));
        let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        if let Some(a) = auth.as_deref() {
            headers.push(("authorization", a));
        }
        self.send(method, path, &headers, body)
    }
}

/// The first value of `key` in the query of `url` (absolute, or a path with a query).
pub fn query_param(url: &str, key: &str) -> Option<String> {
    let parsed = url::Url::parse(url)
        .or_else(|_| url::Url::parse("http://relative.invalid").and_then(|b| b.join(url)))
        .ok()?;
    parsed
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// The path and query of an absolute URL (what a reverse proxy in front of the plugin forwards).
pub fn path_and_query(url: &str) -> String {
    let parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("not a URL ({e}): {url}"));
    match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_string(),
    }
}
