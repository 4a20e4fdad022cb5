//! [`Env`] over WASI: wall clock, random, `wasi:http/outgoing-handler`, `wasi:keyvalue`,
//! `wasi:config`, stderr.

use super::exports::bindings::wasi::config::store as config;
use super::exports::bindings::wasi::keyvalue::{atomics, store};
use crate::env::{Env, HttpRequest, HttpResponse, KvError, TransportError};
use crate::settings::RawSettings;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasi::io::streams::StreamError;

/// Largest DingTalk response body read (a user page of 100 members is far below this).
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// The environment of one request or typed call.
pub(crate) struct WasiEnv {
    bucket: Option<store::Bucket>,
}

impl WasiEnv {
    pub(crate) fn new() -> Self {
        WasiEnv { bucket: None }
    }

    fn bucket(&mut self) -> Result<&store::Bucket, KvError> {
        if self.bucket.is_none() {
            let bucket = store::open("default").map_err(|e| KvError(kv_error_text(&e)))?;
            self.bucket = Some(bucket);
        }
        self.bucket
            .as_ref()
            .ok_or_else(|| KvError("no bucket".into()))
    }
}

/// Every setting the host's `wasi:config` store holds for the known keys, read with one
/// `get-all` (Spin resolves its variables per call, so eighteen `get`s cost a page most of its
/// time: issue 12's R1 rate). Unknown keys the host may also hold are ignored.
pub(crate) fn load_settings() -> Result<RawSettings, String> {
    match config::get_all() {
        Ok(pairs) => {
            let mut raw = RawSettings::new();
            for (key, value) in pairs {
                if crate::settings::KEYS.contains(&key.as_str()) {
                    raw.insert(key, value);
                }
            }
            Ok(raw)
        }
        Err(config::Error::Upstream(_)) | Err(config::Error::Io(_)) => {
            Err("the host could not read the plugin's settings (wasi:config get-all)".into())
        }
    }
}

fn kv_error_text(e: &store::Error) -> String {
    match e {
        store::Error::NoSuchStore => {
            "no such store: the host must provide key-value store \"default\"".into()
        }
        store::Error::AccessDenied => {
            "access to key-value store \"default\" denied: add key_value_stores = [\"default\"]"
                .into()
        }
        store::Error::Other(s) => s.chars().take(200).collect(),
    }
}

fn to_transport_error(e: ErrorCode) -> TransportError {
    match e {
        ErrorCode::HttpRequestDenied => TransportError::Denied,
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout => TransportError::Timeout,
        ErrorCode::DnsError(_) => TransportError::Unreachable("DNS lookup failed".into()),
        ErrorCode::ConnectionRefused => TransportError::Unreachable("connection refused".into()),
        ErrorCode::TlsProtocolError
        | ErrorCode::TlsCertificateError
        | ErrorCode::TlsAlertReceived(_) => TransportError::Unreachable("TLS error".into()),
        ErrorCode::InternalError(_) => TransportError::Unreachable("host error".into()),
        _ => TransportError::Unreachable("connection failed".into()),
    }
}

fn send(request: &HttpRequest) -> Result<HttpResponse, TransportError> {
    let url = url::Url::parse(&request.url)
        .map_err(|_| TransportError::Unreachable("invalid DingTalk URL".into()))?;
    let scheme = match url.scheme() {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        _ => return Err(TransportError::Unreachable("unsupported scheme".into())),
    };
    let host = url
        .host_str()
        .ok_or_else(|| TransportError::Unreachable("URL without host".into()))?;
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    let header_list: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    let headers = Fields::from_list(&header_list)
        .map_err(|_| TransportError::Unreachable("invalid header".into()))?;
    let outgoing = OutgoingRequest::new(headers);
    let method = match request.method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        other => Method::Other(other.to_string()),
    };
    let bad = |_| TransportError::Unreachable("could not build request".into());
    outgoing.set_method(&method).map_err(bad)?;
    outgoing.set_scheme(Some(&scheme)).map_err(bad)?;
    outgoing.set_authority(Some(&authority)).map_err(bad)?;
    outgoing.set_path_with_query(Some(&path)).map_err(bad)?;
    let body = outgoing.body().map_err(bad)?;

    let options = RequestOptions::new();
    let ns = u64::from(request.timeout_ms) * 1_000_000;
    // Hosts may not support every timeout; ignore the ones they refuse.
    let _ = options.set_connect_timeout(Some(ns));
    let _ = options.set_first_byte_timeout(Some(ns));
    let _ = options.set_between_bytes_timeout(Some(ns));

    let future = outgoing_handler::handle(outgoing, Some(options)).map_err(to_transport_error)?;
    {
        let stream = body.write().map_err(bad)?;
        for chunk in request.body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|_| TransportError::Unreachable("could not send body".into()))?;
        }
    }
    OutgoingBody::finish(body, None).map_err(to_transport_error)?;

    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(e))) => return Err(to_transport_error(e)),
        _ => return Err(TransportError::Unreachable("no response".into())),
    };
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let incoming = response
        .consume()
        .map_err(|_| TransportError::Unreachable("no body".into()))?;
    let stream = incoming
        .stream()
        .map_err(|_| TransportError::Unreachable("no body".into()))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > MAX_RESPONSE_BYTES {
                    return Err(TransportError::Unreachable("response too large".into()));
                }
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(_)) => {
                return Err(TransportError::Unreachable("connection dropped".into()))
            }
        }
    }
    drop(stream);
    Ok(HttpResponse {
        status,
        headers,
        body: bytes,
    })
}

impl Env for WasiEnv {
    fn now_ms(&self) -> u64 {
        let now = wasi::clocks::wall_clock::now();
        now.seconds * 1000 + u64::from(now.nanoseconds / 1_000_000)
    }

    fn random_bytes(&mut self, buf: &mut [u8]) {
        let bytes = wasi::random::random::get_random_bytes(buf.len() as u64);
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
    }

    fn http(&mut self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        send(&request)
    }

    fn sleep_ms(&mut self, ms: u64) {
        wasi::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
    }

    fn kv_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.bucket()?
            .get(key)
            .map_err(|e| KvError(kv_error_text(&e)))
    }

    fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.bucket()?
            .set(key, value)
            .map_err(|e| KvError(kv_error_text(&e)))
    }

    fn kv_delete(&mut self, key: &str) -> Result<(), KvError> {
        self.bucket()?
            .delete(key)
            .map_err(|e| KvError(kv_error_text(&e)))
    }

    fn kv_increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError> {
        let bucket = self.bucket()?;
        atomics::increment(bucket, key, delta).map_err(|e| KvError(kv_error_text(&e)))
    }

    fn log(&mut self, line: &str) {
        eprintln!("[dingtalk-plugin] {line}");
    }
}
