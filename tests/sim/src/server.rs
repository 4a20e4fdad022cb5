//! The HTTP/1.1 server: tiny_http accepting on 127.0.0.1, one thread per request.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tiny_http::{Header, Response, Server};

use crate::apis::{self, Reply, Req};
use crate::state::State;

/// Largest request body accepted.
const MAX_BODY: u64 = 8 * 1024 * 1024;

pub(crate) struct Running {
    pub server: Arc<Server>,
    pub stop: Arc<AtomicBool>,
    pub thread: Option<JoinHandle<()>>,
    pub port: u16,
}

impl Running {
    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(crate) fn start(shared: Arc<Mutex<State>>, addr: &str) -> std::io::Result<Running> {
    let server = Server::http(addr).map_err(|e| std::io::Error::other(e.to_string()))?;
    let port = server
        .server_addr()
        .to_ip()
        .map(|a| a.port())
        .ok_or_else(|| std::io::Error::other("not an IP listener"))?;
    let server = Arc::new(server);
    let stop = Arc::new(AtomicBool::new(false));
    let (srv, stp) = (server.clone(), stop.clone());
    let thread = std::thread::Builder::new()
        .name("dingtalk-sim-accept".into())
        .spawn(move || loop {
            match srv.recv() {
                Ok(rq) => {
                    let shared = shared.clone();
                    let spawned = std::thread::Builder::new()
                        .name("dingtalk-sim-req".into())
                        .spawn(move || serve(&shared, rq));
                    if spawned.is_err() {
                        // Out of threads: the request is dropped (tiny_http answers 500).
                        continue;
                    }
                }
                Err(_) => {
                    if stp.load(Ordering::SeqCst) {
                        break;
                    }
                    // An accept error (e.g. out of file descriptors): do not spin.
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        })?;
    Ok(Running {
        server,
        stop,
        thread: Some(thread),
        port,
    })
}

/// Answers and closes the connection: pooled keep-alive connections (Spin pools them) can sit
/// unread in tiny_http's pool, so every answer ends its connection.
fn respond_closing<R: std::io::Read>(
    rq: tiny_http::Request,
    response: tiny_http::Response<R>,
) -> std::io::Result<()> {
    rq.respond(response.with_header(header("Connection", "close")))
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap_or_else(|_| {
        Header::from_bytes(&b"X-Invalid"[..], &b"1"[..]).expect("static header")
    })
}

fn serve(shared: &Mutex<State>, mut rq: tiny_http::Request) {
    let url = rq.url().to_string();
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (url.clone(), String::new()),
    };
    let query: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let headers: Vec<(String, String)> = rq
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().to_string(),
            )
        })
        .collect();
    let mut body = Vec::new();
    let read = rq.as_reader().take(MAX_BODY + 1).read_to_end(&mut body);
    if read.is_err() || body.len() as u64 > MAX_BODY {
        let _ = respond_closing(
            rq,
            Response::from_string("request body too large or unreadable").with_status_code(413),
        );
        return;
    }
    let req = Req {
        method: rq.method().as_str().to_ascii_uppercase(),
        path,
        query,
        headers,
        body,
    };
    let reply = apis::handle(shared, &req);
    let json_ct = header("Content-Type", "application/json;charset=utf-8");
    let result = match reply {
        Reply::Json(status, v) => respond_closing(
            rq,
            Response::from_string(v.to_string())
                .with_status_code(status)
                .with_header(json_ct),
        ),
        Reply::Raw(status, s) => {
            let ct = if s.trim_start().starts_with('<') {
                header("Content-Type", "text/html;charset=utf-8")
            } else {
                json_ct
            };
            respond_closing(
                rq,
                Response::from_string(s)
                    .with_status_code(status)
                    .with_header(ct),
            )
        }
        Reply::Html(status, s) => respond_closing(
            rq,
            Response::from_string(s)
                .with_status_code(status)
                .with_header(header("Content-Type", "text/html;charset=utf-8")),
        ),
        Reply::Redirect(loc) => respond_closing(
            rq,
            Response::empty(302)
                .with_header(header("Location", &loc))
                .with_header(header("Cache-Control", "no-store")),
        ),
        Reply::Drop => {
            // tiny_http cannot close the socket from here: send bytes that are not an HTTP
            // response, so the client fails the call at once and closes the connection.
            let mut w = rq.into_writer();
            let _ = w.write_all(b"\x00DROPPED\r\n\r\n");
            let _ = w.flush();
            Ok(())
        }
    };
    let _ = result;
}
