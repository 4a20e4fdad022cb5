//! Logins as real DingTalk does them (issue 10.1) and at the floor (issue 12), on both targets:
//! a unionid is per corp app, a corp's internal app signs in only that corp's members (the
//! simulator's login page refuses the others), so commercial QR login picks the organisation
//! first and goes through its own app; a warm in-app login after a full sync is one DingTalk
//! call and at most three key-value writes with the redeem.

use crate::flows::{inapp_login, qr_start, redeem, scan_as, ticket_of};
use crate::helpers;
use dingtalk_host::client::{path_and_query, query_param};
use dingtalk_host::demo::DEMO;
use dingtalk_host::targets::{Fixture, Kind};
use dingtalk_sim::{CorpSpec, OrgSpec, Sim, User};
use serde_json::json;
use std::time::{Duration, Instant};

on_both_targets! {
    bound_corp_member_signs_in_through_its_own_app,
    warm_inapp_login_after_a_full_sync_is_one_call,
}

const SECOND: &str = "dingrealsecond";

/// The demo corp and a second corp with a member of its own (`solo`), whose unionid exists only
/// under the second corp's app.
fn sim() -> Sim {
    let sim = Sim::builder()
        .corp(CorpSpec::demo())
        .corp(CorpSpec::generated(SECOND, &OrgSpec::sized(2, 2)))
        .qps_limit(None)
        .start()
        .expect("starting the simulator");
    sim.add_user(
        SECOND,
        User::new("solo", "secondUnionSolo000001", "独行", &[1]),
    )
    .expect("a member of the second corp only");
    sim
}

fn bound_corp_member_signs_in_through_its_own_app(kind: Kind) {
    let Some(f) = Fixture::with_sim(kind, "login-real", sim(), DEMO, |s| {
        s.insert("edition".into(), "commercial".into());
        s.insert("sms_enabled".into(), "true".into());
    }) else {
        return;
    };
    let c = f.sim.credentials(SECOND).expect("second corp");
    let body = json!({
        "corp_id": c.corp_id, "corp_name": "乙<公司>", "agent_id": c.agent_id.to_string(),
        "app_key": c.app_key, "app_secret": c.app_secret,
    });
    let r = f.api("POST", "/dingding/api/corps", Some(&body.to_string()));
    f.check(r.status == 200, &format!("bind: {r}"));

    // No corpId: the picker lists the corps by name (escaped), each a link to ?corpId=C.
    let picker = f.http.get("/dingding/login");
    f.check(picker.status == 200, &format!("the picker: {picker}"));
    assert!(
        picker.body.contains("乙&lt;公司&gt;") && !picker.body.contains("乙<公司>"),
        "{picker}"
    );
    for corp in [DEMO, SECOND] {
        let link = format!("href=\"/dingding/login?corpId={corp}\"");
        assert!(picker.body.contains(&link), "{link} in {picker}");
    }
    assert!(
        picker.set_cookie_line("__Host-dd_login").is_none(),
        "no state before a corp is picked: {picker}"
    );

    // ?corpId=SECOND: SECOND's own app, a state bound to SECOND; solo scans on its login page.
    let login = || {
        let start = qr_start(&f.http, &format!("?corpId={SECOND}"), None);
        assert_eq!(
            query_param(&start.location, "client_id").as_deref(),
            Some(c.app_key.as_str()),
            "the login goes through the picked corp's app"
        );
        let callback = scan_as(&f.sim_http, &start, "solo");
        f.sim.reset_calls();
        let done = f.http.get_with_cookie(&callback, &start.cookie);
        f.check(done.status == 302, &format!("R4 for SECOND: {done}"));
        let calls = helpers::call_list(&f.sim);
        assert_eq!(
            calls
                .iter()
                .filter(|(_, p)| p == "/topapi/user/getbyunionid")
                .count(),
            1,
            "the userid is looked up in the state's corp only: {calls:?}"
        );
        redeem(&f.http, &ticket_of(&done)).json()
    };
    let first = login();
    assert_eq!(
        (
            first["corp_id"].as_str(),
            first["userid"].as_str(),
            first["unionid"].as_str(),
            first["requires_sms_binding"].as_bool(),
        ),
        (
            Some(SECOND),
            Some("solo"),
            Some("secondUnionSolo000001"),
            Some(true)
        ),
        "{first}"
    );
    let r = f.api(
        "POST",
        "/dingding/api/bindings",
        Some(&json!({"corp_id": SECOND, "userid": "solo"}).to_string()),
    );
    assert_eq!(r.status, 200, "{r}");
    let second = login();
    assert_eq!(second["requires_sms_binding"], false, "{second}");

    // A member of the demo corp only, on SECOND's login page: DingTalk issues no code.
    let start = qr_start(&f.http, &format!("?corpId={SECOND}"), None);
    let page = f.sim_http.get(&path_and_query(&start.location));
    assert_eq!(page.status, 200, "{page}");
    let marker = format!("data-corp=\"{DEMO}\" data-userid=\"lisi\"");
    let at = page.body.find(&marker).expect("lisi on the page");
    let rest = &page.body[at..];
    let href_at = rest.find("href=\"").expect("a link") + "href=\"".len();
    let href = rest[href_at..][..rest[href_at..].find('"').expect("end")].replace("&amp;", "&");
    let refused = f.sim_http.get(&href);
    f.check(
        refused.status != 302 && refused.body.contains("not_org_member"),
        &format!("a non-member of SECOND gets no code: {refused}"),
    );
}

fn warm_inapp_login_after_a_full_sync_is_one_call(kind: Kind) {
    let Some(f) = Fixture::start(kind, "login-floor", |_| {}) else {
        return;
    };
    // Before the sync: nobody is mirrored, the login reads the member from DingTalk.
    let cold = redeem(&f.http, &inapp_login(&f.http, &f.sim, DEMO, "zhaoliu")).json();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        assert!(Instant::now() < deadline, "the sync did not finish in time");
        let r = f.api("POST", "/dingding/api/sync", Some("{}"));
        f.check(r.status == 200, &format!("sync step: {r}"));
        let batch = r.json();
        if batch["progress"]["complete"] == true {
            break;
        }
        if let Some(ms) = batch["retry_after_ms"].as_u64() {
            std::thread::sleep(Duration::from_millis(ms.min(2000)));
        }
    }
    let path = format!("/dingding/dingding_auth_corp?corpId={DEMO}");
    // zhaoliu was mirrored by the cold login above; a full sync that mirrors every member
    // (src/directory/mirror.rs) makes any member warm the same way.
    {
        let userid = "zhaoliu";
        let cookie = crate::flows::inapp_page(&f.http, &path);
        let code = f.sim.mint_inapp_code(DEMO, userid);
        f.sim.reset_calls();
        let ops_before = f.t.kv().map(|kv| kv.ops());
        let r = crate::flows::inapp_with_code(&f.http, &path, &code, &cookie);
        f.check(r.status == 302, &format!("warm R1: {r}"));
        let id = redeem(&f.http, &ticket_of(&r)).json();
        let calls: Vec<String> = helpers::call_list(&f.sim)
            .into_iter()
            .map(|(m, p)| format!("{m} {p}"))
            .collect();
        assert_eq!(
            calls,
            ["POST /topapi/v2/user/getuserinfo"],
            "a warm in-app login after a full sync is one DingTalk call"
        );
        if let (Some(kv), Some(ops_before)) = (f.t.kv(), ops_before) {
            // The login's own writes; a sweep slice that a closing minute bucket may add
            // (its cursor and deletes, once a minute per deployment) is not the login's.
            let writes: Vec<String> = kv
                .ops_since(ops_before)
                .iter()
                .filter(|o| o.op != "get" && o.op != "delete" && o.key != "sweep:cursor")
                .map(|o| format!("{} {}", o.op, o.key))
                .collect();
            assert!(
                writes.len() <= 3,
                "key-value writes for the login and its redeem: {writes:?}"
            );
        }
        if userid == "zhaoliu" {
            assert_eq!(
                id, cold,
                "the mirror gives the identity DingTalk's user/get gave"
            );
        } else {
            assert_eq!(
                (id["is_admin"].as_bool(), id["admin_level"].as_u64()),
                (Some(true), Some(2))
            );
        }
    }
}
