//! Arbitrary requests (method, path with query, headers, body; up to 4 in a row sharing one
//! store) through `handle` with valid settings and DingTalk unreachable.
//!
//! Input: text, requests separated by a line `===`; each is `METHOD\nTARGET\nheader: value…\n\nBODY`.
//! A method starting with `~` runs in `Mode::Typed`.
#![no_main]

use dingtalk_plugin::fuzzing::{sample_raw, FuzzEnv};
use dingtalk_plugin::{handle, Mode, Request};
use dingtalk_plugin_fuzz::check_routed;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let raw = sample_raw();
    let mut env = FuzzEnv::new();
    for one in text.split("\n===\n").take(4) {
        let (head, body) = one.split_once("\n\n").unwrap_or((one, ""));
        let mut lines = head.lines();
        let method = lines.next().unwrap_or("");
        let (method, mode) = match method.strip_prefix('~') {
            Some(m) => (m, Mode::Typed),
            None => (method, Mode::Http),
        };
        let target = lines.next().unwrap_or("/");
        let headers = lines
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap_or((l, ""));
                (k.trim().to_string(), v.trim().to_string())
            })
            .collect();
        let request = Request::new(method, target, headers, body.as_bytes().to_vec());
        let _ = request.query_pairs();
        let routed = handle(&mut env, &raw, &request, mode);
        check_routed(&request, &routed, &env);
        env.now += 1_000;
    }
});
