//! The `wasi:http/incoming-handler` entry (what Spin calls): request in, core router, response out.

use super::host::{load_settings, WasiEnv};
use crate::env::Env;
use crate::web::http::{Request, MAX_BODY};
use crate::web::router::{handle, Mode};
use spin_sdk::http::{Request as SpinRequest, Response as SpinResponse};

#[spin_sdk::http_component]
fn handle_request(req: SpinRequest) -> SpinResponse {
    let mut env = WasiEnv::new();
    let method = req.method().to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = req.body().to_vec();
    let too_large = body.len() > MAX_BODY;
    if too_large {
        body.clear();
    }
    let request = Request::new(&method, req.uri(), headers, body);
    let routed = if too_large {
        crate::web::router::Routed::json_failure(crate::web::router::body_too_large())
    } else {
        match load_settings() {
            Ok(raw) => handle(&mut env, &raw, &request, Mode::Http),
            Err(message) => {
                env.log(&message);
                let failure = crate::failure::Failure::new(
                    503,
                    "settings_unavailable",
                    "The host could not provide the plugin's settings. Check the host's configuration (Spin variables).",
                    "宿主无法提供插件设置，请检查宿主配置（Spin 变量）。",
                );
                crate::web::router::Routed::page_failure(failure)
            }
        }
    };
    env.log(&format!(
        "{method} {} -> {}",
        request.path, routed.response.status
    ));
    let mut builder = SpinResponse::builder();
    builder.status(routed.response.status);
    for (k, v) in &routed.response.headers {
        builder.header(k.as_str(), v.as_str());
    }
    builder.body(routed.response.body).build()
}
