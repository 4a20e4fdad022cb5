//! The world outside the pure core: clock, randomness, outgoing HTTP, key-value store, log.
//!
//! The core never reaches for these itself; every flow takes `&mut dyn Env`. The wasm adapter
//! implements it over WASI; unit tests implement it with fakes.

use std::fmt;

/// An outgoing HTTP request to DingTalk.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: &'static str,
    /// Absolute URL. May carry `access_token` in its query: never log it, use [`HttpRequest::redacted_url`].
    pub url: String,
    /// Request headers. May carry `x-acs-dingtalk-access-token`.
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Vec<u8>,
    /// Give up after this long (connect + first byte + body), in milliseconds.
    pub timeout_ms: u32,
}

impl HttpRequest {
    /// The URL without its query string: safe to log.
    pub fn redacted_url(&self) -> &str {
        self.url.split(['?', '#']).next().unwrap_or("")
    }
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.redacted_url())
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("body.len()", &self.body.len())
            .finish()
    }
}

/// A response from DingTalk.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("body.len()", &self.body.len())
            .finish()
    }
}

/// Why an outgoing call produced no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The host refused the destination (outbound allow-list).
    #[error("the host does not allow outgoing calls to this DingTalk address; add it to the allowed outbound hosts")]
    Denied,
    /// No answer in time.
    #[error("DingTalk did not answer in time")]
    Timeout,
    /// Connection or protocol failure.
    #[error("could not reach DingTalk ({0})")]
    Unreachable(String),
}

/// A key-value store failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key-value store error: {0}")]
pub struct KvError(pub String);

/// Everything the core needs from its host.
pub trait Env {
    /// Wall-clock time, Unix milliseconds.
    fn now_ms(&self) -> u64;
    /// Fills `buf` with cryptographically secure random bytes.
    fn random_bytes(&mut self, buf: &mut [u8]);
    /// Sends one HTTP request.
    fn http(&mut self, request: HttpRequest) -> Result<HttpResponse, TransportError>;
    /// Blocks for `ms` milliseconds (used for throttling back-off).
    fn sleep_ms(&mut self, ms: u64);
    /// Reads a key.
    fn kv_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Writes a key.
    fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError>;
    /// Deletes a key (absent keys are fine).
    fn kv_delete(&mut self, key: &str) -> Result<(), KvError>;
    /// Atomically adds `delta` to a counter key and returns the new value. Counter keys are only
    /// ever touched through this method (their bytes differ between stores).
    fn kv_increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError>;
    /// Writes one log line. Callers never pass secrets, tokens or full DingTalk URLs.
    fn log(&mut self, line: &str);
}

/// Hex encoding of random bytes: a fresh unguessable id of `bytes * 8` bits.
pub fn random_id(env: &mut dyn Env, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    env.random_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_query_and_header_values() {
        let req = HttpRequest {
            method: "POST",
            url: "https://oapi.dingtalk.com/topapi/v2/user/get?access_token=SECRET".into(),
            headers: vec![("x-acs-dingtalk-access-token".into(), "SECRET2".into())],
            body: b"{}".to_vec(),
            timeout_ms: 1000,
        };
        let printed = format!("{req:?}");
        assert!(!printed.contains("SECRET"), "{printed}");
        assert!(printed.contains("/topapi/v2/user/get"));
        assert_eq!(
            req.redacted_url(),
            "https://oapi.dingtalk.com/topapi/v2/user/get"
        );
    }
}
