//! Behaviours of the real platform that a kind simulator would hide (doc §11b).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use dingtalk_sim::{
    CorpSpec, EventOptions, Fault, FaultKind, OrgChange, OrgSpec, Sim, SimError, User,
};
use serde_json::{json, Value};

const OTHER: &str = "dingothercorp";

fn two_corps() -> Sim {
    Sim::builder()
        .corp(CorpSpec::demo())
        .corp(CorpSpec::generated(OTHER, &OrgSpec::sized(2, 3)))
        .qps_limit(None)
        .start()
        .unwrap()
}

fn exchange(sim: &Sim, corp: &str, code: &str) -> (u16, Value) {
    let c = sim.credentials(corp).unwrap();
    post(
        &format!("{}/v1.0/oauth2/userAccessToken", sim.base_url()),
        &json!({"clientId": c.app_key, "clientSecret": c.app_secret, "code": code, "grantType": "authorization_code"}),
    )
}

#[test]
fn a_person_has_one_unionid_per_corp_app_and_qr_login_admits_members_only() {
    let sim = two_corps();
    // 王五 of the demo corp joins the other corp: a new record with another unionid.
    let e = sim
        .add_existing_person(OTHER, DEMO, "wangwu", "wang.wu", &[1])
        .unwrap();
    assert_eq!(e.event_type, "user_add_org");
    let demo_union = sim.user(DEMO, "wangwu").unwrap().unionid;
    let other = sim.user(OTHER, "wang.wu").unwrap();
    assert_ne!(
        other.unionid, demo_union,
        "unionid is per developer account"
    );
    assert_eq!(other.account_mobile, "13800000003");
    let records = sim.person_records(DEMO, "wangwu");
    assert_eq!(
        records
            .iter()
            .map(|(c, u)| (c.as_str(), u.userid.as_str()))
            .collect::<Vec<_>>(),
        [(DEMO, "wangwu"), (OTHER, "wang.wu")]
    );
    assert!(sim
        .add_existing_person(OTHER, DEMO, "wangwu", "again", &[1])
        .is_err());

    // Through the other corp's app, the person is known by the other corp's unionid.
    let code = sim.mint_qr_code(OTHER, &demo_union).unwrap();
    let (s, v) = exchange(&sim, OTHER, &code);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["corpId"], OTHER);
    let (_, me) = get_new(
        &format!("{}/v1.0/contact/users/me", sim.base_url()),
        v["accessToken"].as_str().unwrap(),
    );
    assert_eq!(me["unionId"], other.unionid.as_str());
    // The demo app's unionid means nothing to the other corp.
    let t = old_token(&sim, OTHER);
    let v = oapi(
        &sim,
        "/topapi/user/getbyunionid",
        &t,
        &json!({"unionid": demo_union}),
    );
    assert_eq!(v["errcode"], 60121);
    // A QR code is bound to its app.
    let code = sim.mint_qr_code(OTHER, &demo_union).unwrap();
    assert_eq!(exchange(&sim, DEMO, &code).1["code"], "invalidCode");

    // Non-members get no code.
    let lisi = sim.user(DEMO, "lisi").unwrap().unionid;
    assert!(matches!(
        sim.mint_qr_code(OTHER, &lisi),
        Err(SimError::NotAMember(_))
    ));
    assert!(sim.mint_qr_code_for(OTHER, "lisi").is_err());
    assert!(sim.mint_qr_code_for(DEMO, "lisi").is_ok());
    assert!(sim.mint_qr_code(DEMO, "nobody").is_err());

    // Generated corps from the same seed do not share unionids.
    let a = CorpSpec::generated("dinga", &OrgSpec::sized(2, 3));
    let b = CorpSpec::generated("dingb", &OrgSpec::sized(2, 3));
    let ua = a.org.user("user00001").unwrap();
    let ub = b.org.user("user00001").unwrap();
    assert_eq!(ua.name, ub.name, "same seed, same people");
    assert_ne!(ua.unionid, ub.unionid);
}

fn scan_href(html: &str, corp: &str, userid: &str) -> String {
    let marker = format!("data-corp=\"{corp}\" data-userid=\"{userid}\"");
    let at = html.find(&marker).expect("link on the page");
    let rest = &html[at..];
    let i = rest.find("href=\"").unwrap() + 6;
    rest[i..i + rest[i..].find('"').unwrap()].replace("&amp;", "&")
}

#[test]
fn the_login_page_refuses_other_orgs_members() {
    let sim = two_corps();
    let c = sim.credentials(DEMO).unwrap();
    let base = sim.base_url();
    let page = format!(
        "{base}/oauth2/auth?redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&response_type=code&client_id={}&state=S",
        c.app_key
    );
    let (s, html) = raw("GET", &page, None, &[]);
    assert_eq!(s, 200);
    let agent = agent();
    // A member of the other corp scans the demo app's code: a refusal page, no redirect, no code.
    let href = scan_href(&html, OTHER, "user00001");
    let r = agent.get(&format!("{base}{href}")).call();
    let (status, body) = match r {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap()),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(status, 403);
    assert!(body.contains("data-error=\"not_org_member\""), "{body}");
    assert!(!body.contains("authCode"));
    // The same link without corp_id: still refused (the app's corp is assumed).
    let no_corp = href.replace(&format!("corp_id={OTHER}&"), "");
    assert_eq!(raw("GET", &format!("{base}{no_corp}"), None, &[]).0, 403);
    // A member of the demo corp gets a code.
    let href = scan_href(&html, DEMO, "lisi");
    let r = agent.get(&format!("{base}{href}")).call().unwrap();
    assert_eq!(r.status(), 302);
    assert!(r.header("Location").unwrap().contains("authCode="));
    assert!(sim
        .calls_to("/oauth2/auth/confirm")
        .iter()
        .all(|c| c.corp_id.as_deref() == Some(DEMO)));
}

#[test]
fn access_restricted_members_need_contain_access_limit() {
    let spec = OrgSpec {
        departments: 1,
        users: 40,
        access_limited_ratio: 0.25,
        ..OrgSpec::default()
    };
    let org = dingtalk_sim::Org::generate("x", &spec);
    let limited = org.users().filter(|u| u.access_limited).count();
    assert!((3..=20).contains(&limited), "{limited}");
    assert_eq!(
        dingtalk_sim::Org::generate("x", &OrgSpec::sized(1, 40))
            .users()
            .filter(|u| u.access_limited)
            .count(),
        0,
        "off by default"
    );

    let sim = Sim::demo().unwrap();
    let t = old_token(&sim, DEMO);
    let list = |extra: Value| {
        let mut b = json!({"dept_id": 2, "cursor": 0, "size": 100});
        if let Value::Object(m) = extra {
            for (k, v) in m {
                b[k] = v;
            }
        }
        let v = oapi(&sim, "/topapi/v2/user/list", &t, &b);
        assert_eq!(v["errcode"], 0, "{v}");
        v["result"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["userid"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(list(json!({})).contains(&"wangwu".to_string()));
    sim.set_access_limited(DEMO, "wangwu", true).unwrap();
    assert!(!list(json!({})).contains(&"wangwu".to_string()));
    assert!(!list(json!({"contain_access_limit": false})).contains(&"wangwu".to_string()));
    assert!(list(json!({"contain_access_limit": true})).contains(&"wangwu".to_string()));
    let v = oapi(
        &sim,
        "/topapi/user/listsimple",
        &t,
        &json!({"dept_id": 2, "cursor": 0, "size": 100}),
    );
    assert!(!v.to_string().contains("wangwu"));
    let v = oapi(
        &sim,
        "/topapi/v2/user/get",
        &t,
        &json!({"userid": "wangwu"}),
    );
    assert_eq!(v["result"]["userid"], "wangwu", "user/get still answers");
    // Pages are offsets into the full list: a restricted member leaves a short page.
    let v = oapi(
        &sim,
        "/topapi/v2/user/list",
        &t,
        &json!({"dept_id": 2, "cursor": 0, "size": 2}),
    );
    assert_eq!(v["result"]["has_more"], true);
    assert_eq!(v["result"]["next_cursor"], 2);
    let n = v["result"]["list"].as_array().unwrap().len();
    assert!(n < 2, "{v}");
    sim.set_access_limited(DEMO, "wangwu", false).unwrap();
    assert!(list(json!({})).contains(&"wangwu".to_string()));
}

#[test]
fn auth_scopes_and_out_of_scope_reads() {
    let sim = Sim::demo().unwrap();
    let t = old_token(&sim, DEMO);
    let url = format!("{}/auth/scopes?access_token={t}", sim.base_url());
    let (s, v) = get(&url);
    assert_eq!(s, 200);
    assert_eq!(v["errcode"], 0);
    assert_eq!(v["auth_org_scopes"]["authed_dept"], json!([1]));
    assert_eq!(v["auth_org_scopes"]["authed_user"], json!([]));
    assert!(v["auth_user_field"]
        .as_array()
        .unwrap()
        .contains(&json!("mobile")));

    sim.set_contact_scope(DEMO, Some(vec![3])).unwrap();
    sim.set_authed_users(DEMO, &["wangwu"]).unwrap();
    let (_, v) = get(&url);
    assert_eq!(v["auth_org_scopes"]["authed_dept"], json!([3]));
    assert_eq!(v["auth_org_scopes"]["authed_user"], json!(["wangwu"]));
    assert_eq!(sim.contact_scope(DEMO).unwrap().authed_dept, vec![3]);
    for (path, body) in [
        ("/topapi/v2/department/get", json!({"dept_id": 2})),
        ("/topapi/v2/department/listsub", json!({"dept_id": 1})),
        (
            "/topapi/v2/user/list",
            json!({"dept_id": 2, "cursor": 0, "size": 10}),
        ),
        (
            "/topapi/user/listsimple",
            json!({"dept_id": 1, "cursor": 0, "size": 10}),
        ),
        ("/topapi/v2/user/get", json!({"userid": "lisi"})),
    ] {
        let v = oapi(&sim, path, &t, &body);
        assert_eq!(v["errcode"], 50004, "{path}: {v}");
        assert_eq!(v["errmsg"], "企业部门不在授权范围");
    }
    // A member authorised one by one is readable; department 3 too.
    let v = oapi(
        &sim,
        "/topapi/v2/user/get",
        &t,
        &json!({"userid": "wangwu"}),
    );
    assert_eq!(v["errcode"], 0);
    let v = oapi(
        &sim,
        "/topapi/v2/user/list",
        &t,
        &json!({"dept_id": 3, "cursor": 0, "size": 10}),
    );
    assert_eq!(v["errcode"], 0);
}

#[test]
fn pages_shift_when_the_department_changes_during_a_walk() {
    let spec = OrgSpec {
        departments: 2,
        users: 30,
        multi_dept_ratio: 0.0,
        ..OrgSpec::default()
    };
    let sim = Sim::builder()
        .corp(CorpSpec::generated("dingshift", &spec))
        .qps_limit(None)
        .start()
        .unwrap();
    let t = old_token(&sim, "dingshift");
    let dept = sim
        .org("dingshift")
        .unwrap()
        .departments()
        .map(|d| d.dept_id)
        .find(|d| *d != 1)
        .unwrap();
    let members = sim.org("dingshift").unwrap().members(dept).to_vec();
    assert!(members.len() >= 6, "{members:?}");
    let walk = |sim: &Sim| {
        let mut seen = Vec::new();
        let mut cursor = 0;
        loop {
            let v = oapi(
                sim,
                "/topapi/v2/user/list",
                &t,
                &json!({"dept_id": dept, "cursor": cursor, "size": 3}),
            );
            assert_eq!(v["errcode"], 0, "{v}");
            for u in v["result"]["list"].as_array().unwrap() {
                seen.push(u["userid"].as_str().unwrap().to_string());
            }
            if v["result"]["has_more"] != true {
                return seen;
            }
            cursor = v["result"]["next_cursor"].as_i64().unwrap();
        }
    };
    // The first member leaves after the first page: the walk skips one who stayed.
    sim.schedule_change(
        "dingshift",
        "/topapi/v2/user/list",
        1,
        OrgChange::RemoveUser(members[0].clone()),
    )
    .unwrap();
    assert_eq!(sim.pending_changes(), 1);
    let seen = walk(&sim);
    assert_eq!(sim.pending_changes(), 0);
    assert_eq!(sim.scheduled_events()[0].event_type, "user_leave_org");
    assert!(!seen.contains(&members[3]), "shifted past: {seen:?}");
    assert!(seen.contains(&members[0]), "listed before leaving");
    assert_eq!(seen.len(), members.len() - 1);

    // A member joins after the first page: appended at the end, so nothing shifts.
    let newcomer = User::new("newcomer", "unionNewcomer01", "新人", &[dept]);
    sim.schedule_change(
        "dingshift",
        "/topapi/v2/user/list",
        1,
        OrgChange::AddUser(Box::new(newcomer)),
    )
    .unwrap();
    // A member moves out after the second page: the walk skips the one who took their place.
    sim.schedule_change(
        "dingshift",
        "/topapi/v2/user/list",
        2,
        OrgChange::MoveUser {
            userid: members[1].clone(),
            from: dept,
            to: 1,
        },
    )
    .unwrap();
    let now = sim.org("dingshift").unwrap().members(dept).to_vec();
    let seen = walk(&sim);
    assert!(seen.contains(&"newcomer".to_string()));
    assert!(!seen.contains(&now[6]), "{seen:?}");
    assert_eq!(sim.scheduled_events().len(), 3);
    assert_eq!(sim.scheduled_events()[2].event_type, "user_modify_org");
    assert!(sim.user("dingshift", &members[1]).unwrap().dept_ids == vec![1]);
    // Refused changes are dropped.
    sim.schedule_change(
        "dingshift",
        "/topapi/v2/user/list",
        0,
        OrgChange::RemoveFromDepartment {
            userid: members[2].clone(),
            dept_id: dept,
        },
    )
    .unwrap();
    assert_eq!(sim.scheduled_events().len(), 3, "only department: refused");
}

#[test]
fn ok_answers_without_the_list() {
    let sim = Sim::demo().unwrap();
    let t = old_token(&sim, DEMO);
    sim.inject(Fault::new("/topapi/v2/user/list", FaultKind::OkWithoutResult).times(1));
    sim.inject(Fault::new("/topapi/v2/department/listsub", FaultKind::OkWithoutResult).times(1));
    let v = oapi(
        &sim,
        "/topapi/v2/user/list",
        &t,
        &json!({"dept_id": 2, "cursor": 0, "size": 10}),
    );
    assert_eq!(v["errcode"], 0);
    assert!(v["result"].get("list").is_none(), "{v}");
    assert_eq!(v["result"]["has_more"], false);
    let v = oapi(
        &sim,
        "/topapi/v2/department/listsub",
        &t,
        &json!({"dept_id": 1}),
    );
    assert_eq!(v["errcode"], 0);
    assert!(!v["result"].is_array(), "{v}");
    assert!(sim.calls().iter().all(|c| c.ok()));
}

/// A receiver that answers the encrypted `success` after `delay`.
fn slow_receiver(sim: &Sim, delay: Duration) -> String {
    let crypto = sim.event_crypto(DEMO).unwrap();
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/events",
        server.server_addr().to_ip().unwrap().port()
    );
    std::thread::spawn(move || {
        for rq in server.incoming_requests() {
            std::thread::sleep(delay);
            let reply = crypto
                .reply("success", "1700000000000", "nonce123")
                .to_string();
            let _ = rq.respond(tiny_http::Response::from_string(reply));
        }
    });
    url
}

#[test]
fn late_event_answers_are_failed_pushes() {
    let sim = Sim::demo().unwrap();
    let fast = slow_receiver(&sim, Duration::ZERO);
    let d = sim.send_event(&fast, DEMO, "{}");
    assert!(d.success && d.on_time && d.accepted, "{d:?}");
    let slow = slow_receiver(&sim, Duration::from_millis(1700));
    let d = sim.send_event(&slow, DEMO, "{}");
    assert!(d.success, "the answer itself is right: {d:?}");
    assert!(!d.on_time && !d.accepted, "{d:?}");
    assert!(d.elapsed > dingtalk_sim::EVENT_ANSWER_DEADLINE);
    // A custom deadline (the 2,500 ms of the newer page).
    let opts = EventOptions {
        deadline: Duration::from_millis(2500),
        ..EventOptions::default()
    };
    let d = sim.send_event_with(&slow, DEMO, "{}", &opts);
    assert!(d.accepted, "{d:?}");
    assert_eq!(sim.event_pushes().len(), 3);
    assert_eq!(sim.failed_pushes().len(), 1);
}

#[test]
fn latency_on_contact_reads() {
    let sim = Sim::demo().unwrap();
    let t = old_token(&sim, DEMO);
    let ids = sim.inject_latency(&["/topapi/v2/user/get", "/topapi/v2/user/list"], 200);
    assert_eq!(ids.len(), 2);
    let t0 = Instant::now();
    oapi(&sim, "/topapi/v2/user/get", &t, &json!({"userid": "lisi"}));
    assert!(t0.elapsed() >= Duration::from_millis(200));
    let t0 = Instant::now();
    oapi(
        &sim,
        "/topapi/v2/user/list",
        &t,
        &json!({"dept_id": 1, "cursor": 0, "size": 10}),
    );
    assert!(t0.elapsed() >= Duration::from_millis(200));
    let t0 = Instant::now();
    oapi(
        &sim,
        "/topapi/v2/department/get",
        &t,
        &json!({"dept_id": 1}),
    );
    assert!(t0.elapsed() < Duration::from_millis(200));
    for id in ids {
        sim.remove_fault(id);
    }
    let t0 = Instant::now();
    oapi(&sim, "/topapi/v2/user/get", &t, &json!({"userid": "lisi"}));
    assert!(t0.elapsed() < Duration::from_millis(200));
}

#[test]
fn racing_todo_creates_on_one_source_id() {
    const LISI: &str = "demoUnionLisi0000001iE";
    let sim = Arc::new(Sim::demo().unwrap());
    let t = old_token(&sim, DEMO);
    let url = format!("{}/v1.0/todo/users/{LISI}/tasks", sim.base_url());
    let body = json!({"subject": "审批", "sourceId": "form-7", "detailUrl": {"appUrl": "https://a", "pcUrl": "https://a"}});
    sim.set_todo_create_in_flight(Duration::from_millis(400));
    let racers: Vec<_> = (0..4)
        .map(|i| {
            let (url, t, body) = (url.clone(), t.clone(), body.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(if i == 0 { 0 } else { 100 }));
                call_new("POST", &url, &t, Some(&body))
            })
        })
        .collect();
    let answers: Vec<(u16, Value)> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 1, "{answers:?}");
    for (s, v) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!(*s, 400);
        assert_eq!(v["code"], "todo.taskCreate.lockError", "{v}");
        assert!(v["message"].is_string() && v["requestid"].is_string());
    }
    assert_eq!(sim.todos(DEMO).len(), 1);
    // Afterwards: a duplicate sourceId is `task exist`, as before.
    let (s, v) = call_new("POST", &url, &t, Some(&body));
    assert_eq!(
        (s, v["code"].as_str()),
        (400, Some("todo.taskCreate.paramError"))
    );
    assert_eq!(v["message"], "task exist");
    // Lookup by sourceId.
    let (s, v) = call_new(
        "GET",
        &format!(
            "{}/v1.0/todo/users/{LISI}/tasks/sources/form-7",
            sim.base_url()
        ),
        &t,
        None,
    );
    assert_eq!(s, 200);
    assert_eq!(v["sourceId"], "form-7");
    // Another sourceId is not locked by an in-flight one.
    sim.set_todo_create_in_flight(Duration::ZERO);
    let (s, _) = call_new(
        "POST",
        &url,
        &t,
        Some(&json!({"subject": "x", "sourceId": "form-8"})),
    );
    assert_eq!(s, 200);
}

#[test]
fn ip_ban_page_temporary_bans_and_qpm() {
    let sim = Sim::demo().unwrap();
    let t = old_token(&sim, DEMO);
    let user_get = format!("{}/topapi/v2/user/get?access_token={t}", sim.base_url());
    let body = json!({"userid": "lisi"}).to_string();
    sim.set_ip_ban(Some(403));
    let (s, html) = raw("POST", &user_get, Some(&body), &[]);
    assert_eq!(s, 403);
    assert!(html.starts_with("<!DOCTYPE html>") && serde_json::from_str::<Value>(&html).is_err());
    let (s, html) = raw(
        "POST",
        &format!("{}/v1.0/oauth2/accessToken", sim.base_url()),
        Some("{}"),
        &[],
    );
    assert_eq!(s, 403);
    assert!(html.contains("<html"));
    // The browser's login page is not an API call.
    assert_eq!(
        raw("GET", &format!("{}/", sim.base_url()), None, &[]).0,
        200
    );
    sim.set_ip_ban(Some(200));
    let (s, html) = raw("POST", &user_get, Some(&body), &[]);
    assert_eq!(s, 200);
    assert!(html.contains("<html"));
    sim.set_ip_ban(None);
    sim.inject(Fault::new("/topapi/v2/user/get", FaultKind::IpBanJson).times(1));
    let (s, txt) = raw("POST", &user_get, Some(&body), &[]);
    let v = json_of(&txt);
    assert_eq!(
        (s, v["status"].as_i64(), v["punish"].as_str()),
        (200, Some(1111), Some("deny"))
    );
    assert!(v.get("errcode").is_none());

    for code in [
        90001, 90002, 90003, 90004, 90005, 90006, 90007, 90008, 90017, 90018,
    ] {
        sim.inject(Fault::new("/topapi/v2/user/get", FaultKind::TempBan(code)).times(1));
        let v = oapi(&sim, "/topapi/v2/user/get", &t, &json!({"userid": "lisi"}));
        assert_eq!(v["errcode"], code, "{v}");
        assert!(!v["errmsg"].as_str().unwrap().is_empty());
    }
    let todo = format!(
        "{}/v1.0/todo/users/demoUnionLisi0000001iE/tasks",
        sim.base_url()
    );
    for (code, expect) in [
        (90018, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"),
        (90002, "Forbidden.AccessDenied.QpsLimitForApi"),
        (90001, "Forbidden.AccessDenied.90001"),
    ] {
        sim.inject(Fault::new("/v1.0/todo", FaultKind::TempBan(code)).times(1));
        let (s, v) = call_new("POST", &todo, &t, Some(&json!({"subject": "x"})));
        assert_eq!((s, v["code"].as_str()), (403, Some(expect)));
    }
    for status in [403, 429] {
        sim.inject(Fault::new("/v1.0/todo", FaultKind::QpmLimit(status)).times(1));
        let (s, v) = call_new("POST", &todo, &t, Some(&json!({"subject": "x"})));
        assert_eq!(
            (s, v["code"].as_str()),
            (
                status,
                Some("Forbidden.AccessDenied.QpmLimitForAppkeyAndApi")
            )
        );
    }
    sim.inject(Fault::new("/topapi/v2/user/get", FaultKind::QpmLimit(429)).times(1));
    assert_eq!(
        oapi(&sim, "/topapi/v2/user/get", &t, &json!({"userid": "lisi"}))["errcode"],
        90018
    );
}

#[test]
fn corp_token_endpoint_checks_the_corp() {
    let sim = two_corps();
    let c = sim.credentials(DEMO).unwrap();
    let url = |corp: &str| format!("{}/v1.0/oauth2/{corp}/token", sim.base_url());
    let body = json!({"client_id": c.app_key, "client_secret": c.app_secret, "grant_type": "client_credentials"});
    let (s, v) = post(&url(DEMO), &body);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["expires_in"], 7200);
    assert_eq!(v["access_token"], old_token(&sim, DEMO).as_str());
    let (s, v) = post(&url(OTHER), &body);
    assert_eq!((s, v["code"].as_str()), (401, Some("unauthorized.client")));
    assert!(v["requestid"].is_string());
    let mut bad = body.clone();
    bad["client_secret"] = json!("nope");
    let (s, v) = post(&url(DEMO), &bad);
    assert_eq!((s, v["code"].as_str()), (400, Some("invalid.client")));
    let mut bad = body.clone();
    bad["grant_type"] = json!("password");
    let (s, v) = post(&url(DEMO), &bad);
    assert_eq!(
        (s, v["code"].as_str()),
        (400, Some("unsupported.grant.type"))
    );
    let (s, v) = post(&url(DEMO), &json!({"client_id": c.app_key}));
    assert_eq!((s, v["code"].as_str()), (400, Some("missingParameter")));
    assert_eq!(
        sim.calls_to("/v1.0/oauth2/{corpId}/token")[0]
            .app_key
            .as_deref(),
        Some(c.app_key.as_str())
    );
}

#[test]
fn boss_and_sub_admin_levels() {
    let spec = OrgSpec {
        departments: 2,
        users: 6,
        sub_admins: 2,
        boss_is_main_admin: false,
        ..OrgSpec::default()
    };
    let sim = Sim::builder()
        .corp(CorpSpec::generated("dingboss", &spec))
        .start()
        .unwrap();
    let t = old_token(&sim, "dingboss");
    let level = |userid: &str| {
        let code = sim.mint_inapp_code("dingboss", userid);
        let v = oapi(
            &sim,
            "/topapi/v2/user/getuserinfo",
            &t,
            &json!({"code": code}),
        );
        (
            v["result"]["sys"].as_bool().unwrap(),
            v["result"]["sys_level"].as_i64().unwrap(),
        )
    };
    assert_eq!(level("user00001"), (false, 100), "the boss, not an admin");
    assert_eq!(level("user00002"), (true, 1));
    assert_eq!(level("user00003"), (true, 2));
    assert_eq!(level("user00004"), (true, 2));
    assert_eq!(level("user00005"), (false, 0));
    // Default: the boss is the main admin.
    let org = dingtalk_sim::Org::generate("x", &OrgSpec::sized(2, 6));
    assert_eq!(org.user("user00001").unwrap().sys_level(), 1);
    assert_eq!(org.user("user00002").unwrap().sys_level(), 2);
}
