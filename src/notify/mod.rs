//! To-dos (待办, docs/dingtalk-api.md §6) and work notifications (工作通知, docs/dingtalk-api.md §7).
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
use crate::dingtalk::records::valid_userid;
use crate::failure::Failure;
use crate::model::required;
use crate::settings::Settings;
use serde::{Deserialize, Serialize};

mod message;
mod todo;

pub use message::send_message;
pub use todo::{complete_todo, create_todo, delete_todo};

/// Longest subject, in characters (docs/dingtalk-api.md §6.1).
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

/// A work-notification body. JSON: the variant's fields beside a snake_case `type`; read
/// through [`BodyFields`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

/// A [`MessageBody`] as read: its `type` and every variant's fields, each optional; read
/// straight through instead of buffered like serde's internally tagged enums (as
/// [`crate::model::DirectoryChange`]), with the same errors.
#[derive(Deserialize)]
struct BodyFields {
    #[serde(rename = "type")]
    kind: BodyKind,
    content: Option<String>,
    title: Option<String>,
    text: Option<String>,
    markdown: Option<String>,
    button_title: Option<String>,
    url: Option<String>,
}

/// The `type` of a [`MessageBody`].
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum BodyKind {
    Text,
    Markdown,
    ActionCard,
}

impl<'de> Deserialize<'de> for MessageBody {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let BodyFields {
            kind,
            content,
            title,
            text,
            markdown,
            button_title,
            url,
        } = BodyFields::deserialize(deserializer)?;
        Ok(match kind {
            BodyKind::Text => MessageBody::Text {
                content: required(content, "content")?,
            },
            BodyKind::Markdown => MessageBody::Markdown {
                title: required(title, "title")?,
                text: required(text, "text")?,
            },
            BodyKind::ActionCard => MessageBody::ActionCard {
                title: required(title, "title")?,
                markdown: required(markdown, "markdown")?,
                button_title: required(button_title, "button_title")?,
                url: required(url, "url")?,
            },
        })
    }
}
pub(super) fn invalid(code: &str, en: impl Into<String>, zh: impl Into<String>) -> Failure {
    Failure::bad_request(code, en, zh)
}

fn valid_source_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SOURCE_ID_LEN
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

pub(super) fn check_source_id(source_id: &str) -> Result<(), Failure> {
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

pub(super) fn check_userid(field: &str, userid: &str) -> Result<(), Failure> {
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

#[cfg(test)]
mod tests;
