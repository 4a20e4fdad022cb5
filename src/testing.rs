//! Test doubles for the core: a deterministic [`Env`] with an in-memory store and a scripted
//! DingTalk.

use crate::env::{Env, HttpRequest, HttpResponse, KvError, TransportError};
use std::collections::BTreeMap;

type Responder = Box<dyn FnMut(&HttpRequest) -> Result<HttpResponse, TransportError>>;

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
    /// Answers outgoing requests.
    pub responder: Responder,
    counter: u8,
}

impl FakeEnv {
    /// A fake at t = 1_700_000_000_000 whose DingTalk answers 500 to everything.
    pub fn new() -> Self {
        FakeEnv {
            now: 1_700_000_000_000,
            kv: BTreeMap::new(),
            requests: Vec::new(),
            logs: Vec::new(),
            responder: Box::new(|_| Ok(json_response(500, "{}"))),
            counter: 0,
        }
    }

    /// Replaces the scripted DingTalk.
    pub fn respond(
        &mut self,
        f: impl FnMut(&HttpRequest) -> Result<HttpResponse, TransportError> + 'static,
    ) {
        self.responder = Box::new(f);
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
        self.requests.push(request);
        result
    }
    fn sleep_ms(&mut self, ms: u64) {
        self.now += ms;
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
    fn kv_increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError> {
        let current = match self.kv.get(key) {
            None => 0,
            Some(b) if b.len() == 8 => i64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8])),
            Some(_) => return Err(KvError("not a counter".into())),
        };
        let next = current + delta;
        self.kv.insert(key.to_string(), next.to_le_bytes().to_vec());
        Ok(next)
    }
    fn log(&mut self, line: &str) {
        self.logs.push(line.to_string());
    }
}
