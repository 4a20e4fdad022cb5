//! Behaviours of real DingTalk that a kind simulator hides (docs/dingtalk-api.md §13), on both
//! targets: racing to-do creates on one `sourceId` (`todo.taskCreate.lockError`), temporary
//! bans (90001, 90003–90008, 90017), the HTML IP-ban page and the per-minute limit.

use crate::helpers::race;
use dingtalk_host::demo::DEMO;
use dingtalk_host::targets::{Fixture, Kind};
use dingtalk_sim::{Fault, FaultKind};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

on_both_targets! {
    concurrent_todo_creates_make_one_todo,
    bans_and_limits_answer_clearly_and_pass,
}

fn todo_spec(source_id: &str) -> String {
    todo_by(source_id, "zhangsan")
}

fn todo_by(source_id: &str, creator: &str) -> String {
    json!({
        "source_id": source_id,
        "subject": "审批：采购申请",
        "creator_userid": creator,
        "executor_userids": ["wangwu"],
        "detail_path": "/forms/1/tasks/1",
    })
    .to_string()
}

fn concurrent_todo_creates_make_one_todo(kind: Kind) {
    let Some(f) = Fixture::start(kind, "todo-race", |_| {}) else {
        return;
    };
    // Warm the userid → unionId cache so the five creates reach DingTalk together.
    let warm = f.api("POST", "/dingding/api/todos", Some(&todo_spec("warm-up")));
    f.check(warm.status == 200, &format!("warm-up create: {warm}"));
    // A create holds DingTalk's per-sourceId lock this long; the others get lockError meanwhile.
    f.sim.set_todo_create_in_flight(Duration::from_millis(400));
    let answers = race(5, |_| {
        f.api(
            "POST",
            "/dingding/api/todos",
            Some(&todo_spec("form-9:race")),
        )
    });
    for a in &answers {
        f.check(a.status == 200, &format!("a racing create: {a}"));
    }
    let task_ids: BTreeSet<String> = answers
        .iter()
        .map(|a| a.json()["task_id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(task_ids.len(), 1, "one task for all: {task_ids:?}");
    let created = answers
        .iter()
        .filter(|a| a.json()["created"] == true)
        .count();
    assert_eq!(created, 1, "exactly one create made the task");
    let in_sim = f
        .sim
        .todos(DEMO)
        .into_iter()
        .filter(|t| t.source_id.as_deref() == Some("form-9:race") && !t.deleted)
        .count();
    assert_eq!(in_sim, 1, "DingTalk holds one to-do for the source id");
    assert!(
        f.sim
            .calls_to("/v1.0/todo/users/{unionId}/tasks")
            .iter()
            .any(|c| c.code.as_deref() == Some("todo.taskCreate.lockError")),
        "the race really met DingTalk's lock"
    );
}

fn bans_and_limits_answer_clearly_and_pass(kind: Kind) {
    let Some(f) = Fixture::start(kind, "bans", |_| {}) else {
        return;
    };
    let create = |source: &str, creator: &str| {
        f.api(
            "POST",
            "/dingding/api/todos",
            Some(&todo_by(source, creator)),
        )
    };
    // Each user/get case names a creator not looked up yet (userid → unionId is cached).
    let cases = [
        (
            "/topapi/v2/user/get",
            "qianqi",
            FaultKind::TempBan(90004),
            "dingtalk_temporarily_banned",
        ),
        (
            "/topapi/v2/user/get",
            "sunba",
            FaultKind::TempBan(90017),
            "dingtalk_temporarily_banned",
        ),
        (
            "/topapi/v2/user/get",
            "zhaoliu",
            FaultKind::IpBanPage(403),
            "dingtalk_ip_banned",
        ),
        (
            "/v1.0/todo/users/{unionId}/tasks",
            "zhangsan",
            FaultKind::IpBanPage(200),
            "dingtalk_ip_banned",
        ),
        (
            "/v1.0/todo/users/{unionId}/tasks",
            "zhangsan",
            FaultKind::QpmLimit(403),
            "dingtalk_minute_limit",
        ),
    ];
    for (i, (api, creator, kind, code)) in cases.into_iter().enumerate() {
        let source = format!("ban-{i}");
        f.sim.inject(Fault::new(api, kind.clone()).times(1));
        let r = create(&source, creator);
        f.check(
            r.status == 503 && r.error_code() == code,
            &format!("{api} {kind:?}: expected 503 {code}, got {r}"),
        );
        // The ban was one answer: the same create now goes through, once.
        let r = create(&source, creator);
        f.check(r.status == 200, &format!("after {kind:?}: {r}"));
    }
}
