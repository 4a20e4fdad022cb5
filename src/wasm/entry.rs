//! The `wasi:http/incoming-handler` entry (what Spin calls): request in, core router, response out.
//!
//! The body is read as a stream with a running total and reading stops past
//! [`MAX_BODY`](crate::web::http::MAX_BODY): a huge (e.g. chunked, multi-GiB) upload is answered
//! 413 without growing linear memory.

use super::host::{load_settings, WasiEnv};
use crate::env::Env;
use crate::web::http::{body_limit, read_limited, BodyRead, Request};
use crate::web::router::{handle, Mode, Routed};
use spin_sdk::http::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};
use wasi::io::streams::StreamError;

/// Bytes asked for per read of the request body.
const READ_CHUNK: u64 = 16 * 1024;

/// Reads the request body, stopping as soon as it is known to exceed `limit`.
fn read_body(request: IncomingRequest, declared: Option<u64>, limit: usize) -> BodyRead {
    if declared.is_some_and(|n| n > limit as u64) {
        return BodyRead::TooLarge;
    }
    let Ok(body) = request.consume() else {
        return BodyRead::Failed;
    };
    let Ok(stream) = body.stream() else {
        return BodyRead::Failed;
    };
    // `stream` is declared after `body`, so it is dropped first (a child resource must go
    // before its parent), on every return path.
    read_limited(
        || match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => Some(Ok(chunk)),
            Err(StreamError::Closed) => None,
            Err(StreamError::LastOperationFailed(_)) => Some(Err(())),
        },
        limit,
    )
}

fn settings_unavailable() -> Routed {
    Routed::page_failure(crate::failure::Failure::new(
        503,
        "settings_unavailable",
        "The host could not provide the plugin's settings. Check the host's configuration (Spin variables).",
        "宿主无法提供插件设置，请检查宿主配置（Spin 变量）。",
    ))
}

#[spin_sdk::http_component]
async fn handle_request(req: IncomingRequest, out: ResponseOutparam) {
    let mut env = WasiEnv::new();
    let method = req.method().to_string();
    let target = req.path_with_query().unwrap_or_else(|| "/".to_string());
    let headers: Vec<(String, String)> = req
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let declared = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<u64>().ok());
    let limit = body_limit(target.split('?').next().unwrap_or(""));
    let read = read_body(req, declared, limit);
    let (body, early) = match read {
        BodyRead::Complete(body) => (body, None),
        BodyRead::TooLarge => (
            Vec::new(),
            Some(Routed::json_failure(crate::web::router::body_too_large(
                limit,
            ))),
        ),
        BodyRead::Failed => (
            Vec::new(),
            Some(Routed::json_failure(crate::failure::Failure::bad_request(
                "body_unreadable",
                "The request body could not be read completely. Send the request again.",
                "无法完整读取请求体，请重新发送请求。",
            ))),
        ),
    };
    let request = Request::new(&method, &target, headers, body);
    let routed = match early {
        Some(routed) => routed,
        None => match load_settings() {
            Ok(raw) => handle(&mut env, &raw, &request, Mode::Http),
            Err(message) => {
                env.log(&message);
                settings_unavailable()
            }
        },
    };
    env.log(&format!(
        "{method} {} -> {}",
        request.path, routed.response.status
    ));
    let fields = Fields::new();
    for (k, v) in &routed.response.headers {
        // Header names and values are the plugin's own; a refused one is dropped, not a trap.
        let _ = fields.append(k, &v.clone().into_bytes());
    }
    let response = OutgoingResponse::new(fields);
    let _ = response.set_status_code(routed.response.status);
    if let Err(e) = out.set_with_body(response, routed.response.body).await {
        env.log(&format!("could not send the response: {e}"));
    }
}
