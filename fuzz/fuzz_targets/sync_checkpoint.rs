//! The sync's stored state: arbitrary bytes under the checkpoint, queue, record and counter keys
//! of the configured corp, then up to three sync steps (with the echoed cursor as ack, without,
//! or restarting) against a scripted DingTalk. Must not panic; a checkpoint the plugin cannot
//! read is a 500 `sync_state_unreadable`, anything else a 4xx/5xx failure or a batch.
//!
//! Input: sections separated by a line `--`: flags (`A B C`: step modes and counter values),
//! `sync:C:ckpt`, `syncdq:C:0`, `syncdq:C:1`, `syncd:C:2`, `syncm:C:u1`, `syncdi:C:1`,
//! `syncmi:C:1`, then DingTalk answers (`STATUS\nBODY`, separated by `-- `).
#![no_main]

use dingtalk_plugin::fuzzing::{counter_bytes, sample, FuzzEnv, StepRequest};
use dingtalk_plugin::{run, Answer, Operation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut s: Vec<&str> = text.splitn(9, "\n--\n").collect();
    s.resize(9, "");
    let flags: Vec<i64> = s[0]
        .split_whitespace()
        .map(|w| w.parse().unwrap_or(0))
        .collect();
    let flag = |i: usize| flags.get(i).copied().unwrap_or(0);
    let c = "dingcorp123";
    let mut env = FuzzEnv::new();
    env.answer_tokens = true;
    let keys = [
        format!("sync:{c}:ckpt"),
        format!("syncdq:{c}:0"),
        format!("syncdq:{c}:1"),
        format!("syncd:{c}:2"),
        format!("syncm:{c}:u1"),
        format!("syncdi:{c}:1"),
        format!("syncmi:{c}:1"),
    ];
    for (key, value) in keys.iter().zip(&s[1..8]) {
        if !value.is_empty() {
            env.kv.insert(key.clone(), value.as_bytes().to_vec());
        }
    }
    // Counters (8-byte values): fuzzed small numbers.
    for (i, name) in ["born", "attempt"].iter().enumerate() {
        let n = flag(3 + i);
        if n != 0 {
            env.kv.insert(format!("sync:{c}:{name}"), counter_bytes(n));
        }
    }
    for (i, name) in ["syncdi", "syncmi"].iter().enumerate() {
        let n = flag(5 + i);
        if n != 0 {
            env.kv.insert(format!("{name}:{c}:n"), counter_bytes(n));
        }
    }
    for answer in s[8].split("\n-- \n").take(8) {
        let (status, body) = answer.split_once('\n').unwrap_or((answer, ""));
        env.answers.push((
            status.trim().parse().unwrap_or(200),
            body.as_bytes().to_vec(),
        ));
    }

    let settings = sample();
    let mut cursor: Option<String> = None;
    for step in 0..3 {
        let mode = (flag(0) >> (2 * step)) & 3;
        let request = StepRequest {
            corp_id: if mode == 3 {
                c.to_string()
            } else {
                String::new()
            },
            ack: if mode == 1 { cursor.clone() } else { None },
            restart: mode == 2,
        };
        match run(&mut env, &settings, Operation::SyncStep(request)) {
            Ok(answer) => {
                let _ = answer.to_json();
                if let Answer::SyncBatch(batch) = answer {
                    cursor = Some(batch.cursor.clone());
                }
            }
            Err(failure) => {
                assert!((400..600).contains(&failure.status), "{failure:?}");
                let _ = failure.to_json();
                cursor = None;
            }
        }
        env.now += 1_000 + (flag(1) & 0xffff) as u64 * 1000;
    }
});
