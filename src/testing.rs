//! Test doubles for the core: a deterministic [`Env`] with an in-memory store and one shared
//! fake DingTalk, scripted by path.
//!
//! ```ignore
//! let mut env = FakeEnv::new();
//! env.answer("/topapi/v2/user/get", json!({"errcode": 0, "result": {"userid": "u1"}}));
//! env.answer_seq("/topapi/v2/user/list", vec![(200, json!({"errcode": 90018})), (200, ok)]);
//! env.route("/v1.0/todo/*", move |r| …);   // a handler for stateful fakes
//! ```
//!
//! Once anything is scripted, the app-token path `/v1.0/oauth2/accessToken` answers
//! `{"accessToken":"tok{n}","expireIn":7200}` (n counts from 1, see [`FakeEnv::tokens_issued`])
//! unless it is scripted itself, and an unscripted path answers 404 in the new API's format.
//! Before anything is scripted every call answers 500.

use crate::env::{Env, HttpRequest, HttpResponse, KvError, TransportError};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

type Responder = Box<dyn FnMut(&HttpRequest) -> Result<HttpResponse, TransportError>>;
type Handler = Box<dyn FnMut(&HttpRequest) -> HttpResponse>;

/// The app-token path the fake DingTalk answers by itself.
pub const TOKEN_PATH: &str = "/v1.0/oauth2/accessToken";

/// One scripted path: exact, or a prefix when the pattern ends with `*`.
struct Route {
    pattern: String,
    handler: Handler,
}

impl Route {
    fn matches(&self, path: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == self.pattern,
        }
    }
}

/// The fake DingTalk's script: routes (the latest matching one answers) and tokens issued.
#[derive(Default)]
struct Script {
    routes: Vec<Route>,
    tokens: u32,
}

impl Script {
    fn answer(&mut self, request: &HttpRequest) -> HttpResponse {
        let path = path_of(request);
        if let Some(route) = self.routes.iter_mut().rev().find(|r| r.matches(&path)) {
            return (route.handler)(request);
        }
        if self.routes.is_empty() {
            return json_response(500, "{}");
        }
        if path == TOKEN_PATH {
            self.tokens += 1;
            let body = format!(r#"{{"accessToken":"tok{}","expireIn":7200}}"#, self.tokens);
            return json_response(200, &body);
        }
        json_response(404, r#"{"code":"NotFound","message":"no route"}"#)
    }
}

/// The path of a request's URL, without host and query.
pub fn path_of(request: &HttpRequest) -> String {
    let u = request.redacted_url();
    let start = u.find("://").map(|i| i + 3).unwrap_or(0);
    let path = u[start..].find('/').map(|i| &u[start + i..]).unwrap_or("");
    path.split('?').next().unwrap_or("").to_string()
}

/// A request's JSON body (`Null` when there is none or it is not JSON).
pub fn body_of(request: &HttpRequest) -> Value {
    serde_json::from_slice(&request.body).unwrap_or(Value::Null)
}

/// How an injected key-value fault fails one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvFault {
    /// The store is down: nothing is applied, the operation fails.
    Down,
    /// A timeout: the operation is applied, then reported as failed.
    Timeout,
}

/// A deterministic environment.
pub struct FakeEnv {
    /// Current time, Unix ms.
    pub now: u64,
    /// The key-value store.
    pub kv: BTreeMap<String, Vec<u8>>,
    /// Every outgoing request, in order.
    pub requests: Vec<HttpRequest>,
    /// Log lines.
    pub logs: Vec<String>,
    /// Every key-value operation, in order: (`get`, `set`, `delete` or `increment`, key).
    pub kv_ops: Vec<(&'static str, String)>,
    /// Answers outgoing requests (by default: the scripted fake DingTalk).
    pub responder: Responder,
    /// How long each outgoing request takes (the clock moves on by this much per call).
    pub http_latency_ms: u64,
    /// How long each key-value operation takes (the clock moves on by this much per operation).
    pub kv_latency_ms: u64,
    /// Key-value operations made so far (get, set, delete, increment).
    pub kv_op_count: u64,
    /// Fails the key-value operation with this index (counted by [`FakeEnv::kv_op_count`]) once.
    pub kv_fault: Option<(u64, KvFault)>,
    script: Rc<RefCell<Script>>,
    counter: u8,
}

impl FakeEnv {
    /// A fake at t = 1_700_000_000_000 whose DingTalk answers 500 to everything until scripted.
    pub fn new() -> Self {
        let script = Rc::new(RefCell::new(Script::default()));
        let s = script.clone();
        FakeEnv {
            now: 1_700_000_000_000,
            kv: BTreeMap::new(),
            requests: Vec::new(),
            logs: Vec::new(),
            kv_ops: Vec::new(),
            responder: Box::new(move |r| Ok(s.borrow_mut().answer(r))),
            http_latency_ms: 0,
            kv_latency_ms: 0,
            kv_op_count: 0,
            kv_fault: None,
            script,
            counter: 0,
        }
    }

    /// Scripts every call of `path` (exact; a trailing `*` makes it a prefix) to be answered by
    /// `handler`. The latest script for a path wins.
    pub fn route(
        &mut self,
        path: &str,
        handler: impl FnMut(&HttpRequest) -> HttpResponse + 'static,
    ) {
        self.script.borrow_mut().routes.push(Route {
            pattern: path.to_string(),
            handler: Box::new(handler),
        });
    }

    /// Scripts every call of `path` to answer HTTP 200 with `body`.
    pub fn answer(&mut self, path: &str, body: Value) {
        self.answer_status(path, 200, body);
    }

    /// Scripts every call of `path` to answer `status` with `body`.
    pub fn answer_status(&mut self, path: &str, status: u16, body: Value) {
        let text = body.to_string();
        self.route(path, move |_| json_response(status, &text));
    }

    /// Scripts the calls of `path` to answer `answers` in order; the last one repeats.
    pub fn answer_seq(&mut self, path: &str, answers: Vec<(u16, Value)>) {
        let mut n = 0;
        self.route(path, move |_| {
            let (status, body) = &answers[n.min(answers.len() - 1)];
            n += 1;
            json_response(*status, &body.to_string())
        });
    }

    /// How many app tokens the fake DingTalk has issued by itself.
    pub fn tokens_issued(&self) -> u32 {
        self.script.borrow().tokens
    }

    /// How many calls were made to `path` (exact, without the query).
    pub fn calls_to(&self, path: &str) -> usize {
        self.requests.iter().filter(|r| path_of(r) == path).count()
    }

    /// Replaces the scripted DingTalk with a hand-written responder.
    pub fn respond(
        &mut self,
        f: impl FnMut(&HttpRequest) -> Result<HttpResponse, TransportError> + 'static,
    ) {
        self.responder = Box::new(f);
    }

    /// How many key-value writes (`set`, `delete`, `increment`) were made so far.
    pub fn kv_writes(&self) -> usize {
        self.kv_ops.iter().filter(|(op, _)| *op != "get").count()
    }

    /// Paths (no query) of the requests made so far.
    pub fn paths(&self) -> Vec<String> {
        self.requests
            .iter()
            .map(|r| {
                let u = r.redacted_url();
                let path_start = u.find("://").map(|i| i + 3).unwrap_or(0);
                u[path_start..]
                    .find('/')
                    .map(|i| u[path_start + i..].to_string())
                    .unwrap_or_default()
            })
            .collect()
    }
}

impl FakeEnv {
    /// The fault for the key-value operation about to run, if it is the armed one.
    fn kv_fault_now(&mut self) -> Option<KvFault> {
        let index = self.kv_op_count;
        self.kv_op_count += 1;
        match self.kv_fault {
            Some((at, fault)) if at == index => {
                self.kv_fault = None;
                Some(fault)
            }
            _ => None,
        }
    }

    /// Runs one key-value operation under the armed fault, if any.
    fn kv_op<T>(&mut self, op: impl FnOnce(&mut Self) -> Result<T, KvError>) -> Result<T, KvError> {
        self.now += self.kv_latency_ms;
        match self.kv_fault_now() {
            Some(KvFault::Down) => Err(KvError("injected: store down".into())),
            Some(KvFault::Timeout) => {
                let _ = op(self);
                Err(KvError("injected: timeout".into()))
            }
            None => op(self),
        }
    }
}

impl Default for FakeEnv {
    fn default() -> Self {
        Self::new()
    }
}

/// A JSON response.
pub fn json_response(status: u16, body: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
    }
}

impl Env for FakeEnv {
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
        let result = (self.responder)(&request);
        self.now += self.http_latency_ms;
        self.requests.push(request);
        result
    }
    fn sleep_ms(&mut self, ms: u64) {
        self.now += ms;
    }
    fn kv_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.kv_ops.push(("get", key.to_string()));
        self.kv_op(|e| Ok(e.kv.get(key).cloned()))
    }
    fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.kv_ops.push(("set", key.to_string()));
        self.kv_op(|e| {
            e.kv.insert(key.to_string(), value.to_vec());
            Ok(())
        })
    }
    fn kv_delete(&mut self, key: &str) -> Result<(), KvError> {
        self.kv_ops.push(("delete", key.to_string()));
        self.kv_op(|e| {
            e.kv.remove(key);
            Ok(())
        })
    }
    fn kv_increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.kv_ops.push(("increment", key.to_string()));
        self.kv_op(|e| {
            let current = match e.kv.get(key) {
                None => 0,
                Some(b) if b.len() == 8 => i64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8])),
                Some(_) => return Err(KvError("not a counter".into())),
            };
            let next = current + delta;
            e.kv.insert(key.to_string(), next.to_le_bytes().to_vec());
            Ok(next)
        })
    }
    fn log(&mut self, line: &str) {
        self.logs.push(line.to_string());
    }
}
