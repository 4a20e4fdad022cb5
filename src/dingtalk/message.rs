//! Work notifications (工作通知, old API family, app token; docs/dingtalk-api.md §7).

use super::error::ApiError;
use super::records::as_i64;
use super::Client;
use serde_json::{json, Value};

/// `POST topapi/message/corpconversation/asyncsend_v2` {agent_id, userid_list, msg}: sends `msg`
/// (a `{"msgtype": …}` object) as the app `agent_id` to `userids` (joined with commas); returns
/// DingTalk's `task_id`, else `ApiError::Parse("task_id")`.
pub fn send_work_notice(
    client: &mut Client<'_>,
    agent_id: u64,
    userids: &[&str],
    msg: &Value,
) -> Result<u64, ApiError> {
    let request = json!({"agent_id": agent_id, "userid_list": userids.join(","), "msg": msg});
    let v = client.oapi_post("/topapi/message/corpconversation/asyncsend_v2", &request)?;
    v.get("task_id")
        .and_then(as_i64)
        .and_then(|t| u64::try_from(t).ok())
        .ok_or(ApiError::Parse("task_id"))
}
