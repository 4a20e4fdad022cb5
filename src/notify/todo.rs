//! To-dos (待办, docs/dingtalk-api.md §6): create idempotently by `source_id`, complete, delete; userids are
//! mapped to unionIds (cached) because DingTalk keys to-dos by unionId.

use super::{check_source_id, check_userid, invalid, platform_url, TodoRef, TodoSpec};
use super::{MAX_DESCRIPTION_CHARS, MAX_EXECUTORS, MAX_SUBJECT_CHARS};
use crate::corps;
use crate::dingtalk::todo::{self as tasks, NewTask};
use crate::dingtalk::{contacts, ApiError, Client, Endpoints, Problem};
use crate::env::Env;
use crate::failure::Failure;
use crate::kv;
use crate::settings::Settings;
use serde::{Deserialize, Serialize};

const UNIONID_TTL_MS: u64 = 30 * 24 * 3600 * 1000;
const TODO_TTL_MS: u64 = 400 * 24 * 3600 * 1000;
const TODO_WRITE: &str = "Todo.Todo.Write";
const TODO_READ: &str = "Todo.Todo.Read";
#[derive(Serialize, Deserialize)]
struct TodoRecord {
    task_id: String,
    creator_unionid: String,
}
fn validate_todo(todo: &TodoSpec) -> Result<(), Failure> {
    check_source_id(&todo.source_id)?;
    let subject_chars = todo.subject.trim().chars().count();
    if subject_chars == 0 || subject_chars > MAX_SUBJECT_CHARS {
        return Err(invalid(
            "invalid_subject",
            format!(
                "subject must be 1 to {MAX_SUBJECT_CHARS} characters (it has {subject_chars})."
            ),
            format!("subject 须为 1 到 {MAX_SUBJECT_CHARS} 个字符（当前 {subject_chars} 个）。"),
        ));
    }
    if let Some(d) = &todo.description {
        let n = d.chars().count();
        if n > MAX_DESCRIPTION_CHARS {
            return Err(invalid(
                "invalid_description",
                format!(
                    "description must be at most {MAX_DESCRIPTION_CHARS} characters (it has {n})."
                ),
                format!("description 最多 {MAX_DESCRIPTION_CHARS} 个字符（当前 {n} 个）。"),
            ));
        }
    }
    check_userid("creator_userid", &todo.creator_userid)?;
    if todo.executor_userids.len() > MAX_EXECUTORS {
        return Err(invalid(
            "too_many_executors",
            format!(
                "A to-do can have at most {MAX_EXECUTORS} executors (got {}).",
                todo.executor_userids.len()
            ),
            format!(
                "一个待办最多 {MAX_EXECUTORS} 个执行人（当前 {} 个）。",
                todo.executor_userids.len()
            ),
        ));
    }
    for e in &todo.executor_userids {
        check_userid("executor_userids", e)?;
    }
    if let Some(p) = todo.priority {
        if ![10, 20, 30, 40].contains(&p) {
            return Err(invalid(
                "invalid_priority",
                "priority must be 10 (low), 20 (normal), 30 (high) or 40 (urgent).",
                "priority 只能是 10（低）、20（普通）、30（高）或 40（紧急）。",
            ));
        }
    }
    if todo.due_ms == Some(0) || todo.due_ms.is_some_and(|d| d > i64::MAX as u64) {
        return Err(invalid(
            "invalid_due",
            "due_ms must be a Unix time in milliseconds.",
            "due_ms 必须是以毫秒计的 Unix 时间。",
        ));
    }
    Ok(())
}
fn unionid_key(corp_id: &str, userid: &str) -> String {
    format!("unionid:{corp_id}:{userid}")
}

fn todo_key(corp_id: &str, source_id: &str) -> String {
    format!("todo:{corp_id}:{source_id}")
}

/// The unionId of `userid`: from the cache, else `topapi/v2/user/get` (then cached 30 days).
pub fn unionid_of(client: &mut Client<'_>, userid: &str) -> Result<String, Failure> {
    let key = unionid_key(&client.app().corp_id, userid);
    if let Some(u) = kv::get_live::<String>(client.env(), &key)? {
        return Ok(u);
    }
    let user = contacts::user_get(client, userid).map_err(|e| match e.problem() {
        Problem::NotFound | Problem::NotMember => {
            let shown: String = userid.chars().take(64).collect();
            Failure::new(
                404,
                "unknown_member",
                format!(
                    "The userid {shown:?} is not a member of the DingTalk organisation ({}).",
                    e.code_text()
                ),
                format!(
                    "userid {shown:?} 不是该钉钉组织的成员（{}）。",
                    e.code_text()
                ),
            )
        }
        _ => e.to_failure("qyapi_get_member"),
    })?;
    let unionid = user
        .unionid
        .ok_or_else(|| ApiError::Parse("result.unionid").to_failure("qyapi_get_member"))?;
    let expires = client.env().now_ms() + UNIONID_TTL_MS;
    kv::put_expiring(client.env(), &key, &unionid, expires)?;
    Ok(unionid)
}

fn todo_not_found(source_id: &str) -> Failure {
    Failure::new(
        404,
        "todo_not_found",
        format!("No to-do with source_id {source_id:?} was created through this plugin (or it was deleted)."),
        format!("没有通过本插件创建的 source_id 为 {source_id:?} 的待办（或已删除）。"),
    )
}

/// How often, and how long apart, a create that lost a race looks for the winner's task.
const RACE_LOOKUPS: u32 = 5;
const RACE_LOOKUP_GAP_MS: u64 = 300;

/// The task another create with the same `source_id` made; while that create is still in flight
/// the lookup finds nothing, so it is repeated a few times before answering 503 (retry).
fn task_of_racing_create(
    client: &mut Client<'_>,
    creator: &str,
    source_id: &str,
) -> Result<String, Failure> {
    for attempt in 0..RACE_LOOKUPS {
        if attempt > 0 {
            client.env().sleep_ms(RACE_LOOKUP_GAP_MS);
        }
        match tasks::task_by_source(client, creator, source_id) {
            Ok(id) => return Ok(id),
            Err(e) if tasks::is_task_missing(&e) || e.problem() == Problem::NotFound => {}
            Err(e) => return Err(e.to_failure(TODO_READ)),
        }
    }
    Err(Failure::new(
        503,
        "todo_create_in_progress",
        "Another request is creating this to-do (same source_id) right now. Try again in a moment; the retry returns the same to-do.",
        "另一个请求正在创建该待办（相同 source_id），请稍后重试；重试会返回同一个待办。",
    ))
}

/// Creates a to-do, idempotent by `source_id`.
pub fn create_todo(
    env: &mut dyn Env,
    settings: &Settings,
    todo: &TodoSpec,
) -> Result<TodoRef, Failure> {
    validate_todo(todo)?;
    let link = platform_url(settings, "detail_path", &todo.detail_path)?;
    let app = corps::resolve(env, settings, Some(&todo.corp_id))?;
    let key = todo_key(&app.corp_id, &todo.source_id);
    let done = |task_id: String, created: bool| TodoRef {
        task_id,
        source_id: todo.source_id.clone(),
        created,
    };
    if let Some(rec) = kv::get_live::<TodoRecord>(env, &key)? {
        return Ok(done(rec.task_id, false));
    }
    let endpoints = Endpoints::from_settings(settings);
    let mut client = Client::new(env, &endpoints, &app);
    let creator = unionid_of(&mut client, &todo.creator_userid)?;
    let mut executors: Vec<String> = Vec::new();
    for userid in &todo.executor_userids {
        let u = unionid_of(&mut client, userid)?;
        if !executors.contains(&u) {
            executors.push(u);
        }
    }
    let task = NewTask {
        source_id: &todo.source_id,
        subject: todo.subject.trim(),
        description: todo.description.as_deref().filter(|d| !d.trim().is_empty()),
        creator_unionid: &creator,
        executor_unionids: &executors,
        detail_url: &link,
        due_ms: todo.due_ms,
        priority: todo.priority,
    };
    let (task_id, created) = match tasks::create_task(&mut client, &task) {
        Ok(id) => (id, true),
        // Another create with this source id won (`task exist`) or is in flight (`lockError`):
        // the task is theirs, found by its source id.
        Err(e) if tasks::is_task_exists(&e) || tasks::is_create_locked(&e) => (
            task_of_racing_create(&mut client, &creator, &todo.source_id)?,
            false,
        ),
        Err(e) => return Err(e.to_failure(TODO_WRITE)),
    };
    let record = TodoRecord {
        task_id: task_id.clone(),
        creator_unionid: creator,
    };
    let expires = client.env().now_ms() + TODO_TTL_MS;
    kv::put_expiring(client.env(), &key, &record, expires)?;
    Ok(done(task_id, created))
}

/// What to do to a stored to-do in DingTalk.
#[derive(Clone, Copy)]
enum TodoAction {
    Complete,
    Delete,
}

/// Finds the stored to-do by `source_id` and applies `action` to its DingTalk task.
fn act_on_todo(
    env: &mut dyn Env,
    settings: &Settings,
    corp_id: &str,
    source_id: &str,
    action: TodoAction,
) -> Result<(), Failure> {
    check_source_id(source_id)?;
    let app = corps::resolve(env, settings, Some(corp_id))?;
    let key = todo_key(&app.corp_id, source_id);
    let rec = kv::get_live::<TodoRecord>(env, &key)?.ok_or_else(|| todo_not_found(source_id))?;
    let endpoints = Endpoints::from_settings(settings);
    let mut client = Client::new(env, &endpoints, &app);
    let result = match action {
        TodoAction::Complete => {
            tasks::complete_task(&mut client, &rec.creator_unionid, &rec.task_id)
        }
        TodoAction::Delete => tasks::delete_task(&mut client, &rec.creator_unionid, &rec.task_id),
    };
    match (result, action) {
        (Ok(_), TodoAction::Complete) => Ok(()),
        // One already gone in DingTalk counts as deleted.
        (Ok(_), TodoAction::Delete) => Ok(client.env().kv_delete(&key)?),
        (Err(e), TodoAction::Delete) if tasks::is_task_missing(&e) => {
            Ok(client.env().kv_delete(&key)?)
        }
        (Err(e), TodoAction::Complete) if tasks::is_task_missing(&e) => Err(Failure::new(
            404,
            "todo_gone",
            "The to-do no longer exists in DingTalk (it was deleted there).",
            "该待办在钉钉中已不存在（已被删除）。",
        )),
        (Err(e), _) => Err(e.to_failure(TODO_WRITE)),
    }
}

/// Marks a to-do done (`PUT …/tasks/{taskId}` with `{"done": true}`).
pub fn complete_todo(
    env: &mut dyn Env,
    settings: &Settings,
    corp_id: &str,
    source_id: &str,
) -> Result<(), Failure> {
    act_on_todo(env, settings, corp_id, source_id, TodoAction::Complete)
}

/// Deletes a to-do (`DELETE …/tasks/{taskId}`); one already gone in DingTalk counts as deleted.
pub fn delete_todo(
    env: &mut dyn Env,
    settings: &Settings,
    corp_id: &str,
    source_id: &str,
) -> Result<(), Failure> {
    act_on_todo(env, settings, corp_id, source_id, TodoAction::Delete)
}
