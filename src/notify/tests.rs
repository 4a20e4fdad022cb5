use super::*;
use crate::settings::tests::sample;
use crate::testing::{body_of, json_response, path_of, FakeEnv};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::rc::Rc;

#[derive(Default)]
struct Script {
    tasks: Vec<(String, String, String)>, // (owner unionid, source id, task id)
    bodies: Vec<Value>,
    quota_exhausted: bool,
    /// A create in flight elsewhere: (source id, task id, lookups before it appears).
    in_flight: Option<(String, String, u32)>,
}

/// The shared fake DingTalk with an organisation whose userid `u` has unionId `U-u` (`ghost` is
/// not a member), a work-notification endpoint and a to-do store.
fn dingtalk(env: &mut FakeEnv) -> Rc<RefCell<Script>> {
    let script = Rc::new(RefCell::new(Script::default()));
    env.route("/topapi/v2/user/get", |r| {
        let uid = body_of(r)["userid"].as_str().unwrap_or("").to_string();
        if uid == "ghost" {
            return json_response(200, r#"{"errcode":60121,"errmsg":"找不到该用户"}"#);
        }
        let result = json!({"userid": uid, "unionid": format!("U-{uid}")});
        json_response(200, &json!({"errcode": 0, "result": result}).to_string())
    });
    let s = script.clone();
    env.route("/topapi/message/corpconversation/asyncsend_v2", move |r| {
        let mut st = s.borrow_mut();
        st.bodies.push(body_of(r));
        if st.quota_exhausted {
            return json_response(200, r#"{"errcode":90020,"errmsg":"quota"}"#);
        }
        json_response(
            200,
            r#"{"errcode":0,"task_id":256271667526,"request_id":"r"}"#,
        )
    });
    let s = script.clone();
    env.route("/v1.0/todo/users/*", move |r| {
        let path = path_of(r);
        let mut st = s.borrow_mut();
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let owner = segs[3].to_string();
        match (r.method, segs.len()) {
            ("POST", 5) => {
                let b = body_of(r);
                st.bodies.push(b.clone());
                let sid = b["sourceId"].as_str().unwrap_or("").to_string();
                if st.in_flight.as_ref().is_some_and(|f| f.0 == sid) {
                    return json_response(400, r#"{"code":"todo.taskCreate.lockError","message":"创建待办根据sourceId加锁失败","requestid":"r"}"#);
                }
                if st.tasks.iter().any(|t| t.1 == sid) {
                    return json_response(400, r#"{"code":"todo.taskCreate.paramError","message":"task exist","requestid":"r"}"#);
                }
                let id = format!("task{}", st.tasks.len() + 1);
                st.tasks.push((owner, sid, id.clone()));
                json_response(200, &json!({"id": id}).to_string())
            }
            ("GET", 7) if st.in_flight.as_ref().is_some_and(|f| f.0 == segs[6]) => {
                let (sid, id, left) = st.in_flight.take().unwrap_or_default();
                if left == 0 {
                    st.tasks.push((owner, sid, id));
                } else {
                    st.in_flight = Some((sid, id, left - 1));
                }
                json_response(400, r#"{"code":"todo.taskQuery.paramError","message":"task not exist"}"#)
            }
            ("GET", 7) => match st.tasks.iter().find(|t| t.0 == owner && t.1 == segs[6]) {
                Some(t) => json_response(200, &json!({"id": t.2, "sourceId": t.1}).to_string()),
                None => json_response(400, r#"{"code":"todo.taskQuery.paramError","message":"task not exist"}"#),
            },
            ("PUT", 6) | ("DELETE", 6) => {
                st.bodies.push(body_of(r));
                match st.tasks.iter().position(|t| t.0 == owner && t.2 == segs[5]) {
                    Some(i) => {
                        if r.method == "DELETE" {
                            st.tasks.remove(i);
                        }
                        json_response(200, r#"{"result":true}"#)
                    }
                    None => json_response(400, r#"{"code":"todo.taskUpdate.paramError","message":"task not exist"}"#),
                }
            }
            _ => json_response(404, r#"{"code":"NotFound","message":"no route"}"#),
        }
    });
    script
}

fn spec(source_id: &str) -> TodoSpec {
    TodoSpec {
        corp_id: String::new(),
        source_id: source_id.into(),
        subject: "审批：请假申请".into(),
        description: Some("张三的请假".into()),
        creator_userid: "boss".into(),
        executor_userids: vec!["alice".into(), "bob".into()],
        due_ms: Some(1_700_100_000_000),
        detail_path: "/forms/approve/1?x=1".into(),
        priority: Some(20),
    }
}

#[test]
fn create_is_idempotent_and_unionids_are_cached() {
    let s = sample();
    let mut env = FakeEnv::new();
    let script = dingtalk(&mut env);
    let r = create_todo(&mut env, &s, &spec("form-1:task.7")).unwrap();
    assert_eq!(
        r,
        TodoRef {
            task_id: "task1".into(),
            source_id: "form-1:task.7".into(),
            created: true
        }
    );
    assert_eq!(env.calls_to("/topapi/v2/user/get"), 3);
    let body = script.borrow().bodies[0].clone();
    assert_eq!(body["creatorId"], "U-boss");
    assert_eq!(body["executorIds"], json!(["U-alice", "U-bob"]));
    assert_eq!(
        body["detailUrl"]["appUrl"],
        "https://forms.example.com/forms/approve/1?x=1"
    );
    assert_eq!(body["priority"], 20);
    assert_eq!(body["dueTime"], 1_700_100_000_000u64);
    let post = env
        .requests
        .iter()
        .find(|r| r.method == "POST" && r.url.contains("/todo/"))
        .unwrap();
    assert!(
        post.url
            .ends_with("/v1.0/todo/users/U-boss/tasks?operatorId=U-boss"),
        "{}",
        post.url
    );

    // Same source id: no DingTalk call at all.
    let before = env.requests.len();
    let again = create_todo(&mut env, &s, &spec("form-1:task.7")).unwrap();
    assert_eq!((again.task_id.as_str(), again.created), ("task1", false));
    assert_eq!(env.requests.len(), before);

    // Another to-do for the same people: no user/get.
    let other = create_todo(&mut env, &s, &spec("form-2")).unwrap();
    assert!(other.created);
    assert_eq!(env.calls_to("/topapi/v2/user/get"), 3);
}

#[test]
fn task_exist_is_looked_up_by_source_id() {
    let s = sample();
    let mut env = FakeEnv::new();
    let script = dingtalk(&mut env);
    script
        .borrow_mut()
        .tasks
        .push(("U-boss".into(), "lost-1".into(), "taskX".into()));
    let r = create_todo(&mut env, &s, &spec("lost-1")).unwrap();
    assert_eq!((r.task_id.as_str(), r.created), ("taskX", false));
    assert!(env
        .paths()
        .contains(&"/v1.0/todo/users/U-boss/tasks/sources/lost-1".to_string()));
    // Now recorded: complete and delete work on it.
    complete_todo(&mut env, &s, "", "lost-1").unwrap();
    assert_eq!(
        script.borrow().bodies.last().unwrap(),
        &json!({"done": true})
    );
    delete_todo(&mut env, &s, "", "lost-1").unwrap();
    assert!(script.borrow().tasks.is_empty());
    assert_eq!(
        delete_todo(&mut env, &s, "", "lost-1").unwrap_err().status,
        404
    );
    assert_eq!(
        complete_todo(&mut env, &s, "", "lost-1").unwrap_err().code,
        "todo_not_found"
    );
}

#[test]
fn a_create_racing_on_the_source_id_returns_the_winners_task() {
    let s = sample();
    let mut env = FakeEnv::new();
    let script = dingtalk(&mut env);
    // The winner's task appears after the loser's second lookup.
    script.borrow_mut().in_flight = Some(("race-1".into(), "taskW".into(), 1));
    let r = create_todo(&mut env, &s, &spec("race-1")).unwrap();
    assert_eq!((r.task_id.as_str(), r.created), ("taskW", false));
    let lookups = env
        .paths()
        .iter()
        .filter(|p| p.ends_with("/tasks/sources/race-1"))
        .count();
    assert_eq!(lookups, 3);
    // Still in flight after every lookup: a clear, retryable 503, nothing recorded.
    script.borrow_mut().in_flight = Some(("race-2".into(), "taskV".into(), 99));
    let f = create_todo(&mut env, &s, &spec("race-2")).unwrap_err();
    assert_eq!(
        (f.status, f.code.as_str()),
        (503, "todo_create_in_progress")
    );
    script.borrow_mut().in_flight = None;
    script
        .borrow_mut()
        .tasks
        .push(("U-boss".into(), "race-2".into(), "taskV".into()));
    let r = create_todo(&mut env, &s, &spec("race-2")).unwrap();
    assert_eq!((r.task_id.as_str(), r.created), ("taskV", false));
}

#[test]
fn deleted_in_dingtalk() {
    let s = sample();
    let mut env = FakeEnv::new();
    let script = dingtalk(&mut env);
    create_todo(&mut env, &s, &spec("t1")).unwrap();
    script.borrow_mut().tasks.clear();
    assert_eq!(
        complete_todo(&mut env, &s, "", "t1").unwrap_err().code,
        "todo_gone"
    );
    delete_todo(&mut env, &s, "", "t1").unwrap();
    assert!(!env.kv.keys().any(|k| k.starts_with("todo:")));
}

#[test]
fn validation_errors_are_400_without_calls() {
    let s = sample();
    let mut env = FakeEnv::new();
    dingtalk(&mut env);
    let cases: Vec<(TodoSpec, &str)> = vec![
        (
            TodoSpec {
                source_id: String::new(),
                ..spec("x")
            },
            "invalid_source_id",
        ),
        (
            TodoSpec {
                source_id: "a/b".into(),
                ..spec("x")
            },
            "invalid_source_id",
        ),
        (
            TodoSpec {
                source_id: "a".repeat(129),
                ..spec("x")
            },
            "invalid_source_id",
        ),
        (
            TodoSpec {
                subject: "  ".into(),
                ..spec("x")
            },
            "invalid_subject",
        ),
        (
            TodoSpec {
                subject: "字".repeat(1025),
                ..spec("x")
            },
            "invalid_subject",
        ),
        (
            TodoSpec {
                description: Some("d".repeat(4097)),
                ..spec("x")
            },
            "invalid_description",
        ),
        (
            TodoSpec {
                executor_userids: (0..101).map(|i| format!("u{i}")).collect(),
                ..spec("x")
            },
            "too_many_executors",
        ),
        (
            TodoSpec {
                executor_userids: vec!["a,b".into()],
                ..spec("x")
            },
            "invalid_userid",
        ),
        (
            TodoSpec {
                creator_userid: String::new(),
                ..spec("x")
            },
            "invalid_userid",
        ),
        (
            TodoSpec {
                priority: Some(25),
                ..spec("x")
            },
            "invalid_priority",
        ),
        (
            TodoSpec {
                due_ms: Some(0),
                ..spec("x")
            },
            "invalid_due",
        ),
        (
            TodoSpec {
                detail_path: "https://evil.example.com/x".into(),
                ..spec("x")
            },
            "invalid_link",
        ),
        (
            TodoSpec {
                detail_path: "//evil.example.com/x".into(),
                ..spec("x")
            },
            "invalid_link",
        ),
        (
            TodoSpec {
                detail_path: "javascript:alert(1)".into(),
                ..spec("x")
            },
            "invalid_link",
        ),
        (
            TodoSpec {
                detail_path: "forms/1".into(),
                ..spec("x")
            },
            "invalid_link",
        ),
    ];
    for (todo, code) in cases {
        let f = create_todo(&mut env, &s, &todo).unwrap_err();
        assert_eq!((f.status, f.code.as_str()), (400, code), "{todo:?}");
    }
    assert!(env.requests.is_empty());
    let ok = TodoSpec {
        detail_path: "https://forms.example.com/a/b".into(),
        priority: Some(40),
        ..spec("ok")
    };
    assert!(create_todo(&mut env, &s, &ok).unwrap().created);
}

#[test]
fn unknown_member_is_404() {
    let s = sample();
    let mut env = FakeEnv::new();
    dingtalk(&mut env);
    let f = create_todo(
        &mut env,
        &s,
        &TodoSpec {
            executor_userids: vec!["ghost".into()],
            ..spec("g")
        },
    )
    .unwrap_err();
    assert_eq!((f.status, f.code.as_str()), (404, "unknown_member"));
    assert!(!env.kv.keys().any(|k| k.starts_with("todo:")));
}

#[test]
fn work_notifications() {
    let s = sample();
    let mut env = FakeEnv::new();
    let script = dingtalk(&mut env);
    let users = vec!["alice".to_string(), "bob".to_string(), "alice".to_string()];
    let card = MessageBody::ActionCard {
        title: "待审批".into(),
        markdown: "**请假**".into(),
        button_title: "查看".into(),
        url: "/forms/1".into(),
    };
    assert_eq!(
        send_message(&mut env, &s, "", &users, &card).unwrap(),
        256_271_667_526
    );
    let body = script.borrow().bodies[0].clone();
    assert_eq!(body["agent_id"], 1_000_001);
    assert_eq!(body["userid_list"], "alice,bob");
    assert_eq!(
        body["msg"],
        json!({"msgtype":"action_card","action_card":{"title":"待审批","markdown":"**请假**","single_title":"查看","single_url":"https://forms.example.com/forms/1"}})
    );
    let text = MessageBody::Text {
        content: "hi".into(),
    };
    send_message(&mut env, &s, "", &users[..1], &text).unwrap();
    assert_eq!(
        script.borrow().bodies[1]["msg"],
        json!({"msgtype":"text","text":{"content":"hi"}})
    );
    let md = MessageBody::Markdown {
        title: "t".into(),
        text: "# x".into(),
    };
    send_message(&mut env, &s, "", &users[..1], &md).unwrap();
    assert_eq!(script.borrow().bodies[2]["msg"]["markdown"]["title"], "t");

    let calls = env.requests.len();
    let too_many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    for (ids, body, code) in [
        (vec![], text.clone(), "invalid_recipients"),
        (too_many, text.clone(), "invalid_recipients"),
        (vec!["a b".to_string()], text.clone(), "invalid_userid"),
        (
            vec!["a".to_string()],
            MessageBody::Text {
                content: "x".repeat(3000),
            },
            "message_too_large",
        ),
        (
            vec!["a".to_string()],
            MessageBody::Text {
                content: " ".into(),
            },
            "invalid_message",
        ),
        (
            vec!["a".to_string()],
            MessageBody::ActionCard {
                title: "t".into(),
                markdown: "m".into(),
                button_title: "b".into(),
                url: "http://other/x".into(),
            },
            "invalid_link",
        ),
    ] {
        let f = send_message(&mut env, &s, "", &ids, &body).unwrap_err();
        assert_eq!((f.status, f.code.as_str()), (400, code));
    }
    assert_eq!(env.requests.len(), calls);

    script.borrow_mut().quota_exhausted = true;
    let f = send_message(&mut env, &s, "", &users, &text).unwrap_err();
    assert_eq!(f.code, "dingtalk_monthly_quota");
}

#[test]
fn other_corps_are_refused_in_self_use() {
    let s = sample();
    let mut env = FakeEnv::new();
    dingtalk(&mut env);
    let f = create_todo(
        &mut env,
        &s,
        &TodoSpec {
            corp_id: "dingother".into(),
            ..spec("x")
        },
    )
    .unwrap_err();
    assert_eq!(f.status, 403);
    let f = send_message(
        &mut env,
        &s,
        "dingother",
        &["a".to_string()],
        &MessageBody::Text {
            content: "x".into(),
        },
    )
    .unwrap_err();
    assert_eq!(f.status, 403);
}
