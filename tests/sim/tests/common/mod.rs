//! Helpers for the HTTP tests: a plain HTTP client (ureq) against a running simulator.

#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;

pub const DEMO: &str = "dingdemocorp";

pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(20))
        .redirects(0)
        .build()
}

/// Performs a request; returns (status, body text). Transport errors give status 0.
pub fn raw(method: &str, url: &str, body: Option<&str>, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = agent().request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let res = match body {
        Some(b) => req.send_string(b),
        None => req.call(),
    };
    match res {
        Ok(r) => {
            let s = r.status();
            (s, r.into_string().unwrap_or_default())
        }
        Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

pub fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// GET → (status, JSON).
pub fn get(url: &str) -> (u16, Value) {
    let (s, t) = raw("GET", url, None, &[]);
    (s, json_of(&t))
}

/// GET with the new-API token header.
pub fn get_new(url: &str, token: &str) -> (u16, Value) {
    let (s, t) = raw("GET", url, None, &[("x-acs-dingtalk-access-token", token)]);
    (s, json_of(&t))
}

/// POST JSON → (status, JSON).
pub fn post(url: &str, body: &Value) -> (u16, Value) {
    let (s, t) = raw(
        "POST",
        url,
        Some(&body.to_string()),
        &[("Content-Type", "application/json")],
    );
    (s, json_of(&t))
}

/// A new-API call with the token header.
pub fn call_new(method: &str, url: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
    let b = body.map(|b| b.to_string());
    let (s, t) = raw(
        method,
        url,
        b.as_deref(),
        &[
            ("Content-Type", "application/json"),
            ("x-acs-dingtalk-access-token", token),
        ],
    );
    (s, json_of(&t))
}

/// The old-API app token of a corp, through `/gettoken`.
pub fn old_token(sim: &dingtalk_sim::Sim, corp: &str) -> String {
    let c = sim.credentials(corp).unwrap();
    let (s, v) = get(&format!(
        "{}/gettoken?appkey={}&appsecret={}",
        sim.base_url(),
        c.app_key,
        c.app_secret
    ));
    assert_eq!(s, 200);
    assert_eq!(v["errcode"], 0, "{v}");
    v["access_token"].as_str().unwrap().to_string()
}

/// POST to an old API with the token in the query.
pub fn oapi(sim: &dingtalk_sim::Sim, path: &str, token: &str, body: &Value) -> Value {
    let (s, v) = post(
        &format!("{}{}?access_token={}", sim.base_url(), path, token),
        body,
    );
    assert_eq!(s, 200, "old API always answers 200: {v}");
    v
}
