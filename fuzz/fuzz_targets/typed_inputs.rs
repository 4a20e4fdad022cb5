//! The typed exports' inputs: every `Operation` built from arbitrary data and run with valid
//! settings against a scripted (or unreachable) DingTalk. Must not panic; failures carry a 4xx
//! or 5xx status and answers render as JSON.
#![no_main]

use arbitrary::Arbitrary;
use dingtalk_plugin::fuzzing::{sample, CorpBinding, FuzzEnv, MessageBody, StepRequest, TodoSpec};
use dingtalk_plugin::{run, Operation, RawSettings};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Body {
    Text(String),
    Markdown(String, String),
    ActionCard(String, String, String, String),
}

#[derive(Arbitrary, Debug)]
enum Op {
    RedeemTicket(String),
    ValidateConfig(Option<Vec<(String, String)>>),
    SetupGuide,
    SyncStep(String, Option<String>, bool),
    Changes(u64, u32),
    CreateTodo {
        corp_id: String,
        source_id: String,
        subject: String,
        description: Option<String>,
        creator_userid: String,
        executor_userids: Vec<String>,
        due_ms: Option<u64>,
        detail_path: String,
        priority: Option<u32>,
    },
    CompleteTodo(String, String),
    DeleteTodo(String, String),
    SendMessage(String, Vec<String>, Body),
    ListCorps,
    BindCorp {
        corp_id: String,
        corp_name: String,
        agent_id: String,
        app_key: String,
        app_secret: String,
        sso_secret: Option<String>,
    },
    UnbindCorp(String),
    ConfirmBinding(String, String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    ops: Vec<Op>,
    answers: Vec<(u16, String)>,
    tokens: bool,
}

fn operation(op: Op) -> Operation {
    match op {
        Op::RedeemTicket(ticket) => Operation::RedeemTicket { ticket },
        Op::ValidateConfig(raw) => Operation::ValidateConfig {
            raw: raw.map(|pairs| pairs.into_iter().collect::<RawSettings>()),
        },
        Op::SetupGuide => Operation::SetupGuide,
        Op::SyncStep(corp_id, ack, restart) => Operation::SyncStep(StepRequest {
            corp_id,
            ack,
            restart,
        }),
        Op::Changes(after, limit) => Operation::Changes { after, limit },
        Op::CreateTodo {
            corp_id,
            source_id,
            subject,
            description,
            creator_userid,
            executor_userids,
            due_ms,
            detail_path,
            priority,
        } => Operation::CreateTodo(TodoSpec {
            corp_id,
            source_id,
            subject,
            description,
            creator_userid,
            executor_userids,
            due_ms,
            detail_path,
            priority,
        }),
        Op::CompleteTodo(corp_id, source_id) => Operation::CompleteTodo { corp_id, source_id },
        Op::DeleteTodo(corp_id, source_id) => Operation::DeleteTodo { corp_id, source_id },
        Op::SendMessage(corp_id, userids, body) => Operation::SendMessage {
            corp_id,
            userids,
            body: match body {
                Body::Text(content) => MessageBody::Text { content },
                Body::Markdown(title, text) => MessageBody::Markdown { title, text },
                Body::ActionCard(title, markdown, button_title, url) => MessageBody::ActionCard {
                    title,
                    markdown,
                    button_title,
                    url,
                },
            },
        },
        Op::ListCorps => Operation::ListCorps,
        Op::BindCorp {
            corp_id,
            corp_name,
            agent_id,
            app_key,
            app_secret,
            sso_secret,
        } => Operation::BindCorp(CorpBinding {
            corp_id,
            corp_name,
            agent_id,
            app_key,
            app_secret,
            sso_secret,
        }),
        Op::UnbindCorp(corp_id) => Operation::UnbindCorp { corp_id },
        Op::ConfirmBinding(corp_id, userid) => Operation::ConfirmBinding { corp_id, userid },
    }
}

fuzz_target!(|input: Input| {
    let settings = sample();
    let mut env = FuzzEnv::new();
    env.answer_tokens = input.tokens;
    env.answers = input
        .answers
        .into_iter()
        .take(8)
        .map(|(s, b)| (s, b.into_bytes()))
        .collect();
    for op in input.ops.into_iter().take(4) {
        let op = operation(op);
        let name = op.name();
        match run(&mut env, &settings, op) {
            Ok(answer) => {
                let _ = answer.to_json();
            }
            Err(failure) => {
                assert!((400..600).contains(&failure.status), "{name}: {failure:?}");
                let _ = failure.to_json();
            }
        }
        env.now += 1_000;
    }
});
