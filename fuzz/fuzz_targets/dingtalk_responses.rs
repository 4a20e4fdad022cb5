//! Every DingTalk response parser: `decode_old` / `decode_new` on arbitrary status and body, the
//! tolerant record parsers (`UserRecord::from_json`, `member_from_json`, `department_from_json`,
//! …) on whatever JSON the body holds, and one typed endpoint (oauth, contacts, todo, message)
//! called through the real client against the scripted answers.
//!
//! Input: text. Line 1: `ENDPOINT NUMBER TOKENS` (integers; TOKENS odd: token calls get a valid
//! token); line 2: the text argument; then answers separated by a line `---`, each
//! `STATUS\nBODY`.
#![no_main]

use dingtalk_plugin::fuzzing::{call_endpoint, decode_response, FuzzEnv};
use dingtalk_plugin_fuzz::parts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = parts(data, 3);
    let mut head = p[0]
        .split_whitespace()
        .map(|w| w.parse::<i64>().unwrap_or(0));
    let which = head.next().unwrap_or(0) as u8;
    let number = head.next().unwrap_or(0);
    let tokens = head.next().unwrap_or(0) & 1 == 1;
    let mut env = FuzzEnv::new();
    env.answer_tokens = tokens;
    for answer in p[2].split("\n---\n").take(8) {
        let (status, body) = answer.split_once('\n').unwrap_or((answer, ""));
        let status = status.trim().parse::<u16>().unwrap_or(200);
        decode_response(status, body.as_bytes());
        env.answers.push((status, body.as_bytes().to_vec()));
    }
    call_endpoint(&mut env, which, &p[1], number);
});
