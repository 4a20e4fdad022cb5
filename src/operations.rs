//! The platform operations: what a platform asks of the plugin, in one table shared by the HTTP
//! platform API (R7, `web::platform_api`) and the typed WIT exports (`wasm::exports`). Both
//! parse their input into an [`Operation`], [`run`] it, and turn the [`Answer`] into JSON or WIT
//! records, so the two faces cannot drift apart: [`OPERATIONS`] lists every operation with its
//! HTTP route and its WIT function, and a test checks both sides against it.

use crate::corps::{CorpBinding, CorpSummary};
use crate::directory::changelog::{self, ChangePage};
use crate::env::Env;
use crate::failure::Failure;
use crate::model::Identity;
use crate::notify::{MessageBody, TodoRef, TodoSpec};
use crate::settings::{Issue, RawSettings, Settings};
use crate::setup::Guide;
use crate::sync::{StepRequest, SyncBatch};
use serde_json::{json, Value};

/// Most changes one `changes` call returns.
pub const MAX_CHANGES_PER_PAGE: u32 = 1000;

/// One platform operation, with its parsed input.
#[derive(Clone)]
pub enum Operation {
    /// Redeem a login ticket for the identity, once.
    RedeemTicket {
        /// The ticket from the hand-off redirect.
        ticket: String,
    },
    /// Validate settings without any network call (`None`: the running settings).
    ValidateConfig {
        /// The settings to check.
        raw: Option<RawSettings>,
    },
    /// The admin's set-up guide with live checks.
    SetupGuide,
    /// One bounded, resumable step of the full sync.
    SyncStep(StepRequest),
    /// Directory changes recorded after a cursor.
    Changes {
        /// Cursor (0 = from the start).
        after: u64,
        /// Most changes to return (capped at [`MAX_CHANGES_PER_PAGE`]).
        limit: u32,
    },
    /// Create a to-do, idempotent by `source_id`.
    CreateTodo(TodoSpec),
    /// Mark a to-do done.
    CompleteTodo {
        /// Organisation (empty: the configured corp).
        corp_id: String,
        /// The platform's id of the to-do.
        source_id: String,
    },
    /// Delete a to-do.
    DeleteTodo {
        /// Organisation (empty: the configured corp).
        corp_id: String,
        /// The platform's id of the to-do.
        source_id: String,
    },
    /// Send a work notification.
    SendMessage {
        /// Organisation (empty: the configured corp).
        corp_id: String,
        /// Recipients.
        userids: Vec<String>,
        /// What to send.
        body: MessageBody,
    },
    /// The corps this plugin serves.
    ListCorps,
    /// Bind another corp (commercial edition).
    BindCorp(CorpBinding),
    /// Unbind a corp (commercial edition).
    UnbindCorp {
        /// The corp to unbind.
        corp_id: String,
    },
    /// The platform completed a first-time binding after its SMS check.
    ConfirmBinding {
        /// Organisation of the member.
        corp_id: String,
        /// The member.
        userid: String,
    },
}

/// What an operation answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The identity behind a ticket.
    Identity(Box<Identity>),
    /// The issues found (empty: valid).
    Validation(Vec<Issue>),
    /// The set-up guide.
    Guide(Box<Guide>),
    /// One sync step's batch.
    SyncBatch(Box<SyncBatch>),
    /// A page of the change log.
    Changes(ChangePage),
    /// The to-do created or found.
    Todo(TodoRef),
    /// A to-do was completed.
    TodoCompleted,
    /// A to-do was deleted.
    TodoDeleted,
    /// DingTalk's task id of a work notification.
    MessageSent(u64),
    /// The corps served.
    Corps(Vec<CorpSummary>),
    /// The corp just bound.
    CorpBound(CorpSummary),
    /// A corp was unbound.
    CorpUnbound,
    /// A first-time binding was recorded.
    BindingConfirmed,
}

/// How an operation is reached from a typed host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypedExport {
    /// `interface.function` in `wit/world.wit`.
    Function(&'static str),
    /// Deliberately HTTP only, with the reason.
    HttpOnly(&'static str),
}

/// One row of the operations table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationSpec {
    /// Stable name, as [`Operation::name`] gives it.
    pub name: &'static str,
    /// HTTP method of the platform-API route.
    pub method: &'static str,
    /// Path under `/dingding/api/`, with `{placeholders}`.
    pub path: &'static str,
    /// The typed twin.
    pub typed: TypedExport,
}

/// Every platform operation, with its HTTP route and its typed twin.
pub const OPERATIONS: &[OperationSpec] = &[
    OperationSpec {
        name: "redeem_ticket",
        method: "POST",
        path: "tickets/redeem",
        typed: TypedExport::Function("routes.redeem-ticket"),
    },
    OperationSpec {
        name: "validate_config",
        method: "POST",
        path: "config/validate",
        typed: TypedExport::Function("config.validate"),
    },
    OperationSpec {
        name: "setup_guide",
        method: "GET",
        path: "setup",
        typed: TypedExport::Function("config.setup-guide"),
    },
    OperationSpec {
        name: "sync_step",
        method: "POST",
        path: "sync",
        typed: TypedExport::Function("directory.sync-step"),
    },
    OperationSpec {
        name: "changes",
        method: "GET",
        path: "changes",
        typed: TypedExport::Function("directory.changes"),
    },
    OperationSpec {
        name: "create_todo",
        method: "POST",
        path: "todos",
        typed: TypedExport::Function("notify.create-todo"),
    },
    OperationSpec {
        name: "complete_todo",
        method: "POST",
        path: "todos/{source_id}/complete",
        typed: TypedExport::Function("notify.complete-todo"),
    },
    OperationSpec {
        name: "delete_todo",
        method: "DELETE",
        path: "todos/{source_id}",
        typed: TypedExport::Function("notify.delete-todo"),
    },
    OperationSpec {
        name: "send_message",
        method: "POST",
        path: "messages",
        typed: TypedExport::Function("notify.send-message"),
    },
    OperationSpec {
        name: "list_corps",
        method: "GET",
        path: "corps",
        typed: TypedExport::Function("corps.list-corps"),
    },
    OperationSpec {
        name: "bind_corp",
        method: "POST",
        path: "corps",
        typed: TypedExport::Function("corps.bind-corp"),
    },
    OperationSpec {
        name: "unbind_corp",
        method: "DELETE",
        path: "corps/{corp_id}",
        typed: TypedExport::Function("corps.unbind-corp"),
    },
    OperationSpec {
        name: "confirm_binding",
        method: "POST",
        path: "bindings",
        typed: TypedExport::Function("corps.confirm-binding"),
    },
];

impl Operation {
    /// The operation's name in [`OPERATIONS`].
    pub fn name(&self) -> &'static str {
        match self {
            Operation::RedeemTicket { .. } => "redeem_ticket",
            Operation::ValidateConfig { .. } => "validate_config",
            Operation::SetupGuide => "setup_guide",
            Operation::SyncStep(_) => "sync_step",
            Operation::Changes { .. } => "changes",
            Operation::CreateTodo(_) => "create_todo",
            Operation::CompleteTodo { .. } => "complete_todo",
            Operation::DeleteTodo { .. } => "delete_todo",
            Operation::SendMessage { .. } => "send_message",
            Operation::ListCorps => "list_corps",
            Operation::BindCorp(_) => "bind_corp",
            Operation::UnbindCorp { .. } => "unbind_corp",
            Operation::ConfirmBinding { .. } => "confirm_binding",
        }
    }
}

/// Validates raw settings without any network call.
pub fn validate(raw: &RawSettings) -> Vec<Issue> {
    Settings::parse(raw).err().unwrap_or_default()
}

/// Runs one operation against valid settings.
pub fn run(
    env: &mut dyn Env,
    settings: &Settings,
    operation: Operation,
) -> Result<Answer, Failure> {
    Ok(match operation {
        Operation::RedeemTicket { ticket } => {
            Answer::Identity(Box::new(crate::login::redeem_ticket(env, &ticket)?))
        }
        // The running settings are valid, or this would not have been reached.
        Operation::ValidateConfig { raw } => {
            Answer::Validation(raw.as_ref().map(validate).unwrap_or_default())
        }
        Operation::SetupGuide => Answer::Guide(Box::new(crate::setup::guide(env, settings))),
        Operation::SyncStep(request) => {
            drain_events(env, settings);
            Answer::SyncBatch(Box::new(crate::sync::step_with(env, settings, &request)?))
        }
        Operation::Changes { after, limit } => {
            drain_events(env, settings);
            Answer::Changes(changelog::read(
                env,
                after,
                limit.min(MAX_CHANGES_PER_PAGE),
            )?)
        }
        Operation::CreateTodo(spec) => {
            Answer::Todo(crate::notify::create_todo(env, settings, &spec)?)
        }
        Operation::CompleteTodo { corp_id, source_id } => {
            crate::notify::complete_todo(env, settings, &corp_id, &source_id)?;
            Answer::TodoCompleted
        }
        Operation::DeleteTodo { corp_id, source_id } => {
            crate::notify::delete_todo(env, settings, &corp_id, &source_id)?;
            Answer::TodoDeleted
        }
        Operation::SendMessage {
            corp_id,
            userids,
            body,
        } => Answer::MessageSent(crate::notify::send_message(
            env, settings, &corp_id, &userids, &body,
        )?),
        Operation::ListCorps => Answer::Corps(crate::corps::list(env, settings)?),
        Operation::BindCorp(binding) => {
            Answer::CorpBound(crate::corps::bind(env, settings, &binding)?)
        }
        Operation::UnbindCorp { corp_id } => {
            crate::corps::unbind(env, settings, &corp_id)?;
            Answer::CorpUnbound
        }
        Operation::ConfirmBinding { corp_id, userid } => {
            crate::login::confirm_binding(env, &corp_id, &userid)?;
            Answer::BindingConfirmed
        }
    })
}

/// Records queued events' changes first (bounded, `events::queue`), so a read or a sync step
/// sees them; a failure here never fails the operation (the queue keeps its work).
fn drain_events(env: &mut dyn Env, settings: &Settings) {
    if let Err(f) =
        crate::events::drain_deferred(env, settings, crate::events::DrainBudget::PLATFORM)
    {
        env.log(&format!("event queue: drain deferred ({})", f.code));
    }
}

/// A list of setting issues as platform-API JSON.
pub fn issues_json(issues: &[Issue]) -> Value {
    Value::Array(
        issues
            .iter()
            .map(|i| json!({"field": i.field, "code": i.code, "message_zh": i.message_zh, "message_en": i.message_en}))
            .collect(),
    )
}

impl Answer {
    /// The answer as the platform API's JSON body.
    pub fn to_json(&self) -> Value {
        match self {
            Answer::Identity(identity) => value(identity.as_ref()),
            Answer::Validation(issues) => {
                json!({"valid": issues.is_empty(), "issues": issues_json(issues)})
            }
            Answer::Guide(guide) => value(guide.as_ref()),
            Answer::SyncBatch(batch) => value(batch.as_ref()),
            Answer::Changes(page) => value(page),
            Answer::Todo(todo) => value(todo),
            Answer::TodoCompleted => json!({"done": true}),
            Answer::TodoDeleted => json!({"deleted": true}),
            Answer::MessageSent(task_id) => json!({"task_id": task_id}),
            Answer::Corps(corps) => json!({"corps": value(corps)}),
            Answer::CorpBound(summary) => value(summary),
            Answer::CorpUnbound => json!({"unbound": true}),
            Answer::BindingConfirmed => json!({"confirmed": true}),
        }
    }
}

/// A record as JSON (none of the answer records can fail to serialize).
fn value<T: serde::Serialize>(record: &T) -> Value {
    serde_json::to_value(record).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `func` names of each interface in `wit/world.wit`.
    fn wit_functions() -> Vec<String> {
        let wit = include_str!("../wit/world.wit");
        let mut interface = String::new();
        let mut found = Vec::new();
        for line in wit.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("interface ") {
                interface = rest.trim_end_matches('{').trim().to_string();
            } else if let Some((name, _)) = line.split_once(": func(") {
                found.push(format!("{interface}.{}", name.trim()));
            }
        }
        found
    }

    #[test]
    fn every_operation_has_its_typed_twin_in_the_wit_world() {
        let functions = wit_functions();
        assert!(
            functions.contains(&"routes.handle".to_string()),
            "{functions:?}"
        );
        for spec in OPERATIONS {
            match spec.typed {
                TypedExport::Function(f) => {
                    assert!(
                        functions.iter().any(|g| g == f),
                        "{} has no WIT function {f}",
                        spec.name
                    )
                }
                TypedExport::HttpOnly(reason) => assert!(!reason.is_empty()),
            }
        }
    }

    #[test]
    fn every_wit_function_is_an_operation_or_a_route() {
        // `routes.handle` serves the HTTP routes themselves; everything else is in the table.
        for f in wit_functions() {
            if f == "routes.handle" {
                continue;
            }
            assert!(
                OPERATIONS
                    .iter()
                    .any(|s| matches!(s.typed, TypedExport::Function(g) if g == f)),
                "WIT function {f} is not in OPERATIONS"
            );
        }
    }

    #[test]
    fn names_are_unique_and_routes_distinct() {
        for (i, a) in OPERATIONS.iter().enumerate() {
            for b in &OPERATIONS[i + 1..] {
                assert_ne!(a.name, b.name);
                assert!(
                    (a.method, a.path) != (b.method, b.path),
                    "{} and {}",
                    a.name,
                    b.name
                );
            }
        }
    }
}
