//! Contacts APIs: pagination, fields, permissions, scope, and a 10,000-member full listing.

mod common;

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use common::*;
use dingtalk_sim::{perms, CorpSpec, OrgSpec, Sim, User};
use serde_json::json;

#[test]
fn full_listing_of_10k_members_in_100_pages_is_fast_and_complete() {
    let spec = OrgSpec {
        departments: 520,
        users: 10_000,
        max_depth: 4,
        seed: 7,
        ..OrgSpec::default()
    };
    let t0 = Instant::now();
    let corp = CorpSpec::generated("dingbig", &spec);
    let generated = t0.elapsed();
    let sim = Sim::builder().corp(corp).qps_limit(None).start().unwrap();
    let token = old_token(&sim, "dingbig");
    let t1 = Instant::now();
    // BFS over departments, then page each one.
    let mut queue = VecDeque::from([1i64]);
    let mut depts = Vec::new();
    while let Some(d) = queue.pop_front() {
        depts.push(d);
        let v = oapi(
            &sim,
            "/topapi/v2/department/listsub",
            &token,
            &json!({"dept_id": d}),
        );
        assert_eq!(v["errcode"], 0, "{v}");
        for c in v["result"].as_array().unwrap() {
            assert_eq!(c["parent_id"], d);
            queue.push_back(c["dept_id"].as_i64().unwrap());
        }
    }
    assert_eq!(depts.len(), 520);
    let mut seen = HashSet::new();
    let mut rows = 0;
    for d in &depts {
        let mut cursor = 0;
        loop {
            let v = oapi(
                &sim,
                "/topapi/v2/user/list",
                &token,
                &json!({"dept_id": d, "cursor": cursor, "size": 100}),
            );
            assert_eq!(v["errcode"], 0, "{v}");
            let r = &v["result"];
            for u in r["list"].as_array().unwrap() {
                assert!(u["dept_id_list"].as_array().unwrap().contains(&json!(d)));
                seen.insert(u["userid"].as_str().unwrap().to_string());
                rows += 1;
            }
            if r["has_more"] == true {
                cursor = r["next_cursor"].as_i64().unwrap();
            } else {
                assert!(r.get("next_cursor").is_none());
                break;
            }
        }
    }
    let listed = t1.elapsed();
    assert_eq!(seen.len(), 10_000);
    assert!(
        rows > 10_000,
        "members of several departments appear in each"
    );
    let bound = if cfg!(debug_assertions) { 3.0 } else { 1.0 };
    assert!(
        generated.as_secs_f64() < bound,
        "generation took {generated:?}"
    );
    assert!(listed.as_secs_f64() < 20.0, "listing took {listed:?}");
    assert_eq!(sim.count("/topapi/v2/department/listsub"), 520);
    eprintln!(
        "generated in {generated:?}, listed in {listed:?} with {} calls",
        sim.calls().len()
    );
}

#[test]
fn pagination_rules_and_bad_parameters() {
    let spec = OrgSpec {
        departments: 1,
        users: 250,
        ..OrgSpec::default()
    };
    let sim = Sim::builder()
        .corp(CorpSpec::generated("dingpage", &spec))
        .qps_limit(None)
        .start()
        .unwrap();
    let t = old_token(&sim, "dingpage");
    let page = |cursor: i64, size: i64| {
        oapi(
            &sim,
            "/topapi/v2/user/list",
            &t,
            &json!({"dept_id": 1, "cursor": cursor, "size": size}),
        )
    };
    let v = page(0, 100);
    assert_eq!(v["result"]["list"].as_array().unwrap().len(), 100);
    assert_eq!(v["result"]["has_more"], true);
    assert_eq!(v["result"]["next_cursor"], 100);
    let v = page(200, 100);
    assert_eq!(v["result"]["list"].as_array().unwrap().len(), 50);
    assert_eq!(v["result"]["has_more"], false);
    let v = page(1000, 10);
    assert_eq!(v["result"]["list"].as_array().unwrap().len(), 0);
    assert_eq!(page(0, 101)["errcode"], 40035);
    assert_eq!(page(0, 0)["errcode"], 40035);
    assert_eq!(page(-1, 10)["errcode"], 40035);
    // Strings are accepted for numbers, as the real API does.
    let v = oapi(
        &sim,
        "/topapi/v2/user/list",
        &t,
        &json!({"dept_id": "1", "cursor": "0", "size": "5"}),
    );
    assert_eq!(v["result"]["list"].as_array().unwrap().len(), 5);
    // Missing required fields / wrong types.
    for body in [
        json!({"dept_id": 1, "size": 10}),
        json!({"dept_id": 1, "cursor": 0}),
        json!({"cursor": 0, "size": 10}),
        json!({"dept_id": [1], "cursor": 0, "size": 10}),
        json!({"dept_id": 1, "cursor": 0, "size": 10, "order_field": "random"}),
    ] {
        assert_eq!(
            oapi(&sim, "/topapi/v2/user/list", &t, &body)["errcode"],
            40035,
            "{body}"
        );
    }
    let v = oapi(
        &sim,
        "/topapi/v2/user/list",
        &t,
        &json!({"dept_id": 999_999, "cursor": 0, "size": 10}),
    );
    assert_eq!(v["errcode"], 60003);
    // listsimple uses its own codes.
    let v = oapi(
        &sim,
        "/topapi/user/listsimple",
        &t,
        &json!({"dept_id": 1, "cursor": 0, "size": 101}),
    );
    assert_eq!(v["errcode"], 40069);
    let v = oapi(
        &sim,
        "/topapi/user/listsimple",
        &t,
        &json!({"dept_id": 1, "cursor": -5, "size": 10}),
    );
    assert_eq!(v["errcode"], 40068);
    let v = oapi(
        &sim,
        "/topapi/user/listsimple",
        &t,
        &json!({"dept_id": 1, "cursor": 0, "size": 3}),
    );
    let first = &v["result"]["list"][0];
    assert_eq!(
        first.as_object().unwrap().len(),
        2,
        "userid and name only: {first}"
    );
    // Entry order.
    let v = oapi(
        &sim,
        "/topapi/v2/user/list",
        &t,
        &json!({"dept_id": 1, "cursor": 0, "size": 100, "order_field": "entry_asc"}),
    );
    let dates: Vec<i64> = v["result"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["hired_date"].as_i64().unwrap())
        .collect();
    assert!(dates.windows(2).all(|w| w[0] <= w[1]));
    // listid: all at once.
    let v = oapi(&sim, "/topapi/user/listid", &t, &json!({"dept_id": 1}));
    assert_eq!(v["result"]["userid_list"].as_array().unwrap().len(), 250);
}

#[test]
fn departments_and_user_detail_fields() {
    let sim = Sim::demo().unwrap();
    let t = old_token(&sim, DEMO);
    let v = oapi(
        &sim,
        "/topapi/v2/department/listsub",
        &t,
        &json!({"dept_id": 1}),
    );
    let names: Vec<&str> = v["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["研发部", "市场部"]);
    let v = oapi(&sim, "/topapi/v2/department/listsub", &t, &json!({}));
    assert_eq!(
        v["result"].as_array().unwrap().len(),
        2,
        "dept_id defaults to the root"
    );
    let v = oapi(
        &sim,
        "/topapi/v2/department/listsubid",
        &t,
        &json!({"dept_id": 1}),
    );
    assert_eq!(v["result"]["dept_id_list"], json!([2, 3]));
    let v = oapi(
        &sim,
        "/topapi/v2/department/get",
        &t,
        &json!({"dept_id": 2}),
    );
    assert_eq!(v["result"]["name"], "研发部");
    assert_eq!(v["result"]["parent_id"], 1);
    assert_eq!(v["result"]["dept_manager_userid_list"], json!(["lisi"]));
    assert_eq!(
        oapi(
            &sim,
            "/topapi/v2/department/get",
            &t,
            &json!({"dept_id": 77})
        )["errcode"],
        60003
    );

    let v = oapi(
        &sim,
        "/topapi/v2/user/get",
        &t,
        &json!({"userid": "zhaoliu"}),
    );
    let r = &v["result"];
    assert_eq!(r["dept_id_list"], json!([3, 2]));
    assert_eq!(
        r["leader_in_dept"],
        json!([{"dept_id": 3, "leader": true}, {"dept_id": 2, "leader": false}])
    );
    assert_eq!(r["mobile"], "13800000004");
    assert_eq!(r["email"], "zhaoliu@demo.example.com");
    assert_eq!(r["admin"], false);
    assert!(r["role_list"].is_array());
    let v = oapi(
        &sim,
        "/topapi/v2/user/get",
        &t,
        &json!({"userid": "wangwu"}),
    );
    assert_eq!(v["result"]["manager_userid"], "lisi");
    let v = oapi(
        &sim,
        "/topapi/v2/user/get",
        &t,
        &json!({"userid": "qianqi"}),
    );
    assert!(
        v["result"].get("mobile").is_none(),
        "member without a mobile"
    );
    let v = oapi(&sim, "/topapi/v2/user/get", &t, &json!({"userid": "sunba"}));
    assert_eq!(v["result"]["active"], false);
    assert!(v["result"].get("email").is_none());
    let v = oapi(
        &sim,
        "/topapi/v2/user/get",
        &t,
        &json!({"userid": "zhangsan"}),
    );
    assert_eq!(
        (
            v["result"]["boss"].as_bool(),
            v["result"]["admin"].as_bool()
        ),
        (Some(true), Some(true))
    );
    assert_eq!(
        oapi(&sim, "/topapi/v2/user/get", &t, &json!({"userid": "ghost"}))["errcode"],
        60121
    );

    // Field permissions.
    sim.revoke(DEMO, perms::FIELD_MOBILE).unwrap();
    sim.revoke(DEMO, perms::FIELD_EMAIL).unwrap();
    let v = oapi(
        &sim,
        "/topapi/v2/user/get",
        &t,
        &json!({"userid": "zhaoliu"}),
    );
    assert!(v["result"].get("mobile").is_none() && v["result"].get("state_code").is_none());
    assert!(v["result"].get("email").is_none());
    let v = oapi(
        &sim,
        "/topapi/v2/user/list",
        &t,
        &json!({"dept_id": 2, "cursor": 0, "size": 10}),
    );
    assert!(v["result"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u.get("mobile").is_none()));
}

#[test]
fn permission_and_scope_errors() {
    let sim = Sim::demo().unwrap();
    let t = old_token(&sim, DEMO);
    sim.revoke(DEMO, perms::QYAPI_GET_MEMBER).unwrap();
    let v = oapi(&sim, "/topapi/v2/user/get", &t, &json!({"userid": "lisi"}));
    assert_eq!(v["errcode"], 60011);
    assert!(v["errmsg"].as_str().unwrap().contains("qyapi_get_member"));
    assert!(v["request_id"].is_string());
    sim.set_permission_errors_as_88(true);
    let v = oapi(&sim, "/topapi/v2/user/get", &t, &json!({"userid": "lisi"}));
    assert_eq!(
        (v["errcode"].as_i64(), v["sub_code"].as_str()),
        (Some(88), Some("60011"))
    );
    assert!(v["sub_msg"].is_string());
    sim.set_permissions(DEMO, perms::ALL).unwrap();
    assert_eq!(
        oapi(&sim, "/topapi/v2/user/get", &t, &json!({"userid": "lisi"}))["errcode"],
        0
    );

    sim.set_contact_scope(DEMO, Some(vec![3])).unwrap();
    let v = oapi(
        &sim,
        "/topapi/v2/user/list",
        &t,
        &json!({"dept_id": 2, "cursor": 0, "size": 10}),
    );
    assert_eq!(v["errcode"], 50004);
    let v = oapi(
        &sim,
        "/topapi/v2/user/list",
        &t,
        &json!({"dept_id": 3, "cursor": 0, "size": 10}),
    );
    assert_eq!(v["errcode"], 0);
    assert_eq!(
        oapi(
            &sim,
            "/topapi/v2/user/get",
            &t,
            &json!({"userid": "wangwu"})
        )["errcode"],
        50004
    );
}

#[test]
fn mutations_are_visible_and_return_events() {
    let sim = Sim::demo().unwrap();
    let t = old_token(&sim, DEMO);
    let (d, e) = sim.add_department(DEMO, "前端组", 2).unwrap();
    assert_eq!(e.event_type, "org_dept_create");
    let p: serde_json::Value = serde_json::from_str(&e.payload()).unwrap();
    assert_eq!(p["DeptId"], json!([d]));
    assert_eq!(p["CorpId"], DEMO);
    let e = sim
        .add_user(
            DEMO,
            User::new("newbie", "unionNewbie01", "新人", &[d]).with_mobile("13900000000"),
        )
        .unwrap();
    assert_eq!(e.event_type, "user_add_org");
    let v = oapi(
        &sim,
        "/topapi/v2/user/list",
        &t,
        &json!({"dept_id": d, "cursor": 0, "size": 10}),
    );
    assert_eq!(v["result"]["list"][0]["userid"], "newbie");
    let e = sim.move_user(DEMO, "newbie", d, 3).unwrap();
    assert_eq!(e.event_type, "user_modify_org");
    assert_eq!(e.diff.as_ref().unwrap()["curr"]["deptIdList"], json!([3]));
    let e = sim
        .modify_user(DEMO, "newbie", |u| u.name = "新名字".into())
        .unwrap();
    assert_eq!(e.diff.as_ref().unwrap()["prev"]["name"], "新人");
    let e = sim.remove_user(DEMO, "newbie").unwrap();
    assert_eq!(e.event_type, "user_leave_org");
    assert_eq!(
        oapi(
            &sim,
            "/topapi/v2/user/get",
            &t,
            &json!({"userid": "newbie"})
        )["errcode"],
        60121
    );
    let v = oapi(
        &sim,
        "/topapi/user/getbyunionid",
        &t,
        &json!({"unionid": "unionNewbie01"}),
    );
    assert_eq!(v["errcode"], 60121);
    let e = sim.rehire_user(DEMO, "newbie", &[2]).unwrap();
    assert_eq!(e.event_type, "user_add_org");
    let v = oapi(
        &sim,
        "/topapi/user/getbyunionid",
        &t,
        &json!({"unionid": "unionNewbie01"}),
    );
    assert_eq!(v["result"]["userid"], "newbie");
    let e = sim.remove_department(DEMO, d).unwrap();
    assert_eq!(e.event_type, "org_dept_remove");
    assert!(sim.remove_department(DEMO, 2).is_err(), "not empty");
    assert!(sim
        .add_user("nope", User::new("a", "b", "c", &[1]))
        .is_err());
    let e = sim.set_admin(DEMO, "wangwu", 2).unwrap();
    assert_eq!(e.event_type, "org_admin_add");
    sim.set_event_shape(dingtalk_sim::EventShape::Current);
    let e = sim.remove_user(DEMO, "wangwu").unwrap();
    let p: serde_json::Value = serde_json::from_str(&e.payload()).unwrap();
    assert_eq!(p["userId"], json!(["wangwu"]));
    assert!(p["eventId"].is_string() && p["timeStamp"].is_string());
}
