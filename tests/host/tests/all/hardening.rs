//! Scenarios of the hardening issue, on both targets: bounded request bodies, strict request
//! targets, settings that cannot break login, browser-bound in-app login, `__Host-` cookies and
//! the code-exchange budget.

use crate::flows::{
    inapp_page, inapp_with_code, qr_start, redeem, ticket_of, INAPP_COOKIE, QR_COOKIE,
};
use dingtalk_host::client::Resp;
use dingtalk_host::demo::DEMO;
use dingtalk_host::targets::{Fixture, Kind};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

on_both_targets! {
    huge_chunked_body_is_413_and_the_instance_survives,
    query_text_never_reroutes,
    site_url_with_a_path_is_refused,
    config_page_never_reveals_a_secret_length,
    inapp_code_is_exchanged_only_for_the_browser_that_loaded_the_page,
    qr_binding_planted_by_another_site_is_not_adopted,
}

/// What [`stream_chunked_post`] saw.
struct Streamed {
    status: u16,
    elapsed: Duration,
    sent: u64,
}

/// POSTs a chunked body of up to `total` bytes, generated lazily in 64 KiB chunks, to `path`
/// over a raw connection, and stops sending as soon as a response status line arrives.
fn stream_chunked_post(base: &str, path: &str, total: u64) -> Streamed {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut reader = TcpStream::connect(addr).expect("connecting to the plugin");
    reader
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    let mut writer = reader.try_clone().expect("a second handle on the socket");
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let sender = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || -> u64 {
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0u64;
            if writer.write_all(head.as_bytes()).is_err() {
                return sent;
            }
            while sent < total && !stop.load(Ordering::Relaxed) {
                let frame = format!("{:x}\r\n", chunk.len());
                let ok = writer.write_all(frame.as_bytes()).is_ok()
                    && writer.write_all(&chunk).is_ok()
                    && writer.write_all(b"\r\n").is_ok();
                if !ok {
                    return sent;
                }
                sent += chunk.len() as u64;
            }
            let _ = writer.write_all(b"0\r\n\r\n");
            sent
        })
    };
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(2).any(|w| w == b"\r\n") {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let _ = reader.shutdown(std::net::Shutdown::Both);
    let sent = sender.join().expect("the sending thread");
    let line = String::from_utf8_lossy(&got).to_string();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Streamed {
        status,
        elapsed,
        sent,
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Unbounded request body

fn huge_chunked_body_is_413_and_the_instance_survives(kind: Kind) {
    let Some(f) = Fixture::start(kind, "big-body", |_| {}) else {
        return;
    };
    const TOTAL: u64 = 200 * 1024 * 1024;
    let r = stream_chunked_post(
        f.http.base(),
        "/dingding/events?signature=x&timestamp=1&nonce=n",
        TOTAL,
    );
    f.check(
        r.status == 413,
        &format!(
            "a {TOTAL}-byte chunked body is refused with 413 (got {} after {:?}, {} bytes sent)",
            r.status, r.elapsed, r.sent
        ),
    );
    assert!(
        r.elapsed < Duration::from_secs(20),
        "413 comes quickly: {:?}",
        r.elapsed
    );
    // The same instance (a fresh request) still answers.
    let next = f
        .http
        .get(&format!("/dingding/dingding_auth_corp?corpId={DEMO}"));
    f.check(next.status == 200, &format!("the next request: {next}"));
    // And a declared length over the limit is refused too, without reading the body.
    let big = "x".repeat(64 * 1024 + 1);
    let r = f.http.send(
        "POST",
        "/dingding/api/tickets/redeem",
        &[("content-type", "application/json")],
        Some(&big),
    );
    f.check(r.status == 413, &format!("65537 bytes: {r}"));
    assert_eq!(r.error_code(), "body_too_large");
}

#[test]
fn typed_handle_refuses_a_body_over_the_limit() {
    use dingtalk_host::wit::{HttpRequest, Outcome};
    let sim = dingtalk_sim::Sim::builder()
        .corp(dingtalk_sim::CorpSpec::demo())
        .start()
        .expect("simulator");
    let settings = dingtalk_host::demo::settings_for(&sim, DEMO);
    let host = dingtalk_host::Host::builder()
        .settings(settings.clone())
        .allow_outbound([sim.base_url()])
        .build()
        .expect("host");
    let list: Vec<(String, String)> = settings.into_iter().collect();
    let request = HttpRequest {
        method: "POST".into(),
        path_with_query: "/dingding/events?signature=x&timestamp=1&nonce=n".into(),
        headers: vec![],
        body: vec![b'x'; 512 * 1024 + 1], // R6 takes up to 512 KiB (10,000 ids)
    };
    let routed = host.handle(&list, &request).expect("routes.handle");
    assert_eq!(routed.response.status, 413);
    assert!(
        matches!(&routed.outcome, Outcome::Failed(f) if f.code == "body_too_large"),
        "{:?}",
        routed.outcome
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Request targets

fn query_text_never_reroutes(kind: Kind) {
    let Some(f) = Fixture::start(kind, "targets", |_| {}) else {
        return;
    };
    // Before: the first `://` anywhere was taken as a scheme, so this reached the API (401 JSON).
    let r = f.http.get(&format!(
        "/dingding/dingding_auth_corp?corpId={DEMO}&x=https://h/dingding/api/corps"
    ));
    f.check(
        r.status == 200,
        &format!("the JSAPI page, not the API: {r}"),
    );
    assert!(r.body.contains("dd-config"), "{r}");
    let r = f.http.get(&format!(
        "/index.php?dingding/dd_client_callback&corpId={DEMO}"
    ));
    f.check(r.status == 200, &format!("R2 page: {r}"));
    assert!(r.body.contains("dd-config"), "{r}");
}

// ---------------------------------------------------------------------------------------------
// 6. site_url with a path prefix; messages about secrets

fn site_url_with_a_path_is_refused(kind: Kind) {
    let Some(f) = Fixture::start(kind, "site-path", |_| {}) else {
        return;
    };
    let r = f.api(
        "POST",
        "/dingding/api/config/validate",
        Some(r#"{"site_url":"https://h.example.com/forms","corp_id":"dingx","agent_id":"1","app_key":"dingk","app_secret":"0123456789abcdef"}"#),
    );
    f.check(r.status == 200, &format!("validate: {r}"));
    let v = r.json();
    assert_eq!(v["valid"], false, "{v}");
    let issues = v["issues"].as_array().expect("issues");
    let issue = issues
        .iter()
        .find(|i| i["field"] == "site_url")
        .unwrap_or_else(|| panic!("a site_url issue: {v}"));
    assert_eq!(issue["code"], "has_path", "{v}");
    assert!(
        issue["message_en"].as_str().unwrap_or("").contains("path"),
        "{v}"
    );
    assert!(
        issue["message_zh"].as_str().unwrap_or("").contains("路径"),
        "{v}"
    );
    assert_eq!(issues.len(), 1, "only site_url is wrong: {v}");
}

fn config_page_never_reveals_a_secret_length(kind: Kind) {
    let Some(f) = Fixture::start(kind, "secret-len", |s| {
        s.insert("app_secret".into(), "s3cr3t7".into());
    }) else {
        return;
    };
    let page = f
        .http
        .get(&format!("/dingding/dingding_auth_corp?corpId={DEMO}"));
    f.check(page.status == 503, &format!("not configured: {page}"));
    assert!(
        page.body.contains("app_secret"),
        "names the setting: {page}"
    );
    assert_no_length(&page, "7");
    let r = f.api(
        "POST",
        "/dingding/api/config/validate",
        Some(r#"{"app_secret":"abcde"}"#),
    );
    assert_no_length(&r, "5");
}

#[track_caller]
fn assert_no_length(r: &Resp, len: &str) {
    for leak in [
        format!("it has {len}"),
        format!("当前 {len}"),
        format!("({len})"),
        "s3cr3t7".to_string(),
    ] {
        assert!(!r.body.contains(&leak), "{leak:?} in {r}");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Login CSRF on in-app login; 5. cookie tossing

fn inapp_code_is_exchanged_only_for_the_browser_that_loaded_the_page(kind: Kind) {
    let Some(f) = Fixture::start(kind, "inapp-csrf", |_| {}) else {
        return;
    };
    for path in [
        format!("/dingding/dingding_auth_corp?corpId={DEMO}"),
        format!("/index.php?dingding/dd_client_callback&corpId={DEMO}"),
    ] {
        // The attacker's link carries their own unused code; the victim's browser has no
        // page cookie (or a forged one): the page starts over, the code is never exchanged.
        let attacker_code = f.sim.mint_inapp_code(DEMO, "lisi");
        f.sim.reset_calls();
        for cookie in [None, Some(format!("{INAPP_COOKIE}={}", "a".repeat(48)))] {
            let link = format!("{path}&code={attacker_code}");
            let r = match &cookie {
                Some(c) => f.http.get_with_cookie(&link, c),
                None => f.http.get(&link),
            };
            f.check(r.status == 200, &format!("the JSAPI page again: {r}"));
            assert!(
                r.body.contains("dd-config") && r.body.contains("\"retry\":true"),
                "{r}"
            );
            let line = r
                .set_cookie_line(INAPP_COOKIE)
                .expect("a fresh page cookie");
            for attr in ["Path=/;", "HttpOnly", "Secure", "SameSite=Lax"] {
                assert!(line.contains(attr), "{attr}: {line}");
            }
            assert!(!line.to_ascii_lowercase().contains("domain="), "{line}");
        }
        assert!(
            f.sim.calls().is_empty(),
            "no code exchange without the page cookie"
        );
        // The page asks DingTalk for the code of whoever uses this browser and comes back with it.
        let cookie = inapp_page(&f.http, &path);
        let own = f.sim.mint_inapp_code(DEMO, "wangwu");
        let done = inapp_with_code(&f.http, &path, &own, &cookie);
        f.check(
            done.status == 302,
            &format!("own code with the cookie: {done}"),
        );
        assert_eq!(
            redeem(&f.http, &ticket_of(&done)).json()["userid"],
            "wangwu"
        );
    }
}

fn qr_binding_planted_by_another_site_is_not_adopted(kind: Kind) {
    let Some(f) = Fixture::start(kind, "qr-toss", |_| {}) else {
        return;
    };
    let planted = format!("{QR_COOKIE}={}", "ab".repeat(24));
    let start = qr_start(&f.http, "", Some(&planted));
    assert_ne!(
        start.cookie, planted,
        "a binding the plugin did not issue is replaced"
    );
    // The same browser's second tab keeps the binding the plugin issued.
    let again = qr_start(&f.http, "", Some(&start.cookie));
    assert_eq!(again.cookie, start.cookie);
    let r = f.http.get_with_cookie("/dingding/login", &planted);
    let line = r.set_cookie_line(QR_COOKIE).expect("binding cookie");
    assert!(
        line.contains("Path=/;") && !line.to_ascii_lowercase().contains("domain="),
        "{line}"
    );
}
