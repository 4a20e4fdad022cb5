//! A native timing breakdown of the event path (issue 12), stage by stage, on the in-memory
//! [`FakeEnv`]. Not a unit test: run it on demand, optimised, with
//! `CARGO_PROFILE_RELEASE_LTO=false cargo test --release -p dingtalk-plugin --lib event_path_profile -- --ignored --nocapture`.

use crate::events::crypto::CallbackCrypto;
use crate::events::parse::parse_event;
use crate::settings::tests::sample_raw;
use crate::settings::Settings;
use crate::testing::FakeEnv;
use crate::web::http::Request;
use crate::web::router::{self, Mode};
use serde_json::json;
use std::hint::black_box;
use std::time::Instant;

fn per_op(label: &str, n: usize, mut f: impl FnMut(usize)) -> f64 {
    let started = Instant::now();
    for i in 0..n {
        f(i);
    }
    let us = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!("{label:<48} {us:>9.2} µs");
    us
}

#[test]
#[ignore = "a timing breakdown, run on demand with --release"]
fn event_path_profile() {
    const N: usize = 5_000;
    let raw = sample_raw();
    let settings = Settings::parse(&raw).unwrap();
    let keys = settings.events.as_ref().unwrap();
    let crypto = CallbackCrypto::new(keys.token.expose(), keys.aes_key.expose(), vec![]).unwrap();
    let now = FakeEnv::new().now;
    let ts = now.to_string();
    let mut requests = Vec::with_capacity(N);
    let mut encrypts = Vec::with_capacity(N);
    let mut plains = Vec::with_capacity(N);
    for i in 0..N {
        let plain = format!(
            r#"{{"EventType":"user_leave_org","TimeStamp":"{now}","UserId":["gone{i}"],"CorpId":"dingcorp123"}}"#
        );
        let enc = crypto.encrypt(&plain, b"0123456789abcdef", "dingappkey123");
        let nonce = format!("n{i:07}");
        let sig = crypto.signature(&ts, &nonce, &enc);
        requests.push(Request::new(
            "POST",
            &format!("/dingding/events?msg_signature={sig}&timestamp={ts}&nonce={nonce}"),
            vec![("content-type".into(), "application/json".into())],
            json!({ "encrypt": enc }).to_string().into_bytes(),
        ));
        encrypts.push((enc, nonce, sig));
        plains.push(plain);
    }

    println!("event path, {N} distinct user_leave_org events, per event:");
    // FakeEnv logs every key-value operation it serves (`kv_ops`): the count needs no wrapper.
    let mut env = FakeEnv::new();
    let total = per_op("whole request (router::handle, settings parse)", N, |i| {
        let r = router::handle(&mut env, &raw, &requests[i], Mode::Http);
        assert_eq!(r.response.status, 200);
    });
    println!(
        "{:<48} {:>9.1}",
        "key-value operations per event",
        env.kv_ops.len() as f64 / N as f64
    );
    println!(
        "{:<48} {:>9.0} events/s",
        "throughput (native, in-memory store)",
        1e6 / total
    );
    // The operations of one event on a warm store (the 1,001st), in order.
    let mut one = FakeEnv::new();
    for request in &requests[..1_000] {
        router::handle(&mut one, &raw, request, Mode::Http);
    }
    one.kv_ops.clear();
    router::handle(&mut one, &raw, &requests[1_000], Mode::Http);
    println!("key-value operations of one event (warm):");
    for (op, key) in &one.kv_ops {
        println!("    {op:<10} {key}");
    }
    per_op("  settings parse", N, |_| {
        black_box(Settings::parse(black_box(&raw)).unwrap());
    });
    per_op("  CallbackCrypto::new (base64 of the AES key)", N, |_| {
        black_box(CallbackCrypto::new(keys.token.expose(), keys.aes_key.expose(), vec![]).unwrap());
    });
    per_op("  signature (SHA-1) verify", N, |i| {
        let (enc, nonce, sig) = &encrypts[i];
        crypto.verify_signature(sig, &ts, nonce, enc).unwrap();
    });
    per_op("  body JSON parse", N, |i| {
        black_box(serde_json::from_slice::<serde_json::Value>(&requests[i].body).unwrap());
    });
    per_op("  AES decrypt (base64 + CBC)", N, |i| {
        black_box(crypto.decrypt_parts(&encrypts[i].0).unwrap());
    });
    per_op("  event JSON parse", N, |i| {
        black_box(parse_event(&plains[i]).unwrap());
    });
    per_op("  success reply (encrypt + sign + JSON)", N, |_| {
        black_box(crypto.success_reply(b"0123456789abcdef", "dingappkey123", &ts, "nonce"));
    });
    per_op("  reply JSON serialise", N, |_| {
        let v = crypto.success_reply(b"0123456789abcdef", "dingappkey123", &ts, "nonce");
        black_box(serde_json::to_vec(&v).unwrap());
    });
}
