//! Entry points for the cargo-fuzz targets under `fuzz/` (feature `fuzzing`, off in every normal
//! build). Thin: a deterministic [`FuzzEnv`], valid sample settings, re-exports of the private
//! types the targets build inputs from, and drivers for what only the crate can reach (the
//! DingTalk client and its response parsers).

use crate::dingtalk::{
    client, contacts, message, oauth, records, todo, ApiError, Client, Endpoints,
};
use crate::env::{Env, HttpRequest, HttpResponse, KvError, TransportError};
use crate::secret::{AccessToken, SsoSecret};
use serde_json::Value;
use std::collections::BTreeMap;

pub use crate::corps::CorpBinding;
pub use crate::events::crypto::{CallbackCrypto, CryptoError, Decrypted};
pub use crate::events::parse::parse_event;
pub use crate::login::handoff::redeem_ticket;

/// Mints a ticket for `identity` in a fresh code-exchange slot, as a successful login does.
pub fn mint_ticket(
    env: &mut dyn Env,
    identity: &crate::model::Identity,
) -> Result<String, crate::failure::Failure> {
    let slot = crate::kv::allocate(env)?;
    crate::login::handoff::mint_ticket(env, slot, identity)
}
pub use crate::notify::{MessageBody, TodoSpec};
pub use crate::settings::samples::{sample, sample_raw, SAMPLE_SECRETS};
pub use crate::sync::StepRequest;

/// Start of the fake clock: a realistic wall-clock time (Unix ms).
pub const EPOCH_MS: u64 = 1_700_000_000_000;
/// Most outgoing calls one fuzz input may make; later calls fail as unreachable.
pub const MAX_CALLS: u32 = 512;

/// A deterministic environment: clock, counter-based randomness, an in-memory store and a fake
/// DingTalk that answers a fixed list of responses in turn (or is unreachable when the list is
/// empty).
#[derive(Debug, Clone, Default)]
pub struct FuzzEnv {
    /// Current time, Unix ms.
    pub now: u64,
    /// The key-value store.
    pub kv: BTreeMap<String, Vec<u8>>,
    /// DingTalk's answers, used in turn (cyclically); empty: DingTalk is unreachable.
    pub answers: Vec<(u16, Vec<u8>)>,
    /// Answer token requests (`…/accessToken`, `…/ssoAccessToken`, `…/token`) with a valid token
    /// instead of the next answer.
    pub answer_tokens: bool,
    /// Outgoing calls made.
    pub calls: u32,
    /// Log lines.
    pub logs: Vec<String>,
    counter: u8,
}

impl FuzzEnv {
    /// An environment at [`EPOCH_MS`] whose DingTalk is unreachable.
    pub fn new() -> Self {
        FuzzEnv {
            now: EPOCH_MS,
            ..FuzzEnv::default()
        }
    }
}

fn is_token_url(url: &str) -> bool {
    let path = url.split(['?', '#']).next().unwrap_or("");
    path.ends_with("/accessToken") || path.ends_with("/ssoAccessToken") || path.ends_with("/token")
}

impl Env for FuzzEnv {
    fn now_ms(&self) -> u64 {
        self.now
    }
    fn random_bytes(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.counter = self.counter.wrapping_add(37);
            *b = self.counter;
        }
    }
    fn http(&mut self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let n = self.calls;
        self.calls = self.calls.saturating_add(1);
        if n >= MAX_CALLS {
            return Err(TransportError::Unreachable("call budget spent".into()));
        }
        if self.answer_tokens && is_token_url(&request.url) {
            return Ok(HttpResponse {
                status: 200,
                headers: vec![],
                body: format!(
                    r#"{{"accessToken":"tok{n}","expireIn":7200,"access_token":"tok{n}","expires_in":7200}}"#
                )
                .into_bytes(),
            });
        }
        if self.answers.is_empty() {
            return Err(TransportError::Unreachable("fuzz: no network".into()));
        }
        let (status, body) = &self.answers[n as usize % self.answers.len()];
        Ok(HttpResponse {
            status: *status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.clone(),
        })
    }
    fn sleep_ms(&mut self, ms: u64) {
        self.now = self.now.saturating_add(ms);
    }
    fn kv_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.kv.get(key).cloned())
    }
    fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.kv.insert(key.to_string(), value.to_vec());
        Ok(())
    }
    fn kv_delete(&mut self, key: &str) -> Result<(), KvError> {
        self.kv.remove(key);
        Ok(())
    }
    /// Like Redis: a counter is 8 bytes here; anything else, or an overflow, is an error.
    fn kv_increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError> {
        let current = match self.kv.get(key) {
            None => 0,
            Some(b) => match <[u8; 8]>::try_from(b.as_slice()) {
                Ok(b) => i64::from_le_bytes(b),
                Err(_) => return Err(KvError("not a counter".into())),
            },
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| KvError("increment would overflow".into()))?;
        self.kv.insert(key.to_string(), next.to_le_bytes().to_vec());
        Ok(next)
    }
    fn log(&mut self, line: &str) {
        if self.logs.len() < 1024 {
            self.logs.push(line.to_string());
        }
    }
}

/// The counter bytes [`FuzzEnv::kv_increment`] reads, to preload counters.
pub fn counter_bytes(n: i64) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}

/// Everything a DingTalk error offers a caller; must not panic for any error.
fn inspect_error(e: &ApiError) {
    let _ = e.problem();
    let _ = e.code_text();
    let _ = e.reported_ip();
    let failure = e.to_failure("qyapi_get_member");
    assert!(
        (400..600).contains(&failure.status),
        "DingTalk error mapped to status {}",
        failure.status
    );
    let _ = failure.to_json();
    let _ = format!("{e:?}");
}

/// Runs every tolerant record parser on `v` and on each value nested in it (depth-limited).
fn parse_records(v: &Value, depth: u32) {
    let corp = "dingcorp123";
    let user = records::UserRecord::from_json(v);
    let _ = user.to_member(corp);
    let _ = records::member_from_json(corp, v);
    let _ = records::member_from_list_item(corp, v, 1);
    let _ = records::department_from_json(corp, v);
    let _ = records::dept_managers(v);
    let _ = records::as_i64(v);
    let _ = records::as_bool(v);
    let _ = records::as_text(v);
    let _ = records::dept_ids(Some(v));
    if let Some(s) = v.as_str() {
        let _ = records::valid_userid(s);
    }
    if depth < 4 {
        match v {
            Value::Array(items) => items
                .iter()
                .take(16)
                .for_each(|i| parse_records(i, depth + 1)),
            Value::Object(map) => map
                .values()
                .take(16)
                .for_each(|i| parse_records(i, depth + 1)),
            _ => {}
        }
    }
}

/// Decodes one DingTalk answer as both API families and parses whatever it holds as records.
pub fn decode_response(status: u16, body: &[u8]) {
    let response = HttpResponse {
        status,
        headers: vec![],
        body: body.to_vec(),
    };
    for decoded in [client::decode_old(&response), client::decode_new(&response)] {
        match decoded {
            Ok(v) => parse_records(&v, 0),
            Err(e) => inspect_error(&e),
        }
    }
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        parse_records(&v, 0);
    }
}

/// Calls one typed DingTalk endpoint (`which` modulo the number of endpoints) through the real
/// client against `env`'s scripted answers, with fuzzed arguments.
pub fn call_endpoint(env: &mut FuzzEnv, which: u8, text: &str, number: i64) {
    let settings = sample();
    let endpoints = Endpoints::from_settings(&settings);
    let mut client = Client::new(env, &endpoints, &settings.corp);
    client.throttle_retries = u32::from(which >> 5);
    let sso = SsoSecret::new("sso-secret-value-123456");
    let unsigned = u64::try_from(number).unwrap_or(0);
    let list = [text.to_string(), "u2".to_string()];
    let result: Result<(), ApiError> = match which % 17 {
        0 => oauth::app_token(&mut client).map(drop),
        1 => oauth::fresh_app_token(&mut client).map(drop),
        2 => oauth::sso_token(&mut client, &sso).map(drop),
        3 => oauth::user_token(&mut client, text).map(drop),
        4 => oauth::me(&mut client, &AccessToken::new(text)).map(drop),
        5 => oauth::sso_user_info(&mut client, &sso, text).map(drop),
        6 => oauth::corp_token(&mut client, text).map(drop),
        7 => contacts::user_info_by_code(&mut client, text).map(drop),
        8 => contacts::user_get(&mut client, text).map(drop),
        9 => contacts::userid_by_unionid(&mut client, text).map(drop),
        10 => contacts::user_list(&mut client, number, unsigned, (number & 0xff) as u32).map(drop),
        11 => contacts::department_get(&mut client, number).map(drop),
        12 => contacts::department_listsub(&mut client, number).map(drop),
        13 => todo::create_task(
            &mut client,
            &todo::NewTask {
                source_id: text,
                subject: text,
                description: Some(text),
                creator_unionid: text,
                executor_unionids: &list,
                detail_url: "https://forms.example.com/x",
                due_ms: Some(unsigned),
                priority: Some((number & 0x3f) as u32),
            },
        )
        .map(drop),
        14 => todo::task_by_source(&mut client, text, text).map(drop),
        15 => todo::complete_task(&mut client, text, text)
            .and_then(|()| todo::delete_task(&mut client, text, text)),
        _ => message::send_work_notice(
            &mut client,
            unsigned,
            &[text],
            &serde_json::json!({"msgtype": "text", "text": {"content": text}}),
        )
        .map(drop),
    };
    if let Err(e) = &result {
        inspect_error(e);
        let _ = todo::is_task_exists(e);
        let _ = todo::is_task_missing(e);
    }
}
