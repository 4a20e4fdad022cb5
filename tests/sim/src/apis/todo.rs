//! To-do tasks (doc §6), keyed by unionId, kept in state for assertions.

use serde_json::{json, Map, Value};

use super::{body_json_only, get_bool, get_i64, get_str, get_str_list, ApiError, ApiResult, Ctx};
use crate::control::{DetailUrl, TodoTask};
use crate::state::State;

const MAX_PEOPLE: usize = 1000;

fn perr(op: &str, msg: &str) -> ApiError {
    ApiError::New(400, format!("todo.{op}.paramError"), msg.to_string())
}

fn task_json(st: &mut State, t: &TodoTask) -> Value {
    let rid = st.request_id_new();
    let mut v = json!({
        "id": t.id,
        "subject": t.subject,
        "startTime": t.created_time,
        "done": t.done,
        "executorIds": t.executor_ids,
        "participantIds": t.participant_ids,
        "source": "isv_dingtalkTodo",
        "createdTime": t.created_time,
        "modifiedTime": t.modified_time,
        "creatorId": t.create_body.get("creatorId").cloned().unwrap_or_else(|| json!(t.owner_union_id)),
        "modifierId": t.operator_id.clone().unwrap_or_else(|| t.owner_union_id.clone()),
        "bizTag": "isv_dingtalkTodo",
        "requestId": rid,
        "isOnlyShowExecutor": t.create_body.get("isOnlyShowExecutor").cloned().unwrap_or(json!(false)),
        "tenantId": t.corp_id,
        "tenantType": "org",
    });
    if let Some(d) = &t.description {
        v["description"] = json!(d);
    }
    if let Some(d) = t.due_time {
        v["dueTime"] = json!(d);
    }
    if t.done {
        v["finishTime"] = json!(t.modified_time);
    }
    if let Some(s) = &t.source_id {
        v["sourceId"] = json!(s);
    }
    if let Some(u) = &t.detail_url {
        v["detailUrl"] = json!({"appUrl": u.app_url, "pcUrl": u.pc_url});
    }
    if let Some(p) = t.priority {
        v["priority"] = json!(p);
    }
    if let Some(c) = t.create_body.get("contentFieldList") {
        v["contentFieldList"] = c.clone();
    }
    if let Some(n) = t.create_body.get("notifyConfigs") {
        v["notifyConfigs"] =
            json!({"dingNotify": n.get("dingNotify").cloned().unwrap_or(json!("0"))});
    }
    v
}

fn check_members(
    st: &State,
    corp: usize,
    ids: &[String],
    field: &str,
    op: &str,
) -> Result<(), ApiError> {
    if ids.len() > MAX_PEOPLE {
        let what = if field == "executorIds" {
            "executors"
        } else {
            "participants"
        };
        return Err(perr(op, &format!("{what} is oversize")));
    }
    for id in ids {
        if st.corps[corp].org.user_by_unionid(id).is_none() {
            return Err(perr(
                op,
                &format!("{field} contains an unknown unionId: {id}"),
            ));
        }
    }
    Ok(())
}

fn detail_url(body: &Map<String, Value>, op: &str) -> Result<Option<DetailUrl>, ApiError> {
    match body.get("detailUrl") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => {
            let app = get_str(m, "appUrl")?.unwrap_or_default();
            let pc = get_str(m, "pcUrl")?.unwrap_or_default();
            if app.len() > 1024 || pc.len() > 1024 {
                return Err(perr(op, "detailUrl is oversize"));
            }
            Ok(Some(DetailUrl {
                app_url: app,
                pc_url: pc,
            }))
        }
        Some(_) => Err(ApiError::BadParam("detailUrl".into())),
    }
}

/// `POST /v1.0/todo/users/{unionId}/tasks?operatorId=`.
pub(super) fn create(st: &mut State, ctx: &Ctx) -> ApiResult {
    const OP: &str = "taskCreate";
    let corp = ctx.corp()?;
    let owner = ctx.param("unionId").to_string();
    let body = body_json_only(ctx.req)?;
    if st.corps[corp].org.user_by_unionid(&owner).is_none() {
        return Err(perr(
            OP,
            &format!("unionId is not a member of the org: {owner}"),
        ));
    }
    let subject = get_str(&body, "subject")?.unwrap_or_default();
    if subject.is_empty() {
        return Err(ApiError::BadParam(
            "subject is mandatory for this action.".into(),
        ));
    }
    if subject.chars().count() > 1024 {
        return Err(perr(OP, "subject is oversize"));
    }
    let description = get_str(&body, "description")?;
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 4096)
    {
        return Err(perr(OP, "description is oversize"));
    }
    let executors = get_str_list(&body, "executorIds")?.unwrap_or_default();
    check_members(st, corp, &executors, "executorIds", OP)?;
    let participants = get_str_list(&body, "participantIds")?.unwrap_or_default();
    check_members(st, corp, &participants, "participantIds", OP)?;
    let due = get_i64(&body, "dueTime")?;
    if due.is_some_and(|d| d <= 0) {
        return Err(perr(OP, "dueTime is invalid"));
    }
    let priority = get_i64(&body, "priority")?;
    if priority.is_some_and(|p| ![10, 20, 30, 40].contains(&p)) {
        return Err(perr(OP, "priority is invalid"));
    }
    let detail = detail_url(&body, OP)?;
    let source_id = get_str(&body, "sourceId")?.filter(|s| !s.is_empty());
    let corp_id = st.corps[corp].creds.corp_id.clone();
    if let Some(sid) = &source_id {
        if st
            .todos
            .iter()
            .any(|t| !t.deleted && t.corp_id == corp_id && t.source_id.as_deref() == Some(sid))
        {
            return Err(perr(OP, "task exist"));
        }
    }
    let id = format!(
        "task{}",
        st.random_string(
            20,
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        )
    );
    let task = TodoTask {
        id,
        corp_id,
        owner_union_id: owner,
        operator_id: ctx.req.q("operatorId").map(|s| s.to_string()),
        source_id,
        subject,
        description,
        due_time: due,
        done: false,
        executor_done: executors.iter().map(|e| (e.clone(), false)).collect(),
        executor_ids: executors,
        participant_ids: participants,
        detail_url: detail,
        priority,
        created_time: ctx.now,
        modified_time: ctx.now,
        deleted: false,
        create_body: Value::Object(body),
    };
    st.todos.push(task.clone());
    Ok(task_json(st, &task))
}

fn find_task(st: &State, corp: usize, owner: &str, id: &str) -> Option<usize> {
    let corp_id = &st.corps[corp].creds.corp_id;
    st.todos.iter().position(|t| {
        !t.deleted && &t.corp_id == corp_id && t.id == id && t.owner_union_id == owner
    })
}

/// `PUT /v1.0/todo/users/{unionId}/tasks/{taskId}`.
pub(super) fn update(st: &mut State, ctx: &Ctx) -> ApiResult {
    const OP: &str = "taskUpdate";
    let corp = ctx.corp()?;
    let body = body_json_only(ctx.req)?;
    let i = find_task(st, corp, ctx.param("unionId"), ctx.param("taskId"))
        .ok_or_else(|| perr(OP, "task not exist"))?;
    let subject = get_str(&body, "subject")?;
    if subject
        .as_ref()
        .is_some_and(|s| s.is_empty() || s.chars().count() > 1024)
    {
        return Err(perr(OP, "subject is oversize"));
    }
    let description = get_str(&body, "description")?;
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 4096)
    {
        return Err(perr(OP, "description is oversize"));
    }
    let due = get_i64(&body, "dueTime")?;
    let done = get_bool(&body, "done")?;
    let executors = get_str_list(&body, "executorIds")?;
    if let Some(e) = &executors {
        check_members(st, corp, e, "executorIds", OP)?;
    }
    let participants = get_str_list(&body, "participantIds")?;
    if let Some(p) = &participants {
        check_members(st, corp, p, "participantIds", OP)?;
    }
    let operator = ctx.req.q("operatorId").map(|s| s.to_string());
    let t = &mut st.todos[i];
    if let Some(s) = subject {
        t.subject = s;
    }
    if description.is_some() {
        t.description = description;
    }
    if due.is_some() {
        t.due_time = due;
    }
    if let Some(d) = done {
        t.done = d;
    }
    if let Some(e) = executors {
        t.executor_done = e.iter().map(|x| (x.clone(), t.done)).collect();
        t.executor_ids = e;
    }
    if let Some(p) = participants {
        t.participant_ids = p;
    }
    if operator.is_some() {
        t.operator_id = operator;
    }
    t.modified_time = ctx.now;
    Ok(json!({"result": true}))
}

/// `PUT /v1.0/todo/users/{unionId}/tasks/{taskId}/executorStatus {executorStatusList}`.
pub(super) fn executor_status(st: &mut State, ctx: &Ctx) -> ApiResult {
    const OP: &str = "taskUpdate";
    let corp = ctx.corp()?;
    let body = body_json_only(ctx.req)?;
    let i = find_task(st, corp, ctx.param("unionId"), ctx.param("taskId"))
        .ok_or_else(|| perr(OP, "task not exist"))?;
    let list = match body.get("executorStatusList") {
        Some(Value::Array(a)) if !a.is_empty() => a.clone(),
        _ => {
            return Err(ApiError::BadParam(
                "executorStatusList is mandatory for this action.".into(),
            ))
        }
    };
    let mut changes = Vec::new();
    for item in &list {
        let m = item
            .as_object()
            .ok_or_else(|| ApiError::BadParam("executorStatusList".into()))?;
        let id = get_str(m, "id")?.unwrap_or_default();
        let done = get_bool(m, "isDone")?.unwrap_or(false);
        changes.push((id, done));
    }
    let t = &mut st.todos[i];
    for (id, done) in changes {
        if let Some(e) = t.executor_done.iter_mut().find(|(x, _)| *x == id) {
            e.1 = done;
        } else {
            return Err(perr(OP, &format!("executor not exist: {id}")));
        }
    }
    t.modified_time = ctx.now;
    Ok(json!({"result": true}))
}

/// `DELETE /v1.0/todo/users/{unionId}/tasks/{taskId}`.
pub(super) fn delete(st: &mut State, ctx: &Ctx) -> ApiResult {
    let corp = ctx.corp()?;
    let i = find_task(st, corp, ctx.param("unionId"), ctx.param("taskId"))
        .ok_or_else(|| perr("taskDelete", "task not exist"))?;
    st.todos[i].deleted = true;
    st.todos[i].modified_time = ctx.now;
    let rid = st.request_id_new();
    Ok(json!({"result": true, "requestId": rid}))
}

/// `GET /v1.0/todo/users/{unionId}/tasks/{taskId}`.
pub(super) fn get(st: &mut State, ctx: &Ctx) -> ApiResult {
    let corp = ctx.corp()?;
    let i = find_task(st, corp, ctx.param("unionId"), ctx.param("taskId"))
        .ok_or_else(|| perr("taskQuery", "task not exist"))?;
    let t = st.todos[i].clone();
    Ok(task_json(st, &t))
}

/// `GET /v1.0/todo/users/{unionId}/tasks/sources/{sourceId}`.
pub(super) fn get_by_source(st: &mut State, ctx: &Ctx) -> ApiResult {
    let corp = ctx.corp()?;
    let corp_id = st.corps[corp].creds.corp_id.clone();
    let owner = ctx.param("unionId");
    let sid = ctx.param("sourceId");
    let t = st
        .todos
        .iter()
        .find(|t| {
            !t.deleted
                && t.corp_id == corp_id
                && t.owner_union_id == owner
                && t.source_id.as_deref() == Some(sid)
        })
        .cloned()
        .ok_or_else(|| perr("taskQuery", "task not exist"))?;
    Ok(task_json(st, &t))
}

const QUERY_PAGE: usize = 20;

/// `POST /v1.0/todo/users/{unionId}/org/tasks/query {nextToken, isDone, roleTypes}`.
pub(super) fn query(st: &mut State, ctx: &Ctx) -> ApiResult {
    let corp = ctx.corp()?;
    let body = body_json_only(ctx.req)?;
    let who = ctx.param("unionId").to_string();
    let start: usize = match get_str(&body, "nextToken")? {
        None => 0,
        Some(s) if s.is_empty() => 0,
        Some(s) => s
            .parse()
            .map_err(|_| ApiError::BadParam("nextToken".into()))?,
    };
    let is_done = get_bool(&body, "isDone")?;
    let role_groups: Vec<Vec<String>> = match body.get("roleTypes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(groups)) => {
            let mut out = Vec::new();
            for g in groups {
                let roles = g
                    .as_array()
                    .ok_or_else(|| ApiError::BadParam("roleTypes".into()))?
                    .iter()
                    .map(|r| {
                        r.as_str()
                            .map(|s| s.to_string())
                            .ok_or_else(|| ApiError::BadParam("roleTypes".into()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                out.push(roles);
            }
            out
        }
        Some(_) => return Err(ApiError::BadParam("roleTypes".into())),
    };
    let corp_id = st.corps[corp].creds.corp_id.clone();
    let has_role = |t: &TodoTask, role: &str| match role {
        "creator" => t.owner_union_id == who,
        "executor" => t.executor_ids.contains(&who),
        "participant" => t.participant_ids.contains(&who),
        _ => false,
    };
    let matching: Vec<TodoTask> = st
        .todos
        .iter()
        .filter(|t| !t.deleted && t.corp_id == corp_id)
        .filter(|t| {
            t.detail_url
                .as_ref()
                .is_some_and(|d| !d.app_url.is_empty() || !d.pc_url.is_empty())
        })
        .filter(|t| is_done.is_none_or(|d| t.done == d))
        .filter(|t| {
            if role_groups.is_empty() {
                ["creator", "executor", "participant"]
                    .iter()
                    .any(|r| has_role(t, r))
            } else {
                role_groups.iter().any(|g| g.iter().all(|r| has_role(t, r)))
            }
        })
        .cloned()
        .collect();
    let end = start.saturating_add(QUERY_PAGE).min(matching.len());
    let cards: Vec<Value> = matching[start.min(end)..end]
        .iter()
        .map(|t| {
            let d = t.detail_url.clone().unwrap_or_default();
            json!({
                "taskId": t.id,
                "subject": t.subject,
                "dueTime": t.due_time,
                "detailUrl": {"appUrl": d.app_url, "pcUrl": d.pc_url},
                "priority": t.priority,
                "createdTime": t.created_time,
                "modifiedTime": t.modified_time,
                "creatorId": t.owner_union_id,
                "sourceId": t.source_id,
                "bizTag": "isv_dingtalkTodo",
                "isDone": t.done,
                "todoType": t.create_body.get("todoType").cloned().unwrap_or(json!("TODO")),
            })
        })
        .collect();
    let next = if end < matching.len() {
        json!(end.to_string())
    } else {
        Value::Null
    };
    Ok(json!({"todoCards": cards, "nextToken": next}))
}
