//! The fault matrix (hardening issue): every DingTalk call of every flow failing once (timeout,
//! 5xx, malformed JSON, a token error mid-flow, throttling) on both hosts, and every key-value
//! operation of every flow failing once (store down, timeout) on the wasmtime host.
//!
//! For each cell the flow runs once with the fault armed, then:
//!
//! * every answer is either the flow's success or a clear failure: a 4xx/5xx with a JSON
//!   `{"error": {"code"}}` (API, events) or an HTML page naming its code (browser routes);
//!   a trap (the host's bare 500), a reset connection or a 200 without the effect fails the cell;
//! * nothing is lost or applied twice: a minted ticket redeems once or not at all, a to-do
//!   retried by the platform exists once in DingTalk, an event re-delivered by DingTalk shows up
//!   once in `changes`, a sync pass completes with every member reported once, a work
//!   notification sent by a 200 is in DingTalk once;
//! * the next, fault-free run of the same flow succeeds.
//!
//! A throttled or token-expired call that the plugin retries and completes is a pass. Cells where
//! the plugin misbehaves are printed as `FAIL` rows and listed at the end, after the whole matrix
//! is printed, and fail the test; so do the harness's own failures (a flow that does not work
//! without a fault).
//!
//! Key-value faults run on both hosts: the wasmtime host fails the i-th operation of its own
//! store; `spin up` runs with its key-value store on Redis behind a RESP proxy
//! ([`FaultProxy`]) that fails the i-th store command the same two ways.
//!
//! Flows run in parallel (one fixture per flow and host) so the timeout cells, each waiting out
//! the plugin's 8-s call timeout, overlap; every loop is bounded by count and by time.

use crate::flows::QrStart;
use dingtalk_host::client::{query_param, Resp};
use dingtalk_host::demo::{DEMO, LOGIN_COMPLETE};
use dingtalk_host::kv_proxy::FaultProxy;
use dingtalk_host::targets::{Fixture, Kind};
use dingtalk_host::{Kv, KvFaultKind, KvOp};
use dingtalk_sim::{Fault, FaultKind, User};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The plugin's per-call DingTalk timeout (`src/dingtalk/mod.rs` `CALL_TIMEOUT_MS`), plus margin.
const DINGTALK_STALL_MS: u64 = 8_000 + 1_500;
/// How long an injected key-value timeout stalls before failing.
const KV_STALL: Duration = Duration::from_millis(40);
/// At most this many key-value operations of one flow are failed (each index, both kinds).
const MAX_KV_OPS: u64 = 60;
/// Wall-clock budget of one flow's column (its cells stop, marked, when it runs out).
const FLOW_BUDGET: Duration = Duration::from_secs(150);

const WANGWU_UNION: &str = "demoUnionWangwu00001iE";

thread_local! {
    /// The cursor of the last sync batch this column's platform received: it acknowledges it
    /// on its next step, also across passes, as a platform keeps it between runs.
    static LAST_CURSOR: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Flow {
    Inapp,
    AdminSso,
    Qr,
    Event,
    Sync,
    Todo,
    Message,
}

const FLOWS: [Flow; 7] = [
    Flow::Inapp,
    Flow::AdminSso,
    Flow::Qr,
    Flow::Event,
    Flow::Sync,
    Flow::Todo,
    Flow::Message,
];

impl Flow {
    fn name(self) -> &'static str {
        match self {
            Flow::Inapp => "R1 in-app",
            Flow::AdminSso => "R3 admin SSO",
            Flow::Qr => "R5→R4 QR",
            Flow::Event => "R6 event",
            Flow::Sync => "sync pass",
            Flow::Todo => "to-do create",
            Flow::Message => "work notice",
        }
    }
}

/// How one run of a flow ended.
#[derive(Debug, Default)]
struct Run {
    /// `status code` of the answer that decided the run (the failure, or the last success).
    shown: String,
    /// The flow completed with its effect.
    ok: bool,
    /// Why the run is not acceptable (unclear answer, lost or doubled effect), if it is not.
    bad: Option<String>,
}

impl Run {
    fn bad(mut self, why: impl Into<String>) -> Run {
        if self.bad.is_none() {
            self.bad = Some(why.into());
        }
        self
    }
}

/// A failure answer the platform or a person can act on: 4xx/5xx with a JSON error code or an
/// HTML page naming its code. Returns the code.
fn clear_failure(r: &Resp) -> Option<String> {
    if !(400..=599).contains(&r.status) {
        return None;
    }
    if let Ok(v) = serde_json::from_str::<Value>(&r.body) {
        return v["error"]["code"].as_str().map(str::to_string);
    }
    let html = r
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/html"));
    let code = r.body.match_indices("· ").find_map(|(at, _)| {
        let rest = &r.body[at + "· ".len()..];
        let code: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        (!code.is_empty() && rest[code.len()..].starts_with('<')).then_some(code)
    });
    code.filter(|_| html)
}

fn describe(r: &Resp) -> String {
    let body: String = r.body.chars().take(160).collect();
    format!("HTTP {} {body:?}", r.status)
}

/// Classifies one answer: `Ok(true)` the expected success, `Ok(false)` a clear failure (shown
/// in `run`), `Err` an unclear answer.
fn judge(run: &mut Run, r: &Resp, success: impl Fn(&Resp) -> bool) -> Result<bool, String> {
    if success(r) {
        run.shown = format!("{}", r.status);
        return Ok(true);
    }
    match clear_failure(r) {
        Some(code) => {
            run.shown = format!("{} {code}", r.status);
            Ok(false)
        }
        None => Err(format!("unclear answer: {}", describe(r))),
    }
}

fn ticket_in(r: &Resp) -> Option<String> {
    let loc = r.header("location")?;
    loc.starts_with(&format!("{LOGIN_COMPLETE}?ticket="))
        .then(|| query_param(loc, "ticket"))
        .flatten()
}

/// Redeems `ticket` twice: the identity must come back at most once; with `must` (no fault can
/// hit the redeem), exactly once, the first time.
fn redeem_once(f: &Fixture, run: Run, ticket: &str, userid: &str, must: bool) -> Run {
    let mut run = run;
    let first = crate::flows::redeem(&f.http, ticket);
    let second = crate::flows::redeem(&f.http, ticket);
    let mut granted = 0;
    for r in [&first, &second] {
        if r.status == 200 {
            granted += 1;
            if r.json()["userid"] != userid {
                return run.bad(format!("redeem gave another identity: {}", describe(r)));
            }
        } else if clear_failure(r).is_none() {
            return run.bad(format!("redeem: unclear answer {}", describe(r)));
        } else if r.status >= 500 {
            run.shown = format!("302, redeem {} {}", r.status, r.error_code());
        }
    }
    if granted > 1 {
        return run.bad("the ticket was redeemed twice");
    }
    if must && first.status != 200 {
        return run.bad(format!("minted ticket lost: {}", describe(&first)));
    }
    run.ok = granted == 1;
    run
}

/// Runs `flow` once (`n` makes its inputs unique). `faulted` says a fault is armed, so that
/// checks only true without one (e.g. "the ticket redeems on the first try") are relaxed.
fn run_flow(f: &Fixture, flow: Flow, n: usize, kv_faulted: bool) -> Run {
    let mut run = Run::default();
    match flow {
        Flow::Inapp | Flow::AdminSso => {
            let (path, userid) = if flow == Flow::Inapp {
                let code = f.sim.mint_inapp_code(DEMO, "wangwu");
                (
                    format!("/dingding/dingding_auth_corp?corpId={DEMO}&code={code}"),
                    "wangwu",
                )
            } else {
                let code = f.sim.mint_sso_code(DEMO, "zhangsan");
                (
                    format!(
                        "/index.php?dingding/dd_callback&usertype=admin&corpId={DEMO}&code={code}"
                    ),
                    "zhangsan",
                )
            };
            let r = if flow == Flow::Inapp {
                // As DingTalk's browser does: the JSAPI page first, then the code with its cookie.
                let page_path = format!("/dingding/dingding_auth_corp?corpId={DEMO}");
                let page = f.http.get(&page_path);
                match page.set_cookie(crate::flows::INAPP_COOKIE) {
                    Some(value) => f
                        .http
                        .get_with_cookie(&path, &format!("{}={value}", crate::flows::INAPP_COOKIE)),
                    None => page,
                }
            } else {
                f.http.get(&path)
            };
            match judge(&mut run, &r, |r| ticket_in(r).is_some()) {
                Err(e) => run.bad(e),
                Ok(false) => run,
                Ok(true) => {
                    let ticket = ticket_in(&r).unwrap_or_default();
                    redeem_once(f, run, &ticket, userid, !kv_faulted)
                }
            }
        }
        Flow::Qr => {
            let r = f.http.get("/dingding/login");
            let start = match judge(&mut run, &r, |r| {
                r.status == 302 && r.set_cookie("__Host-dd_login").is_some()
            }) {
                Err(e) => return run.bad(format!("R5: {e}")),
                Ok(false) => return run,
                Ok(true) => {
                    let location = r.location().to_string();
                    QrStart {
                        state: query_param(&location, "state").unwrap_or_default(),
                        cookie: format!(
                            "__Host-dd_login={}",
                            r.set_cookie("__Host-dd_login").unwrap_or_default()
                        ),
                        location,
                    }
                }
            };
            let r = crate::flows::qr_callback(
                &f.http,
                &f.sim,
                &start.state,
                WANGWU_UNION,
                Some(&start.cookie),
            );
            match judge(&mut run, &r, |r| ticket_in(r).is_some()) {
                Err(e) => run.bad(format!("R4: {e}")),
                Ok(false) => run,
                Ok(true) => {
                    let ticket = ticket_in(&r).unwrap_or_default();
                    redeem_once(f, run, &ticket, "wangwu", !kv_faulted)
                }
            }
        }
        Flow::Event => run_event(f, run, n),
        Flow::Sync => run_sync(f, run),
        Flow::Todo => run_todo(f, run, n),
        Flow::Message => run_message(f, run, n),
    }
}

/// A member joins in DingTalk; DingTalk pushes the event and re-delivers it (at most twice
/// more) until it is accepted. The member must show up in `changes` exactly once.
fn run_event(f: &Fixture, mut run: Run, n: usize) -> Run {
    let userid = format!("fm{n}");
    let union = format!("fmUnion{n:012}iE");
    let event = match f
        .sim
        .add_user(DEMO, User::new(&userid, &union, "故障", &[3]))
    {
        Ok(e) => e,
        Err(e) => return run.bad(format!("sim refused the member: {e:?}")),
    };
    let url = f.http.url("/dingding/events");
    let payload = event.payload();
    let mut accepted = false;
    let mut last = String::new();
    for attempt in 0..3 {
        let d = f.sim.send_event(&url, DEMO, &payload);
        if d.success {
            if attempt == 0 {
                run.shown = format!("{}", d.status);
            } else {
                run.shown = format!("{} (redelivered ok)", run.shown);
            }
            accepted = true;
            break;
        }
        let r = Resp {
            status: d.status,
            headers: vec![],
            body: d.body.clone(),
        };
        match clear_failure(&r) {
            Some(code) if attempt == 0 => run.shown = format!("{} {code}", d.status),
            Some(code) => last = format!("{} {code}", d.status),
            None => {
                return run.bad(format!(
                    "event answer unclear: {} ({:?})",
                    describe(&r),
                    d.error
                ))
            }
        }
    }
    if !accepted {
        return run.bad(format!(
            "the event was refused on 2 immediate re-deliveries too (last: {last})"
        ));
    }
    let read = || f.api("GET", "/dingding/api/changes?after=0&limit=1000", None);
    let mut r = read();
    if r.status != 200 && clear_failure(&r).is_some() {
        r = read(); // the platform retries a failed read
    }
    if r.status != 200 {
        return run.bad(format!("changes: {}", describe(&r)));
    }
    let about: usize = r.json()["changes"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter(|c| c["change"]["member"]["userid"] == userid.as_str())
                .count()
        })
        .unwrap_or(0);
    match about {
        1 => {
            run.ok = true;
            run
        }
        0 => run.bad("the event's change was lost"),
        k => run.bad(format!("the event's change was applied {k} times")),
    }
}

/// One full pass: steps (acknowledging the last batch) until `progress.complete`, at most 25
/// steps and 40 s. Every member of the org must be reported exactly once.
fn run_sync(f: &Fixture, mut run: Run) -> Run {
    let org = f.sim.org(DEMO).expect("demo org");
    let expected: BTreeSet<String> = org.users().map(|u| u.userid.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut ack: Option<String> = LAST_CURSOR.with(|c| c.borrow().clone());
    let mut failures = Vec::new();
    for _ in 0..25 {
        if Instant::now() > deadline {
            break;
        }
        let body = match &ack {
            Some(c) => json!({ "ack": c }).to_string(),
            None => "{}".to_string(),
        };
        let r = f.api("POST", "/dingding/api/sync", Some(&body));
        if r.status != 200 {
            match clear_failure(&r) {
                Some(code) => failures.push(format!("{} {code}", r.status)),
                None => return run.bad(format!("sync step: unclear answer {}", describe(&r))),
            }
            continue;
        }
        let batch = r.json();
        if let Some(c) = batch["cursor"].as_str() {
            ack = Some(c.to_string());
            LAST_CURSOR.with(|l| *l.borrow_mut() = ack.clone());
        }
        for m in batch["members"].as_array().into_iter().flatten() {
            *seen
                .entry(m["userid"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
        }
        if batch["progress"]["complete"] == true {
            run.shown = match failures.first() {
                Some(fail) => format!("{fail}, then complete"),
                None => "200 complete".to_string(),
            };
            let twice: Vec<_> = seen.iter().filter(|(_, k)| **k > 1).collect();
            let got: BTreeSet<String> = seen.keys().cloned().collect();
            if !twice.is_empty() {
                return run.bad(format!("members reported twice: {twice:?}"));
            }
            if got != expected {
                let lost: Vec<_> = expected.difference(&got).collect();
                return run.bad(format!("members lost: {lost:?}"));
            }
            run.ok = true;
            return run;
        }
        if let Some(ms) = batch["retry_after_ms"].as_u64() {
            std::thread::sleep(Duration::from_millis(ms.min(2000)));
        }
    }
    run.shown = failures.first().cloned().unwrap_or_default();
    run.bad(format!(
        "the pass did not complete (failures: {failures:?})"
    ))
}

/// The platform creates a to-do and retries the same `source_id` (at most twice) while the
/// answer is a failure; DingTalk must end with exactly one task for it.
fn run_todo(f: &Fixture, mut run: Run, n: usize) -> Run {
    let source = format!("fm-todo-{n}");
    let spec = json!({
        "source_id": source, "subject": format!("故障矩阵 #{n}"), "creator_userid": "zhangsan",
        "executor_userids": ["wangwu"], "detail_path": format!("/forms/1/tasks/{n}"),
    })
    .to_string();
    let mut created = false;
    for attempt in 0..3 {
        let r = f.api("POST", "/dingding/api/todos", Some(&spec));
        let mut this = Run::default();
        match judge(&mut this, &r, |r| r.status == 200) {
            Err(e) => return run.bad(e),
            Ok(ok) => {
                if attempt == 0 {
                    run.shown = this.shown;
                } else if ok {
                    run.shown = format!("{}, retry ok", run.shown);
                }
                if ok {
                    created = true;
                    break;
                }
            }
        }
    }
    let tasks = f
        .sim
        .todos(DEMO)
        .into_iter()
        .filter(|t| !t.deleted && t.source_id.as_deref() == Some(source.as_str()))
        .count();
    match (created, tasks) {
        (true, 1) => {
            run.ok = true;
            run
        }
        (_, 0) if !created => run.bad("the platform's retries never created the to-do"),
        (_, k) => run.bad(format!("{k} tasks in DingTalk for one source_id")),
    }
}

/// One work notification, not retried (DingTalk's send has no idempotency key): a 200 means it
/// is in DingTalk once; a failure means at most once (the answer may have been lost).
fn run_message(f: &Fixture, mut run: Run, n: usize) -> Run {
    let content = format!("故障矩阵 {n}");
    let before = count_messages(f, &content);
    let body = json!({"userids": ["wangwu"], "body": {"type": "text", "content": content}});
    let r = f.api("POST", "/dingding/api/messages", Some(&body.to_string()));
    let ok = match judge(&mut run, &r, |r| r.status == 200) {
        Err(e) => return run.bad(e),
        Ok(ok) => ok,
    };
    if r.status == 504 {
        // A timed-out send may still land once DingTalk's slow answer completes.
        std::thread::sleep(Duration::from_millis(2_500));
    }
    let sent = count_messages(f, &content) - before;
    match (ok, sent) {
        (true, 1) => {
            run.ok = true;
            run
        }
        (false, 0) => run,
        (false, 1) => {
            run.shown = format!("{} (delivered)", run.shown);
            run
        }
        (_, k) => run.bad(format!("answered {}, {k} notices in DingTalk", r.status)),
    }
}

fn count_messages(f: &Fixture, content: &str) -> usize {
    f.sim
        .messages()
        .iter()
        .filter(|m| format!("{m:?}").contains(content))
        .count()
}

// ---------------------------------------------------------------------------------------------
// The cells

/// The five DingTalk faults, for a call to `route`.
fn dingtalk_faults(route: &str) -> Vec<(&'static str, FaultKind)> {
    let token_error = if route.starts_with("/v1.0/") {
        FaultKind::NewApi(401, "InvalidAuthentication".into())
    } else {
        FaultKind::Errcode(42001, "不合法的access_token".into())
    };
    vec![
        ("timeout", FaultKind::Latency(DINGTALK_STALL_MS)),
        (
            "5xx",
            FaultKind::Http(
                503,
                "<html><body>503 Service Unavailable</body></html>".into(),
            ),
        ),
        (
            "malformed",
            FaultKind::Http(200, "{\"errcode\":0,\"result\":{\"userid\":".into()),
        ),
        ("token-err", token_error),
        ("throttled", FaultKind::TempBan(90018)),
    ]
}

/// An app-token endpoint the plugin only calls when its cached token is gone.
fn is_app_token_call(route: &str) -> bool {
    let lower = route.to_ascii_lowercase();
    lower.contains("token") && !lower.contains("useraccesstoken")
}

#[derive(Debug, Clone)]
struct Cell {
    flow: Flow,
    row: String,
    host: Kind,
    outcome: String,
    pass: bool,
}

/// The store a column fails operations of: the wasmtime host's own, or (Spin) Redis behind the
/// fault proxy.
enum Store {
    Host(Kv),
    Proxy(FaultProxy),
}

impl Store {
    fn ops(&self) -> u64 {
        match self {
            Store::Host(kv) => kv.ops(),
            Store::Proxy(p) => p.ops(),
        }
    }

    fn ops_since(&self, after: u64) -> Vec<KvOp> {
        match self {
            Store::Host(kv) => kv.ops_since(after),
            Store::Proxy(p) => p.ops_since(after),
        }
    }

    fn fail_op(&self, nth: u64, kind: KvFaultKind) {
        match self {
            Store::Host(kv) => kv.fail_op(nth, kind),
            Store::Proxy(p) => p.fail_op(nth, kind),
        }
    }

    fn clear_faults(&self) {
        match self {
            Store::Host(kv) => kv.clear_faults(),
            Store::Proxy(p) => p.clear_faults(),
        }
    }

    fn take_fired(&self) -> Vec<(KvOp, KvFaultKind)> {
        match self {
            Store::Host(kv) => kv.take_fired(),
            Store::Proxy(p) => p.take_fired(),
        }
    }

    /// Removes every key (a fresh install).
    fn wipe(&self) {
        match self {
            Store::Host(kv) => {
                for k in kv.keys() {
                    kv.remove(&k);
                }
            }
            Store::Proxy(p) => p.wipe(),
        }
    }
}

struct Column<'a> {
    // Dropped before the store it uses.
    f: Fixture,
    store: Option<Store>,
    flow: Flow,
    kind: Kind,
    n: usize,
    cells: Vec<Cell>,
    started: Instant,
    harness: &'a Mutex<Vec<String>>,
}

impl Column<'_> {
    fn next_n(&mut self) -> usize {
        self.n += 1;
        self.n
    }

    fn over_budget(&self) -> bool {
        self.started.elapsed() > FLOW_BUDGET
    }

    /// Records one cell: `run` under the fault, then a fault-free next run.
    fn record(&mut self, row: String, run: Run, fired: bool) {
        let outcome;
        let pass;
        if !fired {
            outcome = format!(
                "n/a (fault not reached; {}{})",
                run.shown,
                run.bad.map(|b| format!(": {b}")).unwrap_or_default()
            );
            pass = true;
        } else if let Some(bad) = run.bad {
            let n = self.next_n();
            let next = run_flow(&self.f, self.flow, n, false);
            let next = if next.ok && next.bad.is_none() {
                "next ok".to_string()
            } else {
                format!(
                    "NEXT FAILS ({}){}",
                    next.bad.unwrap_or_default(),
                    self.recover()
                )
            };
            outcome = format!("FAIL {} — {bad}; {next}", run.shown);
            pass = false;
        } else {
            let n = self.next_n();
            let next = run_flow(&self.f, self.flow, n, false);
            if next.ok && next.bad.is_none() {
                outcome = format!("{} ✓ next ok", run.shown);
                pass = true;
            } else {
                outcome = format!(
                    "FAIL {} — NEXT FAILS: {} {}{}",
                    run.shown,
                    next.shown,
                    next.bad.unwrap_or_default(),
                    self.recover()
                );
                pass = false;
            }
        }
        self.cells.push(Cell {
            flow: self.flow,
            row,
            host: self.kind,
            outcome,
            pass,
        });
    }

    /// After a cell left the flow broken: wipe the store (a fresh install) so the following
    /// cells start clean; say so in the cell.
    fn recover(&self) -> &'static str {
        match &self.store {
            Some(store) => {
                store.wipe();
                LAST_CURSOR.with(|c| *c.borrow_mut() = None);
                " [store wiped]"
            }
            None => "",
        }
    }

    fn skip(&mut self, row: String) {
        self.cells.push(Cell {
            flow: self.flow,
            row,
            host: self.kind,
            outcome: "skipped (time budget)".into(),
            pass: true,
        });
    }

    /// A fault-free run that must work (else the harness, not the plugin, is wrong).
    fn baseline(&mut self, what: &str) -> bool {
        let n = self.next_n();
        let run = run_flow(&self.f, self.flow, n, false);
        if !run.ok || run.bad.is_some() {
            self.harness.lock().unwrap().push(format!(
                "{:?} {} {what}: fault-free run failed: {} {:?}\n{}",
                self.kind,
                self.flow.name(),
                run.shown,
                run.bad,
                self.f.t.logs()
            ));
            return false;
        }
        true
    }

    fn dingtalk_cells(&mut self) {
        // Cold run: which DingTalk calls the flow makes, in order.
        self.f.sim.reset_calls();
        if !self.baseline("cold") {
            return;
        }
        let mut routes: Vec<String> = Vec::new();
        for c in self.f.sim.calls() {
            if !routes.contains(&c.route) {
                routes.push(c.route);
            }
        }
        for route in routes {
            for (label, kind) in dingtalk_faults(&route) {
                let row = format!("{} · {route} · {label}", self.flow.name());
                if self.over_budget() {
                    self.skip(row);
                    continue;
                }
                self.f.sim.clear_faults();
                if is_app_token_call(&route) {
                    // The token is cached: make DingTalk reject it so the plugin fetches anew.
                    self.f.sim.expire_all_tokens();
                }
                self.f.sim.inject(Fault::new(&route, kind).times(1));
                let n = self.next_n();
                let run = run_flow(&self.f, self.flow, n, false);
                let fired = self.f.sim.active_faults() == 0;
                self.f.sim.clear_faults();
                self.record(row, run, fired);
            }
        }
    }

    fn kv_cells(&mut self) {
        let Some(kv) = self.store.take() else {
            return;
        };
        self.kv_cells_on(&kv);
        self.store = Some(kv);
    }

    fn kv_cells_on(&mut self, kv: &Store) {
        // Warm run counting the flow's operations.
        let before = kv.ops();
        if !self.baseline("warm, counting kv ops") {
            return;
        }
        let ops = kv.ops_since(before);
        let total = (ops.len() as u64).min(MAX_KV_OPS);
        for i in 1..=total {
            for (label, kind) in [
                ("store down", KvFaultKind::StoreDown),
                ("timeout", KvFaultKind::Timeout(KV_STALL)),
            ] {
                let planned = ops
                    .get(i as usize - 1)
                    .map(|o| o.to_string())
                    .unwrap_or_default();
                if self.over_budget() {
                    self.skip(format!(
                        "{} · kv op {i:02}/{} ({planned}) · {label}",
                        self.flow.name(),
                        ops.len()
                    ));
                    continue;
                }
                kv.clear_faults();
                let _ = kv.take_fired();
                kv.fail_op(i, kind);
                let n = self.next_n();
                let run = run_flow(&self.f, self.flow, n, true);
                kv.clear_faults();
                let fired = kv.take_fired();
                let hit = fired.first().map(|(o, _)| o.to_string()).unwrap_or(planned);
                let row = format!(
                    "{} · kv op {i:02}/{} ({hit}) · {label}",
                    self.flow.name(),
                    ops.len()
                );
                self.record(row, run, !fired.is_empty());
            }
        }
    }
}

fn column(kind: Kind, flow: Flow, harness: &Mutex<Vec<String>>) -> Option<Vec<Cell>> {
    let label = format!("faults-{flow:?}").to_lowercase();
    let proxy = match kind {
        Kind::Spin => FaultProxy::start(),
        Kind::Wasmtime => None,
    };
    let sim = dingtalk_sim::Sim::builder()
        .corp(dingtalk_sim::CorpSpec::demo())
        .qps_limit(None)
        .start()
        .expect("starting the DingTalk simulator");
    let runtime_config = proxy.as_ref().map(FaultProxy::runtime_config);
    let f = Fixture::with_store(kind, &label, sim, DEMO, runtime_config, |_| {})?;
    let store = match proxy {
        Some(p) => Some(Store::Proxy(p)),
        None => f.t.kv().cloned().map(Store::Host),
    };
    let mut col = Column {
        f,
        store,
        flow,
        kind,
        n: 0,
        cells: Vec::new(),
        started: Instant::now(),
        harness,
    };
    col.dingtalk_cells();
    col.kv_cells();
    Some(col.cells)
}

fn host_ix(k: Kind) -> u8 {
    u8::from(k == Kind::Spin)
}

#[test]
fn fault_matrix() {
    let started = Instant::now();
    let harness = Mutex::new(Vec::new());
    let results: Vec<(Kind, Option<Vec<Cell>>)> = std::thread::scope(|s| {
        let handles: Vec<_> = [Kind::Wasmtime, Kind::Spin]
            .into_iter()
            .flat_map(|kind| FLOWS.into_iter().map(move |flow| (kind, flow)))
            .map(|(kind, flow)| {
                let harness = &harness;
                (kind, s.spawn(move || column(kind, flow, harness)))
            })
            .collect();
        handles
            .into_iter()
            .map(|(kind, h)| (kind, h.join().expect("a matrix column panicked")))
            .collect()
    });
    let spin_ran = results.iter().any(|(k, c)| *k == Kind::Spin && c.is_some());
    let cells: Vec<Cell> = results
        .into_iter()
        .filter_map(|(_, c)| c)
        .flatten()
        .collect();

    // rows × hosts
    let mut rows: BTreeMap<(Flow, String), BTreeMap<u8, &Cell>> = BTreeMap::new();
    for c in &cells {
        rows.entry((c.flow, c.row.clone()))
            .or_default()
            .insert(host_ix(c.host), c);
    }
    let width = rows
        .keys()
        .map(|(_, r)| r.chars().count())
        .max()
        .unwrap_or(10);
    let mut out = String::new();
    out.push_str(&format!(
        "\nFAULT MATRIX — DingTalk faults and key-value faults (store down; timeout: applied, then \
         a {} ms stall and an error) on wasmtime and on {} (its store on Redis behind a \
         fault-injecting proxy).\n",
        KV_STALL.as_millis(),
        if spin_ran {
            "Spin"
        } else {
            "Spin (SKIPPED: no spin)"
        }
    ));
    out.push_str(&format!(
        "{:<width$} | {:<44} | {}\n",
        "flow · call / kv op · fault", "wasmtime", "spin"
    ));
    for ((_, row), by_host) in &rows {
        let show = |k: Kind| {
            by_host
                .get(&host_ix(k))
                .map(|c| c.outcome.clone())
                .unwrap_or_else(|| "—".into())
        };
        let pad = width - row.chars().count() + row.len();
        out.push_str(&format!(
            "{row:<pad$} | {:<44} | {}\n",
            show(Kind::Wasmtime),
            show(Kind::Spin)
        ));
    }
    let failed: Vec<&Cell> = cells.iter().filter(|c| !c.pass).collect();
    let na = cells
        .iter()
        .filter(|c| c.outcome.starts_with("n/a"))
        .count();
    let skipped = cells
        .iter()
        .filter(|c| c.outcome.starts_with("skipped"))
        .count();
    out.push_str(&format!(
        "\n{} cells: {} pass, {} plugin failures, {} n/a, {} skipped — {:.1} s\n",
        cells.len(),
        cells.len() - failed.len() - na - skipped,
        failed.len(),
        na,
        skipped,
        started.elapsed().as_secs_f64()
    ));
    for c in &failed {
        out.push_str(&format!(
            "PLUGIN FAILURE [{:?}] {}: {}\n",
            c.host, c.row, c.outcome
        ));
    }
    println!("{out}");
    let harness = harness.into_inner().unwrap();
    assert!(
        harness.is_empty(),
        "the matrix's own fault-free runs failed:\n{}",
        harness.join("\n\n")
    );
    assert!(
        failed.is_empty(),
        "{} cells where the plugin misbehaved under a fault (listed above)",
        failed.len()
    );
}
