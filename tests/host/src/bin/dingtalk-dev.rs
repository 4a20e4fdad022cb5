//! `cargo run -p dingtalk-host --bin dingtalk-dev`: builds the plugin, serves it on loopback in the
//! wasmtime host, and — unless a real corp is configured through `DINGTALK_*` environment
//! variables — starts the DingTalk simulator with a demo organisation and a small launcher page
//! that plays the DingTalk client (minting one-time codes) and the platform (redeeming tickets).

use anyhow::{Context, Result};
use dingtalk_host::demo::{corp_settings, DEMO};
use dingtalk_host::{component_path, Host};
use dingtalk_plugin::KEYS;
use dingtalk_sim::Sim;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

fn origin_of(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    Some(u.origin().ascii_serialization())
}

fn random_token() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..40)
        .map(|_| format!("{:x}", rng.gen_range(0..16)))
        .collect()
}

struct Launcher {
    sim: Sim,
    plugin: String,
    token: String,
    corp_id: String,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Launcher {
    fn page(&self) -> String {
        let members = self
            .sim
            .with_org(&self.corp_id, |org| {
                org.users()
                    .map(|u| (u.userid.clone(), u.name.clone()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let rows: String = members
            .iter()
            .map(|(id, name)| {
                format!(
                    "<tr><td>{}</td><td><a href=\"/inapp?u={}&pc=0\">mobile</a> · <a href=\"/inapp?u={}&pc=1\">PC</a> · <a href=\"/admin?u={}\">admin backend</a></td></tr>",
                    escape(name), enc(id), enc(id), enc(id)
                )
            })
            .collect();
        format!(
            "<!doctype html><meta charset=utf-8><title>dingtalk-plugin dev</title><body style=\"font-family:sans-serif;max-width:48rem;margin:2rem auto\">\
<h1>dingtalk-plugin · local trial</h1><p>The plugin runs at <code>{p}</code> against the DingTalk simulator at <code>{s}</code>.</p>\
<h2>Sign in as a demo member</h2><table>{rows}</table>\
<h2>QR / browser login</h2><p><a href=\"{p}/dingding/login\">{p}/dingding/login</a> (the simulator's scan page lets you pick a member)</p>\
<h2>Set-up page</h2><p><a href=\"{setup}\">{setup}</a> — the seed's 11 steps with live checks and the 安装钉钉初始化 button; sign in with the API token <code>{t}</code></p>\
<h2>Platform API</h2><p><a href=\"/setup\">set-up guide (JSON)</a> · <a href=\"/sync\">one sync step</a> · <a href=\"/changes\">change log</a></p></body>",
            p = escape(&self.plugin),
            s = escape(self.sim.base_url()),
            // The session cookie is Secure: browsers keep it on plain http for localhost only.
            setup = escape(&format!("{}/dingding/setup", self.plugin.replace("127.0.0.1", "localhost"))),
            t = escape(&self.token),
        )
    }

    /// The `set-cookie` the plugin's JSAPI page sets for the page that `location` (the page URL
    /// plus `&code=`) comes back to.
    fn page_cookie(&self, location: &str) -> Option<String> {
        let page = location.split("&code=").next()?;
        let client = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .ok()?;
        let answer = client.get(page).send().ok()?;
        let cookie = answer.headers().get("set-cookie")?.to_str().ok()?;
        Some(cookie.to_string())
    }

    fn api(&self, method: &str, path: &str, body: &str) -> String {
        let client = reqwest::blocking::Client::new();
        let url = format!("{}{}", self.plugin, path);
        let req = match method {
            "GET" => client.get(url),
            _ => client.post(url).body(body.to_string()),
        };
        match req.bearer_auth(&self.token).send().and_then(|r| r.text()) {
            Ok(text) => serde_json::from_str::<serde_json::Value>(&text)
                .map(|v| serde_json::to_string_pretty(&v).unwrap_or(text.clone()))
                .unwrap_or(text),
            Err(e) => format!("request failed: {e}"),
        }
    }

    fn respond(&self, target: &str) -> (u16, String, String) {
        let url = url::Url::parse(&format!("http://x{target}")).expect("request target");
        let q: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
        let user = q.get("u").cloned().unwrap_or_default();
        let json_page = |title: &str, body: String| {
            (200, String::new(), format!("<!doctype html><meta charset=utf-8><title>{0}</title><h1>{0}</h1><pre>{1}</pre><p><a href=\"/\">back</a></p>", escape(title), escape(&body)))
        };
        match url.path() {
            "/" => (200, String::new(), self.page()),
            "/inapp" => {
                let code = self.sim.mint_inapp_code(&self.corp_id, &user);
                let location = if q.get("pc").map(String::as_str) == Some("1") {
                    format!(
                        "{}/index.php?dingding/dd_client_callback&corpId={}&code={}",
                        self.plugin,
                        enc(&self.corp_id),
                        enc(&code)
                    )
                } else {
                    format!(
                        "{}/dingding/dingding_auth_corp?corpId={}&code={}",
                        self.plugin,
                        enc(&self.corp_id),
                        enc(&code)
                    )
                };
                // Play DingTalk's in-app browser: load the plugin's JSAPI page first, as the
                // workbench does, and hand its browser-binding cookie to this browser (cookies
                // are per host, not per port, so it reaches the plugin on the other port).
                match self.page_cookie(&location) {
                    Some(cookie) => (
                        302,
                        format!("{location}\r\nset-cookie: {cookie}"),
                        String::new(),
                    ),
                    None => (302, location, String::new()),
                }
            }
            "/admin" => {
                let code = self.sim.mint_sso_code(&self.corp_id, &user);
                let location = format!(
                    "{}/index.php?dingding/dd_callback&usertype=admin&corpId={}&code={}",
                    self.plugin,
                    enc(&self.corp_id),
                    enc(&code)
                );
                (302, location, String::new())
            }
            "/complete" => {
                let ticket = q.get("ticket").cloned().unwrap_or_default();
                let body = serde_json::json!({ "ticket": ticket }).to_string();
                json_page(
                    "Signed in (ticket redeemed by the platform)",
                    self.api("POST", "/dingding/api/tickets/redeem", &body),
                )
            }
            "/setup" => json_page("Set-up guide", self.api("GET", "/dingding/api/setup", "")),
            // `/sync?ack=<cursor of the batch shown last>`: the ack is mandatory after the
            // first batch (without it the same batch comes again).
            "/sync" => {
                let body = serde_json::json!({ "ack": q.get("ack") }).to_string();
                json_page("Sync step", self.api("POST", "/dingding/api/sync", &body))
            }
            "/changes" => json_page(
                "Change log",
                self.api("GET", "/dingding/api/changes?after=0", ""),
            ),
            _ => (404, String::new(), "not found".to_string()),
        }
    }

    fn serve_one(&self, stream: TcpStream) -> std::io::Result<()> {
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
                break;
            }
        }
        let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let (status, location, body) = self.respond(&target);
        let mut out = stream;
        let reason = if status == 302 {
            "Found"
        } else if status == 404 {
            "Not Found"
        } else {
            "OK"
        };
        write!(out, "HTTP/1.1 {status} {reason}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n", body.len())?;
        if !location.is_empty() {
            write!(out, "location: {location}\r\n")?;
        }
        write!(out, "\r\n{body}")?;
        out.flush()
    }
}

fn main() -> Result<()> {
    let wasm = component_path();
    println!(
        "component: {} ({} bytes)",
        wasm.display(),
        std::fs::metadata(&wasm)?.len()
    );

    let mut settings: BTreeMap<String, String> = KEYS
        .iter()
        .filter_map(|k| {
            std::env::var(format!("DINGTALK_{}", k.to_uppercase()))
                .ok()
                .map(|v| (k.to_string(), v))
        })
        .collect();
    let real_corp = settings.contains_key("corp_id");

    let launcher_listener = TcpListener::bind(("127.0.0.1", 0)).context("binding the launcher")?;
    let launcher_url = format!("http://{}", launcher_listener.local_addr()?);

    let sim = if real_corp {
        None
    } else {
        let sim = Sim::demo().context("starting the DingTalk simulator")?;
        let mut defaults = corp_settings(&sim, DEMO);
        defaults.insert("qr_login_enabled".into(), "true".into());
        defaults.insert(
            "platform_login_url".into(),
            format!("{launcher_url}/complete"),
        );
        for (k, v) in defaults {
            settings.entry(k).or_insert(v);
        }
        Some(sim)
    };
    let token = settings
        .entry("platform_token".into())
        .or_insert_with(random_token)
        .clone();
    let outbound: Vec<String> = ["oapi_base_url", "api_base_url"]
        .iter()
        .map(|k| {
            settings.get(*k).cloned().unwrap_or_else(|| {
                format!(
                    "https://{}.dingtalk.com",
                    if *k == "oapi_base_url" { "oapi" } else { "api" }
                )
            })
        })
        .filter_map(|u| origin_of(&u))
        .collect();

    // The plugin's own address is part of its settings (site_url), so bind first, then configure.
    let probe = TcpListener::bind(("127.0.0.1", 0))?;
    let plugin_port = std::env::var("DINGTALK_DEV_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(probe.local_addr()?.port());
    drop(probe);
    let site = settings
        .entry("site_url".into())
        .or_insert_with(|| format!("http://127.0.0.1:{plugin_port}"))
        .clone();

    let host = Host::builder()
        .settings(settings.clone())
        .allow_outbound(outbound)
        .build()
        .context("loading the component")?;
    let server = host
        .serve_on(([127, 0, 0, 1], plugin_port).into())
        .context("serving the plugin")?;
    let plugin = server.base_url();

    println!("plugin:     {plugin}  (site_url {site})");
    println!("API token:  {token}   (Authorization: Bearer …)");
    println!("set-up:     curl -H 'Authorization: Bearer {token}' {plugin}/dingding/api/setup");
    println!(
        "R1 page:    {plugin}/dingding/dingding_auth_corp?corpId={}",
        settings.get("corp_id").cloned().unwrap_or_default()
    );
    println!("QR login:   {plugin}/dingding/login");
    println!(
        "set-up page: {}/dingding/setup  (sign in with the API token)",
        plugin.replace("127.0.0.1", "localhost")
    );
    if let Some(sim) = sim {
        println!("simulator:  {}", sim.base_url());
        println!("\nOpen {launcher_url}/ to sign in as a demo member (in-app, PC, admin backend, QR).\nPress Ctrl-C to stop.");
        let launcher = Arc::new(Launcher {
            sim,
            plugin,
            token,
            corp_id: settings.get("corp_id").cloned().unwrap_or_default(),
        });
        for stream in launcher_listener.incoming().flatten() {
            let l = launcher.clone();
            std::thread::spawn(move || {
                let _ = l.serve_one(stream);
            });
        }
    } else {
        println!(
            "\nServing the real corp {}. Press Ctrl-C to stop.",
            settings.get("corp_id").cloned().unwrap_or_default()
        );
        loop {
            std::thread::park();
        }
    }
    drop(server);
    Ok(())
}
