//! QPS limiting, IP whitelist, quota, fault injection, the call log, robustness and concurrency.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use dingtalk_sim::{Fault, FaultKind, Sim};
use serde_json::json;

#[test]
fn qps_limit_per_app_per_api_old_and_new() {
    let sim = Sim::demo().unwrap();
    sim.set_qps_limit(Some(5));
    let t = old_token(&sim, DEMO);
    // Freeze the window: far fewer than a second passes between these calls in practice, but to be
    // robust against slow machines, count outcomes rather than positions.
    let codes: Vec<i64> = (0..12)
        .map(|_| {
            oapi(&sim, "/topapi/v2/user/get", &t, &json!({"userid": "lisi"}))["errcode"]
                .as_i64()
                .unwrap()
        })
        .collect();
    let ok = codes.iter().filter(|c| **c == 0).count();
    let limited = codes.iter().filter(|c| **c == 90018).count();
    assert_eq!(ok + limited, 12, "{codes:?}");
    assert!((5..12).contains(&ok), "{codes:?}");
    assert!(sim.max_calls_in_any_1s_window("/topapi/v2/user/get") >= 6);
    // Another API has its own window.
    let v = oapi(
        &sim,
        "/topapi/v2/department/listsub",
        &t,
        &json!({"dept_id": 1}),
    );
    assert_eq!(v["errcode"], 0);
    // After a second the window is free again.
    sim.advance_clock(2);
    assert_eq!(
        oapi(&sim, "/topapi/v2/user/get", &t, &json!({"userid": "lisi"}))["errcode"],
        0
    );

    // New API.
    sim.set_qps_limit(Some(1));
    let url = format!(
        "{}/v1.0/todo/users/demoUnionLisi0000001iE/tasks",
        sim.base_url()
    );
    let mut statuses = Vec::new();
    for i in 0..3 {
        let (s, v) = call_new("POST", &url, &t, Some(&json!({"subject": format!("t{i}")})));
        statuses.push((s, v["code"].as_str().map(|c| c.to_string())));
    }
    assert_eq!(statuses[0].0, 200);
    assert!(statuses[1..].iter().any(|(s, c)| *s == 403
        && c.as_deref() == Some("Forbidden.AccessDenied.QpsLimitForAppkeyAndApi")));
    // Per-API override and the global limit.
    sim.set_qps_limit(None);
    sim.set_api_qps_limit("/topapi/v2/user/get", Some(1));
    sim.advance_clock(2);
    let a = oapi(&sim, "/topapi/v2/user/get", &t, &json!({"userid": "lisi"}));
    let b = oapi(&sim, "/topapi/v2/user/get", &t, &json!({"userid": "lisi"}));
    assert_eq!(
        (a["errcode"].as_i64(), b["errcode"].as_i64()),
        (Some(0), Some(90018))
    );
    sim.set_api_qps_limit("/topapi/v2/user/get", None);
    sim.set_global_qps_limit(Some(1));
    sim.advance_clock(2);
    let a = oapi(&sim, "/topapi/v2/user/get", &t, &json!({"userid": "lisi"}));
    let b = oapi(&sim, "/topapi/v2/user/get", &t, &json!({"userid": "lisi"}));
    assert_eq!(
        (a["errcode"].as_i64(), b["errcode"].as_i64()),
        (Some(0), Some(90002))
    );
    let (s, v) = call_new("POST", &url, &t, Some(&json!({"subject": "g1"})));
    let (s2, v2) = call_new("POST", &url, &t, Some(&json!({"subject": "g2"})));
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (s2, v2["code"].as_str()),
        (403, Some("Forbidden.AccessDenied.QpsLimitForApi"))
    );
}

#[test]
fn qps_limit_holds_under_concurrent_load() {
    let sim = Arc::new(Sim::demo().unwrap());
    sim.set_qps_limit(Some(20));
    let t = old_token(&sim, DEMO);
    let started = Instant::now();
    let handles: Vec<_> = (0..40)
        .map(|_| {
            let sim = sim.clone();
            let t = t.clone();
            std::thread::spawn(move || {
                oapi(&sim, "/topapi/v2/user/get", &t, &json!({"userid": "lisi"}))["errcode"]
                    .as_i64()
                    .unwrap()
            })
        })
        .collect();
    let codes: Vec<i64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = codes.iter().filter(|c| **c == 0).count();
    if started.elapsed() < Duration::from_millis(900) {
        assert_eq!(
            ok, 20,
            "exactly the limit passes inside one window: {codes:?}"
        );
    }
    assert!(codes.iter().all(|c| *c == 0 || *c == 90018));
    assert_eq!(sim.count("/topapi/v2/user/get"), 40);
}

#[test]
fn ip_whitelist_errors_both_families() {
    let sim = Sim::demo().unwrap();
    let c = sim.credentials(DEMO).unwrap();
    let t = old_token(&sim, DEMO);
    sim.set_request_ip("203.0.113.7");
    sim.set_ip_whitelist_error(true);
    let (_, v) = get(&format!(
        "{}/gettoken?appkey={}&appsecret={}",
        sim.base_url(),
        c.app_key,
        c.app_secret
    ));
    assert_eq!(v["errcode"], 60020);
    let msg = v["errmsg"].as_str().unwrap();
    assert!(
        msg.contains("request ip=203.0.113.7 appKey(dingdemoappkey)"),
        "{msg}"
    );
    let v = oapi(&sim, "/topapi/v2/user/get", &t, &json!({"userid": "lisi"}));
    assert_eq!(v["errcode"], 60020);
    let (s, v) = post(
        &format!("{}/v1.0/oauth2/accessToken", sim.base_url()),
        &json!({"appKey": c.app_key, "appSecret": c.app_secret}),
    );
    assert_eq!(
        (s, v["code"].as_str()),
        (403, Some("Forbidden.AccessDenied.IpNotInWhiteList"))
    );
    sim.set_ip_whitelist_error(false);
    sim.set_ip_whitelist_error_for(DEMO, true).unwrap();
    assert_eq!(
        oapi(&sim, "/topapi/v2/user/get", &t, &json!({"userid": "lisi"}))["errcode"],
        60020
    );
    sim.set_ip_whitelist_error_for(DEMO, false).unwrap();
    assert_eq!(
        oapi(&sim, "/topapi/v2/user/get", &t, &json!({"userid": "lisi"}))["errcode"],
        0
    );
}

#[test]
fn monthly_quota_counts_only_non_exempt_apis() {
    let sim = Sim::demo().unwrap();
    sim.set_monthly_quota(Some(2));
    let t = old_token(&sim, DEMO);
    for _ in 0..5 {
        assert_eq!(
            oapi(&sim, "/topapi/v2/user/get", &t, &json!({"userid": "lisi"}))["errcode"],
            0
        );
    }
    assert_eq!(sim.monthly_usage(DEMO), 0, "contacts are exempt");
    let send = |n: u32| {
        oapi(
            &sim,
            "/topapi/message/corpconversation/asyncsend_v2",
            &t,
            &json!({"agent_id": 1000001, "userid_list": "lisi", "msg": {"msgtype": "text", "text": {"content": format!("hi {n}")}}}),
        )
    };
    assert_eq!(send(1)["errcode"], 0);
    let url = format!(
        "{}/v1.0/todo/users/demoUnionLisi0000001iE/tasks",
        sim.base_url()
    );
    let (s, _) = call_new("POST", &url, &t, Some(&json!({"subject": "q"})));
    assert_eq!(s, 200);
    assert_eq!(send(2)["errcode"], 90020);
    let (s, v) = call_new("POST", &url, &t, Some(&json!({"subject": "q2"})));
    assert_eq!(
        (s, v["code"].as_str()),
        (403, Some("Forbidden.AccessDenied.ApiCountLimitForOrg"))
    );
    sim.reset_monthly_usage();
    assert_eq!(send(3)["errcode"], 0);
}

#[test]
fn fault_injection_kinds_times_and_probability() {
    let sim = Sim::demo().unwrap();
    let t = old_token(&sim, DEMO);
    let body = json!({"userid": "lisi"});
    sim.inject(
        Fault::new(
            "/topapi/v2/user/get",
            FaultKind::Errcode(-1, "系统繁忙".into()),
        )
        .times(2),
    );
    assert_eq!(oapi(&sim, "/topapi/v2/user/get", &t, &body)["errcode"], -1);
    assert_eq!(oapi(&sim, "/topapi/v2/user/get", &t, &body)["errcode"], -1);
    assert_eq!(oapi(&sim, "/topapi/v2/user/get", &t, &body)["errcode"], 0);
    assert_eq!(sim.active_faults(), 0);

    sim.inject(Fault::new("/topapi/", FaultKind::SubCode88("40014".into())).times(1));
    let v = oapi(&sim, "/topapi/v2/user/get", &t, &body);
    assert_eq!(
        (v["errcode"].as_i64(), v["sub_code"].as_str()),
        (Some(88), Some("40014"))
    );

    sim.inject(Fault::new("/topapi/v2/user/get", FaultKind::Busy).times(1));
    assert_eq!(oapi(&sim, "/topapi/v2/user/get", &t, &body)["errcode"], -1);

    let url = format!(
        "{}/v1.0/todo/users/demoUnionLisi0000001iE/tasks",
        sim.base_url()
    );
    sim.inject(
        Fault::new(
            "/v1.0/todo/users/{unionId}/tasks",
            FaultKind::NewApi(503, "service.unavailable".into()),
        )
        .times(1),
    );
    let (s, v) = call_new("POST", &url, &t, Some(&json!({"subject": "x"})));
    assert_eq!((s, v["code"].as_str()), (503, Some("service.unavailable")));
    sim.inject(Fault::new("/v1.0/todo/", FaultKind::Busy).times(1));
    let (s, v) = call_new("POST", &url, &t, Some(&json!({"subject": "x"})));
    assert_eq!((s, v["code"].as_str()), (500, Some("systemBusy")));

    sim.inject(
        Fault::new(
            "/topapi/v2/user/get",
            FaultKind::Http(502, "<html>Bad Gateway</html>".into()),
        )
        .times(1),
    );
    let (s, txt) = raw(
        "POST",
        &format!("{}/topapi/v2/user/get?access_token={t}", sim.base_url()),
        Some(&body.to_string()),
        &[],
    );
    assert_eq!((s, txt.as_str()), (502, "<html>Bad Gateway</html>"));

    sim.inject(Fault::new("/topapi/v2/user/get", FaultKind::Drop).times(1));
    let (s, _) = raw(
        "POST",
        &format!("{}/topapi/v2/user/get?access_token={t}", sim.base_url()),
        Some(&body.to_string()),
        &[],
    );
    assert_eq!(s, 0, "the connection breaks");
    assert_eq!(
        oapi(&sim, "/topapi/v2/user/get", &t, &body)["errcode"],
        0,
        "server still fine"
    );

    let id = sim.inject(Fault::new("/topapi/v2/user/get", FaultKind::Latency(300)));
    let t0 = Instant::now();
    assert_eq!(oapi(&sim, "/topapi/v2/user/get", &t, &body)["errcode"], 0);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    sim.remove_fault(id);

    sim.inject(
        Fault::new("/topapi/v2/user/get", FaultKind::Errcode(-1, "x".into())).probability(0.0),
    );
    for _ in 0..10 {
        assert_eq!(oapi(&sim, "/topapi/v2/user/get", &t, &body)["errcode"], 0);
    }
    sim.clear_faults();
    sim.inject(
        Fault::new("/topapi/v2/user/get", FaultKind::Errcode(-1, "x".into())).probability(0.5),
    );
    let fails = (0..60)
        .filter(|_| oapi(&sim, "/topapi/v2/user/get", &t, &body)["errcode"] == -1)
        .count();
    assert!((10..50).contains(&fails), "{fails}");
}

#[test]
fn latency_does_not_block_other_requests() {
    let sim = Arc::new(Sim::demo().unwrap());
    let t = old_token(&sim, DEMO);
    sim.inject(Fault::new(
        "/topapi/v2/department/listsub",
        FaultKind::Latency(1500),
    ));
    let slow = {
        let (sim, t) = (sim.clone(), t.clone());
        std::thread::spawn(move || {
            oapi(
                &sim,
                "/topapi/v2/department/listsub",
                &t,
                &json!({"dept_id": 1}),
            )
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    assert_eq!(
        oapi(&sim, "/topapi/v2/user/get", &t, &json!({"userid": "lisi"}))["errcode"],
        0
    );
    assert!(t0.elapsed() < Duration::from_millis(1000));
    assert_eq!(slow.join().unwrap()["errcode"], 0);
}

#[test]
fn call_log_records_calls_without_tokens() {
    let sim = Sim::demo().unwrap();
    let t = old_token(&sim, DEMO);
    oapi(&sim, "/topapi/v2/user/get", &t, &json!({"userid": "lisi"}));
    oapi(
        &sim,
        "/topapi/v2/user/get",
        &t,
        &json!({"userid": "nobody"}),
    );
    let calls = sim.calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].api, "/gettoken");
    assert_eq!(calls[0].method, "GET");
    assert_eq!(calls[1].app_key.as_deref(), Some("dingdemoappkey"));
    assert_eq!(calls[1].corp_id.as_deref(), Some(DEMO));
    assert_eq!((calls[1].status, calls[1].errcode), (200, Some(0)));
    assert!(calls[1].ok());
    assert_eq!(calls[2].errcode, Some(60121));
    assert!(!calls[2].ok());
    for c in &calls {
        assert!(!format!("{c:?}").contains(&t), "no token in the log");
    }
    assert_eq!(sim.count("/topapi/v2/user/get"), 2);
    let url = format!(
        "{}/v1.0/todo/users/demoUnionLisi0000001iE/tasks",
        sim.base_url()
    );
    call_new("POST", &url, &t, Some(&json!({"subject": "x"})));
    assert_eq!(sim.count("/v1.0/todo/users/{unionId}/tasks"), 1);
    assert_eq!(
        sim.calls_to("/v1.0/todo/users/demoUnionLisi0000001iE/tasks")
            .len(),
        1
    );
    sim.reset_calls();
    assert!(sim.calls().is_empty());
}

#[test]
fn malformed_input_never_breaks_the_server() {
    let sim = Sim::demo().unwrap();
    let t = old_token(&sim, DEMO);
    let paths = [
        "/topapi/v2/user/getuserinfo",
        "/topapi/user/getbyunionid",
        "/topapi/v2/department/listsub",
        "/topapi/v2/department/listsubid",
        "/topapi/v2/department/get",
        "/topapi/v2/user/list",
        "/topapi/v2/user/get",
        "/topapi/user/listsimple",
        "/topapi/user/listid",
        "/topapi/message/corpconversation/asyncsend_v2",
        "/topapi/message/corpconversation/getsendresult",
    ];
    let bodies = [
        "",
        "null",
        "[]",
        "\"str\"",
        "{",
        "{\"dept_id\": {\"a\": 1}, \"cursor\": [], \"size\": true, \"userid\": 5, \"code\": null}",
        "{\"dept_id\": 1e400, \"size\": -9223372036854775808, \"cursor\": 18446744073709551615}",
        "{\"agent_id\": \"x\", \"msg\": 5, \"userid_list\": [1,2]}",
        "\u{0}\u{1}\u{2}",
    ];
    for p in paths {
        for b in bodies {
            let (s, txt) = raw(
                "POST",
                &format!("{}{p}?access_token={t}", sim.base_url()),
                Some(b),
                &[("Content-Type", "application/json")],
            );
            assert_eq!(s, 200, "{p} {b:?}");
            let v = json_of(&txt);
            let code = v["errcode"].as_i64().unwrap();
            // listsub ignores unknown fields (dept_id defaults to the root).
            let lenient = p.ends_with("/listsub") && b.contains("agent_id");
            assert!(code != 0 || lenient, "{p} {b:?} -> {txt}");
        }
    }
    let new_paths = [
        ("POST", "/v1.0/oauth2/accessToken"),
        ("POST", "/v1.0/oauth2/userAccessToken"),
        ("POST", "/v1.0/oauth2/ssoAccessToken"),
        ("POST", "/v1.0/todo/users/demoUnionLisi0000001iE/tasks"),
        ("PUT", "/v1.0/todo/users/demoUnionLisi0000001iE/tasks/nope"),
        (
            "PUT",
            "/v1.0/todo/users/demoUnionLisi0000001iE/tasks/nope/executorStatus",
        ),
        (
            "POST",
            "/v1.0/todo/users/demoUnionLisi0000001iE/org/tasks/query",
        ),
    ];
    for (m, p) in new_paths {
        for b in bodies {
            let (s, txt) = raw(
                m,
                &format!("{}{p}", sim.base_url()),
                Some(b),
                &[
                    ("Content-Type", "application/json"),
                    ("x-acs-dingtalk-access-token", &t),
                ],
            );
            let v = json_of(&txt);
            // Bodies that happen to be valid objects with only unknown fields may succeed.
            let lenient = s == 200 && b.starts_with('{') && v.is_object();
            assert!(
                lenient || (400..500).contains(&s),
                "{m} {p} {b:?} -> {s} {txt}"
            );
            assert!(lenient || v["code"].is_string(), "{txt}");
        }
    }
    // Odd URLs.
    for u in [
        "/%ZZ",
        "/v1.0/todo/users/%FF%FE/tasks",
        "/gettoken?appkey=%",
        "/oauth2/auth?client_id=%00",
    ] {
        let (s, txt) = raw("GET", &format!("{}{u}", sim.base_url()), None, &[]);
        let old_error = s == 200 && json_of(&txt)["errcode"].as_i64().is_some_and(|c| c != 0);
        assert!(s >= 400 || old_error, "{u} -> {s} {txt}");
    }
    assert_eq!(
        oapi(&sim, "/topapi/v2/user/get", &t, &json!({"userid": "lisi"}))["errcode"],
        0
    );
}
