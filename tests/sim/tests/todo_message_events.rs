//! To-dos, work notifications and encrypted event delivery.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use dingtalk_sim::{EventCrypto, EventOptions, Sim};
use serde_json::{json, Value};

const LISI: &str = "demoUnionLisi0000001iE";
const WANGWU: &str = "demoUnionWangwu00001iE";

#[test]
fn todo_lifecycle_and_errors() {
    let sim = Sim::demo().unwrap();
    let t = old_token(&sim, DEMO);
    let base = sim.base_url();
    let create_url = format!("{base}/v1.0/todo/users/{LISI}/tasks?operatorId={LISI}");
    let body = json!({
        "sourceId": "form-42",
        "subject": "审批：请假申请",
        "creatorId": LISI,
        "executorIds": [WANGWU],
        "detailUrl": {"appUrl": "https://forms.example.com/t/42", "pcUrl": "https://forms.example.com/t/42"},
        "priority": 20,
        "dueTime": 1_900_000_000_000i64,
    });
    let (s, v) = call_new("POST", &create_url, &t, Some(&body));
    assert_eq!(s, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["sourceId"], "form-42");
    assert_eq!(v["done"], false);
    assert_eq!(v["executorIds"], json!([WANGWU]));
    assert_eq!(v["detailUrl"]["pcUrl"], "https://forms.example.com/t/42");
    // Duplicate sourceId.
    let (s, v) = call_new("POST", &create_url, &t, Some(&body));
    assert_eq!(
        (s, v["code"].as_str(), v["message"].as_str()),
        (400, Some("todo.taskCreate.paramError"), Some("task exist"))
    );
    // Validation.
    let (s, v) = call_new("POST", &create_url, &t, Some(&json!({"sourceId": "x"})));
    assert_eq!((s, v["code"].as_str()), (400, Some("missingParameter")));
    let (s, v) = call_new(
        "POST",
        &create_url,
        &t,
        Some(&json!({"subject": "x".repeat(1025)})),
    );
    assert_eq!(
        (s, v["message"].as_str()),
        (400, Some("subject is oversize"))
    );
    let (s, v) = call_new(
        "POST",
        &create_url,
        &t,
        Some(&json!({"subject": "x", "executorIds": ["lisi"]})),
    );
    assert_eq!(
        (s, v["code"].as_str()),
        (400, Some("todo.taskCreate.paramError")),
        "a userid is not a unionId"
    );
    let (s, _) = call_new(
        "POST",
        &format!("{base}/v1.0/todo/users/lisi/tasks"),
        &t,
        Some(&json!({"subject": "x"})),
    );
    assert_eq!(s, 400, "path takes a unionId");

    // Get by source and by id.
    let (s, v) = get_new(
        &format!("{base}/v1.0/todo/users/{LISI}/tasks/sources/form-42"),
        &t,
    );
    assert_eq!((s, v["id"].as_str()), (200, Some(id.as_str())));
    let (s, v) = get_new(&format!("{base}/v1.0/todo/users/{LISI}/tasks/{id}"), &t);
    assert_eq!((s, v["subject"].as_str()), (200, Some("审批：请假申请")));
    // List query.
    let (s, v) = call_new(
        "POST",
        &format!("{base}/v1.0/todo/users/{WANGWU}/org/tasks/query"),
        &t,
        Some(&json!({"nextToken": "0", "isDone": false, "roleTypes": [["executor"]]})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["todoCards"].as_array().unwrap().len(), 1);
    assert_eq!(v["todoCards"][0]["taskId"], id.as_str());
    assert!(v["nextToken"].is_null());

    // Complete.
    let (s, v) = call_new(
        "PUT",
        &format!("{base}/v1.0/todo/users/{LISI}/tasks/{id}?operatorId={LISI}"),
        &t,
        Some(&json!({"done": true})),
    );
    assert_eq!((s, v.clone()), (200, json!({"result": true})));
    assert!(sim.todo_by_source(DEMO, "form-42").unwrap().done);
    let (s, v) = call_new(
        "PUT",
        &format!("{base}/v1.0/todo/users/{LISI}/tasks/{id}/executorStatus"),
        &t,
        Some(&json!({"executorStatusList": [{"id": WANGWU, "isDone": true}]})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        sim.todo_by_source(DEMO, "form-42").unwrap().executor_done,
        vec![(WANGWU.to_string(), true)]
    );
    let (s, v) = call_new(
        "PUT",
        &format!("{base}/v1.0/todo/users/{LISI}/tasks/nope"),
        &t,
        Some(&json!({"done": true})),
    );
    assert_eq!(
        (s, v["code"].as_str(), v["message"].as_str()),
        (
            400,
            Some("todo.taskUpdate.paramError"),
            Some("task not exist")
        )
    );

    // Delete.
    let (s, v) = call_new(
        "DELETE",
        &format!("{base}/v1.0/todo/users/{LISI}/tasks/{id}"),
        &t,
        None,
    );
    assert_eq!((s, v["result"].as_bool()), (200, Some(true)));
    let (s, v) = call_new(
        "DELETE",
        &format!("{base}/v1.0/todo/users/{LISI}/tasks/{id}"),
        &t,
        None,
    );
    assert_eq!(
        (s, v["code"].as_str()),
        (400, Some("todo.taskDelete.paramError"))
    );
    assert!(sim.todo_by_source(DEMO, "form-42").is_none());
    let all = sim.todos(DEMO);
    assert_eq!(all.len(), 1);
    assert!(all[0].deleted);
    assert_eq!(all[0].operator_id.as_deref(), Some(LISI));
    // The sourceId can be reused after deletion.
    let (s, _) = call_new("POST", &create_url, &t, Some(&body));
    assert_eq!(s, 200);

    // Permissions.
    sim.revoke(DEMO, dingtalk_sim::perms::TODO_WRITE).unwrap();
    let (s, v) = call_new("POST", &create_url, &t, Some(&json!({"subject": "x"})));
    assert_eq!(
        (s, v["code"].as_str()),
        (
            403,
            Some("Forbidden.AccessDenied.AccessTokenPermissionDenied")
        )
    );
    assert!(v["message"].as_str().unwrap().contains("Todo.Todo.Write"));
}

#[test]
fn work_notifications_are_validated_and_recorded() {
    let sim = Sim::demo().unwrap();
    let t = old_token(&sim, DEMO);
    let path = "/topapi/message/corpconversation/asyncsend_v2";
    let v = oapi(
        &sim,
        path,
        &t,
        &json!({"agent_id": 1000001, "userid_list": "lisi,wangwu", "msg": {"msgtype": "markdown", "markdown": {"title": "t", "text": "**x**"}}}),
    );
    assert_eq!(v["errcode"], 0, "{v}");
    let task_id = v["task_id"].as_i64().unwrap();
    let msgs = sim.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].task_id, task_id);
    assert_eq!(msgs[0].userids, ["lisi", "wangwu"]);
    assert_eq!(msgs[0].msgtype, "markdown");
    let v = oapi(
        &sim,
        "/topapi/message/corpconversation/getsendresult",
        &t,
        &json!({"agent_id": 1000001, "task_id": task_id}),
    );
    assert_eq!(
        v["send_result"]["unread_user_id_list"],
        json!(["lisi", "wangwu"])
    );

    let text = json!({"msgtype": "text", "text": {"content": "hi"}});
    let v = oapi(
        &sim,
        path,
        &t,
        &json!({"agent_id": "1000001", "userid_list": "lisi", "msg": text}),
    );
    assert_eq!(v["errcode"], 0, "agent_id as a string is fine");
    let v = oapi(
        &sim,
        path,
        &t,
        &json!({"agent_id": 999, "userid_list": "lisi", "msg": text}),
    );
    assert_eq!(v["errcode"], 400002);
    let many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    let v = oapi(
        &sim,
        path,
        &t,
        &json!({"agent_id": 1000001, "userid_list": many.join(","), "msg": text}),
    );
    assert_eq!(v["errcode"], 40035);
    let v = oapi(
        &sim,
        path,
        &t,
        &json!({"agent_id": 1000001, "userid_list": "lisi", "msg": {"msgtype": "video", "video": {}}}),
    );
    assert_eq!(v["errcode"], 40035);
    let v = oapi(&sim, path, &t, &json!({"agent_id": 1000001, "msg": text}));
    assert_eq!(v["errcode"], 40035, "no recipients");
    let v = oapi(
        &sim,
        path,
        &t,
        &json!({"agent_id": 1000001, "userid_list": "lisi", "msg": {"msgtype": "text", "text": {}}}),
    );
    assert_eq!(v["errcode"], 40035);
    let v = oapi(
        &sim,
        path,
        &t,
        &json!({"agent_id": 1000001, "to_all_user": true, "msg": {"msgtype": "action_card", "action_card": {"title": "a", "markdown": "b", "single_title": "c", "single_url": "https://x"}}}),
    );
    assert_eq!(v["errcode"], 0);
    assert_eq!(sim.messages().len(), 3);
}

/// A minimal receiver: verifies, decrypts, records, answers `success` (or something else).
fn receiver(crypto: EventCrypto, answer: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/dingding/events",
        server.server_addr().to_ip().unwrap().port()
    );
    let got = Arc::new(Mutex::new(Vec::new()));
    let got2 = got.clone();
    std::thread::spawn(move || {
        for mut rq in server.incoming_requests() {
            let q: Vec<(String, String)> = url::Url::parse(&format!("http://x{}", rq.url()))
                .unwrap()
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let p = |k: &str| q.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
            let mut body = String::new();
            let _ = rq.as_reader().read_to_string(&mut body);
            let enc = serde_json::from_str::<Value>(&body).unwrap()["encrypt"]
                .as_str()
                .unwrap()
                .to_string();
            let sig = p("msg_signature")
                .or_else(|| p("signature"))
                .unwrap_or_default();
            let res = crypto.verify_and_decrypt(
                &sig,
                &p("timestamp").unwrap(),
                &p("nonce").unwrap(),
                &enc,
            );
            let reply = match res {
                Ok(d) => {
                    got2.lock().unwrap().push(d.msg);
                    crypto
                        .reply(answer, "1700000000000", "nonce123")
                        .to_string()
                }
                Err(e) => {
                    got2.lock().unwrap().push(format!("ERR {e}"));
                    "{}".to_string()
                }
            };
            let _ = rq.respond(tiny_http::Response::from_string(reply));
        }
    });
    (url, got)
}

#[test]
fn events_are_encrypted_signed_and_the_answer_checked() {
    let sim = Sim::demo().unwrap();
    let crypto = sim.event_crypto(DEMO).unwrap();
    assert_eq!(crypto.owner_key(), "dingdemoappkey");
    let (url, got) = receiver(crypto.clone(), "success");

    let e = sim.remove_user(DEMO, "wangwu").unwrap();
    let d = sim.send_event(&url, DEMO, &e.payload());
    assert!(d.success, "{d:?}");
    assert_eq!(d.status, 200);
    assert_eq!(d.reply_plaintext.as_deref(), Some("success"));
    assert_eq!(d.reply_owner_key.as_deref(), Some("dingdemoappkey"));
    let received = got.lock().unwrap().clone();
    let p: Value = serde_json::from_str(&received[0]).unwrap();
    assert_eq!(p["EventType"], "user_leave_org");
    assert_eq!(p["UserId"], json!(["wangwu"]));

    // `signature=` spelling and a fixed timestamp/nonce.
    let opts = EventOptions {
        use_signature_param: true,
        timestamp: Some("1614767836".into()),
        nonce: Some("A7Co0cJLMzIDtMMI".into()),
        ..EventOptions::default()
    };
    let d = sim.send_event_with(
        &url,
        DEMO,
        &dingtalk_sim::Event::check_url().payload(),
        &opts,
    );
    assert!(d.success, "{d:?}");
    assert_eq!(got.lock().unwrap()[1], r#"{"EventType":"check_url"}"#);

    // A wrong signature is refused by the receiver, so no success.
    let opts = EventOptions {
        bad_signature: true,
        ..EventOptions::default()
    };
    let d = sim.send_event_with(&url, DEMO, "{}", &opts);
    assert!(!d.success);
    assert!(got.lock().unwrap()[2].starts_with("ERR"));
    // The corpId as owner key (register_call_back style) is detected by a strict receiver.
    let opts = EventOptions {
        owner_key: Some(DEMO.into()),
        ..EventOptions::default()
    };
    let d = sim.send_event_with(&url, DEMO, "{}", &opts);
    assert!(!d.success);

    // A receiver that answers something else.
    let (bad_url, _) = receiver(crypto, "fail");
    let d = sim.send_event(&bad_url, DEMO, "{}");
    assert!(!d.success);
    assert_eq!(d.reply_plaintext.as_deref(), Some("fail"));
    // Nobody listening.
    let d = sim.send_event("http://127.0.0.1:1/x", DEMO, "{}");
    assert_eq!((d.status, d.success), (0, false));
}
