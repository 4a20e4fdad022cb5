//! Work notifications (工作通知, docs/dingtalk-api.md §7): validation of the message and its recipients.

use super::{check_userid, invalid, platform_url, MessageBody};
use super::{MAX_MESSAGE_BYTES, MAX_RECIPIENTS};
use crate::corps;
use crate::dingtalk::{message, Client, Endpoints};
use crate::env::Env;
use crate::failure::Failure;
use crate::settings::Settings;
use serde_json::{json, Value};

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

/// The `msg` object of `asyncsend_v2` for `body` (docs/dingtalk-api.md §7), validated.
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
