//! R7: the platform API under `/dingding/api/*`, JSON, `Authorization: Bearer <platform_token>`.
//! Parses each request into an [`Operation`] of the shared table, runs it, and answers JSON.

use crate::env::Env;
use crate::failure::Failure;
use crate::operations::{self, issues_json, Operation};
use crate::secret::PlatformToken;
use crate::settings::{raw_from_pairs, Issue, RawSettings, Settings};
use crate::web::http::{Request, Response, MAX_BODY};
use crate::web::router::{Outcome, Routed};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

fn unauthorized() -> Routed {
    let mut r = Routed::json_failure(Failure::new(
        401,
        "unauthorized",
        "Send Authorization: Bearer <platform_token>.",
        "缺少或错误的 Authorization: Bearer 平台令牌（platform_token）。",
    ));
    r.response = r
        .response
        .header("www-authenticate", "Bearer realm=\"dingtalk-plugin\"");
    r
}

fn closed() -> Routed {
    Routed::json_failure(Failure::new(
        503,
        "platform_token_missing",
        "The platform API is closed: set platform_token (at least 32 characters) in the plugin settings and send it as Authorization: Bearer.",
        "平台接口未开启：请在插件设置中填写 platform_token（至少 32 个字符），并以 Authorization: Bearer 发送。",
    ))
}

fn bearer(request: &Request) -> Option<&str> {
    let h = request.header("authorization")?.trim();
    let (scheme, token) = h.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Checks the bearer against the configured token: `None` when it matches, else the refusal.
fn refusal(request: &Request, expected: Option<&PlatformToken>) -> Option<Routed> {
    let Some(expected) = expected else {
        return Some(closed());
    };
    match bearer(request) {
        Some(t) if expected.matches(t) => None,
        _ => Some(unauthorized()),
    }
}

/// R7 while the settings are invalid. The bearer is checked first, against `platform_token`
/// when that setting itself is valid (else the API is closed); an authenticated caller gets the
/// list of issues (503), never anything about a secret's value.
pub fn handle_unconfigured(request: &Request, raw: &RawSettings, issues: &[Issue]) -> Routed {
    if let Some(document) = crate::openapi::answer(request) {
        return document;
    }
    let token_valid = !issues.iter().any(|i| i.field == "platform_token");
    let expected = raw
        .get("platform_token")
        .map(|t| t.trim())
        .filter(|t| token_valid && !t.is_empty())
        .map(PlatformToken::new);
    if let Some(refused) = refusal(request, expected.as_ref()) {
        return refused;
    }
    let failure = crate::web::pages::config_failure(issues);
    Routed {
        response: Response::json(
            503,
            &json!({"error": {"code": failure.code, "message": failure.message, "message_zh": failure.message_zh}, "issues": issues_json(issues)}),
        ),
        outcome: Outcome::Failed(failure),
    }
}

fn body_is_empty(request: &Request) -> bool {
    request.body.iter().all(u8::is_ascii_whitespace)
}

/// The body as `T`. The error says where the JSON is wrong, never what was sent.
fn body_json<T: DeserializeOwned>(request: &Request, expected: &str) -> Result<T, Failure> {
    if request.body.len() > MAX_BODY {
        return Err(crate::web::router::body_too_large(
            crate::web::http::MAX_BODY,
        ));
    }
    let body: &[u8] = if body_is_empty(request) {
        b"{}"
    } else {
        &request.body
    };
    serde_json::from_slice(body).map_err(|e| {
        let at = format!("line {}, column {}", e.line(), e.column());
        Failure::bad_request(
            "invalid_json",
            format!("The request body must be {expected}; it is not ({at}). See /dingding/api/openapi.json for the fields and their types."),
            format!("请求体应为 {expected}，但不符合（{at}）。字段及类型见 /dingding/api/openapi.json。"),
        )
    })
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

fn query_number(request: &Request, name: &str, default: u64) -> Result<u64, Failure> {
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
}

/// Parses an authenticated platform-API request into its [`Operation`].
pub fn parse(request: &Request) -> Result<Operation, Failure> {
    let rest = request
        .path
        .trim_start_matches("/dingding/api")
        .trim_matches('/');
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let method = request.method.as_str();
    let corp_query = || request.param("corp_id").unwrap_or_default();
    Ok(match (method, segments.as_slice()) {
        ("POST", ["tickets", "redeem"]) => {
            let b: TicketBody = body_json(request, "{\"ticket\": string}")?;
            Operation::RedeemTicket { ticket: b.ticket }
        }
        ("POST", ["config", "validate"]) => {
            // An empty body validates the running settings.
            let raw = if body_is_empty(request) {
                None
            } else {
                let map: serde_json::Map<String, Value> =
                    body_json(request, "an object of settings")?;
                Some(raw_from_pairs(map.into_iter().map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s,
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    (k, v)
                })))
            };
            Operation::ValidateConfig { raw }
        }
        ("GET", ["setup"]) => Operation::SetupGuide,
        ("POST", ["sync"]) => Operation::SyncStep(body_json(
            request,
            "{\"corp_id\"?: string, \"ack\"?: string, \"restart\"?: bool}",
        )?),
        ("GET", ["changes"]) => Operation::Changes {
            after: query_number(request, "after", 0)?,
            limit: query_number(request, "limit", 100)?.min(u64::from(u32::MAX)) as u32,
        },
        ("POST", ["todos"]) => Operation::CreateTodo(body_json(request, "a to-do")?),
        ("POST", ["todos", source_id, "complete"]) => Operation::CompleteTodo {
            corp_id: corp_query(),
            source_id: source_id.to_string(),
        },
        ("DELETE", ["todos", source_id]) => Operation::DeleteTodo {
            corp_id: corp_query(),
            source_id: source_id.to_string(),
        },
        ("POST", ["messages"]) => {
            let m: MessageRequest = body_json(request, "a work notification")?;
            Operation::SendMessage {
                corp_id: m.corp_id,
                userids: m.userids,
                body: m.body,
            }
        }
        ("GET", ["corps"]) => Operation::ListCorps,
        ("POST", ["corps"]) => Operation::BindCorp(body_json(request, "a corp binding")?),
        ("DELETE", ["corps", corp_id]) => Operation::UnbindCorp {
            corp_id: corp_id.to_string(),
        },
        ("POST", ["bindings"]) => {
            let b: BindingConfirm =
                body_json(request, "{\"corp_id\": string, \"userid\": string}")?;
            Operation::ConfirmBinding {
                corp_id: b.corp_id,
                userid: b.userid,
            }
        }
        _ => {
            return Err(Failure::new(
                404,
                "not_found",
                format!("No platform API at {method} /dingding/api/{rest}."),
                format!("没有此平台接口：{method} /dingding/api/{rest}。"),
            ))
        }
    })
}

/// Answers a platform-API request: bearer, parse, run, JSON.
pub fn handle(env: &mut dyn Env, settings: &Settings, request: &Request) -> Routed {
    if let Some(document) = crate::openapi::answer(request) {
        return document;
    }
    if let Some(refused) = refusal(request, settings.platform_token.as_ref()) {
        return refused;
    }
    let answer = parse(request).and_then(|op| operations::run(env, settings, op));
    match answer {
        Ok(operations::Answer::Identity(identity)) => Routed {
            response: Response::json(200, &serde_json::to_value(&identity).unwrap_or(Value::Null)),
            outcome: Outcome::SignedIn(identity),
        },
        Ok(answer) => Routed::plain(Response::json(200, &answer.to_json())),
        Err(failure) => Routed::json_failure(failure),
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
    fn every_operation_in_the_table_is_served_over_http() {
        for spec in crate::operations::OPERATIONS {
            let path = spec
                .path
                .replace("{source_id}", "src-1")
                .replace("{corp_id}", "dingcorp");
            let body = match spec.name {
                "redeem_ticket" => r#"{"ticket":"t"}"#,
                "send_message" => r#"{"userids":["u"],"body":{"type":"text","content":"x"}}"#,
                "bind_corp" => {
                    r#"{"corp_id":"c","corp_name":"n","agent_id":"1","app_key":"k","app_secret":"s"}"#
                }
                "confirm_binding" => r#"{"corp_id":"c","userid":"u"}"#,
                "create_todo" => {
                    r#"{"source_id":"s","subject":"x","creator_userid":"u","executor_userids":["u"],"detail_path":"/f"}"#
                }
                _ => "",
            };
            let request = req(spec.method, &format!("/dingding/api/{path}"), None, body);
            match parse(&request) {
                Ok(op) => assert_eq!(op.name(), spec.name, "{} {}", spec.method, spec.path),
                Err(f) => panic!(
                    "{} {} does not parse: {}",
                    spec.method, spec.path, f.message
                ),
            }
        }
    }

    #[test]
    fn invalid_json_never_echoes_the_input() {
        let mut env = FakeEnv::new();
        let s = sample();
        let r = handle(
            &mut env,
            &s,
            &req(
                "POST",
                "/dingding/api/corps",
                Some(TOKEN),
                r#"{"corp_id":"c","app_secret":987654321}"#,
            ),
        );
        assert_eq!(r.response.status, 400);
        let text = String::from_utf8(r.response.body).unwrap();
        assert!(text.contains("invalid_json"), "{text}");
        assert!(!text.contains("987654321"), "{text}");
    }

    #[test]
    fn unconfigured_api_checks_the_bearer_first() {
        let mut raw = crate::settings::tests::sample_raw();
        raw.insert("app_secret".into(), String::new());
        let issues = Settings::parse(&raw).unwrap_err();
        for token in [None, Some("x"), Some("platform-token-0123456789abcdef0124")] {
            let r =
                handle_unconfigured(&req("GET", "/dingding/api/setup", token, ""), &raw, &issues);
            assert_eq!(r.response.status, 401, "{token:?}");
            assert!(!String::from_utf8(r.response.body)
                .unwrap()
                .contains("issues"));
        }
        let r = handle_unconfigured(
            &req("GET", "/dingding/api/setup", Some(TOKEN), ""),
            &raw,
            &issues,
        );
        assert_eq!(r.response.status, 503);
        assert!(String::from_utf8(r.response.body)
            .unwrap()
            .contains("app_secret"));
        raw.insert("platform_token".into(), "short".into());
        let issues = Settings::parse(&raw).unwrap_err();
        let r = handle_unconfigured(
            &req("GET", "/dingding/api/setup", Some("short"), ""),
            &raw,
            &issues,
        );
        assert_eq!(r.response.status, 503);
        assert_eq!(
            serde_json::from_slice::<Value>(&r.response.body).unwrap()["error"]["code"],
            "platform_token_missing"
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
