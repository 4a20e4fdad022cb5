//! Event JSON: `parse_event` on arbitrary text, then the same plaintext encrypted and signed with
//! the sample settings' keys and pushed through `POST /dingding/events` (crypto, parse, apply),
//! twice (the second push is a duplicate). DingTalk is unreachable.
//!
//! Input: the event plaintext (lossy UTF-8).
#![no_main]

use dingtalk_plugin::fuzzing::{parse_event, sample, sample_raw, CallbackCrypto, FuzzEnv};
use dingtalk_plugin::{handle, Mode, Request};
use dingtalk_plugin_fuzz::check_routed_with;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let plaintext = String::from_utf8_lossy(data);
    if let Ok(event) = parse_event(&plaintext) {
        let _ = format!("{event:?}");
    }

    let settings = sample();
    let raw = sample_raw();
    let events = settings.events.as_ref().expect("sample has event keys");
    let crypto =
        CallbackCrypto::new(events.token.expose(), events.aes_key.expose(), vec![]).unwrap();
    let owner = if data.first().is_some_and(|b| b & 1 == 1) {
        settings.corp.corp_id.clone()
    } else {
        settings.corp.app_key.clone()
    };
    let encrypt = crypto.encrypt(&plaintext, &[7u8; 16], &owner);
    let (timestamp, nonce) = ("1700000000000", "nonce123");
    let signature = crypto.signature(timestamp, nonce, &encrypt);
    let body = serde_json::json!({ "encrypt": encrypt }).to_string();
    let target =
        format!("/dingding/events?msg_signature={signature}&timestamp={timestamp}&nonce={nonce}");
    let request = Request::new("POST", &target, vec![], body.into_bytes());
    let mut env = FuzzEnv::new();
    for _ in 0..2 {
        let routed = handle(&mut env, &raw, &request, Mode::Typed);
        check_routed_with(&request, &routed, &env, &plaintext);
    }
});
