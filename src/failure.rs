//! The one error shape every route and typed export ends in: a status, a stable code and a
//! message for a person saying what to do. Never internal error text, never a secret.

use serde::Serialize;

/// A failure as a person and a program see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// HTTP status to answer with.
    pub status: u16,
    /// Stable, machine-readable code.
    pub code: String,
    /// What went wrong and what to do, in English.
    pub message: String,
    /// The same in Simplified Chinese.
    pub message_zh: String,
}

impl Failure {
    /// A failure with both messages.
    pub fn new(
        status: u16,
        code: &str,
        message: impl Into<String>,
        message_zh: impl Into<String>,
    ) -> Self {
        Failure {
            status,
            code: code.to_string(),
            message: message.into(),
            message_zh: message_zh.into(),
        }
    }

    /// 400 with the given code.
    pub fn bad_request(
        code: &str,
        message: impl Into<String>,
        message_zh: impl Into<String>,
    ) -> Self {
        Self::new(400, code, message, message_zh)
    }

    /// The store failed: nothing was changed that the caller can see; retry later.
    pub fn storage() -> Self {
        Self::new(
            503,
            "storage_unavailable",
            "The plugin's key-value store is unavailable; nothing was changed. Try again in a moment, and check the host's key-value store if it persists.",
            "插件的键值存储暂不可用，未做任何更改。请稍后重试；如持续出现，请检查宿主的键值存储。",
        )
    }

    /// The JSON body of the platform API: `{"error": {"code", "message", "message_zh"}}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message, "message_zh": self.message_zh}})
    }
}

impl From<crate::env::KvError> for Failure {
    fn from(_: crate::env::KvError) -> Self {
        Failure::storage()
    }
}
