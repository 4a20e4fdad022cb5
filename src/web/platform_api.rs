//! R7: the platform API under `/dingding/api/*`, JSON, `Authorization: Bearer <platform_token>`.

use crate::env::Env;
use crate::failure::Failure;
use crate::settings::{raw_from_pairs, Issue, Settings};
use crate::web::http::{Request, Response};
use crate::web::router::{Outcome, Routed};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// Largest accepted request body.
pub const MAX_BODY: usize = 64 * 1024;

fn issues_json(issues: &[Issue]) -> Value {
    Value::Array(
        issues
            .iter()
            .map(|i| json!({"field": i.field, "code": i.code, "message_zh": i.message_zh, "message_en": i.message_en}))
            .collect(),
    )
}

fn ok(value: Value) -> Routed {
    Routed::plain(Response::json(200, &value))
}

fn unauthorized(message: &str) -> Routed {
    let mut r = Routed::json_failure(Failure::new(
        401,
        "unauthorized",
        message,
        "缺少或错误的 Authorization: Bearer 平台令牌（platform_token）。",
    ));
    r.response = r
        .response
        .header("www-authenticate", "Bearer realm=\"dingtalk-plugin\"");
    r
}

fn bearer(request: &Request) -> Option<&str> {
    let h = request.header("authorization")?.trim();
    let (scheme, token) = h.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// R7 while the settings are invalid: `config/validate` and `setup` still answer (with the issues)
/// to a caller holding a well-formed platform token; everything else is 503.
pub fn handle_unconfigured(request: &Request, issues: &[Issue]) -> Routed {
    let failure = crate::web::pages::config_failure(issues);
    let authenticated =
        bearer(request).is_some_and(|_| !issues.iter().any(|i| i.field == "platform_token"));
    if !authenticated {
        return Routed::json_failure(failure);
    }
    Routed {
        response: Response::json(
            503,
            &json!({"error": {"code": failure.code, "message": failure.message, "message_zh": failure.message_zh}, "issues": issues_json(issues)}),
        ),
        outcome: Outcome::Failed(failure),
    }
}

fn body_json<T: DeserializeOwned>(request: &Request) -> Result<T, Failure> {
    if request.body.len() > MAX_BODY {
        return Err(Failure::new(
            413,
            "body_too_large",
            "The request body is larger than 64 KiB.",
            "请求体超过 64 KiB。",
        ));
    }
    let body: &[u8] = if request.body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &request.body
    };
    serde_json::from_slice(body).map_err(|e| {
        Failure::bad_request(
            "invalid_json",
            format!("The request body is not the expected JSON: {e}."),
            format!("请求体不是预期的 JSON：{e}。"),
        )
    })
}

fn respond<T: serde::Serialize>(result: Result<T, Failure>) -> Routed {
    match result {
        Ok(v) => ok(serde_json::to_value(v).unwrap_or(Value::Null)),
        Err(f) => Routed::json_failure(f),
    }
}

#[derive(serde::Deserialize)]
struct TicketBody {
    ticket: String,
}

#[derive(serde::Deserialize)]
struct MessageRequest {
    #[serde(default)]
    corp_id: String,
    userids: Vec<String>,
    body: crate::notify::MessageBody,
}

#[derive(serde::Deserialize)]
struct BindingConfirm {
    corp_id: String,
    userid: String,
}

/// Dispatches an authenticated platform-API request.
pub fn handle(env: &mut dyn Env, settings: &Settings, request: &Request) -> Routed {
    let Some(expected) = &settings.platform_token else {
        return Routed::json_failure(Failure::new(
            503,
            "platform_token_missing",
            "The platform API is closed: set platform_token (at least 32 characters) in the plugin settings and send it as Authorization: Bearer.",
            "平台接口未开启：请在插件设置中填写 platform_token（至少 32 个字符），并以 Authorization: Bearer 发送。",
        ));
    };
    match bearer(request) {
        Some(t) if expected.matches(t) => {}
        _ => return unauthorized("Send Authorization: Bearer <platform_token>."),
    }
    let rest = request
        .path
        .trim_start_matches("/dingding/api")
        .trim_matches('/');
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let method = request.method.as_str();
    let not_found = || {
        Routed::json_failure(Failure::new(
            404,
            "not_found",
            format!("No platform API at {method} /dingding/api/{rest}."),
            format!("没有此平台接口：{method} /dingding/api/{rest}。"),
        ))
    };
    match (method, segments.as_slice()) {
        ("POST", ["tickets", "redeem"]) => match body_json::<TicketBody>(request) {
            Ok(b) => match crate::login::redeem_ticket(env, &b.ticket) {
                Ok(identity) => Routed {
                    response: Response::json(
                        200,
                        &serde_json::to_value(&identity).unwrap_or(Value::Null),
                    ),
                    outcome: Outcome::SignedIn(Box::new(identity)),
                },
                Err(f) => Routed::json_failure(f),
            },
            Err(f) => Routed::json_failure(f),
        },
        ("POST", ["config", "validate"]) => {
            // An empty body validates the running settings, which are valid if we got here.
            if request.body.iter().all(u8::is_ascii_whitespace) {
                return ok(json!({"valid": true, "issues": []}));
            }
            match body_json::<serde_json::Map<String, Value>>(request) {
                Ok(map) => {
                    let raw = raw_from_pairs(map.into_iter().map(|(k, v)| {
                        let v = match v {
                            Value::String(s) => s,
                            Value::Null => String::new(),
                            other => other.to_string(),
                        };
                        (k, v)
                    }));
                    let issues = Settings::parse(&raw).err().unwrap_or_default();
                    ok(json!({"valid": issues.is_empty(), "issues": issues_json(&issues)}))
                }
                Err(f) => Routed::json_failure(f),
            }
        }
        ("GET", ["setup"]) => respond(Ok::<_, Failure>(crate::setup::guide(env, settings))),
        ("POST", ["sync"]) => match body_json::<crate::sync::StepRequest>(request) {
            Ok(b) => respond(crate::sync::step_with(env, settings, &b)),
            Err(f) => Routed::json_failure(f),
        },
        ("GET", ["changes"]) => {
            let parse = |name: &str, default: u64| -> Result<u64, Failure> {
                match request.param(name) {
                    None => Ok(default),
                    Some(v) => v.parse::<u64>().map_err(|_| {
                        Failure::bad_request(
                            "bad_query",
                            format!("{name} must be a non-negative whole number."),
                            format!("{name} 必须是非负整数。"),
                        )
                    }),
                }
            };
            match (parse("after", 0), parse("limit", 100)) {
                (Ok(after), Ok(limit)) => respond(crate::directory::changelog::read(
                    env,
                    after,
                    limit.min(1000) as u32,
                )),
                (Err(f), _) | (_, Err(f)) => Routed::json_failure(f),
            }
        }
        ("POST", ["todos"]) => match body_json::<crate::notify::TodoSpec>(request) {
            Ok(t) => respond(crate::notify::create_todo(env, settings, &t)),
            Err(f) => Routed::json_failure(f),
        },
        ("POST", ["todos", source_id, "complete"]) => {
            let corp = request.param("corp_id").unwrap_or_default();
            respond(
                crate::notify::complete_todo(env, settings, &corp, source_id)
                    .map(|_| json!({"done": true})),
            )
        }
        ("DELETE", ["todos", source_id]) => {
            let corp = request.param("corp_id").unwrap_or_default();
            respond(
                crate::notify::delete_todo(env, settings, &corp, source_id)
                    .map(|_| json!({"deleted": true})),
            )
        }
        ("POST", ["messages"]) => match body_json::<MessageRequest>(request) {
            Ok(m) => respond(
                crate::notify::send_message(env, settings, &m.corp_id, &m.userids, &m.body)
                    .map(|task_id| json!({"task_id": task_id})),
            ),
            Err(f) => Routed::json_failure(f),
        },
        ("GET", ["corps"]) => {
            respond(crate::corps::list(env, settings).map(|c| json!({"corps": c})))
        }
        ("POST", ["corps"]) => match body_json::<crate::corps::CorpBinding>(request) {
            Ok(b) => respond(crate::corps::bind(env, settings, &b)),
            Err(f) => Routed::json_failure(f),
        },
        ("DELETE", ["corps", corp_id]) => {
            respond(crate::corps::unbind(env, settings, corp_id).map(|_| json!({"unbound": true})))
        }
        ("POST", ["bindings"]) => match body_json::<BindingConfirm>(request) {
            Ok(b) => respond(
                crate::login::confirm_binding(env, &b.corp_id, &b.userid)
                    .map(|_| json!({"confirmed": true})),
            ),
            Err(f) => Routed::json_failure(f),
        },
        _ => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::tests::sample;
    use crate::testing::FakeEnv;

    fn req(method: &str, path: &str, token: Option<&str>, body: &str) -> Request {
        let mut headers = vec![];
        if let Some(t) = token {
            headers.push(("authorization".to_string(), format!("Bearer {t}")));
        }
        Request::new(method, path, headers, body.as_bytes().to_vec())
    }

    const TOKEN: &str = "platform-token-0123456789abcdef0123";

    #[test]
    fn bearer_required() {
        let mut env = FakeEnv::new();
        let s = sample();
        assert_eq!(
            handle(
                &mut env,
                &s,
                &req("POST", "/dingding/api/tickets/redeem", None, "{}")
            )
            .response
            .status,
            401
        );
        assert_eq!(
            handle(
                &mut env,
                &s,
                &req("POST", "/dingding/api/tickets/redeem", Some("wrong"), "{}")
            )
            .response
            .status,
            401
        );
        let r = handle(
            &mut env,
            &s,
            &req(
                "POST",
                "/dingding/api/tickets/redeem",
                Some(TOKEN),
                "{\"ticket\":\"x\"}",
            ),
        );
        assert_eq!(r.response.status, 404);
    }

    #[test]
    fn bad_bodies_are_400() {
        let mut env = FakeEnv::new();
        let s = sample();
        for body in ["not json", "[]", "{\"ticket\": 5}", "{"] {
            let r = handle(
                &mut env,
                &s,
                &req("POST", "/dingding/api/tickets/redeem", Some(TOKEN), body),
            );
            assert_eq!(r.response.status, 400, "{body}");
            let v: Value = serde_json::from_slice(&r.response.body).unwrap();
            assert_eq!(v["error"]["code"], "invalid_json");
        }
        let big = "x".repeat(MAX_BODY + 1);
        assert_eq!(
            handle(
                &mut env,
                &s,
                &req("POST", "/dingding/api/todos", Some(TOKEN), &big)
            )
            .response
            .status,
            413
        );
        assert_eq!(
            handle(
                &mut env,
                &s,
                &req("GET", "/dingding/api/changes?after=-1", Some(TOKEN), "")
            )
            .response
            .status,
            400
        );
        assert_eq!(
            handle(
                &mut env,
                &s,
                &req("GET", "/dingding/api/nope", Some(TOKEN), "")
            )
            .response
            .status,
            404
        );
    }

    #[test]
    fn validate_returns_issues_without_network() {
        let mut env = FakeEnv::new();
        let s = sample();
        let r = handle(
            &mut env,
            &s,
            &req(
                "POST",
                "/dingding/api/config/validate",
                Some(TOKEN),
                "{\"site_url\":\"http://x\",\"app_secret\":\"supersecretvalue\"}",
            ),
        );
        assert_eq!(r.response.status, 200);
        let text = String::from_utf8(r.response.body).unwrap();
        assert!(text.contains("\"valid\":false") && text.contains("not_https"));
        assert!(!text.contains("supersecretvalue"));
        assert!(env.requests.is_empty());
    }
}
