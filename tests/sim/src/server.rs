//! The HTTP/1.1 server: hyper on 127.0.0.1, each request handled on a blocking thread (latency
//! faults sleep there), keep-alive connections served as long as the client keeps them.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::apis::{self, Reply, Req};
use crate::state::State;

/// Largest request body accepted.
const MAX_BODY: usize = 8 * 1024 * 1024;

pub(crate) struct Running {
    pub port: u16,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Running {
    pub fn shutdown(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

pub(crate) fn start(shared: Arc<Mutex<State>>, addr: &str) -> std::io::Result<Running> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("dingtalk-sim")
        .enable_all()
        .build()?;
    let listener = {
        let _guard = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    runtime.spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of file descriptors or similar: do not spin.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| serve(shared.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Running {
        port,
        runtime: Some(runtime),
    })
}

/// A deliberately broken connection (`FaultKind::Drop`): hyper aborts it without an answer.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Dropped {}

fn response(status: u16, content_type: Option<&str>, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(ct) = content_type {
        if let Ok(v) = ct.parse() {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
    }
    r
}

async fn serve(
    shared: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => {
            return Ok(response(
                413,
                None,
                "request body too large or unreadable".into(),
            ))
        }
    };
    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let req = Req {
        method: parts.method.as_str().to_ascii_uppercase(),
        path: parts.uri.path().to_string(),
        query,
        headers,
        body,
    };
    let reply = tokio::task::spawn_blocking(move || apis::handle(&shared, &req))
        .await
        .map_err(|_| Dropped)?;
    const JSON: &str = "application/json;charset=utf-8";
    const HTML: &str = "text/html;charset=utf-8";
    Ok(match reply {
        Reply::Json(status, v) => response(status, Some(JSON), v.to_string()),
        Reply::Raw(status, s) => {
            let ct = if s.trim_start().starts_with('<') {
                HTML
            } else {
                JSON
            };
            response(status, Some(ct), s)
        }
        Reply::Html(status, s) => response(status, Some(HTML), s),
        Reply::Redirect(loc) => {
            let mut r = response(302, None, String::new());
            if let Ok(v) = loc.parse() {
                r.headers_mut().insert(hyper::header::LOCATION, v);
            }
            if let Ok(v) = "no-store".parse() {
                r.headers_mut().insert(hyper::header::CACHE_CONTROL, v);
            }
            r
        }
        Reply::Drop => return Err(Dropped),
    })
}
