//! Pushing encrypted, signed events to a receiver, as DingTalk's HTTP push does (doc §8).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::crypto::EventCrypto;

/// How to deliver an event.
#[derive(Debug, Clone)]
pub struct EventOptions {
    /// Send `signature=` instead of `msg_signature=` in the query.
    pub use_signature_param: bool,
    /// The `timestamp` value (default: current ms).
    pub timestamp: Option<String>,
    /// The `nonce` value (default: 16 random alphanumerics).
    pub nonce: Option<String>,
    /// Owner key appended to the plaintext (default: the app's AppKey; the corpId for the
    /// `register_call_back` style; anything else to test a mismatch).
    pub owner_key: Option<String>,
    /// Send a wrong signature.
    pub bad_signature: bool,
    /// Client timeout.
    pub timeout: Duration,
    /// Answer deadline: a later answer counts as a failed push, as DingTalk does (doc §8.6:
    /// 1,500 ms). Default 1,500 ms.
    pub deadline: Duration,
}

/// DingTalk's answer deadline for an HTTP event push (doc §8.6, KB EVT 0232).
pub const EVENT_ANSWER_DEADLINE: Duration = Duration::from_millis(1500);

impl Default for EventOptions {
    fn default() -> Self {
        EventOptions {
            use_signature_param: false,
            timestamp: None,
            nonce: None,
            owner_key: None,
            bad_signature: false,
            timeout: Duration::from_secs(10),
            deadline: EVENT_ANSWER_DEADLINE,
        }
    }
}

/// What happened to a delivered event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDelivery {
    /// HTTP status of the receiver's answer (0 = transport error).
    pub status: u16,
    /// The raw answer body.
    pub body: String,
    /// The answer is `{msg_signature,timeStamp,nonce,encrypt}`, correctly signed with the
    /// subscription token, and decrypts to `success`.
    pub success: bool,
    /// The decrypted answer, when it could be decrypted.
    pub reply_plaintext: Option<String>,
    /// Owner key found in the decrypted answer.
    pub reply_owner_key: Option<String>,
    /// Why `success` is false.
    pub error: Option<String>,
    /// Round-trip time (DingTalk wants an answer within 1.5 s).
    pub elapsed: Duration,
    /// The answer came within the deadline ([`EventOptions::deadline`], 1,500 ms by default).
    pub on_time: bool,
    /// DingTalk's verdict: `success` and `on_time`. A late or wrong answer is a failed push
    /// (DingTalk retries it and lists it in the failed pushes).
    pub accepted: bool,
}

/// Encrypts `payload`, signs it and POSTs `{"encrypt": ...}` to `url?msg_signature=&timestamp=&nonce=`,
/// then checks the encrypted answer.
pub fn deliver(
    url: &str,
    crypto: &EventCrypto,
    payload: &str,
    opts: &EventOptions,
) -> EventDelivery {
    let started = Instant::now();
    let owner = opts
        .owner_key
        .clone()
        .unwrap_or_else(|| crypto.owner_key().to_string());
    let random = crate::crypto::random_alnum16();
    let encrypt = crypto.encrypt_owner(payload, &random, &owner);
    let timestamp = opts.timestamp.clone().unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis().to_string())
            .unwrap_or_else(|_| "0".into())
    });
    let nonce = opts
        .nonce
        .clone()
        .unwrap_or_else(|| String::from_utf8_lossy(&crate::crypto::random_alnum16()).into_owned());
    let mut sig = crypto.signature(&timestamp, &nonce, &encrypt);
    if opts.bad_signature {
        sig = format!("{:0>40}", "bad");
    }
    let deadline = opts.deadline;
    let fail = |status: u16, body: String, err: String| {
        let elapsed = started.elapsed();
        EventDelivery {
            status,
            body,
            success: false,
            reply_plaintext: None,
            reply_owner_key: None,
            error: Some(err),
            elapsed,
            on_time: elapsed <= deadline,
            accepted: false,
        }
    };
    let mut target = match url::Url::parse(url) {
        Ok(u) => u,
        Err(e) => return fail(0, String::new(), format!("bad url: {e}")),
    };
    {
        let mut q = target.query_pairs_mut();
        q.append_pair(
            if opts.use_signature_param {
                "signature"
            } else {
                "msg_signature"
            },
            &sig,
        );
        q.append_pair("timestamp", &timestamp);
        q.append_pair("nonce", &nonce);
    }
    let agent = ureq::AgentBuilder::new().timeout(opts.timeout).build();
    let body = json!({"encrypt": encrypt}).to_string();
    let resp = agent
        .post(target.as_str())
        .set("Content-Type", "application/json")
        .send_string(&body);
    let (status, text) = match resp {
        Ok(r) => {
            let s = r.status();
            (s, r.into_string().unwrap_or_default())
        }
        Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
        Err(e) => return fail(0, String::new(), format!("transport: {e}")),
    };
    if status != 200 {
        return fail(status, text.clone(), format!("HTTP {status}"));
    }
    let v: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(_) => return fail(status, text.clone(), "answer is not JSON".into()),
    };
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(|s| s.to_string());
    let (Some(rsig), Some(rts), Some(rnonce), Some(renc)) = (
        field("msg_signature"),
        field("timeStamp"),
        field("nonce"),
        field("encrypt"),
    ) else {
        return fail(
            status,
            text.clone(),
            "answer lacks msg_signature/timeStamp/nonce/encrypt".into(),
        );
    };
    if crypto.signature(&rts, &rnonce, &renc) != rsig {
        return fail(status, text.clone(), "answer signature mismatch".into());
    }
    match crypto.decrypt_any_owner(&renc) {
        Ok(d) => {
            let ok = d.msg == "success";
            let elapsed = started.elapsed();
            let on_time = elapsed <= deadline;
            let error = (!ok).then(|| format!("answer decrypts to {:?}, not \"success\"", d.msg));
            EventDelivery {
                status,
                body: text,
                success: ok,
                error,
                reply_plaintext: Some(d.msg),
                reply_owner_key: Some(d.owner_key),
                elapsed,
                on_time,
                accepted: ok && on_time,
            }
        }
        Err(e) => fail(
            status,
            text.clone(),
            format!("answer does not decrypt: {e}"),
        ),
    }
}
