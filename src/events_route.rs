//! R6: DingTalk event subscription over HTTP push (issue 4). Being written.

use crate::env::Env;
use crate::failure::Failure;
use crate::http::Request;
use crate::router::Routed;
use crate::settings::Settings;

/// Verifies, decrypts, de-duplicates and applies one event; answers the encrypted `success`.
pub fn handle(_env: &mut dyn Env, _settings: &Settings, _request: &Request) -> Routed {
    Routed::json_failure(Failure::new(
        501,
        "not_ready",
        "events are not available yet",
        "事件订阅尚未就绪",
    ))
}
