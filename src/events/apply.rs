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
//! 6. de-duplication and queueing ([`crate::events::queue`]): an event already queued or
//!    applied (its marker under `evt:id:{sha1(corp|eventId)}`, or `evt:{sha1(corp|plaintext)}`
//!    for events without an `eventId`, kept three days) is answered `success` at once;
//!    otherwise its ids go into the deferred queue (one slot, one write per 1,000 ids) and
//!    the marker is written. A re-delivery is never refused: whatever state a dead attempt
//!    left, the event is either queued (answered from its marker) or queued again;
//! 7. the queue is drained with [`DrainBudget::EVENT`] (600 ms from the push's arrival, in
//!    batches sized to the pace the store and DingTalk keep): details are fetched where the
//!    event carries only ids (`topapi/v2/user/get` for added, modified and activated users,
//!    `topapi/v2/department/get` for created and modified departments; left users, removed
//!    departments and admin changes need no call), the directory mirror is updated and the
//!    changes are appended to the change log, exactly once. What does not fit waits for the
//!    next event, `GET /dingding/api/changes` or a sync step;
//! 8. the answer is the encrypted `success` with a fresh timestamp, nonce and random prefix.
//!
//! DingTalk counts an answer later than 1,500 ms as a failed push (docs/dingtalk-api.md §8.6),
//! so nothing slow happens before the answer but the bounded drain, whose detail calls are cut
//! short at its budget's end. A failed drain never fails the answer: the event is queued.

use crate::corps;
use crate::env::Env;
use crate::events::crypto::{to_hex, CallbackCrypto};
use crate::events::parse::{parse_event, ContactEvent};
use crate::events::queue::{self, DrainBudget, Work};
use crate::failure::Failure;
use crate::model::SequencedChange;
use crate::settings::Settings;
use serde_json::Value;
use sha1::{Digest, Sha1};

/// Requests whose timestamp is further than this from now are refused.
pub const TIMESTAMP_WINDOW_MS: u64 = 3600 * 1000;
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

/// A verified event: the encrypted `success` to answer with, and the changes recorded while
/// answering it (this event's and earlier queued ones', as far as the drain budget went).
#[derive(Debug, Clone, PartialEq)]
pub struct EventAnswer {
    /// The JSON body DingTalk expects (`msg_signature`, `timeStamp`, `nonce`, `encrypt`).
    pub reply: Value,
    /// Directory changes appended to the change log by this request.
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
    to_hex(&h.finalize())
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
    let arrived = env.now_ms();
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

    // The AES key is derived once per request.
    let crypto = CallbackCrypto::new(keys.token.expose(), keys.aes_key.expose(), Vec::new())
        .map_err(|_| {
            Failure::new(
                503,
                "bad_event_aes_key",
                "event_aes_key is not a valid 43-character EncodingAESKey; copy 加密 aes_key again from the app's 事件订阅 page.",
                "event_aes_key 不是有效的 43 位 EncodingAESKey，请从应用的“事件订阅”页面重新复制加密 aes_key。",
            )
        })?;
    // The signature first: nothing else is read for an unsigned request.
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
    let crypto = crypto.with_owner_keys(owner_keys);
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

    let (work, ids) = match event.event {
        ContactEvent::UserAdded(ids)
        | ContactEvent::UserModified(ids)
        | ContactEvent::UserActivated(ids) => (Work::UserDetails, ids),
        ContactEvent::UserLeft(ids) => (Work::UserLeft, ids),
        ContactEvent::AdminAdded(ids) => (Work::AdminGranted, ids),
        ContactEvent::AdminRemoved(ids) => (Work::AdminRevoked, ids),
        ContactEvent::DeptCreated(ids) | ContactEvent::DeptModified(ids) => {
            (Work::DeptDetails, ids.iter().map(i64::to_string).collect())
        }
        ContactEvent::DeptRemoved(ids) => {
            (Work::DeptRemoved, ids.iter().map(i64::to_string).collect())
        }
        ContactEvent::CheckUrl | ContactEvent::OrgRemoved | ContactEvent::Other { .. } => {
            (Work::UserLeft, Vec::new())
        }
    };
    // De-duplication by eventId when the event has one, else by content: a replay and a
    // redelivery carry the same plaintext (event type, ids and the event's own timestamp) even
    // when DingTalk re-signs it with a new nonce.
    let key = match &event.event_id {
        Some(id) => format!("evt:id:{}", sha1_hex(&[&app.corp_id, id])),
        None => format!("evt:{}", sha1_hex(&[&app.corp_id, &decrypted.msg])),
    };
    if queue::enqueue(env, &key, &app.corp_id, work, &ids)? == queue::Enqueued::Duplicate {
        env.log("event: a re-delivery of a queued or applied event; answered success");
    }
    // Record what fits in this request's budget; the rest waits for the next request.
    let spent = env.now_ms().saturating_sub(arrived);
    let changes = match queue::drain_deferred(env, settings, DrainBudget::EVENT.less(spent)) {
        Ok(drained) => drained.changes,
        Err(f) => {
            env.log(&format!("event: queued; recording deferred ({})", f.code));
            Vec::new()
        }
    };
    Ok(EventAnswer {
        reply: success(env, &crypto, owner),
        changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::changelog;
    use crate::env::HttpRequest;
    use crate::kv;
    use crate::model::DirectoryChange;
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
                with_body(&vec![b' '; crate::web::http::MAX_EVENT_BODY + 1]),
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
    fn a_failed_fetch_is_queued_and_recorded_by_the_next_drain() {
        let s = sample();
        let mut env = FakeEnv::new();
        let org = dingtalk(&mut env);
        org.borrow_mut().down = true;
        let req = Push::new(
            r#"{"EventType":"user_modify_org","eventId":"e2","userId":["u1"]}"#,
            env.now,
        )
        .request(&s);
        // Answered: the event is safely queued, DingTalk need not retry it.
        let r = handle(&mut env, &s, &req);
        assert_success(&s, &r);
        assert_eq!(r.outcome, Outcome::None);
        assert_eq!(changelog::read(&mut env, 0, 10).unwrap().changes.len(), 0);
        org.borrow_mut().down = false;
        // A re-delivery is answered from the queue, and drains it.
        env.now += 10_000;
        let r = handle(&mut env, &s, &req);
        assert_success(&s, &r);
        assert!(matches!(r.outcome, Outcome::DirectoryChanged(_)));
        let log = changelog::read(&mut env, 0, 10).unwrap().changes;
        assert_eq!(kinds(&log), vec!["member_upserted"]);
        assert!(crate::directory::mirror::load(&mut env, CORP, "u1")
            .unwrap()
            .is_some());
    }

    #[test]
    fn a_redelivery_of_a_half_drained_event_is_success_and_never_queued_twice() {
        let s = sample();
        let mut env = FakeEnv::new();
        let org = dingtalk(&mut env);
        // Each detail call takes 200 ms: the event route's budget records three of the eight.
        env.http_latency_ms = 200;
        let plain = r#"{"EventType":"user_add_org","eventId":"e4","UserId":["a","b","c","d","e","f","g","h"]}"#;
        let now = env.now;
        let r = handle(&mut env, &s, &Push::new(plain, now).request(&s));
        assert_success(&s, &r);
        let first = changelog::read(&mut env, 0, 100).unwrap().changes.len();
        assert!((1..8).contains(&first), "{first}");
        // DingTalk's retry (new nonce, timestamp, signature) is answered, not refused.
        env.now += 10_000;
        let mut retry = Push::new(plain, env.now);
        retry.nonce = "retry1".into();
        assert_success(&s, &handle(&mut env, &s, &retry.request(&s)));
        for _ in 0..10 {
            crate::events::drain_deferred(&mut env, &s, DrainBudget::PLATFORM).unwrap();
        }
        let log = changelog::read(&mut env, 0, 100).unwrap().changes;
        assert_eq!(log.len(), 8, "each member once: {:?}", kinds(&log));
        let mut fetched = org.borrow().user_gets.clone();
        fetched.sort();
        fetched.dedup();
        assert_eq!(fetched.len(), 8);
    }

    /// The plaintext of an `event_type` push naming `n` members `u0`, `u1`, ….
    fn many_ids(event_type: &str, event_id: &str, n: usize) -> String {
        let ids: Vec<String> = (0..n).map(|i| format!("\"u{i}\"")).collect();
        format!(
            r#"{{"EventType":"{event_type}","eventId":"{event_id}","UserId":[{}]}}"#,
            ids.join(",")
        )
    }

    /// Pushes `plain` now: the answer, and how long it took on the fake clock.
    fn push_now(env: &mut FakeEnv, s: &Settings, plain: &str) -> (Routed, u64) {
        let started = env.now;
        let r = handle(env, s, &Push::new(plain, started).request(s));
        (r, env.now - started)
    }

    #[test]
    fn twenty_slow_detail_calls_do_not_delay_the_answer() {
        let s = sample();
        let mut env = FakeEnv::new();
        dingtalk(&mut env);
        env.http_latency_ms = 150;
        let plain = many_ids("user_add_org", "e20", 20);
        let (r, took) = push_now(&mut env, &s, &plain);
        assert_success(&s, &r);
        assert!(
            took <= DrainBudget::EVENT.time_ms + 150,
            "answered after {took} ms"
        );
        // The platform's reads record the rest.
        for _ in 0..5 {
            crate::events::drain_deferred(&mut env, &s, DrainBudget::PLATFORM).unwrap();
        }
        let log = changelog::read(&mut env, 0, 100).unwrap().changes;
        assert_eq!(log.len(), 20);
    }

    /// A slow store (every operation 1 ms, like Spin's SQLite on a busy machine) shortens the
    /// drain's batches instead of overrunning the answer: with fixed 200-item batches (400
    /// writes each) this push was answered after 1,200 ms.
    #[test]
    fn a_slow_store_shortens_batches_instead_of_delaying_the_answer() {
        let s = sample();
        let mut env = FakeEnv::new();
        dingtalk(&mut env);
        env.kv_latency_ms = 1;
        let plain = many_ids("user_leave_org", "slow", 10_000);
        let (r, took) = push_now(&mut env, &s, &plain);
        assert_success(&s, &r);
        assert!(
            took <= DrainBudget::EVENT.time_ms + 50,
            "answered after {took} ms"
        );
        let Outcome::DirectoryChanged(recorded) = &r.outcome else {
            panic!("some of it is recorded while answering: {:?}", r.outcome);
        };
        assert!(recorded.len() >= 100, "{}", recorded.len());
        // What did not fit is recorded by later drains, each change once.
        env.kv_latency_ms = 0;
        for _ in 0..10 {
            crate::events::drain_deferred(&mut env, &s, DrainBudget::PLATFORM).unwrap();
        }
        let written = env.kv.keys().filter(|k| k.starts_with("change:")).count();
        assert_eq!(written, 10_000);
    }

    /// The drain's share of the answer counts from the push's arrival: time already spent
    /// before draining (here, slow store reads and writes while queueing) is not spent again.
    #[test]
    fn the_drain_budget_counts_from_arrival() {
        assert_eq!(
            DrainBudget::EVENT.less(200).time_ms,
            DrainBudget::EVENT.time_ms - 200
        );
        assert_eq!(DrainBudget::EVENT.less(10_000).time_ms, 0);
        let s = sample();
        let mut env = FakeEnv::new();
        dingtalk(&mut env);
        // 60 ms per store operation: queueing alone takes several hundred ms.
        env.kv_latency_ms = 60;
        let plain = many_ids("user_leave_org", "late", 3_000);
        let (r, took) = push_now(&mut env, &s, &plain);
        assert_success(&s, &r);
        assert!(
            took <= DrainBudget::EVENT.time_ms + 400,
            "answered after {took} ms"
        );
    }

    #[test]
    fn an_event_with_ten_thousand_ids_is_answered_and_recorded_in_slices() {
        let s = sample();
        let mut env = FakeEnv::new();
        dingtalk(&mut env);
        let plain = many_ids("user_leave_org", "bulk", 10_000);
        for i in 0..3 {
            crate::directory::mirror::store(&mut env, &member(&format!("u{i}"))).unwrap();
        }
        let now = env.now;
        let r = handle(&mut env, &s, &Push::new(&plain, now).request(&s));
        assert_success(&s, &r);
        let written = env.kv.keys().filter(|k| k.starts_with("change:")).count();
        assert_eq!(written, DrainBudget::EVENT.max_changes);
        assert!(env.requests.is_empty());
        for _ in 0..10 {
            crate::events::drain_deferred(&mut env, &s, DrainBudget::PLATFORM).unwrap();
        }
        let written = env.kv.keys().filter(|k| k.starts_with("change:")).count();
        assert_eq!(written, 10_000);
        let slots: Vec<&String> = env
            .kv
            .keys()
            .filter(|k| {
                k.strip_prefix("evq:")
                    .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
            })
            .collect();
        assert!(slots.is_empty(), "the queue is empty: {slots:?}");
        assert!(
            !env.kv.keys().any(|k| k.starts_with("dir:")),
            "left members are forgotten"
        );
    }

    fn member(userid: &str) -> crate::model::Member {
        crate::model::Member {
            corp_id: CORP.into(),
            userid: userid.into(),
            unionid: None,
            name: "N".into(),
            mobile: None,
            email: None,
            org_email: None,
            avatar: None,
            title: None,
            job_number: None,
            dept_ids: vec![2],
            leader_dept_ids: vec![],
            is_admin: false,
            is_boss: false,
            active: true,
        }
    }

    /// Issue 13's fault matrix for one event, in-process: the i-th key-value operation of the
    /// event's first delivery fails (store down: not applied; timeout: applied, then an
    /// error), for every i; DingTalk re-delivers while the answer is not `success`, then the
    /// platform reads `changes`. The member is reported exactly once, every time.
    #[test]
    fn every_key_value_fault_of_an_event_leaves_its_change_exactly_once() {
        use crate::testing::KvFault;
        let s = sample();
        let plain = r#"{"EventType":"user_add_org","eventId":"fm","UserId":["u1"]}"#;
        let ops = {
            let mut env = FakeEnv::new();
            dingtalk(&mut env);
            let now = env.now;
            let r = handle(&mut env, &s, &Push::new(plain, now).request(&s));
            assert_success(&s, &r);
            env.kv_op_count
        };
        assert!(ops > 10, "{ops}");
        let mut delayed = Vec::new();
        for fault in [KvFault::Down, KvFault::Timeout] {
            for i in 0..ops + 2 {
                let mut env = FakeEnv::new();
                dingtalk(&mut env);
                env.kv_fault = Some((i, fault));
                let mut accepted = false;
                for attempt in 0..3 {
                    let mut p = Push::new(plain, env.now);
                    p.nonce = format!("n{attempt}");
                    let r = handle(&mut env, &s, &p.request(&s));
                    if r.response.status == 200 {
                        assert_success(&s, &r);
                        accepted = true;
                        break;
                    }
                    assert!(!code_of(&r).is_empty(), "a clear failure at op {i}");
                    env.now += 10_000;
                }
                assert!(accepted, "{fault:?} at op {i}: never accepted");
                // The platform reads at once (again if that read failed), and polls again
                // after a while: a slot whose writer failed holds later ones back that long.
                let mut seen = read_changes(&mut env, &s);
                if kinds(&seen) != ["member_upserted"] {
                    delayed.push(format!("{fault:?}@{i}"));
                    env.now += crate::events::queue::GAP_GRACE_MS;
                    seen = read_changes(&mut env, &s);
                }
                assert_eq!(
                    kinds(&seen),
                    vec!["member_upserted"],
                    "{fault:?} at op {i}: {:?}",
                    env.logs
                );
                // The next event is not held back by anything the fault left.
                let next = r#"{"EventType":"user_add_org","eventId":"fm2","UserId":["u2"]}"#;
                let now = env.now;
                assert_success(&s, &handle(&mut env, &s, &Push::new(next, now).request(&s)));
                assert_eq!(
                    read_changes(&mut env, &s).len(),
                    2,
                    "{fault:?} at op {i}: the next event"
                );
            }
        }
        assert!(
            delayed.is_empty(),
            "cells recorded only after a poll: {delayed:?}"
        );
    }

    fn read_changes(env: &mut FakeEnv, s: &Settings) -> Vec<crate::model::SequencedChange> {
        for _ in 0..2 {
            let op = crate::operations::Operation::Changes {
                after: 0,
                limit: 100,
            };
            if let Ok(crate::operations::Answer::Changes(page)) = crate::operations::run(env, s, op)
            {
                return page.changes;
            }
        }
        Vec::new()
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
