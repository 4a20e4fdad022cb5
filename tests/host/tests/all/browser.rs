//! The set-up page (`/dingding/setup`) in a real browser: Debian's headless Chromium driven by
//! chromedriver over WebDriver (plain HTTP, a tiny client below), the plugin in the wasmtime
//! host against the simulator. Skipped with one line when `chromium` or `chromedriver` is not
//! installed (`.ci/run` installs them). Screenshots go to `target/screenshots/`.
//!
//! The page is opened at `http://localhost:PORT`: Chromium keeps the `Secure` `__Host-` session
//! cookie on plain http only for `localhost`.

use dingtalk_host::demo::{DEMO, PLATFORM_TOKEN, SITE_URL};
use dingtalk_host::targets::{Fixture, Kind};
use dingtalk_sim::perms;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// chromedriver, started on a free port; stopped on drop.
struct Driver {
    child: Child,
    base: String,
    chromium: PathBuf,
    http: reqwest::blocking::Client,
}

impl Driver {
    /// `None` (after one SKIP line) when Chromium or chromedriver is missing.
    fn start() -> Option<Driver> {
        let (Some(chromium), Some(chromedriver)) = (which("chromium"), which("chromedriver"))
        else {
            eprintln!("SKIP browser tests: chromium/chromedriver not installed (apt-get install chromium chromium-driver fonts-noto-cjk)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            chromium,
            http: reqwest::blocking::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = driver.http.get(format!("{}/status", driver.base)).send() {
                if r.json::<Value>().is_ok_and(|v| v["value"]["ready"] == true) {
                    return Some(driver);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("chromedriver did not become ready");
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body.unwrap_or(json!({}))),
        };
        let v: Value = req
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        if v["value"]["error"].is_string() {
            panic!("WebDriver {method} {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    /// A new headless browser window `width` CSS pixels wide.
    fn browser(&self, width: u32) -> Browser<'_> {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": self.chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--lang=zh-CN", format!("--window-size={width},900")],
                "prefs": {"intl.accept_languages": "zh-CN,zh"},
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let v = self.call("POST", "/session", Some(caps));
        Browser {
            driver: self,
            id: v["sessionId"].as_str().expect("a session id").to_string(),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session.
struct Browser<'d> {
    driver: &'d Driver,
    id: String,
}

impl Browser<'_> {
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.driver
            .call(method, &format!("/session/{}{path}", self.id), body)
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body) in the page and returns its value.
    fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    fn element(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    fn click(&self, css: &str) {
        let e = self.element(css);
        self.cmd("POST", &format!("/element/{e}/click"), None);
    }

    /// Types into an element like a keyboard (`\u{E007}` is Enter).
    fn keys(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn text(&self, css: &str) -> String {
        self.js(&format!(
            "var e=document.querySelector({}); return e ? e.textContent : null;",
            json!(css)
        ))
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Waits until `script` returns true.
    fn wait_for(&self, what: &str, secs: u64, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.js(script) == json!(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out waiting for {what}; page:\n{}",
            self.js("return document.body.innerText;")
        );
    }

    /// `data-status` of step `n`.
    fn step_status(&self, n: u8) -> String {
        self.js(&format!(
            "return document.getElementById('step-{n}').dataset.status;"
        ))
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    fn step_text(&self, n: u8) -> String {
        self.text(&format!("#step-{n}"))
    }

    /// Console messages at level SEVERE (errors, CSP violations).
    fn console_errors(&self) -> Vec<String> {
        self.cmd("POST", "/se/log", Some(json!({"type": "browser"})))
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].to_string())
            .collect()
    }

    /// A full-page PNG at `width` CSS pixels (phone widths emulate a phone), saved under
    /// `target/screenshots/`.
    fn screenshot(&self, name: &str, width: u32) -> PathBuf {
        let cdp = |cmd: &str, params: Value| {
            self.cmd(
                "POST",
                "/goog/cdp/execute",
                Some(json!({"cmd": cmd, "params": params})),
            )
        };
        cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": width < 500}),
        );
        let shot = cdp(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        cdp("Emulation.clearDeviceMetricsOverride", json!({}));
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG");
        let dir = dingtalk_host::workspace_root().join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Records the body of every `fetch` answer the page gets from now on.
    fn record_fetches(&self) {
        self.js("window.__answers=[];var f=window.fetch;window.fetch=function(){return f.apply(this,arguments).then(function(r){r.clone().text().then(function(t){window.__answers.push(t);});return r;});};return true;");
    }

    fn fetched(&self) -> Vec<String> {
        self.js("return window.__answers;")
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    }

    /// Signs in through the form with the keyboard: a wrong token first (401 and a message),
    /// then the right one.
    fn sign_in(&self, base: &str) {
        self.go(&format!("{base}/dingding/setup"));
        assert_eq!(self.js("return document.documentElement.lang;"), "zh-CN");
        self.keys("#token", "not-the-token\u{E007}");
        self.wait_for(
            "the wrong-token message",
            10,
            "return !!document.getElementById('message');",
        );
        assert!(self.text("#message").contains("令牌不正确"));
        // The one console error so far is the 401 of the wrong token (logged a moment after
        // the page shows).
        let mut errors = Vec::new();
        for _ in 0..30 {
            errors.extend(self.console_errors());
            if !errors.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            errors.len() == 1 && errors[0].contains("status of 401"),
            "console errors: {errors:?}"
        );
        self.keys("#token", &format!("{PLATFORM_TOKEN}\u{E007}"));
        self.wait_for(
            "the guide",
            20,
            "return !!document.getElementById('step-11');",
        );
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .http
            .delete(format!("{}/session/{}", self.driver.base, self.id))
            .send();
    }
}

/// The plugin in the wasmtime host, as `http://localhost:PORT`.
fn start(label: &str, tweak: impl FnOnce(&mut dingtalk_host::demo::Settings)) -> (Fixture, String) {
    let f = Fixture::start(Kind::Wasmtime, label, tweak)
        .expect("the wasmtime tier is always available");
    let base = f.t.base_url().replace("127.0.0.1", "localhost");
    (f, base)
}

fn secrets(f: &Fixture) -> Vec<String> {
    [
        "app_secret",
        "sso_secret",
        "event_token",
        "event_aes_key",
        "platform_token",
    ]
    .iter()
    .filter_map(|k| f.settings.get(*k).cloned())
    .filter(|v| !v.is_empty())
    .collect()
}

fn assert_no_secret(f: &Fixture, what: &str, text: &str) {
    for s in secrets(f) {
        assert!(!text.contains(&s), "a secret appears in {what}");
    }
}

/// A healthy demo corp: every step's status, the values to paste, the copy button, the sync
/// through the button to 100 % with the simulator's counts, no console error, no secret in the
/// DOM or in any answer, and screenshots at phone and desktop widths.
#[test]
fn setup_page_walks_a_healthy_corp_and_syncs_it() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let started = Instant::now();
    let (f, base) = start("browser", |_| {});
    // A verified event (DingTalk's check_url when the admin saves the subscription).
    let delivery = f.sim.send_event(
        &f.http.url("/dingding/events"),
        DEMO,
        &dingtalk_sim::Event::check_url().payload(),
    );
    f.check(delivery.success, "check_url");
    let b = driver.browser(1280);
    b.sign_in(&base);

    let expect = [
        (1, "done"),
        (2, "done"),
        (3, "done"),
        (4, "done"),
        (5, "check"),
        (6, "done"),
        (7, "check"),
        (8, "check"),
        (9, "done"),
        (10, "check"),
        (11, "done"),
        (12, "done"),
    ];
    for (n, status) in expect {
        assert_eq!(b.step_status(n), status, "step {n}: {}", b.step_text(n));
    }
    // Step 6 names the contact scope DingTalk reports (`/auth/scopes`: the whole organisation).
    assert!(
        b.step_text(6).contains("通讯录权限范围：全部员工"),
        "{}",
        b.step_text(6)
    );
    // The values, exactly as the console needs them (seed steps 5 and 8, the subscription).
    let values: Value = b.js("return Array.from(document.querySelectorAll('code.copy-value')).map(function(e){return [e.dataset.field, e.textContent];});");
    let get = |field: &str| {
        values
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v[0] == field)
            .unwrap_or_else(|| panic!("no value {field}: {values}"))[1]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        get("应用首页地址"),
        format!("{SITE_URL}/dingding/dingding_auth_corp?corpId=$CORPID$")
    );
    assert_eq!(
        get("PC端首页地址"),
        format!("{SITE_URL}/index.php?dingding/dd_client_callback&corpId=$CORPID$")
    );
    assert_eq!(
        get("后台管理地址"),
        format!("{SITE_URL}/index.php?dingding/dd_callback&usertype=admin&corpId={DEMO}")
    );
    assert_eq!(
        get("回调域名"),
        format!("{SITE_URL}/dingding/dd_or_code_corp_list")
    );
    assert_eq!(get("请求网址"), format!("{SITE_URL}/dingding/events"));
    // The permissions of step 6 by name and code.
    for code in [
        "qyapi_get_department_list",
        "qyapi_get_department_member",
        "qyapi_get_member",
        "Todo.Todo.Write",
    ] {
        assert_eq!(
            b.js(&format!(
                "return !!document.querySelector('#step-6 tr[data-permission=\"{code}\"]');"
            )),
            json!(true),
            "{code}"
        );
    }
    // Secrets: whether set, never a value.
    assert!(b
        .text("#step-4 li[data-setting=app_secret]")
        .contains("已设置"));
    // The copy button puts exactly the value on the clipboard.
    b.cmd(
        "POST",
        "/goog/cdp/execute",
        Some(json!({"cmd": "Browser.grantPermissions", "params": {"permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"], "origin": base}})),
    );
    b.click("#step-5 button.copy");
    b.wait_for(
        "the copy confirmation",
        5,
        "return document.querySelector('#step-5 button.copy').textContent==='已复制';",
    );
    let pasted = b.cmd(
        "POST",
        "/execute/async",
        Some(json!({"script": "var done=arguments[0];navigator.clipboard.readText().then(done,function(e){done('error '+e);});", "args": []})),
    );
    assert_eq!(pasted.as_str().unwrap(), get("应用首页地址"));

    let phone_before = b.screenshot("setup-phone", 390);
    let desktop_before = b.screenshot("setup-desktop", 1280);

    // Step 10 through the button, by keyboard focus and Enter.
    b.record_fetches();
    let sync_started = Instant::now();
    b.js("document.getElementById('sync-button').focus();return true;");
    b.keys("#sync-button", "\u{E007}");
    b.wait_for(
        "the sync to complete",
        60,
        "return document.getElementById('sync-bar').value===100;",
    );
    let sync_time = sync_started.elapsed();
    let (members, departments) = f
        .sim
        .with_org(DEMO, |o| (o.user_count(), o.departments().count()))
        .unwrap();
    let result = b.text("#sync-text");
    assert!(
        result.contains(&format!("成员 {members}"))
            && result.contains(&format!("部门 {departments}"))
            && result.contains("停用 0"),
        "{result}"
    );
    assert_eq!(b.text("#sync-button"), "重新同步");
    // One pass: each department's members listed once.
    let listed = f.sim.calls_to("/topapi/v2/user/list").len();
    assert!(
        listed >= departments && listed <= departments + 2,
        "user/list calls: {listed}"
    );
    let answers = b.fetched();
    assert!(!answers.is_empty());
    for a in &answers {
        assert_no_secret(&f, "a sync answer", a);
        let v: Value = serde_json::from_str(a).expect("JSON answers");
        assert!(
            v.get("members").is_none(),
            "the page gets counts, not member records: {a}"
        );
    }
    // After a reload the result stays, and step 10 is done.
    b.go(&format!("{base}/dingding/setup"));
    b.wait_for(
        "the guide",
        20,
        "return !!document.getElementById('step-10');",
    );
    assert_eq!(b.step_status(10), "done", "{}", b.step_text(10));
    assert_no_secret(
        &f,
        "the DOM",
        b.js("return document.documentElement.outerHTML;")
            .as_str()
            .unwrap(),
    );
    let errors = b.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    let desktop_after = b.screenshot("setup-desktop-synced", 1280);

    // English.
    b.go(&format!("{base}/dingding/setup?lang=en"));
    b.wait_for(
        "the English guide",
        20,
        "return document.documentElement.lang==='en' && !!document.getElementById('step-1');",
    );
    assert!(b.step_text(4).contains("Fill in the app credentials"));
    let english = b.screenshot("setup-desktop-en", 1280);
    eprintln!(
        "browser: healthy corp in {:.1} s (sync through the button {:.1} s); screenshots {} {} {} {}",
        started.elapsed().as_secs_f64(),
        sync_time.as_secs_f64(),
        phone_before.display(),
        desktop_before.display(),
        desktop_after.display(),
        english.display()
    );
}

/// Each fault the simulator can make shows as ❌ on its step with the one action that fixes it:
/// a wrong AppSecret, a missing contacts permission, a server IP outside the whitelist.
#[test]
fn setup_page_names_the_fix_for_each_fault() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let started = Instant::now();
    // A wrong AppSecret.
    let (f, base) = start("browser-secret", |s| {
        s.insert("app_secret".into(), "not-the-app-secret-0123456789".into());
    });
    let b = driver.browser(1280);
    b.sign_in(&base);
    assert_eq!(b.step_status(4), "wrong");
    let step4 = b.step_text(4);
    assert!(
        step4.contains("AppSecret") && step4.contains("请操作"),
        "{step4}"
    );
    assert_eq!(b.step_status(1), "check");
    assert_no_secret(
        &f,
        "the DOM",
        b.js("return document.documentElement.outerHTML;")
            .as_str()
            .unwrap(),
    );
    assert!(!b
        .js("return document.documentElement.outerHTML;")
        .as_str()
        .unwrap()
        .contains("not-the-app-secret"));
    let wrong_secret = b.screenshot("setup-wrong-secret-phone", 390);
    drop(b);
    drop(f);

    let (f, base) = start("browser-faults", |_| {});
    let b = driver.browser(1280);
    b.sign_in(&base);
    // A missing permission.
    f.sim
        .revoke(DEMO, perms::QYAPI_GET_DEPARTMENT_MEMBER)
        .unwrap();
    b.go(&format!("{base}/dingding/setup"));
    b.wait_for(
        "the guide",
        20,
        "return !!document.getElementById('step-6');",
    );
    assert_eq!(b.step_status(6), "wrong");
    let step6 = b.step_text(6);
    assert!(
        step6.contains("qyapi_get_department_member") && step6.contains("权限管理"),
        "{step6}"
    );
    assert_eq!(b.step_status(4), "done");
    f.sim
        .grant(DEMO, perms::QYAPI_GET_DEPARTMENT_MEMBER)
        .unwrap();
    // The server's IP outside the whitelist: the IP DingTalk saw is named.
    f.sim.set_request_ip("203.0.113.77");
    f.sim.set_ip_whitelist_error(true);
    b.go(&format!("{base}/dingding/setup"));
    b.wait_for(
        "the guide",
        20,
        "return !!document.getElementById('step-5');",
    );
    assert_eq!(b.step_status(5), "wrong");
    let step5 = b.step_text(5);
    assert!(
        step5.contains("203.0.113.77") && step5.contains("白名单"),
        "{step5}"
    );
    let errors = b.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    let ip = b.screenshot("setup-ip-whitelist-desktop", 1280);
    eprintln!(
        "browser: three faults in {:.1} s; screenshots {} {}",
        started.elapsed().as_secs_f64(),
        wrong_secret.display(),
        ip.display()
    );
}

/// Two admins press the button at once on a larger organisation: one sync runs (each
/// department's members listed once), both pages reach 100 % with the same counts, and a
/// reload in the middle picks the sync up again.
#[test]
fn two_admins_pressing_at_once_run_one_resumable_sync() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let started = Instant::now();
    let spec = dingtalk_sim::org::OrgSpec::sized(30, 400);
    let sim = dingtalk_sim::Sim::builder()
        .corp(dingtalk_sim::CorpSpec::generated("dingbig", &spec))
        .qps_limit(None)
        .start()
        .unwrap();
    let f = Fixture::with_sim(Kind::Wasmtime, "browser-two", sim, "dingbig", |s| {
        s.insert("sync_qps".into(), "10".into());
    })
    .unwrap();
    let base = f.t.base_url().replace("127.0.0.1", "localhost");
    let a = driver.browser(1280);
    let b = driver.browser(390);
    a.sign_in(&base);
    b.sign_in(&base);
    // Both press at once.
    a.js(
        "setTimeout(function(){document.getElementById('sync-button').click();},300);return true;",
    );
    b.js(
        "setTimeout(function(){document.getElementById('sync-button').click();},300);return true;",
    );
    a.wait_for(
        "progress",
        30,
        "return document.getElementById('sync-bar').value>0;",
    );
    // A reload mid-way resumes by itself.
    a.go(&format!("{base}/dingding/setup"));
    a.wait_for(
        "the guide",
        20,
        "return !!document.getElementById('sync-bar');",
    );
    let resumed_at = a.js("return document.getElementById('sync-bar').value;");
    assert!(
        resumed_at.as_u64().unwrap() < 100,
        "the sync finished before the reload"
    );
    for (name, br) in [("a", &a), ("b", &b)] {
        br.wait_for(
            &format!("page {name} at 100 %"),
            120,
            "return document.getElementById('sync-bar').value===100;",
        );
    }
    let (members, departments) = f
        .sim
        .with_org("dingbig", |o| (o.user_count(), o.departments().count()))
        .unwrap();
    for br in [&a, &b] {
        let t = br.text("#sync-text");
        assert!(
            t.contains(&format!("成员 {members}")) && t.contains(&format!("部门 {departments}")),
            "{t}"
        );
        let errors = br.console_errors();
        assert!(errors.is_empty(), "console errors: {errors:?}");
    }
    // One pass: a department's first member page is read once (pages of 100).
    let first_pages = f
        .sim
        .calls()
        .into_iter()
        .filter(|c| c.api == "/topapi/v2/user/list")
        .count();
    let max_pages = departments + members / 100 + 2;
    assert!(
        first_pages <= max_pages,
        "user/list calls: {first_pages} > {max_pages}: more than one sync ran"
    );
    let phone = b.screenshot("setup-phone-synced", 390);
    eprintln!(
        "browser: two admins, {members} members in {departments} departments, in {:.1} s; screenshot {}",
        started.elapsed().as_secs_f64(),
        phone.display()
    );
}
