//! To-dos and work notifications (issue 4). Being written.

use crate::env::Env;
use crate::failure::Failure;
use crate::settings::Settings;
use serde::{Deserialize, Serialize};

/// A to-do to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TodoSpec {
    /// Organisation (empty: configured corp).
    #[serde(default)]
    pub corp_id: String,
    /// Platform's id.
    pub source_id: String,
    /// Title.
    pub subject: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Creator userid.
    pub creator_userid: String,
    /// Executors' userids.
    #[serde(default)]
    pub executor_userids: Vec<String>,
    /// Due, Unix ms.
    #[serde(default)]
    pub due_ms: Option<u64>,
    /// Platform path or URL that opens the task.
    pub detail_path: String,
    /// Priority 10/20/30/40.
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
    /// Created by this call.
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
        /// Platform path or URL.
        url: String,
    },
}

fn not_ready() -> Failure {
    Failure::new(
        501,
        "not_ready",
        "to-dos and messages are not available yet",
        "待办与消息尚未就绪",
    )
}

/// Creates a to-do, idempotent by `source_id`.
pub fn create_todo(
    _env: &mut dyn Env,
    _settings: &Settings,
    _todo: &TodoSpec,
) -> Result<TodoRef, Failure> {
    Err(not_ready())
}

/// Marks a to-do done.
pub fn complete_todo(
    _env: &mut dyn Env,
    _settings: &Settings,
    _corp_id: &str,
    _source_id: &str,
) -> Result<(), Failure> {
    Err(not_ready())
}

/// Deletes a to-do.
pub fn delete_todo(
    _env: &mut dyn Env,
    _settings: &Settings,
    _corp_id: &str,
    _source_id: &str,
) -> Result<(), Failure> {
    Err(not_ready())
}

/// Sends a work notification; returns DingTalk's task id.
pub fn send_message(
    _env: &mut dyn Env,
    _settings: &Settings,
    _corp_id: &str,
    _userids: &[String],
    _body: &MessageBody,
) -> Result<u64, Failure> {
    Err(not_ready())
}
