//! Work notifications (doc §7), recorded for assertions.

use serde_json::{json, Map, Value};

use super::{body_object, get_bool, get_i64, get_str, ApiError, ApiResult, Ctx};
use crate::control::WorkMessage;
use crate::state::State;

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

fn need_str(m: &Map<String, Value>, k: &str, what: &str) -> Result<(), ApiError> {
    match m.get(k) {
        Some(Value::String(s)) if !s.is_empty() => Ok(()),
        _ => Err(ApiError::BadParam(format!("msg.{what}.{k}"))),
    }
}

fn check_msg(msg: &Map<String, Value>) -> Result<String, ApiError> {
    let msgtype = match msg.get("msgtype") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(ApiError::BadParam("msg.msgtype".into())),
    };
    let body = match msg.get(&msgtype) {
        Some(Value::Object(o)) => o,
        _ => return Err(ApiError::BadParam(format!("msg.{msgtype}"))),
    };
    match msgtype.as_str() {
        "text" => need_str(body, "content", "text")?,
        "markdown" => {
            need_str(body, "title", "markdown")?;
            need_str(body, "text", "markdown")?;
        }
        "link" => {
            for k in ["messageUrl", "picUrl", "title", "text"] {
                need_str(body, k, "link")?;
            }
        }
        "action_card" => {
            need_str(body, "title", "action_card")?;
            need_str(body, "markdown", "action_card")?;
            let single = body.get("single_title").is_some() && body.get("single_url").is_some();
            let buttons =
                matches!(body.get("btn_json_list"), Some(Value::Array(a)) if !a.is_empty());
            if !single && !buttons {
                return Err(ApiError::BadParam(
                    "msg.action_card.single_title/single_url or btn_json_list".into(),
                ));
            }
        }
        "oa" => {
            need_str(body, "message_url", "oa")?;
            if !matches!(body.get("body"), Some(Value::Object(_))) {
                return Err(ApiError::BadParam("msg.oa.body".into()));
            }
        }
        "image" | "file" => need_str(body, "media_id", &msgtype)?,
        "voice" => {
            need_str(body, "media_id", "voice")?;
            need_str(body, "duration", "voice")?;
        }
        _ => return Err(ApiError::BadParam(format!("msg.msgtype {msgtype}"))),
    }
    Ok(msgtype)
}

/// `POST /topapi/message/corpconversation/asyncsend_v2 {agent_id, userid_list, dept_id_list, to_all_user, msg}`.
pub(super) fn asyncsend_v2(st: &mut State, ctx: &Ctx) -> ApiResult {
    let corp = ctx.corp()?;
    let body = body_object(ctx.req)?;
    let agent_id =
        get_i64(&body, "agent_id")?.ok_or_else(|| ApiError::BadParam("agent_id".into()))?;
    if agent_id != st.corps[corp].creds.agent_id {
        return Err(ApiError::Old(400002, "无效的agent_id".into()));
    }
    let userids = split_list(&get_str(&body, "userid_list")?.unwrap_or_default());
    let dept_raw = split_list(&get_str(&body, "dept_id_list")?.unwrap_or_default());
    let to_all = get_bool(&body, "to_all_user")?.unwrap_or(false);
    if userids.len() > 100 {
        return Err(ApiError::BadParam(
            "userid_list: at most 100 userids".into(),
        ));
    }
    if dept_raw.len() > 20 {
        return Err(ApiError::BadParam(
            "dept_id_list: at most 20 departments".into(),
        ));
    }
    let dept_ids = dept_raw
        .iter()
        .map(|d| {
            d.parse::<i64>()
                .map_err(|_| ApiError::BadParam("dept_id_list".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if userids.is_empty() && dept_ids.is_empty() && !to_all {
        return Err(ApiError::BadParam(
            "userid_list, dept_id_list or to_all_user".into(),
        ));
    }
    let msg = match body.get("msg") {
        Some(Value::Object(m)) => m.clone(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => m,
            _ => return Err(ApiError::BadParam("msg".into())),
        },
        _ => return Err(ApiError::BadParam("msg".into())),
    };
    let msgtype = check_msg(&msg)?;
    let msg = Value::Object(msg);
    if msg.to_string().len() > 2048 {
        return Err(ApiError::BadParam("msg: at most 2048 bytes".into()));
    }
    st.next_task_id += 1;
    let task_id = st.next_task_id;
    let corp_id = st.corps[corp].creds.corp_id.clone();
    st.messages.push(WorkMessage {
        task_id,
        corp_id,
        agent_id,
        userids,
        dept_ids,
        to_all_user: to_all,
        msgtype,
        msg,
        at_ms: ctx.now,
    });
    Ok(json!({"task_id": task_id}))
}

/// `POST /topapi/message/corpconversation/getsendresult {agent_id, task_id}`.
pub(super) fn getsendresult(st: &mut State, ctx: &Ctx) -> ApiResult {
    let corp = ctx.corp()?;
    let body = body_object(ctx.req)?;
    let task_id = get_i64(&body, "task_id")?.ok_or_else(|| ApiError::BadParam("task_id".into()))?;
    let corp_id = &st.corps[corp].creds.corp_id;
    let m = st
        .messages
        .iter()
        .find(|m| m.task_id == task_id && &m.corp_id == corp_id)
        .ok_or_else(|| ApiError::Old(400002, "无效的task_id".into()))?;
    let org = &st.corps[corp].org;
    let (valid, invalid): (Vec<String>, Vec<String>) = m
        .userids
        .iter()
        .cloned()
        .partition(|u| org.user(u).is_some());
    Ok(json!({"send_result": {
        "invalid_user_id_list": invalid,
        "forbidden_user_id_list": [],
        "failed_user_id_list": [],
        "read_user_id_list": [],
        "unread_user_id_list": valid,
        "invalid_dept_id_list": [],
        "forbidden_list": [],
    }}))
}
