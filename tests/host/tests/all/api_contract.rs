//! The platform API as a platform meets it, held to its contract: a scenario on both hosts
//! calls every operation against the simulator and validates each request body and each answer
//! (status and body) against `docs/openapi.json` with a JSON Schema 2020-12 validator. A schema
//! that drifts from what the component really sends fails here, not in a platform.

use dingtalk_host::demo::DEMO;
use dingtalk_host::targets::{Fixture, Kind};
use serde_json::{json, Value};

on_both_targets! {
    scenario_requests_and_answers_match_the_openapi_document,
}

const BASE: &str = "https://dingtalk-plugin.invalid/openapi.json";

struct Contract {
    doc: Value,
    compiler: boon::Compiler,
    schemas: boon::Schemas,
    checked: usize,
}

impl Contract {
    fn load() -> Contract {
        let text =
            std::fs::read_to_string(dingtalk_host::workspace_root().join("docs/openapi.json"))
                .expect("docs/openapi.json");
        let doc: Value = serde_json::from_str(&text).expect("the document is JSON");
        let mut compiler = boon::Compiler::new();
        compiler.set_default_draft(boon::Draft::V2020_12);
        compiler
            .add_resource(BASE, doc.clone())
            .expect("the document loads");
        Contract {
            doc,
            compiler,
            schemas: boon::Schemas::new(),
            checked: 0,
        }
    }

    fn validate(&mut self, pointer: &str, instance: &Value, what: &str) {
        let fragment = pointer.replace('{', "%7B").replace('}', "%7D");
        let index = self
            .compiler
            .compile(&format!("{BASE}#{fragment}"), &mut self.schemas)
            .unwrap_or_else(|e| panic!("{what}: schema {pointer}: {e:#}"));
        if let Err(e) = self.schemas.validate(instance, index) {
            panic!("{what}: {instance} does not match {pointer}: {e:#}");
        }
        self.checked += 1;
    }

    /// The pointer of an operation (`/paths/~1todos/post`).
    fn operation(&self, method: &str, template: &str) -> String {
        let p = format!(
            "/paths/{}/{}",
            template.replace('~', "~0").replace('/', "~1"),
            method.to_ascii_lowercase()
        );
        assert!(
            self.doc.pointer(&p).is_some(),
            "{method} {template} is not in the document"
        );
        p
    }

    /// Validates one exchange: the request body (when the operation takes one) and the answer
    /// against the schema the document gives for its status.
    fn exchange(
        &mut self,
        method: &str,
        template: &str,
        request: Option<&Value>,
        status: u16,
        answer: &Value,
    ) {
        let what = format!("{method} {template} → {status}");
        let op = self.operation(method, template);
        if let Some(body) = request {
            let at = format!("{op}/requestBody/content/application~1json/schema");
            self.validate(&at, body, &format!("{what} (request)"));
        }
        let mut at = format!("{op}/responses/{status}");
        let response = self
            .doc
            .pointer(&at)
            .unwrap_or_else(|| panic!("{what}: status {status} is not documented"))
            .clone();
        if let Some(r) = response.get("$ref").and_then(Value::as_str) {
            at = r.trim_start_matches('#').to_string();
        }
        self.validate(
            &format!("{at}/content/application~1json/schema"),
            answer,
            &what,
        );
    }
}

fn scenario_requests_and_answers_match_the_openapi_document(kind: Kind) {
    let Some(f) = Fixture::start(kind, "api-contract", |_| {}) else {
        return;
    };
    let mut c = Contract::load();
    let call = |c: &mut Contract,
                method: &str,
                path: &str,
                template: &str,
                body: Option<Value>|
     -> Value {
        let text = body.as_ref().map(Value::to_string);
        let r = f.api(method, path, text.as_deref());
        let answer = r.json();
        c.exchange(method, template, body.as_ref(), r.status, &answer);
        json!({"status": r.status, "body": answer})
    };
    // The document itself, without a bearer.
    let doc = f.http.get("/dingding/api/openapi.json");
    assert_eq!(doc.status, 200);
    assert_eq!(doc.json(), c.doc);

    let guide = call(&mut c, "GET", "/dingding/api/setup", "/setup", None);
    assert_eq!(guide["status"], 200, "{guide}");
    assert_eq!(guide["body"]["walk"].as_array().map(Vec::len), Some(12));
    call(
        &mut c,
        "POST",
        "/dingding/api/config/validate",
        "/config/validate",
        Some(json!({"site_url": "http://x", "sync_qps": 99})),
    );
    call(
        &mut c,
        "POST",
        "/dingding/api/config/validate",
        "/config/validate",
        Some(json!({})),
    );
    // The full sync, acknowledging each batch.
    let mut ack: Option<String> = None;
    for _ in 0..50 {
        let body = match &ack {
            Some(a) => json!({"ack": a}),
            None => json!({}),
        };
        let step = call(&mut c, "POST", "/dingding/api/sync", "/sync", Some(body));
        assert_eq!(step["status"], 200, "{step}");
        ack = step["body"]["cursor"].as_str().map(str::to_string);
        if step["body"]["progress"]["complete"] == true {
            break;
        }
        let wait = step["body"]["retry_after_ms"].as_u64().unwrap_or(0);
        std::thread::sleep(std::time::Duration::from_millis(wait.min(2_000)));
    }
    // An event, then the change log.
    let event = f
        .sim
        .add_user(
            DEMO,
            dingtalk_sim::org::User::new("newbie", "demoUnionNewbie0001iE", "新人", &[2]),
        )
        .unwrap();
    let delivery = f
        .sim
        .send_event(&f.http.url("/dingding/events"), DEMO, &event.payload());
    f.check(delivery.success, "event");
    let changes = call(
        &mut c,
        "GET",
        "/dingding/api/changes?after=0&limit=100",
        "/changes",
        None,
    );
    assert!(
        !changes["body"]["changes"].as_array().unwrap().is_empty(),
        "{changes}"
    );
    // To-dos and a work notification.
    let todo = json!({"source_id": "form-3:task-9", "subject": "审批", "creator_userid": "zhangsan",
                      "executor_userids": ["wangwu"], "detail_path": "/forms/3/tasks/9"});
    assert_eq!(
        call(&mut c, "POST", "/dingding/api/todos", "/todos", Some(todo))["status"],
        200
    );
    assert_eq!(
        call(
            &mut c,
            "POST",
            "/dingding/api/todos/form-3:task-9/complete",
            "/todos/{source_id}/complete",
            None
        )["status"],
        200
    );
    assert_eq!(
        call(
            &mut c,
            "DELETE",
            "/dingding/api/todos/form-3:task-9",
            "/todos/{source_id}",
            None
        )["status"],
        200
    );
    let message = json!({"userids": ["wangwu"], "body": {"type": "markdown", "title": "提醒", "text": "# 你好"}});
    assert_eq!(
        call(
            &mut c,
            "POST",
            "/dingding/api/messages",
            "/messages",
            Some(message)
        )["status"],
        200
    );
    // Corps and bindings (self-use edition: binding another corp is refused, as documented).
    assert_eq!(
        call(&mut c, "GET", "/dingding/api/corps", "/corps", None)["status"],
        200
    );
    let bind =
        json!({"corp_id": "dingother456", "agent_id": "2", "app_key": "k", "app_secret": "s"});
    assert_eq!(
        call(&mut c, "POST", "/dingding/api/corps", "/corps", Some(bind))["status"],
        403
    );
    assert_eq!(
        call(
            &mut c,
            "DELETE",
            "/dingding/api/corps/dingother456",
            "/corps/{corp_id}",
            None
        )["status"],
        403
    );
    assert_eq!(
        call(
            &mut c,
            "POST",
            "/dingding/api/bindings",
            "/bindings",
            Some(json!({"corp_id": DEMO, "userid": "lisi"}))
        )["status"],
        200
    );
    // Failures: an unknown ticket, a malformed body, no bearer.
    assert_eq!(
        call(
            &mut c,
            "POST",
            "/dingding/api/tickets/redeem",
            "/tickets/redeem",
            Some(json!({"ticket": "0123456789abcdef0123456789abcdef0123456789abcdef"}))
        )["status"],
        410
    );
    let bad = f.api("POST", "/dingding/api/todos", Some("{\"subject\": 5"));
    c.exchange("POST", "/todos", None, bad.status, &bad.json());
    let anonymous = f.http.api("GET", "/dingding/api/setup", None, None);
    assert_eq!(anonymous.status, 401);
    c.exchange("GET", "/setup", None, 401, &anonymous.json());
    assert!(c.checked >= 20, "only {} validations", c.checked);
}
