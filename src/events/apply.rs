//! R6 `POST /dingding/events`: DingTalk event subscription over HTTP push (docs/dingtalk-api.md §8).
//!
//! Order of checks, each failing with a JSON failure and never a panic:
//! 1. events configured (`event_token`, `event_aes_key`), else 503;
//! 2. body at most `web::http::MAX_BODY` (413, checked by the router), query `msg_signature`|`signature`, `timestamp`|`timeStamp` and
//!    `nonce` present, body `{"encrypt": "…"}` (400);
//! 3. signature over the received `encrypt`, compared in constant time, **before** anything is
//!    decrypted (403);
//! 4. timestamp (seconds or milliseconds) within one hour of now (400): replays of old requests
//!    fail here even if their de-duplication records have been swept;
//! 5. decryption; the trailing owner key must be the AppKey or CorpId of a served corp (the
//!    configured one, and in the commercial edition the bound ones); the event's `CorpId`, when
//!    present, must be that corp (403);
//! 6. de-duplication on `evt:id:{sha1(corp|eventId)}`, or `evt:{sha1(corp|plaintext)}` for
//!    events without an `eventId` (replays and re-signed redeliveries carry the same plaintext):
//!    an event whose `:done` marker (kept one day) exists is answered `success` without applying
//!    it again. Otherwise the first arrival claims it with `increment` and records its delivery
//!    time as DingTalk stamped it; a delivery stamped less than 5 s later (a concurrent
//!    duplicate) gets 503 `event_in_progress`, a later one (DingTalk's retry, 10 s and 30 s
//!    after) takes over an attempt that died half-way. Only DingTalk's timestamps are compared,
//!    never the clocks of two of our instances, and a dead attempt never blocks an event for long;
//! 7. the event is applied: ids are turned into [`DirectoryChange`]s, fetching details where the
//!    event carries only ids (`topapi/v2/user/get` for added, modified and activated users,
//!    `topapi/v2/department/get` for created and modified departments; left users, removed
//!    departments and admin changes need no call), then appended to the change log;
//! 8. the answer is the encrypted `success` with a fresh timestamp, nonce and random prefix.
//!
//! If a detail fetch fails (DingTalk down, throttled, permission missing), the claim is
//! released and the answer is not `success`, so DingTalk's retry applies the event. Work is
//! bounded: at most [`MAX_DETAIL_FETCHES`] detail calls and [`MAX_CHANGES_PER_EVENT`] change-log
//! entries per event; ids beyond that (bulk imports and removals) are not applied here but
//! logged, and the next full-sync pass reports those members and departments (every pass reports
//! every member and department, and deactivates members no longer seen).

use crate::corps;
use crate::dingtalk::{contacts, ApiError, Client, Endpoints, Problem};
use crate::directory::changelog;
use crate::env::Env;
use crate::events::crypto::CallbackCrypto;
use crate::events::parse::{parse_event, ContactEvent};
use crate::failure::Failure;
use crate::kv;
use crate::model::{DirectoryChange, SequencedChange};
use crate::settings::{CorpApp, Settings};
use serde_json::Value;
use sha1::{Digest, Sha1};

/// Requests whose timestamp is further than this from now are refused.
pub const TIMESTAMP_WINDOW_MS: u64 = 3600 * 1000;
/// Most detail calls (`user/get`, `department/get`) made for one event: below DingTalk's 20
/// calls/s per API, so the answer stays inside DingTalk's 1.5–2.5 s deadline.
pub const MAX_DETAIL_FETCHES: usize = 15;
/// Most changes one event appends to the change log (two store writes each): an event naming
/// thousands of ids (a bulk removal) is still answered within DingTalk's deadline. Ids beyond
/// it are logged; the next full-sync pass reports them (every pass reports every member and
/// department, and deactivates members no longer seen).
pub const MAX_CHANGES_PER_EVENT: usize = 500;
/// A delivery stamped by DingTalk this long after the attempt in progress takes it over.
const TAKEOVER_MS: u64 = 5_000;
/// How long de-duplication records are kept.
const DEDUP_TTL_MS: u64 = 24 * 3600 * 1000;
const NONCE_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// One event push as the router parsed it from `POST /dingding/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventPush {
    /// `msg_signature` (or `signature`) from the query.
    pub signature: Option<String>,
    /// `timestamp` (or `timeStamp`) from the query, seconds or milliseconds.
    pub timestamp: Option<String>,
    /// `nonce` from the query.
    pub nonce: Option<String>,
    /// The body, `{"encrypt": "…"}`.
    pub body: Vec<u8>,
}

/// A verified event: the encrypted `success` to answer with, and the changes it recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct EventAnswer {
    /// The JSON body DingTalk expects (`msg_signature`, `timeStamp`, `nonce`, `encrypt`).
    pub reply: Value,
    /// Directory changes appended to the change log (empty for probes and duplicates).
    pub changes: Vec<SequencedChange>,
}

fn bad(code: &str, en: impl Into<String>, zh: impl Into<String>) -> Failure {
    Failure::bad_request(code, en, zh)
}

fn not_configured() -> Failure {
    Failure::new(
        503,
        "events_not_configured",
        "Event subscription is not configured: set event_token and event_aes_key in the plugin settings to the 签名 token and 加密 aes_key of the app's 事件订阅 (HTTP 推送) page.",
        "事件订阅未配置：请在插件设置中填写 event_token 和 event_aes_key（即应用“事件订阅 / HTTP 推送”页面的签名 token 与加密 aes_key）。",
    )
}

fn sha1_hex(parts: &[&str]) -> String {
    let mut h = Sha1::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b"|");
        }
        h.update(p.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Milliseconds from a timestamp in seconds or milliseconds.
fn timestamp_ms(ts: &str) -> Option<u64> {
    let n: u64 = ts.trim().parse().ok()?;
    Some(if n < 100_000_000_000 {
        n.saturating_mul(1000)
    } else {
        n
    })
}

fn fresh_nonce(env: &mut dyn Env) -> String {
    let mut buf = [0u8; 16];
    env.random_bytes(&mut buf);
    buf.iter()
        .map(|b| char::from(NONCE_CHARS[usize::from(*b) % NONCE_CHARS.len()]))
        .collect()
}

fn success(env: &mut dyn Env, crypto: &CallbackCrypto, owner_key: &str) -> Value {
    let mut random = [0u8; 16];
    env.random_bytes(&mut random);
    let nonce = fresh_nonce(env);
    let timestamp = env.now_ms().to_string();
    crypto.success_reply(&random, owner_key, &timestamp, &nonce)
}

/// Verifies, decrypts, de-duplicates and applies one event push.
pub fn receive(
    env: &mut dyn Env,
    settings: &Settings,
    request: &EventPush,
) -> Result<EventAnswer, Failure> {
    let keys = settings.events.as_ref().ok_or_else(not_configured)?;
    let missing = |name: &str| {
        bad(
            "missing_parameter",
            format!("The query parameter {name} is missing; this address only accepts DingTalk event pushes."),
            format!("缺少查询参数 {name}；此地址只接收钉钉事件推送。"),
        )
    };
    let signature = request
        .signature
        .clone()
        .ok_or_else(|| missing("msg_signature"))?;
    let timestamp = request
        .timestamp
        .clone()
        .ok_or_else(|| missing("timestamp"))?;
    let nonce = request.nonce.clone().ok_or_else(|| missing("nonce"))?;
    let body: Value = serde_json::from_slice(&request.body).map_err(|_| {
        bad(
            "invalid_body",
            "The event body is not JSON; DingTalk sends {\"encrypt\": \"…\"}.",
            "事件请求体不是 JSON；钉钉发送的是 {\"encrypt\": \"…\"}。",
        )
    })?;
    let encrypt = body
        .get("encrypt")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
        .ok_or_else(|| {
            bad(
                "invalid_body",
                "The event body has no \"encrypt\" string.",
                "事件请求体缺少 \"encrypt\" 字符串。",
            )
        })?;

    let crypto_for = |owner_keys: Vec<String>| {
        CallbackCrypto::new(keys.token.expose(), keys.aes_key.expose(), owner_keys).map_err(|_| {
            Failure::new(
                503,
                "bad_event_aes_key",
                "event_aes_key is not a valid 43-character EncodingAESKey; copy 加密 aes_key again from the app's 事件订阅 page.",
                "event_aes_key 不是有效的 43 位 EncodingAESKey，请从应用的“事件订阅”页面重新复制加密 aes_key。",
            )
        })
    };
    // The signature first: nothing else is read for an unsigned request.
    let crypto = crypto_for(Vec::new())?;
    if crypto
        .verify_signature(&signature, &timestamp, &nonce, encrypt)
        .is_err()
    {
        return Err(Failure::new(
            403,
            "signature_mismatch",
            "The event signature does not match: check that event_token equals the 签名 token of the app's 事件订阅 page.",
            "事件签名不匹配：请确认 event_token 与应用“事件订阅”页面的签名 token 一致。",
        ));
    }
    let now = env.now_ms();
    match timestamp_ms(&timestamp) {
        Some(ts) if ts.abs_diff(now) <= TIMESTAMP_WINDOW_MS => {}
        _ => {
            return Err(bad(
                "stale_request",
                "The event's timestamp is more than an hour away from the server's clock: an old request was replayed, or the server clock is wrong.",
                "事件的时间戳与服务器时间相差超过一小时：可能是旧请求被重放，或服务器时间不正确。",
            ))
        }
    }
    // Owner keys of every served corp: the AppKey (console subscriptions) or the CorpId
    // (register_call_back subscriptions).
    let apps = corps::all(env, settings)?;
    let owner_keys: Vec<String> = apps
        .iter()
        .flat_map(|a| [a.app_key.clone(), a.corp_id.clone()])
        .collect();
    let crypto = crypto_for(owner_keys)?;
    let decrypted = crypto.decrypt_parts(encrypt).map_err(|e| {
        if e == crate::events::crypto::CryptoError::OwnerKeyMismatch {
            Failure::new(
                403,
                "owner_key_mismatch",
                "The event was encrypted for another app: it is neither for the configured AppKey nor for a bound organisation.",
                "该事件是为其他应用加密的：既不属于配置的 AppKey，也不属于已绑定的组织。",
            )
        } else {
            bad(
                "undecryptable",
                format!("The event could not be decrypted ({}, DingTalk code {}); check event_aes_key.", e.code(), e.dingtalk_code()),
                format!("事件无法解密（{}，钉钉错误码 {}）；请检查 event_aes_key。", e.code(), e.dingtalk_code()),
            )
        }
    })?;
    let event = parse_event(&decrypted.msg).map_err(|e| {
        bad(
            "invalid_event",
            format!(
                "The decrypted event is not a DingTalk event ({}).",
                e.code()
            ),
            format!("解密后的内容不是钉钉事件（{}）。", e.code()),
        )
    })?;
    let owner = decrypted.owner_key.as_str();
    let app = apps
        .iter()
        .filter(|a| a.app_key == owner || a.corp_id == owner)
        .find(|a| event.corp_id.as_deref().is_none_or(|c| c == a.corp_id))
        .cloned()
        .ok_or_else(|| {
            let corp: String = event.corp_id.as_deref().unwrap_or("").chars().take(64).collect();
            Failure::new(
                403,
                "corp_mismatch",
                format!("The event is for organisation {corp}, which does not match the app it was encrypted for."),
                format!("事件所属组织 {corp} 与加密它的应用不一致。"),
            )
        })?;

    if event.event == ContactEvent::CheckUrl {
        return Ok(EventAnswer {
            reply: success(env, &crypto, owner),
            changes: Vec::new(),
        });
    }

    // De-duplication by eventId when the event has one, else by content: a replay and a
    // redelivery carry the same plaintext (event type, ids and the event's own timestamp) even
    // when DingTalk re-signs it with a new nonce.
    let key = match &event.event_id {
        Some(id) => format!("evt:id:{}", sha1_hex(&[&app.corp_id, id])),
        None => format!("evt:{}", sha1_hex(&[&app.corp_id, &decrypted.msg])),
    };
    let done_key = format!("{key}:done");
    if kv::get_live::<bool>(env, &done_key)?.unwrap_or(false) {
        env.log("event: duplicate of an applied event; answered success");
        return Ok(EventAnswer {
            reply: success(env, &crypto, owner),
            changes: Vec::new(),
        });
    }
    // One attempt at a time, across instances: the first arrival claims the event with
    // `increment` and records its delivery time *as DingTalk stamped it*. A later delivery
    // stamped less than TAKEOVER_MS after it is a concurrent duplicate (503); one stamped later
    // is DingTalk's retry (10 s, 30 s) and takes over an attempt that died half-way. Only
    // DingTalk's own timestamps are compared, never the clocks of two of our instances.
    let push_ms = timestamp_ms(&timestamp).unwrap_or(now);
    let claim = format!("{key}:claim");
    let run_key = format!("{key}:run");
    let arrival = env.kv_increment(&claim, 1)?;
    if arrival == 1 {
        kv::register_expiry(env, &claim, now + DEDUP_TTL_MS)?;
        kv::put_expiring(env, &run_key, &push_ms, now + DEDUP_TTL_MS)?;
    } else {
        let running: Option<u64> = kv::get_live(env, &run_key)?;
        match running {
            Some(since) if push_ms >= since.saturating_add(TAKEOVER_MS) => {
                env.log("event: an earlier attempt did not finish; DingTalk's retry applies it");
                kv::put_expiring(env, &run_key, &push_ms, now + DEDUP_TTL_MS)?;
            }
            other => {
                if other.is_none() {
                    // The first attempt died before recording its delivery: this one stands in.
                    kv::put_expiring(env, &run_key, &push_ms, now + DEDUP_TTL_MS)?;
                }
                return Err(Failure::new(
                    503,
                    "event_in_progress",
                    "This event is being applied by another request; DingTalk will retry it.",
                    "该事件正在由另一个请求处理，钉钉会重试。",
                ));
            }
        }
    }

    let applied = changes_for(env, settings, &app, &event.event)
        .and_then(|changes| changelog::append(env, changes));
    let sequenced = match applied {
        Ok(s) => s,
        Err(f) => {
            release(env, &claim);
            return Err(f);
        }
    };
    kv::put_expiring(env, &done_key, &true, now + DEDUP_TTL_MS)?;
    Ok(EventAnswer {
        reply: success(env, &crypto, owner),
        changes: sequenced,
    })
}

/// Deletes the claim so that DingTalk's retry of a failed event is applied, also when it is
/// byte-identical.
fn release(env: &mut dyn Env, claim: &str) {
    if env.kv_delete(claim).is_err() {
        env.log("event: could not release a de-duplication claim");
    }
}

fn fetch_failure(e: &ApiError, permission: &str) -> Failure {
    e.to_failure(permission)
}

/// The changes an event stands for, fetching details where it carries only ids.
fn changes_for(
    env: &mut dyn Env,
    settings: &Settings,
    app: &CorpApp,
    event: &ContactEvent,
) -> Result<Vec<DirectoryChange>, Failure> {
    let corp = app.corp_id.clone();
    let total = match event {
        ContactEvent::UserLeft(ids)
        | ContactEvent::AdminAdded(ids)
        | ContactEvent::AdminRemoved(ids) => ids.len(),
        ContactEvent::DeptRemoved(ids) => ids.len(),
        _ => 0,
    };
    if total > MAX_CHANGES_PER_EVENT {
        env.log(&format!(
            "event: {} ids beyond the first {MAX_CHANGES_PER_EVENT} not applied; the next full-sync pass reports them",
            total - MAX_CHANGES_PER_EVENT
        ));
    }
    let member_ref =
        |ids: &[String], make: fn(String, String) -> DirectoryChange| -> Vec<DirectoryChange> {
            ids.iter()
                .take(MAX_CHANGES_PER_EVENT)
                .map(|u| make(corp.clone(), u.clone()))
                .collect()
        };
    Ok(match event {
        ContactEvent::UserAdded(ids)
        | ContactEvent::UserModified(ids)
        | ContactEvent::UserActivated(ids) => fetch_members(env, settings, app, ids)?,
        ContactEvent::UserLeft(ids) => member_ref(ids, |corp_id, userid| {
            DirectoryChange::MemberDeactivated { corp_id, userid }
        }),
        ContactEvent::AdminAdded(ids) => member_ref(ids, |corp_id, userid| {
            DirectoryChange::AdminGranted { corp_id, userid }
        }),
        ContactEvent::AdminRemoved(ids) => member_ref(ids, |corp_id, userid| {
            DirectoryChange::AdminRevoked { corp_id, userid }
        }),
        ContactEvent::DeptCreated(ids) | ContactEvent::DeptModified(ids) => {
            fetch_departments(env, settings, app, ids)?
        }
        ContactEvent::DeptRemoved(ids) => ids
            .iter()
            .take(MAX_CHANGES_PER_EVENT)
            .map(|d| DirectoryChange::DepartmentRemoved {
                corp_id: corp.clone(),
                dept_id: *d,
            })
            .collect(),
        ContactEvent::CheckUrl | ContactEvent::OrgRemoved | ContactEvent::Other { .. } => {
            Vec::new()
        }
    })
}

fn deferred(env: &mut dyn Env, what: &str, total: usize) {
    if total > MAX_DETAIL_FETCHES {
        env.log(&format!(
            "event: {} {what} beyond the first {MAX_DETAIL_FETCHES} not fetched; the next full-sync pass reports them",
            total - MAX_DETAIL_FETCHES
        ));
    }
}

fn fetch_members(
    env: &mut dyn Env,
    settings: &Settings,
    app: &CorpApp,
    ids: &[String],
) -> Result<Vec<DirectoryChange>, Failure> {
    deferred(env, "users", ids.len());
    let endpoints = Endpoints::from_settings(settings);
    let mut client = Client::new(env, &endpoints, app);
    client.throttle_retries = 0;
    let mut out = Vec::new();
    for userid in ids.iter().take(MAX_DETAIL_FETCHES) {
        match contacts::user_get(&mut client, userid) {
            Ok(user) => match user.to_member(&app.corp_id) {
                Some(member) => out.push(DirectoryChange::MemberUpserted { member }),
                None => client
                    .env()
                    .log("event: user/get answered without a usable user; skipped"),
            },
            // Gone again before we asked: its user_leave_org event follows.
            Err(e) if matches!(e.problem(), Problem::NotFound | Problem::NotMember) => {
                client.env().log("event: user no longer exists; skipped")
            }
            Err(e) => return Err(fetch_failure(&e, "qyapi_get_member")),
        }
    }
    Ok(out)
}

fn fetch_departments(
    env: &mut dyn Env,
    settings: &Settings,
    app: &CorpApp,
    ids: &[i64],
) -> Result<Vec<DirectoryChange>, Failure> {
    deferred(env, "departments", ids.len());
    let endpoints = Endpoints::from_settings(settings);
    let mut client = Client::new(env, &endpoints, app);
    client.throttle_retries = 0;
    let mut out = Vec::new();
    for dept_id in ids.iter().take(MAX_DETAIL_FETCHES) {
        match contacts::department_get(&mut client, *dept_id) {
            Ok(detail) => match detail.department {
                Some(department) => out.push(DirectoryChange::DepartmentUpserted { department }),
                None => client
                    .env()
                    .log("event: department/get answered without a usable department; skipped"),
            },
            Err(e) if e.problem() == Problem::NotFound => client
                .env()
                .log("event: department no longer exists; skipped"),
            Err(e) => return Err(fetch_failure(&e, "qyapi_get_department_list")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::HttpRequest;
    use crate::settings::tests::{sample, sample_raw};
    use crate::testing::{json_response, FakeEnv};
    use crate::web::http::Request;
    use crate::web::router::{Outcome, Routed};

    /// The route as the router serves it: parse, receive, render.
    fn handle(env: &mut FakeEnv, s: &Settings, request: &Request) -> Routed {
        crate::web::router::events(env, s, request)
    }
    use serde_json::json;
    use std::cell::RefCell;
    use std::rc::Rc;

    const OWNER: &str = "dingappkey123";
    const CORP: &str = "dingcorp123";

    fn crypto(s: &Settings) -> CallbackCrypto {
        let k = s.events.as_ref().unwrap();
        CallbackCrypto::new(k.token.expose(), k.aes_key.expose(), vec![]).unwrap()
    }

    struct Push {
        plaintext: String,
        owner: String,
        ts: String,
        nonce: String,
        sig_param: &'static str,
        ts_param: &'static str,
    }

    impl Push {
        fn new(plaintext: &str, now: u64) -> Self {
            Push {
                plaintext: plaintext.into(),
                owner: OWNER.into(),
                ts: now.to_string(),
                nonce: "nonce123".into(),
                sig_param: "msg_signature",
                ts_param: "timestamp",
            }
        }
        fn request(&self, s: &Settings) -> Request {
            let c = crypto(s);
            let enc = c.encrypt(&self.plaintext, b"0123456789abcdef", &self.owner);
            let sig = c.signature(&self.ts, &self.nonce, &enc);
            Request::new(
                "POST",
                &format!(
                    "/dingding/events?{}={sig}&{}={}&nonce={}",
                    self.sig_param, self.ts_param, self.ts, self.nonce
                ),
                vec![("content-type".into(), "application/json".into())],
                json!({"encrypt": enc}).to_string().into_bytes(),
            )
        }
    }

    fn assert_success(s: &Settings, r: &Routed) {
        assert_eq!(
            r.response.status,
            200,
            "{}",
            String::from_utf8_lossy(&r.response.body)
        );
        let v: Value = serde_json::from_slice(&r.response.body).unwrap();
        let c = crypto(s);
        let enc = v["encrypt"].as_str().unwrap();
        c.verify_signature(
            v["msg_signature"].as_str().unwrap(),
            v["timeStamp"].as_str().unwrap(),
            v["nonce"].as_str().unwrap(),
            enc,
        )
        .unwrap();
        let d = c.decrypt_parts(enc).unwrap();
        assert_eq!(d.msg, "success");
        assert_eq!(d.owner_key, OWNER);
    }

    fn code_of(r: &Routed) -> String {
        let v: Value = serde_json::from_slice(&r.response.body).unwrap();
        v["error"]["code"].as_str().unwrap_or("").to_string()
    }

    #[derive(Default)]
    struct Org {
        down: bool,
        user_gets: Vec<String>,
    }

    fn dingtalk(env: &mut FakeEnv) -> Rc<RefCell<Org>> {
        let org = Rc::new(RefCell::new(Org::default()));
        let o = org.clone();
        env.respond(move |r: &HttpRequest| {
            let url = r.redacted_url();
            let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            let mut o = o.borrow_mut();
            if url.ends_with("/v1.0/oauth2/accessToken") {
                return Ok(json_response(200, r#"{"accessToken":"tok","expireIn":7200}"#));
            }
            if o.down {
                return Ok(json_response(200, r#"{"errcode":-1,"errmsg":"系统繁忙"}"#));
            }
            if url.ends_with("/topapi/v2/user/get") {
                let uid = body["userid"].as_str().unwrap_or("").to_string();
                o.user_gets.push(uid.clone());
                if uid == "gone" {
                    return Ok(json_response(200, r#"{"errcode":60121,"errmsg":"找不到该用户"}"#));
                }
                return Ok(json_response(200, &json!({"errcode":0,"result":{"userid":uid,"name":format!("N-{uid}"),"dept_id_list":[2],"active":true,"admin":false}}).to_string()));
            }
            if url.ends_with("/topapi/v2/department/get") {
                let id = body["dept_id"].as_i64().unwrap_or(0);
                return Ok(json_response(200, &json!({"errcode":0,"result":{"dept_id":id,"name":format!("D{id}"),"parent_id":1}}).to_string()));
            }
            Ok(json_response(404, "{}"))
        });
        org
    }

    #[test]
    fn not_configured_is_503_naming_the_settings() {
        let mut raw = sample_raw();
        raw.remove("event_token");
        raw.remove("event_aes_key");
        let s = Settings::parse(&raw).unwrap();
        let mut env = FakeEnv::new();
        let now = env.now;
        let r = handle(
            &mut env,
            &s,
            &Push::new(r#"{"EventType":"check_url"}"#, now).request(&sample()),
        );
        assert_eq!(r.response.status, 503);
        let text = String::from_utf8(r.response.body.clone()).unwrap();
        assert!(text.contains("event_token") && text.contains("event_aes_key"));
    }

    #[test]
    fn check_url_with_both_query_spellings() {
        let s = sample();
        let mut env = FakeEnv::new();
        for (sig, ts) in [
            ("msg_signature", "timestamp"),
            ("signature", "timeStamp"),
            ("signature", "timestamp"),
        ] {
            let mut p = Push::new(r#"{"EventType":"check_url"}"#, env.now);
            p.sig_param = sig;
            p.ts_param = ts;
            let r = handle(&mut env, &s, &p.request(&s));
            assert_success(&s, &r);
            assert_eq!(r.outcome, Outcome::None);
        }
        // Seconds are accepted too; a register_call_back subscription uses the CorpId as owner key.
        let mut p = Push::new(r#"{"EventType":"check_url"}"#, env.now / 1000);
        p.owner = CORP.into();
        let r = handle(&mut env, &s, &p.request(&s));
        assert_eq!(r.response.status, 200);
        assert!(env.requests.is_empty());
    }

    #[test]
    fn bad_signature_is_403_before_anything_else() {
        let s = sample();
        let mut env = FakeEnv::new();
        let mut req =
            Push::new(r#"{"EventType":"user_leave_org","UserId":["a"]}"#, env.now).request(&s);
        req.query = req
            .query
            .map(|q| q.replacen("msg_signature=", "msg_signature=0", 1));
        let r = handle(&mut env, &s, &req);
        assert_eq!(
            (r.response.status, code_of(&r).as_str()),
            (403, "signature_mismatch")
        );
        assert!(matches!(r.outcome, Outcome::Failed(_)));
        assert!(env.kv.is_empty(), "nothing claimed or written");
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let s = sample();
        let mut env = FakeEnv::new();
        for ts in [
            env.now - TIMESTAMP_WINDOW_MS - 1,
            env.now + TIMESTAMP_WINDOW_MS + 1,
        ] {
            let r = handle(
                &mut env,
                &s,
                &Push::new(r#"{"EventType":"check_url"}"#, ts).request(&s),
            );
            assert_eq!(
                (r.response.status, code_of(&r).as_str()),
                (400, "stale_request")
            );
        }
        let mut p = Push::new(r#"{"EventType":"check_url"}"#, 0);
        p.ts = "soon".into();
        assert_eq!(handle(&mut env, &s, &p.request(&s)).response.status, 400);
    }

    #[test]
    fn malformed_requests_are_clear_400s() {
        let s = sample();
        let mut env = FakeEnv::new();
        let good = Push::new(r#"{"EventType":"check_url"}"#, env.now).request(&s);
        let with_body = |body: &[u8]| Request {
            body: body.to_vec(),
            ..good.clone()
        };
        for (req, status, code) in [
            (with_body(b"not json"), 400, "invalid_body"),
            (with_body(b"{}"), 400, "invalid_body"),
            (with_body(br#"{"encrypt": 5}"#), 400, "invalid_body"),
            (
                with_body(&vec![b' '; crate::web::http::MAX_BODY + 1]),
                413,
                "body_too_large",
            ),
            (
                Request {
                    query: None,
                    ..good.clone()
                },
                400,
                "missing_parameter",
            ),
            (
                Request {
                    query: good
                        .query
                        .as_ref()
                        .map(|q| q.split("&nonce").next().unwrap().to_string()),
                    ..good.clone()
                },
                400,
                "missing_parameter",
            ),
        ] {
            let r = handle(&mut env, &s, &req);
            assert_eq!((r.response.status, code_of(&r).as_str()), (status, code));
        }
        // Correctly signed garbage: decryption fails cleanly.
        let c = crypto(&s);
        let ts = env.now.to_string();
        for enc in ["%%%notbase64", "AAAA", "QUJD"] {
            let sig = c.signature(&ts, "n", enc);
            let req = Request::new(
                "POST",
                &format!("/dingding/events?signature={sig}&timestamp={ts}&nonce=n"),
                vec![],
                json!({"encrypt": enc}).to_string().into_bytes(),
            );
            let r = handle(&mut env, &s, &req);
            assert_eq!(
                (r.response.status, code_of(&r).as_str()),
                (400, "undecryptable"),
                "{enc}"
            );
        }
        // Decrypts, but is not an event.
        let now = env.now;
        let r = handle(&mut env, &s, &Push::new("not json", now).request(&s));
        assert_eq!(
            (r.response.status, code_of(&r).as_str()),
            (400, "invalid_event")
        );
        // Encrypted for another app.
        let mut p = Push::new(r#"{"EventType":"check_url"}"#, env.now);
        p.owner = "dingotherapp".into();
        let r = handle(&mut env, &s, &p.request(&s));
        assert_eq!(
            (r.response.status, code_of(&r).as_str()),
            (403, "owner_key_mismatch")
        );
        // For another corp.
        let now = env.now;
        let r = handle(
            &mut env,
            &s,
            &Push::new(
                r#"{"EventType":"user_leave_org","CorpId":"dingevil","UserId":["a"]}"#,
                now,
            )
            .request(&s),
        );
        assert_eq!(
            (r.response.status, code_of(&r).as_str()),
            (403, "corp_mismatch")
        );
    }

    fn kinds(changes: &[crate::model::SequencedChange]) -> Vec<String> {
        changes
            .iter()
            .map(|c| {
                serde_json::to_value(&c.change).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn user_added_is_fetched_logged_and_applied_once() {
        let s = sample();
        let mut env = FakeEnv::new();
        let org = dingtalk(&mut env);
        let req = Push::new(
            r#"{"EventType":"user_add_org","CorpId":"dingcorp123","eventId":"e1","UserId":["u1","gone","u2"]}"#,
            env.now,
        )
        .request(&s);
        let r = handle(&mut env, &s, &req);
        assert_success(&s, &r);
        let Outcome::DirectoryChanged(changes) = &r.outcome else {
            panic!("{:?}", r.outcome)
        };
        assert_eq!(kinds(changes), vec!["member_upserted", "member_upserted"]);
        assert_eq!(org.borrow().user_gets, vec!["u1", "gone", "u2"]);
        let page = changelog::read(&mut env, 0, 10).unwrap();
        assert_eq!(&page.changes, changes);

        // The exact replay: success, nothing applied again.
        let r = handle(&mut env, &s, &req);
        assert_success(&s, &r);
        assert_eq!(r.outcome, Outcome::None);
        // A redelivery with a new nonce but the same eventId: likewise.
        let mut again = Push::new(
            r#"{"EventType":"user_add_org","CorpId":"dingcorp123","eventId":"e1","UserId":["u1","gone","u2"]}"#,
            env.now,
        );
        again.nonce = "other".into();
        assert_success(&s, &handle(&mut env, &s, &again.request(&s)));
        assert_eq!(org.borrow().user_gets.len(), 3);
        assert_eq!(changelog::read(&mut env, 0, 10).unwrap().changes.len(), 2);
    }

    #[test]
    fn resigned_redelivery_without_event_id_is_applied_once() {
        let s = sample();
        let mut env = FakeEnv::new();
        let org = dingtalk(&mut env);
        let body = r#"{"EventType":"user_add_org","CorpId":"dingcorp123","TimeStamp":"1700000000000","UserId":["u1"]}"#;
        let first = Push::new(body, env.now);
        let r = handle(&mut env, &s, &first.request(&s));
        assert_success(&s, &r);
        assert!(matches!(r.outcome, Outcome::DirectoryChanged(_)));
        // DingTalk's retry: same event, new nonce and timestamp, so a new signature.
        let mut retry = Push::new(body, env.now + 10_000);
        retry.nonce = "retry1".into();
        let r = handle(&mut env, &s, &retry.request(&s));
        assert_success(&s, &r);
        assert_eq!(r.outcome, Outcome::None);
        assert_eq!(org.borrow().user_gets, vec!["u1"]);
        // A different event for the same member is applied.
        let other = Push::new(
            r#"{"EventType":"user_add_org","CorpId":"dingcorp123","TimeStamp":"1700000099999","UserId":["u1"]}"#,
            env.now,
        );
        assert!(matches!(
            handle(&mut env, &s, &other.request(&s)).outcome,
            Outcome::DirectoryChanged(_)
        ));
    }

    #[test]
    fn failed_fetch_is_not_success_and_the_retry_applies() {
        let s = sample();
        let mut env = FakeEnv::new();
        let org = dingtalk(&mut env);
        org.borrow_mut().down = true;
        let req = Push::new(
            r#"{"EventType":"user_modify_org","eventId":"e2","userId":["u1"]}"#,
            env.now,
        )
        .request(&s);
        let r = handle(&mut env, &s, &req);
        assert_ne!(r.response.status, 200);
        assert!(matches!(r.outcome, Outcome::Failed(_)));
        assert_eq!(changelog::read(&mut env, 0, 10).unwrap().changes.len(), 0);
        org.borrow_mut().down = false;
        env.now += 10_000;
        let r = handle(&mut env, &s, &req);
        assert_success(&s, &r);
        assert_eq!(changelog::read(&mut env, 0, 10).unwrap().changes.len(), 1);
    }

    /// Another instance started applying event `event_id` from the delivery stamped `push_ms`.
    fn in_progress(env: &mut FakeEnv, event_id: &str, push_ms: u64) {
        let key = format!("evt:id:{}", sha1_hex(&[CORP, event_id]));
        env.kv_increment(&format!("{key}:claim"), 1).unwrap();
        let exp = env.now + DEDUP_TTL_MS;
        kv::put_expiring(env, &format!("{key}:run"), &push_ms, exp).unwrap();
    }

    #[test]
    fn duplicate_while_in_progress_is_503() {
        let s = sample();
        let mut env = FakeEnv::new();
        dingtalk(&mut env);
        let push = Push::new(
            r#"{"EventType":"user_leave_org","eventId":"e3","UserId":["a"]}"#,
            env.now,
        );
        // Another instance is applying a delivery stamped a second earlier.
        let now = env.now;
        in_progress(&mut env, "e3", now - 1_000);
        let r = handle(&mut env, &s, &push.request(&s));
        assert_eq!(
            (r.response.status, code_of(&r).as_str()),
            (503, "event_in_progress")
        );
        assert_eq!(changelog::read(&mut env, 0, 10).unwrap().changes.len(), 0);
    }

    #[test]
    fn a_half_applied_event_is_retried_within_a_minute_not_blocked_for_a_day() {
        let s = sample();
        let mut env = FakeEnv::new();
        dingtalk(&mut env);
        let plain = r#"{"EventType":"user_leave_org","eventId":"e4","UserId":["a"]}"#;
        // The instance that received the first delivery claimed it, then died before marking
        // it done (killed, out of time).
        let now = env.now;
        in_progress(&mut env, "e4", now);
        // DingTalk's first retry, 10 s later: a new timestamp, nonce and signature.
        env.now += 10_000;
        let mut retry = Push::new(plain, env.now);
        retry.nonce = "retry1".into();
        let r = handle(&mut env, &s, &retry.request(&s));
        assert_success(&s, &r);
        assert!(matches!(r.outcome, Outcome::DirectoryChanged(_)));
        assert_eq!(changelog::read(&mut env, 0, 10).unwrap().changes.len(), 1);
        // The second retry finds it done.
        env.now += 30_000;
        let mut again = Push::new(plain, env.now);
        again.nonce = "retry2".into();
        let r = handle(&mut env, &s, &again.request(&s));
        assert_success(&s, &r);
        assert_eq!(r.outcome, Outcome::None);
    }

    #[test]
    fn an_event_with_thousands_of_ids_is_answered_with_bounded_work() {
        let s = sample();
        let mut env = FakeEnv::new();
        dingtalk(&mut env);
        let ids: Vec<String> = (0..5000).map(|i| format!("\"u{i}\"")).collect();
        let plain = format!(
            r#"{{"EventType":"user_leave_org","eventId":"bulk","UserId":[{}]}}"#,
            ids.join(",")
        );
        let now = env.now;
        let r = handle(&mut env, &s, &Push::new(&plain, now).request(&s));
        assert_success(&s, &r);
        let written = env.kv.keys().filter(|k| k.starts_with("change:")).count();
        assert_eq!(written, MAX_CHANGES_PER_EVENT);
        assert!(env.requests.is_empty());
        let skipped = format!("{} ids beyond", 5000 - MAX_CHANGES_PER_EVENT);
        assert!(
            env.logs.iter().any(|l| l.contains(&skipped)),
            "{:?}",
            env.logs
        );
    }

    #[test]
    fn id_only_events() {
        let s = sample();
        let mut env = FakeEnv::new();
        let org = dingtalk(&mut env);
        let cases = [
            (
                r#"{"EventType":"user_leave_org","UserId":["a","b"]}"#,
                vec!["member_deactivated", "member_deactivated"],
            ),
            (
                r#"{"EventType":"org_admin_add","userId":["a"]}"#,
                vec!["admin_granted"],
            ),
            (
                r#"{"EventType":"org_admin_remove","userId":["a"]}"#,
                vec!["admin_revoked"],
            ),
            (
                r#"{"EventType":"org_dept_remove","DeptId":[5]}"#,
                vec!["department_removed"],
            ),
            (
                r#"{"EventType":"org_dept_create","deptId":[5,6]}"#,
                vec!["department_upserted", "department_upserted"],
            ),
            (r#"{"EventType":"label_user_change"}"#, vec![]),
        ];
        for (i, (plain, expect)) in cases.into_iter().enumerate() {
            let mut p = Push::new(plain, env.now);
            p.nonce = format!("n{i}");
            let r = handle(&mut env, &s, &p.request(&s));
            assert_success(&s, &r);
            let got = match &r.outcome {
                Outcome::DirectoryChanged(c) => kinds(c),
                _ => vec![],
            };
            assert_eq!(got, expect, "{plain}");
        }
        assert!(org.borrow().user_gets.is_empty());
        assert_eq!(
            env.paths()
                .iter()
                .filter(|p| p.ends_with("/department/get"))
                .count(),
            2
        );
    }

    #[test]
    fn detail_fetches_are_bounded() {
        let s = sample();
        let mut env = FakeEnv::new();
        let org = dingtalk(&mut env);
        let ids: Vec<String> = (0..80).map(|i| format!("\"u{i}\"")).collect();
        let plain = format!(
            r#"{{"EventType":"user_add_org","UserId":[{}]}}"#,
            ids.join(",")
        );
        let now = env.now;
        let r = handle(&mut env, &s, &Push::new(&plain, now).request(&s));
        assert_success(&s, &r);
        assert_eq!(org.borrow().user_gets.len(), MAX_DETAIL_FETCHES);
        let skipped = format!("{} users", 80 - MAX_DETAIL_FETCHES);
        assert!(
            env.logs.iter().any(|l| l.contains(&skipped)),
            "{:?}",
            env.logs
        );
    }

    #[test]
    fn commercial_edition_serves_bound_corps_by_their_owner_key() {
        let mut raw = sample_raw();
        raw.insert("edition".into(), "commercial".into());
        let s = Settings::parse(&raw).unwrap();
        let mut env = FakeEnv::new();
        dingtalk(&mut env);
        let stored = json!({"corp_id": "dingbound", "corp_name": "B", "agent_id": "2", "app_key": "dingboundkey",
            "app_secret": "bound-secret-value-123", "sso_secret": null});
        kv::put_json(&mut env, "corp:dingbound", &stored).unwrap();
        let n = env.kv_increment("corps:n", 1).unwrap();
        env.kv_set(&format!("corps:slot:{n}"), b"dingbound")
            .unwrap();

        let mut p = Push::new(
            r#"{"EventType":"user_add_org","CorpId":"dingbound","UserId":["u1"]}"#,
            env.now,
        );
        p.owner = "dingboundkey".into();
        let r = handle(&mut env, &s, &p.request(&s));
        assert_eq!(r.response.status, 200);
        let Outcome::DirectoryChanged(changes) = &r.outcome else {
            panic!("{:?}", r.outcome)
        };
        let DirectoryChange::MemberUpserted { member } = &changes[0].change else {
            panic!()
        };
        assert_eq!(member.corp_id, "dingbound");
        let token_call = env
            .requests
            .iter()
            .find(|r| r.url.ends_with("/v1.0/oauth2/accessToken"))
            .unwrap();
        assert!(String::from_utf8_lossy(&token_call.body).contains("dingboundkey"));

        // The bound app's key cannot speak for the configured corp.
        let mut p = Push::new(
            r#"{"EventType":"user_leave_org","CorpId":"dingcorp123","UserId":["u1"]}"#,
            env.now,
        );
        p.owner = "dingboundkey".into();
        p.nonce = "n2".into();
        let r = handle(&mut env, &s, &p.request(&s));
        assert_eq!(
            (r.response.status, code_of(&r).as_str()),
            (403, "corp_mismatch")
        );
    }
}
