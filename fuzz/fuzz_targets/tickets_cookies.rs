//! Tickets, QR states and cookies:
//! - `redeem_ticket` with an arbitrary ticket, whose key may hold arbitrary bytes: never panics,
//!   and a ticket that redeemed once answers 410 the second time;
//! - a minted ticket redeems to the same identity exactly once;
//! - `Request::cookie` / `query_pairs` / `param` on arbitrary headers and queries;
//! - the QR login routes with arbitrary (signed-looking) `state`s and arbitrary cookies
//!   (through `handle`, DingTalk unreachable).
//!
//! Input: text lines `ticket`, `cookie header`, `query`, then the stored bytes (rest).
#![no_main]

use dingtalk_plugin::fuzzing::{mint_ticket, redeem_ticket, sample_raw, FuzzEnv};
use dingtalk_plugin::{handle, Identity, Mode, Request, Via};
use dingtalk_plugin_fuzz::{check_routed, parts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = parts(data, 4);
    let (ticket, cookie, query, stored) = (&p[0], &p[1], &p[2], &p[3]);
    let mut env = FuzzEnv::new();

    // Arbitrary tickets, with arbitrary bytes stored under them.
    env.kv.insert(
        format!("ticket:{}", ticket.trim()),
        stored.as_bytes().to_vec(),
    );
    if redeem_ticket(&mut env, ticket).is_ok() {
        let again = redeem_ticket(&mut env, ticket).expect_err("ticket redeemed twice");
        assert_eq!(again.status, 410);
    }

    // Mint → redeem once.
    let identity = Identity {
        corp_id: "dingcorp123".into(),
        userid: ticket.clone(),
        unionid: cookie.clone(),
        name: query.clone(),
        mobile: None,
        email: Some(stored.clone()),
        avatar: None,
        dept_ids: vec![1, -1, i64::MAX],
        is_admin: false,
        admin_level: 0,
        via: Via::Qr,
        requires_sms_binding: true,
        return_to: Some(cookie.clone()),
    };
    let minted = mint_ticket(&mut env, &identity).expect("mint");
    assert_eq!(redeem_ticket(&mut env, &minted).expect("redeem"), identity);
    assert_eq!(
        redeem_ticket(&mut env, &minted).expect_err("twice").status,
        410
    );

    // Cookies and query parsing.
    let headers = vec![("Cookie".to_string(), cookie.clone())];
    let probe = Request::new(
        "GET",
        &format!("/dingding/login?{query}"),
        headers.clone(),
        vec![],
    );
    if let Some(v) = probe.cookie("dd_login") {
        assert!(!v.contains(';'), "cookie value spans pairs");
    }
    for (k, _) in probe.query_pairs() {
        let _ = probe.param(&k);
    }

    // The QR routes: the state is a signed record, checked before anything is read.
    let raw = sample_raw();
    for path in ["/dingding/dd_or_code_corp_list", "/dingding/login"] {
        let request = Request::new("GET", &format!("{path}?{query}"), headers.clone(), vec![]);
        let routed = handle(&mut env, &raw, &request, Mode::Http);
        check_routed(&request, &routed, &env);
    }
});
