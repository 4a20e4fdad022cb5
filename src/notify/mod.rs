//! To-dos (待办, docs §6) and work notifications (工作通知, docs §7).
//!
//! To-dos live in the new API family and are keyed by **unionId**: the plugin maps each userid
//! with `topapi/v2/user/get` and caches the answer in `unionid:{corp}:{userid}` (30 days). A to-do
//! is owned by its creator (`/v1.0/todo/users/{creatorUnionId}/tasks?operatorId=…`), and is
//! idempotent by the platform's `source_id`: `todo:{corp}:{source_id}` → `{task_id,
//! creator_unionid}` (kept 400 days). Creating an existing one returns it with `created: false`;
//! when DingTalk says `task exist` (another instance won the race, or the store lost the record),
//! the task is looked up with `GET …/tasks/sources/{sourceId}` and recorded.
//!
//! Links (`detail_path`, an action card's `url`) always point back into the platform: a path
//! starting with `/` is appended to `site_url`; an absolute URL is accepted only on the same
//! origin as `site_url`.

use crate::corps;
use crate::dingtalk::records::valid_userid;
use crate::dingtalk::todo::{self, NewTask};
use crate::dingtalk::{contacts, message, ApiError, Client, Endpoints, Problem};
use crate::env::Env;
use crate::failure::Failure;
use crate::kv;
use crate::settings::Settings;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Longest subject, in characters (docs §6.1).
pub const MAX_SUBJECT_CHARS: usize = 1024;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 4096;
/// Most executors per to-do (DingTalk advises at most 100).
pub const MAX_EXECUTORS: usize = 100;
/// Longest `source_id`.
pub const MAX_SOURCE_ID_LEN: usize = 128;
/// Most recipients of one work notification.
pub const MAX_RECIPIENTS: usize = 100;
/// Largest `msg` object of a work notification, in bytes of JSON.
pub const MAX_MESSAGE_BYTES: usize = 2048;
/// Longest link DingTalk accepts in `detailUrl`.
const MAX_URL_BYTES: usize = 1024;
const UNIONID_TTL_MS: u64 = 30 * 24 * 3600 * 1000;
const TODO_TTL_MS: u64 = 400 * 24 * 3600 * 1000;
const TODO_WRITE: &str = "Todo.Todo.Write";
const TODO_READ: &str = "Todo.Todo.Read";

/// A to-do to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TodoSpec {
    /// Organisation (empty: configured corp).
    #[serde(default)]
    pub corp_id: String,
    /// The platform's stable id of the task: 1..=128 of `A-Z a-z 0-9 - _ . :`.
    pub source_id: String,
    /// Title, 1..=1024 characters.
    pub subject: String,
    /// Description, at most 4096 characters.
    #[serde(default)]
    pub description: Option<String>,
    /// Creator's userid (owner of the to-do in DingTalk).
    pub creator_userid: String,
    /// Executors' userids, at most 100.
    #[serde(default)]
    pub executor_userids: Vec<String>,
    /// Due, Unix ms.
    #[serde(default)]
    pub due_ms: Option<u64>,
    /// Platform path (`/forms/1`) or same-origin URL that opens the task.
    pub detail_path: String,
    /// Priority: 10 low, 20 normal, 30 high, 40 urgent.
    #[serde(default)]
    pub priority: Option<u32>,
}

/// A created to-do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TodoRef {
    /// DingTalk task id.
    pub task_id: String,
    /// Platform's id.
    pub source_id: String,
    /// Created by this call (false: it already existed).
    pub created: bool,
}

/// A work-notification body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MessageBody {
    /// Plain text.
    Text {
        /// Text.
        content: String,
    },
    /// Markdown.
    Markdown {
        /// Title.
        title: String,
        /// Markdown text.
        text: String,
    },
    /// Action card with one button.
    ActionCard {
        /// Title.
        title: String,
        /// Markdown.
        markdown: String,
        /// Button label.
        button_title: String,
        /// Platform path or same-origin URL.
        url: String,
    },
}

#[derive(Serialize, Deserialize)]
struct TodoRecord {
    task_id: String,
    creator_unionid: String,
}

fn invalid(code: &str, en: impl Into<String>, zh: impl Into<String>) -> Failure {
    Failure::bad_request(code, en, zh)
}

fn valid_source_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SOURCE_ID_LEN
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

fn check_source_id(source_id: &str) -> Result<(), Failure> {
    if valid_source_id(source_id) {
        Ok(())
    } else {
        Err(invalid(
            "invalid_source_id",
            "source_id must be 1 to 128 characters of letters, digits, '-', '_', '.' or ':'.",
            "source_id 须为 1 到 128 个字符，只能包含字母、数字、'-'、'_'、'.'、':'。",
        ))
    }
}

fn check_userid(field: &str, userid: &str) -> Result<(), Failure> {
    if valid_userid(userid) && !userid.contains(',') {
        Ok(())
    } else {
        let shown: String = userid.chars().take(64).collect();
        Err(invalid(
            "invalid_userid",
            format!("{field} contains an invalid userid {shown:?}: use the member's DingTalk userid (no spaces or commas)."),
            format!("{field} 中的 userid {shown:?} 无效：请使用成员的钉钉 userid（不能含空格或逗号）。"),
        ))
    }
}

/// A link back into the platform: `site_url` + a path starting with `/`, or an absolute URL on
/// the same origin as `site_url`; anything else is a 400.
pub fn platform_url(settings: &Settings, field: &str, link: &str) -> Result<String, Failure> {
    let link = link.trim();
    let bad = || {
        invalid(
            "invalid_link",
            format!("{field} must be a platform path starting with / or a URL on {} (at most {MAX_URL_BYTES} bytes).", settings.site_url),
            format!("{field} 必须是以 / 开头的平台路径，或 {} 上的地址（最多 {MAX_URL_BYTES} 字节）。", settings.site_url),
        )
    };
    if link.chars().any(|c| c.is_control() || c == '\\') {
        return Err(bad());
    }
    let url = if link.starts_with('/') && !link.starts_with("//") {
        settings.site_path(link)
    } else {
        let parsed = url::Url::parse(link).map_err(|_| bad())?;
        let site = url::Url::parse(&settings.site_url).map_err(|_| bad())?;
        if parsed.origin() != site.origin()
            || !parsed.username().is_empty()
            || parsed.password().is_some()
        {
            return Err(bad());
        }
        parsed.to_string()
    };
    if url.len() > MAX_URL_BYTES {
        return Err(bad());
    }
    Ok(url)
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
    let (task_id, created) = match todo::create_task(&mut client, &task) {
        Ok(id) => (id, true),
        Err(e) if todo::is_task_exists(&e) => {
            let id = todo::task_by_source(&mut client, &creator, &todo.source_id)
                .map_err(|e| e.to_failure(TODO_READ))?;
            (id, false)
        }
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

fn stored_todo(
    env: &mut dyn Env,
    settings: &Settings,
    corp_id: &str,
    source_id: &str,
) -> Result<(crate::settings::CorpApp, TodoRecord), Failure> {
    check_source_id(source_id)?;
    let app = corps::resolve(env, settings, Some(corp_id))?;
    let rec = kv::get_live::<TodoRecord>(env, &todo_key(&app.corp_id, source_id))?
        .ok_or_else(|| todo_not_found(source_id))?;
    Ok((app, rec))
}

/// Marks a to-do done (`PUT …/tasks/{taskId}` with `{"done": true}`).
pub fn complete_todo(
    env: &mut dyn Env,
    settings: &Settings,
    corp_id: &str,
    source_id: &str,
) -> Result<(), Failure> {
    let (app, rec) = stored_todo(env, settings, corp_id, source_id)?;
    let endpoints = Endpoints::from_settings(settings);
    let mut client = Client::new(env, &endpoints, &app);
    match todo::complete_task(&mut client, &rec.creator_unionid, &rec.task_id) {
        Ok(_) => Ok(()),
        Err(e) if todo::is_task_missing(&e) => Err(Failure::new(
            404,
            "todo_gone",
            "The to-do no longer exists in DingTalk (it was deleted there).",
            "该待办在钉钉中已不存在（已被删除）。",
        )),
        Err(e) => Err(e.to_failure(TODO_WRITE)),
    }
}

/// Deletes a to-do (`DELETE …/tasks/{taskId}`); one already gone in DingTalk counts as deleted.
pub fn delete_todo(
    env: &mut dyn Env,
    settings: &Settings,
    corp_id: &str,
    source_id: &str,
) -> Result<(), Failure> {
    let (app, rec) = stored_todo(env, settings, corp_id, source_id)?;
    let endpoints = Endpoints::from_settings(settings);
    let mut client = Client::new(env, &endpoints, &app);
    match todo::delete_task(&mut client, &rec.creator_unionid, &rec.task_id) {
        Ok(_) => {}
        Err(e) if todo::is_task_missing(&e) => {}
        Err(e) => return Err(e.to_failure(TODO_WRITE)),
    }
    client.env().kv_delete(&todo_key(&app.corp_id, source_id))?;
    Ok(())
}

fn non_empty(field: &str, value: &str) -> Result<(), Failure> {
    if value.trim().is_empty() {
        Err(invalid(
            "invalid_message",
            format!("{field} must not be empty."),
            format!("{field} 不能为空。"),
        ))
    } else {
        Ok(())
    }
}

/// The `msg` object of `asyncsend_v2` for `body` (docs §7), validated.
fn message_json(settings: &Settings, body: &MessageBody) -> Result<Value, Failure> {
    let msg = match body {
        MessageBody::Text { content } => {
            non_empty("content", content)?;
            json!({"msgtype": "text", "text": {"content": content}})
        }
        MessageBody::Markdown { title, text } => {
            non_empty("title", title)?;
            non_empty("text", text)?;
            json!({"msgtype": "markdown", "markdown": {"title": title, "text": text}})
        }
        MessageBody::ActionCard {
            title,
            markdown,
            button_title,
            url,
        } => {
            non_empty("title", title)?;
            non_empty("markdown", markdown)?;
            non_empty("button_title", button_title)?;
            let link = platform_url(settings, "url", url)?;
            json!({"msgtype": "action_card", "action_card": {
                "title": title, "markdown": markdown, "single_title": button_title, "single_url": link,
            }})
        }
    };
    let size = serde_json::to_vec(&msg)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_MESSAGE_BYTES {
        return Err(invalid(
            "message_too_large",
            format!("The message is {size} bytes as JSON; DingTalk accepts at most {MAX_MESSAGE_BYTES}. Shorten it."),
            format!("消息的 JSON 为 {size} 字节，钉钉最多接受 {MAX_MESSAGE_BYTES} 字节，请缩短。"),
        ));
    }
    Ok(msg)
}

/// Sends a work notification to 1..=100 members; returns DingTalk's task id.
pub fn send_message(
    env: &mut dyn Env,
    settings: &Settings,
    corp_id: &str,
    userids: &[String],
    body: &MessageBody,
) -> Result<u64, Failure> {
    let mut recipients: Vec<&str> = Vec::new();
    for u in userids {
        check_userid("userids", u)?;
        if !recipients.contains(&u.as_str()) {
            recipients.push(u);
        }
    }
    if recipients.is_empty() || recipients.len() > MAX_RECIPIENTS {
        return Err(invalid(
            "invalid_recipients",
            format!(
                "Send to 1 to {MAX_RECIPIENTS} userids per message (got {}).",
                recipients.len()
            ),
            format!(
                "每条消息的接收人须为 1 到 {MAX_RECIPIENTS} 个 userid（当前 {} 个）。",
                recipients.len()
            ),
        ));
    }
    let msg = message_json(settings, body)?;
    let app = corps::resolve(env, settings, Some(corp_id))?;
    let agent_id: u64 = app.agent_id.trim().parse().map_err(|_| {
        Failure::new(
            503,
            "invalid_agent_id",
            "The app's AgentId is not a number; copy it again from the DingTalk developer console (set-up step 4).",
            "应用的 AgentId 不是数字，请从钉钉开发者后台重新复制（步骤 4）。",
        )
    })?;
    let endpoints = Endpoints::from_settings(settings);
    let mut client = Client::new(env, &endpoints, &app);
    message::send_work_notice(&mut client, agent_id, &recipients, &msg)
        .map_err(|e| e.to_failure("qyapi_base"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::HttpRequest;
    use crate::settings::tests::sample;
    use crate::testing::{json_response, FakeEnv};
    use std::cell::RefCell;
    use std::rc::Rc;

    #[derive(Default)]
    struct Script {
        tasks: Vec<(String, String, String)>, // (owner unionid, source id, task id)
        bodies: Vec<Value>,
        quota_exhausted: bool,
    }

    fn body_of(r: &HttpRequest) -> Value {
        serde_json::from_slice(&r.body).unwrap_or(Value::Null)
    }

    fn dingtalk(env: &mut FakeEnv) -> Rc<RefCell<Script>> {
        let script = Rc::new(RefCell::new(Script::default()));
        let s = script.clone();
        env.respond(move |r| {
            let path = r.redacted_url().split(".com").nth(1).unwrap_or("").to_string();
            let mut st = s.borrow_mut();
            if path == "/v1.0/oauth2/accessToken" {
                return Ok(json_response(200, r#"{"accessToken":"tok","expireIn":7200}"#));
            }
            if path == "/topapi/v2/user/get" {
                let uid = body_of(r)["userid"].as_str().unwrap_or("").to_string();
                if uid == "ghost" {
                    return Ok(json_response(200, r#"{"errcode":60121,"errmsg":"找不到该用户"}"#));
                }
                return Ok(json_response(200, &json!({"errcode":0,"result":{"userid":uid,"unionid":format!("U-{uid}")}}).to_string()));
            }
            if path == "/topapi/message/corpconversation/asyncsend_v2" {
                st.bodies.push(body_of(r));
                if st.quota_exhausted {
                    return Ok(json_response(200, r#"{"errcode":90020,"errmsg":"quota"}"#));
                }
                return Ok(json_response(200, r#"{"errcode":0,"task_id":256271667526,"request_id":"r"}"#));
            }
            let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            if segs.len() >= 5 && segs[1] == "todo" {
                let owner = segs[3].to_string();
                match (r.method, segs.len()) {
                    ("POST", 5) => {
                        let b = body_of(r);
                        st.bodies.push(b.clone());
                        let sid = b["sourceId"].as_str().unwrap_or("").to_string();
                        if st.tasks.iter().any(|t| t.1 == sid) {
                            return Ok(json_response(400, r#"{"code":"todo.taskCreate.paramError","message":"task exist","requestid":"r"}"#));
                        }
                        let id = format!("task{}", st.tasks.len() + 1);
                        st.tasks.push((owner, sid, id.clone()));
                        return Ok(json_response(200, &json!({"id": id}).to_string()));
                    }
                    ("GET", 7) => {
                        let hit = st.tasks.iter().find(|t| t.0 == owner && t.1 == segs[6]);
                        return Ok(match hit {
                            Some(t) => json_response(200, &json!({"id": t.2, "sourceId": t.1}).to_string()),
                            None => json_response(400, r#"{"code":"todo.taskQuery.paramError","message":"task not exist"}"#),
                        });
                    }
                    ("PUT", 6) | ("DELETE", 6) => {
                        st.bodies.push(body_of(r));
                        let pos = st.tasks.iter().position(|t| t.0 == owner && t.2 == segs[5]);
                        return Ok(match pos {
                            Some(i) => {
                                if r.method == "DELETE" {
                                    st.tasks.remove(i);
                                }
                                json_response(200, r#"{"result":true}"#)
                            }
                            None => json_response(400, r#"{"code":"todo.taskUpdate.paramError","message":"task not exist"}"#),
                        });
                    }
                    _ => {}
                }
            }
            Ok(json_response(404, r#"{"code":"NotFound","message":"no route"}"#))
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

    fn count(env: &FakeEnv, path: &str) -> usize {
        env.paths().iter().filter(|p| p.as_str() == path).count()
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
        assert_eq!(count(&env, "/topapi/v2/user/get"), 3);
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
        assert_eq!(count(&env, "/topapi/v2/user/get"), 3);
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
}
