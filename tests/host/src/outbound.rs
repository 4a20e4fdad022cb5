//! Outgoing HTTP: an allow-list of origins (Spin's `allowed_outbound_hosts`), enforced in
//! wasmtime-wasi-http's `send_request` hook, and a count of requests per origin.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// The boxed future `WasiHttpHooks::send_request` returns.
type SendRequestFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

/// Which origins the guest may call, and what it called. Shared by every store of one host.
#[derive(Clone, Default)]
pub(crate) struct Outbound {
    allowed: Arc<Vec<String>>,
    counts: Arc<Mutex<Counts>>,
}

#[derive(Default)]
struct Counts {
    sent: BTreeMap<String, u64>,
    denied: BTreeMap<String, u64>,
    /// Time spent waiting for upstream response headers, summed over every request.
    waiting: std::time::Duration,
}

impl Outbound {
    /// Allows exactly `origins` (`scheme://host[:port]`; a default port may be left out).
    pub(crate) fn new(origins: &[String]) -> Self {
        Outbound {
            allowed: Arc::new(origins.iter().map(|o| normalize_origin(o)).collect()),
            counts: Arc::default(),
        }
    }

    /// Requests sent per origin.
    pub(crate) fn sent(&self) -> BTreeMap<String, u64> {
        self.lock().sent.clone()
    }

    /// Requests refused per origin.
    pub(crate) fn denied(&self) -> BTreeMap<String, u64> {
        self.lock().denied.clone()
    }

    /// Time spent waiting for upstream responses (request sent → response headers), summed:
    /// what a request's wall time minus this is, is the time inside the component and host.
    pub(crate) fn waiting(&self) -> std::time::Duration {
        self.lock().waiting
    }

    /// Forgets the counts.
    pub(crate) fn reset(&self) {
        *self.lock() = Counts::default();
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `scheme://host[:port]` in lower case, without the scheme's default port.
fn normalize_origin(origin: &str) -> String {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    for (scheme, port) in [("http://", ":80"), ("https://", ":443")] {
        if origin.starts_with(scheme) {
            if let Some(stripped) = origin.strip_suffix(port) {
                return stripped.to_owned();
            }
        }
    }
    origin
}

/// The origin a request goes to, normalized like the allow-list; `None` without an authority.
fn request_origin(uri: &http::Uri) -> Option<String> {
    let scheme = uri.scheme_str().unwrap_or("https");
    let authority = uri.authority()?;
    Some(normalize_origin(&format!("{scheme}://{authority}")))
}

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendRequestFuture {
        let origin = request_origin(request.uri());
        let allowed = origin.as_ref().is_some_and(|o| self.allowed.contains(o));
        {
            let mut counts = self.lock();
            let key = origin.unwrap_or_else(|| "(no authority)".to_owned());
            let map = if allowed {
                &mut counts.sent
            } else {
                &mut counts.denied
            };
            *map.entry(key).or_default() += 1;
        }
        let counts = self.counts.clone();
        Box::new(async move {
            if !allowed {
                return Err(Error::HttpRequestDenied);
            }
            let started = std::time::Instant::now();
            let sent = wasmtime_wasi_http::default_send_request(request, options).await;
            counts.lock().unwrap_or_else(|e| e.into_inner()).waiting += started.elapsed();
            let (response, io) = sent?;
            Ok((
                response.map(http_body_util::BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), Error>> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalized() {
        assert_eq!(
            normalize_origin("HTTPS://Oapi.DingTalk.com:443/"),
            "https://oapi.dingtalk.com"
        );
        assert_eq!(normalize_origin("http://127.0.0.1:80"), "http://127.0.0.1");
        assert_eq!(
            normalize_origin("http://127.0.0.1:8099"),
            "http://127.0.0.1:8099"
        );
    }

    #[test]
    fn request_origin_keeps_explicit_ports() {
        let uri: http::Uri = "http://127.0.0.1:8099/gettoken?appkey=x".parse().unwrap();
        assert_eq!(request_origin(&uri).unwrap(), "http://127.0.0.1:8099");
        let uri: http::Uri = "https://api.dingtalk.com:443/v1.0/x".parse().unwrap();
        assert_eq!(request_origin(&uri).unwrap(), "https://api.dingtalk.com");
    }
}
