//! The platform API's OpenAPI 3.1 document (`docs/openapi.json`), served without a bearer at
//! `GET /dingding/api/openapi.json`: it describes every operation of [`crate::operations::OPERATIONS`]
//! and holds no data. The tests hold the document to the code: its paths are exactly the table's,
//! every example matches its schema, and answers built from the real types match the response
//! schemas, so a schema that drifts from the serde output fails here.

use crate::web::http::{Request, Response};
use crate::web::router::Routed;

/// The document as checked in: indented, for people to read and review.
const CHECKED_IN: &[u8] = include_bytes!("../docs/openapi.json");

/// The document as served: the checked-in JSON without the whitespace between tokens, done at
/// compile time. The same JSON in about half the bytes, which keeps the component under 1 MiB
/// (README, "Benchmark").
pub static DOCUMENT: &[u8] = &MINIFIED;

const MINIFIED_LEN: usize = minify(CHECKED_IN, &mut []);
static MINIFIED: [u8; MINIFIED_LEN] = {
    let mut out = [0; MINIFIED_LEN];
    minify(CHECKED_IN, &mut out);
    out
};

/// Copies the JSON text `json` into `out` without the insignificant whitespace between tokens
/// (RFC 8259 §2: space, tab, line feed, carriage return outside strings); strings, escapes
/// included, are copied unchanged. Returns the minified length; bytes past the end of `out` are
/// only counted, so an empty `out` measures.
const fn minify(json: &[u8], out: &mut [u8]) -> usize {
    let (mut i, mut len) = (0, 0);
    let (mut in_string, mut escaped) = (false, false);
    while i < json.len() {
        let b = json[i];
        i += 1;
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        } else if b == b'"' {
            in_string = true;
        }
        if len < out.len() {
            out[len] = b;
        }
        len += 1;
    }
    len
}

/// Where the document is served.
pub const PATH: &str = "/dingding/api/openapi.json";

/// The document, when `request` asks for it (before any bearer check, also while the settings
/// are invalid); `None` for every other request.
pub fn answer(request: &Request) -> Option<Routed> {
    if request.method != "GET" || request.path != PATH {
        return None;
    }
    // The document is JSON already: keep its bytes (and key order) rather than re-serialize.
    let mut response = Response::json(200, &serde_json::Value::Null);
    response.body = DOCUMENT.to_vec();
    Some(Routed::plain(response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corps::CorpSummary;
    use crate::directory::changelog::ChangePage;
    use crate::failure::Failure;
    use crate::model::{Department, DirectoryChange, Identity, Member, SequencedChange, Via};
    use crate::notify::TodoRef;
    use crate::operations::{Answer, OPERATIONS};
    use crate::settings::tests::{sample, sample_raw};
    use crate::sync::{SyncBatch, SyncProgress};
    use crate::testing::FakeEnv;
    use crate::web::router::{self, Mode};
    use serde_json::{json, Value};
    use std::collections::BTreeSet;

    const BASE: &str = "https://dingtalk-plugin.invalid/openapi.json";
    const TOKEN: &str = "platform-token-0123456789abcdef0123";
    const METHODS: &[&str] = &[
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    fn document() -> Value {
        serde_json::from_slice(CHECKED_IN).expect("docs/openapi.json is JSON")
    }

    /// One JSON-pointer token, escaped.
    fn token(s: &str) -> String {
        s.replace('~', "~0").replace('/', "~1")
    }

    /// Compiles schemas at JSON pointers of the document (JSON Schema 2020-12) and validates.
    struct Validator {
        compiler: boon::Compiler,
        schemas: boon::Schemas,
    }

    impl Validator {
        fn new() -> Self {
            let mut compiler = boon::Compiler::new();
            compiler.set_default_draft(boon::Draft::V2020_12);
            compiler
                .add_resource(BASE, document())
                .expect("the document loads");
            Validator {
                compiler,
                schemas: boon::Schemas::new(),
            }
        }

        /// Validates `instance` against the schema at `pointer`.
        fn check(&mut self, pointer: &str, instance: &Value) -> Result<(), String> {
            let fragment = pointer.replace('{', "%7B").replace('}', "%7D");
            let index = self
                .compiler
                .compile(&format!("{BASE}#{fragment}"), &mut self.schemas)
                .map_err(|e| format!("schema at {pointer} does not compile: {e:#}"))?;
            self.schemas
                .validate(instance, index)
                .map_err(|e| format!("{instance} does not match {pointer}: {e:#}"))
        }
    }

    /// Follows an OpenAPI-level `$ref` (responses) to its pointer and value.
    fn deref<'a>(doc: &'a Value, pointer: String, value: &'a Value) -> (String, &'a Value) {
        match value.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let p = r.strip_prefix('#').expect("local $ref").to_string();
                let target = doc.pointer(&p).unwrap_or_else(|| panic!("{r} resolves"));
                (p, target)
            }
            None => (pointer, value),
        }
    }

    /// `/paths/{path}/{method}` of an operation of the table.
    fn operation_pointer(method: &str, path: &str) -> String {
        format!(
            "/paths/{}/{}",
            token(&format!("/{path}")),
            method.to_ascii_lowercase()
        )
    }

    /// The schema pointer of an operation's JSON answer with this status; panics when the
    /// document does not list the status for the operation.
    fn response_schema(doc: &Value, method: &str, path: &str, status: u16) -> String {
        let op = operation_pointer(method, path);
        let at = format!("{op}/responses/{status}");
        let value = doc
            .pointer(&at)
            .unwrap_or_else(|| panic!("{method} {path} does not document status {status}"));
        let (at, _) = deref(doc, at, value);
        format!("{at}/content/application~1json/schema")
    }

    fn spec(name: &str) -> &'static crate::operations::OperationSpec {
        OPERATIONS
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no operation {name}"))
    }

    #[test]
    fn paths_are_exactly_the_operations_table() {
        let doc = document();
        let mut expected: BTreeSet<(String, String)> = OPERATIONS
            .iter()
            .map(|s| (s.method.to_ascii_lowercase(), format!("/{}", s.path)))
            .collect();
        expected.insert(("get".into(), "/openapi.json".into()));
        let mut found = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("path item") {
                assert!(
                    METHODS.contains(&method.as_str()),
                    "{path}: unexpected key {method}"
                );
                found.insert((method.clone(), path.clone()));
                // Every {placeholder} is a required path parameter, and nothing else is.
                let placeholders: BTreeSet<String> = path
                    .split('/')
                    .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                    .map(String::from)
                    .collect();
                let params: BTreeSet<String> = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "path")
                    .inspect(|p| assert_eq!(p["required"], true, "{method} {path}: {p}"))
                    .map(|p| p["name"].as_str().expect("name").to_string())
                    .collect();
                assert_eq!(placeholders, params, "{method} {path}");
            }
        }
        let missing: Vec<_> = expected.difference(&found).collect();
        let extra: Vec<_> = found.difference(&expected).collect();
        assert!(
            missing.is_empty(),
            "operations missing from the document: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "document routes not in OPERATIONS: {extra:?}"
        );
        for s in OPERATIONS {
            let op = &doc
                .pointer(&operation_pointer(s.method, s.path))
                .expect("listed");
            assert_eq!(op["operationId"], s.name, "{} {}", s.method, s.path);
            // Every operation needs the bearer: no per-operation override of the global one.
            assert!(op.get("security").is_none(), "{}", s.name);
            response_schema(&doc, s.method, s.path, 401);
        }
        assert_eq!(doc["security"], json!([{"bearer": []}]));
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert_eq!(
            doc.pointer("/paths/~1openapi.json/get/security"),
            Some(&json!([]))
        );
    }

    #[test]
    fn every_example_matches_its_schema() {
        let doc = document();
        let mut v = Validator::new();
        // Every media type of a request body or a response, inline or shared.
        let mut media = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("path item") {
                let op = format!("/paths/{}/{method}", token(path));
                if let Some(body) = operation.get("requestBody") {
                    media.push(format!("{op}/requestBody"));
                    assert!(body["content"].is_object(), "{op}");
                }
                for (status, response) in operation["responses"].as_object().expect("responses") {
                    let at = format!("{op}/responses/{status}");
                    let (at, _) = deref(&doc, at, response);
                    media.push(at);
                }
                for (i, p) in operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let example = p.get("example").unwrap_or_else(|| panic!("{op}: {p}"));
                    v.check(&format!("{op}/parameters/{i}/schema"), example)
                        .unwrap();
                }
            }
        }
        let mut checked = 0;
        for owner in media {
            let content = doc
                .pointer(&format!("{owner}/content"))
                .and_then(Value::as_object)
                .unwrap_or_else(|| panic!("{owner} has no content"));
            for (media_type, m) in content {
                let at = format!("{owner}/content/{}", token(media_type));
                let examples = m["examples"]
                    .as_object()
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| panic!("{at} has no examples"));
                for (name, example) in examples {
                    let value = example
                        .get("value")
                        .unwrap_or_else(|| panic!("{at} example {name} has no value"));
                    v.check(&format!("{at}/schema"), value)
                        .unwrap_or_else(|e| panic!("example {name}: {e}"));
                    checked += 1;
                }
            }
        }
        assert!(checked > 60, "only {checked} examples");
    }

    fn member(userid: &str, full: bool) -> Member {
        let some = |s: &str| full.then(|| s.to_string());
        Member {
            corp_id: "dingcorp123".into(),
            userid: userid.into(),
            unionid: some("union-1"),
            name: "张三".into(),
            mobile: some("13800000000"),
            email: some("z@example.com"),
            org_email: some("zhangsan@example.com"),
            avatar: some("https://example.com/a.png"),
            title: some("工程师"),
            job_number: some("A0042"),
            dept_ids: vec![1, 42],
            leader_dept_ids: if full { vec![42] } else { vec![] },
            is_admin: full,
            is_boss: false,
            active: true,
        }
    }

    /// One change of every kind.
    fn every_change() -> Vec<DirectoryChange> {
        let corp_id = || "dingcorp123".to_string();
        let userid = || "manager4512".to_string();
        let changes = vec![
            DirectoryChange::DepartmentUpserted {
                department: Department {
                    corp_id: corp_id(),
                    dept_id: 42,
                    parent_id: Some(1),
                    name: "研发部".into(),
                    order: Some(3),
                },
            },
            DirectoryChange::DepartmentRemoved {
                corp_id: corp_id(),
                dept_id: 7,
            },
            DirectoryChange::MemberUpserted {
                member: member("manager4512", true),
            },
            DirectoryChange::MemberMoved {
                corp_id: corp_id(),
                userid: userid(),
                added_dept_ids: vec![42],
                removed_dept_ids: vec![7],
            },
            DirectoryChange::MemberDeactivated {
                corp_id: corp_id(),
                userid: userid(),
            },
            DirectoryChange::AdminGranted {
                corp_id: corp_id(),
                userid: userid(),
            },
            DirectoryChange::AdminRevoked {
                corp_id: corp_id(),
                userid: userid(),
            },
        ];
        // A new kind must be added above (and to the document).
        for c in &changes {
            match c {
                DirectoryChange::DepartmentUpserted { .. }
                | DirectoryChange::DepartmentRemoved { .. }
                | DirectoryChange::MemberUpserted { .. }
                | DirectoryChange::MemberMoved { .. }
                | DirectoryChange::MemberDeactivated { .. }
                | DirectoryChange::AdminGranted { .. }
                | DirectoryChange::AdminRevoked { .. } => {}
            }
        }
        changes
    }

    fn identity(full: bool, via: Via) -> Identity {
        let some = |s: &str| full.then(|| s.to_string());
        Identity {
            corp_id: "dingcorp123".into(),
            userid: "manager4512".into(),
            unionid: if full {
                "union-1".into()
            } else {
                String::new()
            },
            name: "张三".into(),
            mobile: some("13800000000"),
            email: some("zhangsan@example.com"),
            avatar: some("https://example.com/a.png"),
            dept_ids: if full { vec![1, 42] } else { vec![] },
            is_admin: !full,
            admin_level: if full { 0 } else { 1 },
            via,
            requires_sms_binding: full,
            return_to: some("/forms/1"),
        }
    }

    /// The operation whose 200 answer `answer` is. Exhaustive: a new [`Answer`] variant does not
    /// compile until it is mapped here and sampled below.
    fn operation_of(answer: &Answer) -> &'static str {
        match answer {
            Answer::Identity(_) => "redeem_ticket",
            Answer::Validation(_) => "validate_config",
            Answer::Guide(_) => "setup_guide",
            Answer::SyncBatch(_) => "sync_step",
            Answer::Changes(_) => "changes",
            Answer::Todo(_) => "create_todo",
            Answer::TodoCompleted => "complete_todo",
            Answer::TodoDeleted => "delete_todo",
            Answer::MessageSent(_) => "send_message",
            Answer::Corps(_) => "list_corps",
            Answer::CorpBound(_) => "bind_corp",
            Answer::CorpUnbound => "unbind_corp",
            Answer::BindingConfirmed => "confirm_binding",
        }
    }

    /// Answers built with the real types, the real guide and the real validation.
    fn sample_answers() -> Vec<Answer> {
        let settings = sample();
        let mut bad = sample_raw();
        bad.insert("site_url".into(), "http://forms.example.com".into());
        bad.insert("app_secret".into(), String::new());
        bad.insert("sync_qps".into(), "99".into());
        let issues = crate::operations::validate(&bad);
        assert!(issues.len() >= 3, "{issues:?}");
        // The guide with every DingTalk call failing, and with a fake DingTalk that answers.
        let failing = crate::setup::guide(&mut FakeEnv::new(), &settings);
        let mut env = FakeEnv::new();
        env.answer(
            "/topapi/v2/user/list",
            json!({"errcode": 0, "result": {"has_more": false, "list": []}}),
        );
        let answering = crate::setup::guide(&mut env, &settings);
        let corps = crate::corps::list(&mut FakeEnv::new(), &settings).expect("corps");
        let changes = every_change();
        let batch = |retry: Option<u32>, complete: bool| SyncBatch {
            departments: vec![
                Department {
                    corp_id: "dingcorp123".into(),
                    dept_id: 1,
                    parent_id: None,
                    name: "示例公司".into(),
                    order: None,
                },
                Department {
                    corp_id: "dingcorp123".into(),
                    dept_id: 42,
                    parent_id: Some(1),
                    name: "研发部".into(),
                    order: Some(10),
                },
            ],
            members: vec![member("manager4512", true), member("new01", false)],
            changes: changes.clone(),
            progress: SyncProgress {
                pass: 2,
                departments_done: 2,
                departments_known: 2,
                members_seen: 2,
                calls: 5,
                complete,
            },
            retry_after_ms: retry,
            cursor: "2:12".into(),
        };
        vec![
            Answer::Identity(Box::new(identity(true, Via::Qr))),
            Answer::Identity(Box::new(identity(false, Via::AdminSso))),
            Answer::Identity(Box::new(identity(true, Via::InappMobile))),
            Answer::Identity(Box::new(identity(true, Via::InappPc))),
            Answer::Validation(issues),
            Answer::Validation(vec![]),
            Answer::Guide(Box::new(failing)),
            Answer::Guide(Box::new(answering)),
            Answer::SyncBatch(Box::new(batch(None, true))),
            Answer::SyncBatch(Box::new(batch(Some(1000), false))),
            Answer::SyncBatch(Box::default()),
            Answer::Changes(ChangePage {
                changes: changes
                    .into_iter()
                    .enumerate()
                    .map(|(i, change)| SequencedChange {
                        seq: 41 + i as u64,
                        at_ms: 1_767_225_600_000 + i as u64,
                        change,
                    })
                    .collect(),
                next_after: 47,
            }),
            Answer::Changes(ChangePage::default()),
            Answer::Todo(TodoRef {
                task_id: "task1a2b3c".into(),
                source_id: "form-7-entry-1234".into(),
                created: true,
            }),
            Answer::TodoCompleted,
            Answer::TodoDeleted,
            Answer::MessageSent(712_345_678_901),
            Answer::Corps(corps),
            Answer::CorpBound(CorpSummary {
                corp_id: "dingother456".into(),
                corp_name: String::new(),
                agent_id: "2000002".into(),
                app_key: "dingotherkey456".into(),
                has_sso_secret: false,
                configured: false,
            }),
            Answer::CorpUnbound,
            Answer::BindingConfirmed,
        ]
    }

    #[test]
    fn real_answers_match_the_response_schemas() {
        let doc = document();
        let mut v = Validator::new();
        let answers = sample_answers();
        for s in OPERATIONS {
            assert!(
                answers.iter().any(|a| operation_of(a) == s.name),
                "no sample answer for {}",
                s.name
            );
        }
        for answer in &answers {
            let s = spec(operation_of(answer));
            let schema = response_schema(&doc, s.method, s.path, 200);
            v.check(&schema, &answer.to_json())
                .unwrap_or_else(|e| panic!("{}: {e}", s.name));
        }
        // Failures, as every route renders them.
        let failures = [
            Failure::storage(),
            Failure::bad_request("invalid_json", "m", "中"),
            Failure::new(410, "ticket_invalid", "m", "中"),
        ];
        for f in &failures {
            let r = Response::json_failure(f);
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            v.check("/components/schemas/Error", &body).unwrap();
        }
    }

    fn request(method: &str, path: &str, bearer: bool, body: &str) -> Request {
        let headers = if bearer {
            vec![("authorization".to_string(), format!("Bearer {TOKEN}"))]
        } else {
            vec![]
        };
        Request::new(method, path, headers, body.as_bytes().to_vec())
    }

    /// Runs a request through the router and checks its status is documented for the operation
    /// and its body matches that status's schema.
    fn check_routed(
        doc: &Value,
        v: &mut Validator,
        raw: &crate::settings::RawSettings,
        name: &str,
        request: Request,
    ) -> u16 {
        let s = spec(name);
        let routed = router::handle(&mut FakeEnv::new(), raw, &request, Mode::Http);
        let r = routed.response;
        assert!(
            r.get_header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{name}"
        );
        let body: Value = serde_json::from_slice(&r.body).expect("JSON");
        let schema = response_schema(doc, s.method, s.path, r.status);
        v.check(&schema, &body)
            .unwrap_or_else(|e| panic!("{name} {}: {e}", r.status));
        r.status
    }

    #[test]
    fn routed_answers_and_failures_match_the_document() {
        let doc = document();
        let mut v = Validator::new();
        let raw = sample_raw();
        let path = |s: &crate::operations::OperationSpec| {
            format!(
                "/dingding/api/{}",
                s.path
                    .replace("{source_id}", "form-7")
                    .replace("{corp_id}", "dingother456")
            )
        };
        // Without a bearer, every operation: 401 with the challenge.
        for s in OPERATIONS {
            let status = check_routed(
                &doc,
                &mut v,
                &raw,
                s.name,
                request(s.method, &path(s), false, ""),
            );
            assert_eq!(status, 401, "{}", s.name);
        }
        // With it: what the plugin answers with no DingTalk behind it (every call fails).
        let calls = [
            ("redeem_ticket", r#"{"ticket":"x"}"#, 404),
            ("redeem_ticket", r#"{"ticket":5}"#, 400),
            (
                "redeem_ticket",
                r#"{"ticket":"0123456789abcdef0123456789abcdef0123456789abcdef"}"#,
                410,
            ),
            (
                "validate_config",
                r#"{"site_url":"http://x","sync_qps":99,"qr_login_enabled":true}"#,
                200,
            ),
            ("validate_config", "", 200),
            ("setup_guide", "", 200),
            ("changes", "", 200),
            ("list_corps", "", 200),
            (
                "bind_corp",
                r#"{"corp_id":"c","agent_id":"1","app_key":"k","app_secret":"s"}"#,
                403,
            ),
            ("unbind_corp", "", 403),
            (
                "create_todo",
                r#"{"source_id":"bad id","subject":"x","creator_userid":"u","detail_path":"/f"}"#,
                400,
            ),
            (
                "send_message",
                r#"{"userids":[],"body":{"type":"text","content":"x"}}"#,
                400,
            ),
            ("complete_todo", "", 404),
            ("delete_todo", "", 404),
            (
                "confirm_binding",
                r#"{"corp_id":"dingcorp123","userid":"u1"}"#,
                200,
            ),
        ];
        for (name, body, expected) in calls {
            let s = spec(name);
            let status = check_routed(
                &doc,
                &mut v,
                &raw,
                name,
                request(s.method, &path(s), true, body),
            );
            assert_eq!(status, expected, "{name} {body}");
        }
        let s = spec("changes");
        let bad = request("GET", "/dingding/api/changes?after=-1", true, "");
        assert_eq!(check_routed(&doc, &mut v, &raw, s.name, bad), 400);
        let big = "x".repeat(crate::web::http::MAX_BODY + 1);
        let s = spec("create_todo");
        assert_eq!(
            check_routed(
                &doc,
                &mut v,
                &raw,
                s.name,
                request(s.method, &path(s), true, &big)
            ),
            413
        );
        // While the settings are invalid: 503, with the issues for a bearer.
        let mut broken = sample_raw();
        broken.insert("app_secret".into(), String::new());
        for s in OPERATIONS {
            let status = check_routed(
                &doc,
                &mut v,
                &broken,
                s.name,
                request(s.method, &path(s), true, ""),
            );
            assert_eq!(status, 503, "{}", s.name);
        }
        // The API closed: 503 platform_token_missing.
        let mut closed = sample_raw();
        closed.remove("platform_token");
        let s = spec("setup_guide");
        assert_eq!(
            check_routed(
                &doc,
                &mut v,
                &closed,
                s.name,
                request(s.method, &path(s), true, "")
            ),
            503
        );
    }

    #[test]
    fn the_served_document_is_the_checked_in_json_without_its_whitespace() {
        let served: Value = serde_json::from_slice(DOCUMENT).expect("the served bytes are JSON");
        assert_eq!(
            served,
            document(),
            "same values, strings and their spaces included"
        );
        assert_eq!(
            DOCUMENT.len(),
            served.to_string().len(),
            "as short as serde_json's compact form"
        );
        let mut out = [0; 40];
        let json = b"{ \"a b\": [1, \"\\\" ,\\t\" ],\r\n\t\"c\" : null }";
        let len = minify(json, &mut out);
        assert_eq!(&out[..len], br#"{"a b":[1,"\" ,\t"],"c":null}"#);
    }

    #[test]
    fn the_document_is_served_without_a_bearer() {
        let mut broken = sample_raw();
        broken.insert("app_secret".into(), String::new());
        for raw in [sample_raw(), broken] {
            let r = router::handle(
                &mut FakeEnv::new(),
                &raw,
                &Request::new("GET", PATH, vec![], vec![]),
                Mode::Http,
            )
            .response;
            assert_eq!(r.status, 200);
            assert!(r
                .get_header("content-type")
                .is_some_and(|c| c.starts_with("application/json")));
            assert_eq!(r.body, DOCUMENT);
            let served: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(served["openapi"], "3.1.0");
        }
        // Only GET of that path skips the bearer.
        let r = router::handle(
            &mut FakeEnv::new(),
            &sample_raw(),
            &Request::new("POST", PATH, vec![], vec![]),
            Mode::Http,
        );
        assert_eq!(r.response.status, 401);
    }
}
