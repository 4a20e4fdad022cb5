//! The typed `dingtalk:plugin/*` exports: generated bindings on one side, core calls on the other.

pub(crate) mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "wit",
        generate_all,
    });
}

use super::host::WasiEnv;
use crate::failure::Failure;
use crate::model;
use crate::operations::{Answer, Operation};
use crate::settings::{raw_from_pairs, Issue, Settings};
use crate::web::http::Request;
use crate::web::router::{Mode, Outcome, Routed};
use bindings::dingtalk::plugin::types as wit;
use bindings::exports::dingtalk::plugin::{config, corps, directory, notify, routes};

struct Plugin;

bindings::export!(Plugin with_types_in bindings);

fn issue(i: &Issue) -> wit::SettingIssue {
    wit::SettingIssue {
        field: i.field.clone(),
        code: i.code.to_string(),
        message_zh: i.message_zh.clone(),
        message_en: i.message_en.clone(),
    }
}

fn failure(f: Failure) -> wit::Failure {
    wit::Failure {
        status: f.status,
        code: f.code,
        message: f.message,
    }
}

fn parse(settings: &wit::Settings) -> Result<Settings, Vec<Issue>> {
    Settings::parse(&raw_from_pairs(settings.iter().cloned()))
}

/// Settings for calls that answer with a `failure`: invalid settings become one 503 failure.
fn settings_or_failure(settings: &wit::Settings) -> Result<Settings, wit::Failure> {
    parse(settings).map_err(|issues| failure(crate::web::pages::config_failure(&issues)))
}

fn via(v: model::Via) -> wit::LoginVia {
    match v {
        model::Via::InappMobile => wit::LoginVia::InappMobile,
        model::Via::InappPc => wit::LoginVia::InappPc,
        model::Via::Qr => wit::LoginVia::Qr,
        model::Via::AdminSso => wit::LoginVia::AdminSso,
    }
}

fn identity(i: model::Identity) -> wit::Identity {
    wit::Identity {
        corp_id: i.corp_id,
        userid: i.userid,
        unionid: i.unionid,
        name: i.name,
        mobile: i.mobile,
        email: i.email,
        avatar: i.avatar,
        dept_ids: i.dept_ids,
        is_admin: i.is_admin,
        admin_level: i.admin_level,
        via: via(i.via),
        requires_sms_binding: i.requires_sms_binding,
        return_to: i.return_to,
    }
}

fn department(d: model::Department) -> wit::Department {
    wit::Department {
        corp_id: d.corp_id,
        dept_id: d.dept_id,
        parent_id: d.parent_id,
        name: d.name,
        order: d.order,
    }
}

fn member(m: model::Member) -> wit::Member {
    wit::Member {
        corp_id: m.corp_id,
        userid: m.userid,
        unionid: m.unionid,
        name: m.name,
        mobile: m.mobile,
        email: m.email,
        org_email: m.org_email,
        avatar: m.avatar,
        title: m.title,
        job_number: m.job_number,
        dept_ids: m.dept_ids,
        leader_dept_ids: m.leader_dept_ids,
        is_admin: m.is_admin,
        is_boss: m.is_boss,
        active: m.active,
    }
}

fn change(c: model::DirectoryChange) -> wit::DirectoryChange {
    use model::DirectoryChange as C;
    match c {
        C::DepartmentUpserted { department: d } => {
            wit::DirectoryChange::DepartmentUpserted(department(d))
        }
        C::DepartmentRemoved { corp_id, dept_id } => {
            wit::DirectoryChange::DepartmentRemoved(wit::DeptRef { corp_id, dept_id })
        }
        C::MemberUpserted { member: m } => wit::DirectoryChange::MemberUpserted(member(m)),
        C::MemberMoved {
            corp_id,
            userid,
            added_dept_ids,
            removed_dept_ids,
        } => wit::DirectoryChange::MemberMoved(wit::MembershipChange {
            corp_id,
            userid,
            added_dept_ids,
            removed_dept_ids,
        }),
        C::MemberDeactivated { corp_id, userid } => {
            wit::DirectoryChange::MemberDeactivated(wit::MemberRef { corp_id, userid })
        }
        C::AdminGranted { corp_id, userid } => {
            wit::DirectoryChange::AdminGranted(wit::MemberRef { corp_id, userid })
        }
        C::AdminRevoked { corp_id, userid } => {
            wit::DirectoryChange::AdminRevoked(wit::MemberRef { corp_id, userid })
        }
    }
}

fn sequenced(s: model::SequencedChange) -> wit::SequencedChange {
    wit::SequencedChange {
        seq: s.seq,
        at_ms: s.at_ms,
        change: change(s.change),
    }
}

/// Runs one operation of the shared table (`crate::operations`) for a typed call.
fn run(settings: &wit::Settings, operation: Operation) -> Result<Answer, wit::Failure> {
    let settings = settings_or_failure(settings)?;
    let mut env = WasiEnv::new();
    crate::operations::run(&mut env, &settings, operation).map_err(failure)
}

/// The answer an operation gives by construction; anything else is an internal mismatch.
fn mismatch() -> wit::Failure {
    wit::Failure {
        status: 500,
        code: "internal".into(),
        message: "The plugin answered an operation with the wrong kind of result.".into(),
    }
}

impl config::Guest for Plugin {
    fn validate(settings: wit::Settings) -> Vec<wit::SettingIssue> {
        crate::operations::validate(&raw_from_pairs(settings))
            .iter()
            .map(issue)
            .collect()
    }

    fn setup_guide(settings: wit::Settings) -> Result<config::Guide, Vec<wit::SettingIssue>> {
        let settings =
            parse(&settings).map_err(|issues| issues.iter().map(issue).collect::<Vec<_>>())?;
        let mut env = WasiEnv::new();
        // `Operation::SetupGuide`, called directly: this export answers invalid settings with
        // their issues rather than one failure.
        let g = crate::setup::guide(&mut env, &settings);
        Ok(config::Guide {
            mobile_home_url: g.mobile_home_url,
            pc_home_url: g.pc_home_url,
            admin_url: g.admin_url,
            login_callback_url: g.login_callback_url,
            events_url: g.events_url,
            permissions: g
                .permissions
                .iter()
                .map(|p| config::Permission {
                    code: p.code.to_string(),
                    name: p.name.to_string(),
                    purpose: p.purpose.to_string(),
                    source: p.source.to_string(),
                })
                .collect(),
            checks: g
                .checks
                .into_iter()
                .map(|c| config::SetupCheck {
                    name: c.name.to_string(),
                    passed: c.passed,
                    detail: c.detail,
                    action: c.action,
                })
                .collect(),
            steps: g.steps,
        })
    }
}

impl routes::Guest for Plugin {
    fn handle(settings: wit::Settings, request: wit::HttpRequest) -> wit::Routed {
        let mut env = WasiEnv::new();
        let raw = raw_from_pairs(settings);
        let req = Request::new(
            &request.method,
            &request.path_with_query,
            request.headers,
            request.body,
        );
        let limit = crate::web::http::body_limit(&req.path);
        let routed = if req.body.len() > limit {
            Routed::json_failure(crate::web::router::body_too_large(limit))
        } else {
            crate::web::router::handle(&mut env, &raw, &req, Mode::Typed)
        };
        let outcome = match routed.outcome {
            Outcome::None => wit::Outcome::None,
            Outcome::SignedIn(i) => wit::Outcome::SignedIn(identity(*i)),
            Outcome::CorpChoice(options) => wit::Outcome::CorpChoice(
                options
                    .into_iter()
                    .map(|o| wit::CorpOption {
                        corp_id: o.corp_id,
                        corp_name: o.corp_name,
                    })
                    .collect(),
            ),
            Outcome::DirectoryChanged(changes) => {
                wit::Outcome::DirectoryChanged(changes.into_iter().map(sequenced).collect())
            }
            Outcome::Failed(f) => wit::Outcome::Failed(failure(f)),
        };
        wit::Routed {
            response: wit::HttpResponse {
                status: routed.response.status,
                headers: routed.response.headers,
                body: routed.response.body,
            },
            outcome,
        }
    }

    fn redeem_ticket(
        settings: wit::Settings,
        ticket: String,
    ) -> Result<wit::Identity, wit::Failure> {
        match run(&settings, Operation::RedeemTicket { ticket })? {
            Answer::Identity(i) => Ok(identity(*i)),
            _ => Err(mismatch()),
        }
    }
}

impl directory::Guest for Plugin {
    fn sync_step(
        settings: wit::Settings,
        request: directory::SyncRequest,
    ) -> Result<directory::SyncBatch, wit::Failure> {
        let request = crate::sync::StepRequest {
            corp_id: request.corp_id,
            ack: request.ack,
            restart: request.restart,
        };
        let Answer::SyncBatch(b) = run(&settings, Operation::SyncStep(request))? else {
            return Err(mismatch());
        };
        let b = *b;
        Ok(directory::SyncBatch {
            departments: b.departments.into_iter().map(department).collect(),
            members: b.members.into_iter().map(member).collect(),
            changes: b.changes.into_iter().map(change).collect(),
            progress: directory::SyncProgress {
                pass: b.progress.pass,
                departments_done: b.progress.departments_done,
                departments_known: b.progress.departments_known,
                members_seen: b.progress.members_seen,
                calls: b.progress.calls,
                complete: b.progress.complete,
            },
            retry_after_ms: b.retry_after_ms,
            cursor: b.cursor,
        })
    }

    fn changes(
        settings: wit::Settings,
        after: u64,
        limit: u32,
    ) -> Result<directory::ChangePage, wit::Failure> {
        let Answer::Changes(page) = run(&settings, Operation::Changes { after, limit })? else {
            return Err(mismatch());
        };
        Ok(directory::ChangePage {
            changes: page.changes.into_iter().map(sequenced).collect(),
            next_after: page.next_after,
        })
    }
}

impl notify::Guest for Plugin {
    fn create_todo(
        settings: wit::Settings,
        todo: notify::Todo,
    ) -> Result<notify::TodoRef, wit::Failure> {
        let spec = crate::notify::TodoSpec {
            corp_id: todo.corp_id,
            source_id: todo.source_id,
            subject: todo.subject,
            description: todo.description,
            creator_userid: todo.creator_userid,
            executor_userids: todo.executor_userids,
            due_ms: todo.due_ms,
            detail_path: todo.detail_path,
            priority: todo.priority,
        };
        match run(&settings, Operation::CreateTodo(spec))? {
            Answer::Todo(r) => Ok(notify::TodoRef {
                task_id: r.task_id,
                source_id: r.source_id,
                created: r.created,
            }),
            _ => Err(mismatch()),
        }
    }

    fn complete_todo(
        settings: wit::Settings,
        corp_id: String,
        source_id: String,
    ) -> Result<(), wit::Failure> {
        run(&settings, Operation::CompleteTodo { corp_id, source_id }).map(drop)
    }

    fn delete_todo(
        settings: wit::Settings,
        corp_id: String,
        source_id: String,
    ) -> Result<(), wit::Failure> {
        run(&settings, Operation::DeleteTodo { corp_id, source_id }).map(drop)
    }

    fn send_message(
        settings: wit::Settings,
        corp_id: String,
        userids: Vec<String>,
        body: notify::MessageBody,
    ) -> Result<u64, wit::Failure> {
        let body = match body {
            notify::MessageBody::Text(content) => crate::notify::MessageBody::Text { content },
            notify::MessageBody::Markdown((title, text)) => {
                crate::notify::MessageBody::Markdown { title, text }
            }
            notify::MessageBody::ActionCard(card) => crate::notify::MessageBody::ActionCard {
                title: card.title,
                markdown: card.markdown,
                button_title: card.button_title,
                url: card.url,
            },
        };
        let operation = Operation::SendMessage {
            corp_id,
            userids,
            body,
        };
        match run(&settings, operation)? {
            Answer::MessageSent(task_id) => Ok(task_id),
            _ => Err(mismatch()),
        }
    }
}

impl corps::Guest for Plugin {
    fn bind_corp(
        settings: wit::Settings,
        binding: corps::CorpBinding,
    ) -> Result<corps::CorpSummary, wit::Failure> {
        let b = crate::corps::CorpBinding {
            corp_id: binding.corp_id,
            corp_name: binding.corp_name,
            agent_id: binding.agent_id,
            app_key: binding.app_key,
            app_secret: binding.app_secret,
            sso_secret: binding.sso_secret,
        };
        match run(&settings, Operation::BindCorp(b))? {
            Answer::CorpBound(s) => Ok(summary(s)),
            _ => Err(mismatch()),
        }
    }

    fn list_corps(settings: wit::Settings) -> Result<Vec<corps::CorpSummary>, wit::Failure> {
        match run(&settings, Operation::ListCorps)? {
            Answer::Corps(list) => Ok(list.into_iter().map(summary).collect()),
            _ => Err(mismatch()),
        }
    }

    fn unbind_corp(settings: wit::Settings, corp_id: String) -> Result<(), wit::Failure> {
        run(&settings, Operation::UnbindCorp { corp_id }).map(drop)
    }

    fn confirm_binding(
        settings: wit::Settings,
        corp_id: String,
        userid: String,
    ) -> Result<(), wit::Failure> {
        run(&settings, Operation::ConfirmBinding { corp_id, userid }).map(drop)
    }
}

fn summary(s: crate::corps::CorpSummary) -> corps::CorpSummary {
    corps::CorpSummary {
        corp_id: s.corp_id,
        corp_name: s.corp_name,
        agent_id: s.agent_id,
        app_key: s.app_key,
        has_sso_secret: s.has_sso_secret,
        configured: s.configured,
    }
}
