//! To-do endpoints (待办, new API family, app token; docs/dingtalk-api.md §6). A task belongs to its creator
//! and every path names the owner's unionId: `/v1.0/todo/users/{unionId}/tasks…?operatorId=…`.

use super::error::ApiError;
use super::records::as_text;
use super::{encode, Client};
use serde_json::{json, Value};

/// A task to create (`POST …/tasks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask<'a> {
    /// The caller's stable id of the task (`sourceId`), for idempotency.
    pub source_id: &'a str,
    /// Title.
    pub subject: &'a str,
    /// Description, if any.
    pub description: Option<&'a str>,
    /// The creator's unionId (the owner).
    pub creator_unionid: &'a str,
    /// The executors' unionIds.
    pub executor_unionids: &'a [String],
    /// Link opened from the task, on mobile and PC (`detailUrl.appUrl`, `detailUrl.pcUrl`).
    pub detail_url: &'a str,
    /// Due, Unix ms (`dueTime`).
    pub due_ms: Option<u64>,
    /// Priority (`priority`): 10, 20, 30 or 40.
    pub priority: Option<u32>,
}

/// A new-API path with each segment percent-encoded (by the `url` crate).
fn api_path(segments: &[&str]) -> String {
    let mut u = match url::Url::parse("http://h/") {
        Ok(u) => u,
        Err(_) => return String::from("/"),
    };
    if let Ok(mut p) = u.path_segments_mut() {
        p.clear();
        p.extend(segments);
    }
    u.path().to_string()
}

/// `/v1.0/todo/users/{owner}/tasks/{rest…}?operatorId={owner}`.
fn tasks_path(owner_unionid: &str, rest: &[&str]) -> String {
    let mut segments = vec!["v1.0", "todo", "users", owner_unionid, "tasks"];
    segments.extend_from_slice(rest);
    format!(
        "{}?operatorId={}",
        api_path(&segments),
        encode(owner_unionid)
    )
}

/// The task `id` of an answer, else `ApiError::Parse("id")`.
fn task_id(v: &Value) -> Result<String, ApiError> {
    v.get("id").and_then(as_text).ok_or(ApiError::Parse("id"))
}

/// True when DingTalk refused a create because a task with that `sourceId` exists (`task exist`).
pub fn is_task_exists(e: &ApiError) -> bool {
    matches!(e, ApiError::New { message, .. } if message.to_ascii_lowercase().contains("task exist"))
}

/// True when another create with the same `sourceId` holds DingTalk's lock
/// (`400 todo.taskCreate.lockError`, docs/dingtalk-api.md §13.6): that create is in flight.
pub fn is_create_locked(e: &ApiError) -> bool {
    matches!(e, ApiError::New { code, .. } if code == "todo.taskCreate.lockError")
}

/// True when DingTalk says the task does not exist (`task not exist`; deleted there).
pub fn is_task_missing(e: &ApiError) -> bool {
    matches!(e, ApiError::New { message, .. } if message.to_ascii_lowercase().contains("task not exist"))
}

/// `POST /v1.0/todo/users/{creator}/tasks?operatorId={creator}`: creates the task, returns its
/// id. A duplicate `sourceId` fails with an error for which [`is_task_exists`] is true.
pub fn create_task(client: &mut Client<'_>, task: &NewTask<'_>) -> Result<String, ApiError> {
    let mut body = json!({
        "sourceId": task.source_id,
        "subject": task.subject,
        "creatorId": task.creator_unionid,
        "executorIds": task.executor_unionids,
        "detailUrl": {"appUrl": task.detail_url, "pcUrl": task.detail_url},
    });
    if let Some(d) = task.description {
        body["description"] = json!(d);
    }
    if let Some(due) = task.due_ms {
        body["dueTime"] = json!(due);
    }
    if let Some(p) = task.priority {
        body["priority"] = json!(p);
    }
    let path = tasks_path(task.creator_unionid, &[]);
    task_id(&client.api_call("POST", &path, Some(&body))?)
}

/// `GET /v1.0/todo/users/{owner}/tasks/sources/{sourceId}` (no `operatorId`): the id of the
/// owner's task with that `sourceId`.
pub fn task_by_source(
    client: &mut Client<'_>,
    owner_unionid: &str,
    source_id: &str,
) -> Result<String, ApiError> {
    let path = api_path(&[
        "v1.0",
        "todo",
        "users",
        owner_unionid,
        "tasks",
        "sources",
        source_id,
    ]);
    task_id(&client.api_call("GET", &path, None)?)
}

/// `PUT /v1.0/todo/users/{owner}/tasks/{taskId}?operatorId={owner}` with `{"done": true}`.
pub fn complete_task(
    client: &mut Client<'_>,
    owner_unionid: &str,
    task_id: &str,
) -> Result<(), ApiError> {
    let path = tasks_path(owner_unionid, &[task_id]);
    client
        .api_call("PUT", &path, Some(&json!({"done": true})))
        .map(drop)
}

/// `DELETE /v1.0/todo/users/{owner}/tasks/{taskId}?operatorId={owner}`.
pub fn delete_task(
    client: &mut Client<'_>,
    owner_unionid: &str,
    task_id: &str,
) -> Result<(), ApiError> {
    let path = tasks_path(owner_unionid, &[task_id]);
    client.api_call("DELETE", &path, None).map(drop)
}
