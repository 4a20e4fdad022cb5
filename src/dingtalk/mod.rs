//! DingTalk's APIs as typed endpoints: one function per call, one parser per answer.
//!
//! DingTalk has two API families, and both stay inside this module. The old one (`oapi`) takes
//! the token in the query and answers HTTP 200 with an `errcode`; the new one (`api`) takes the
//! token in the `x-acs-dingtalk-access-token` header and answers non-2xx with
//! `{"code","message","requestid"}` (docs/dingtalk-api.md §0.2, §1, §9).
//!
//! - [`client`]: the transport ([`Client`]), error decoding, retry and back-off;
//! - [`oauth`]: app, SSO, user and corp tokens (one cache for the app and SSO tokens), `users/me`,
//!   SSO user info;
//! - [`contacts`]: users and departments (`topapi/v2/user/*`, `topapi/v2/department/*`);
//! - [`records`]: the tolerant parsers of DingTalk's user and department JSON;
//! - [`todo`]: to-do tasks (待办); [`message`]: work notifications (工作通知).

pub mod client;
pub mod contacts;
pub mod error;
pub mod message;
pub mod oauth;
pub mod records;
pub mod todo;

pub use client::Client;
pub use error::{ApiError, Problem};

use crate::settings::Settings;

/// Time budget of one DingTalk call made during a browser request.
pub const CALL_TIMEOUT_MS: u32 = 8_000;

/// The DingTalk hosts to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Old API base, e.g. `https://oapi.dingtalk.com`.
    pub oapi: String,
    /// New API base, e.g. `https://api.dingtalk.com`.
    pub api: String,
}

impl Endpoints {
    /// The hosts from the settings.
    pub fn from_settings(settings: &Settings) -> Self {
        Endpoints {
            oapi: settings.oapi_base_url.clone(),
            api: settings.api_base_url.clone(),
        }
    }
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
