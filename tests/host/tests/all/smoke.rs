//! Smoke tests: the component loads, its typed exports and its HTTP export answer, and a guest
//! that exceeds its memory limit or deadline is an error, not a host crash.

use anyhow::Result;
use dingtalk_host::Host;
use std::time::Duration;

/// The app secret of [`valid_settings`]; it must never reach the guest's logs.
const APP_SECRET: &str = "app-secret-value-123456";

/// Settings that pass validation (DESIGN §4), pointing at nothing real.
fn valid_settings() -> Vec<(String, String)> {
    dingtalk_host::settings_list([
        ("site_url", "https://forms.example.com"),
        ("corp_id", "dingcorp"),
        ("agent_id", "1000001"),
        ("app_key", "dingappkey123"),
        ("app_secret", APP_SECRET),
    ])
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn validate_reports_every_required_key() -> Result<()> {
    let host = Host::builder().build()?;
    let issues = host.validate(&[])?;
    for field in ["site_url", "corp_id", "agent_id", "app_key", "app_secret"] {
        assert!(
            issues
                .iter()
                .any(|i| i.field == field && i.code == "required"),
            "no `required` issue for {field}: {:?}",
            issues
                .iter()
                .map(|i| (&i.field, &i.code))
                .collect::<Vec<_>>()
        );
    }
    assert!(host.validate(&valid_settings())?.is_empty());
    Ok(())
}

#[test]
fn unknown_route_is_404_over_http() -> Result<()> {
    let host = Host::builder().settings(valid_settings()).build()?;
    let server = host.serve()?;
    let response = reqwest::blocking::get(server.url("/dingding/nope"))?;
    assert_eq!(response.status().as_u16(), 404);
    assert!(host.http_errors().is_empty(), "{:?}", host.http_errors());
    Ok(())
}

#[test]
fn mobile_home_page_is_html_over_http_and_in_process() -> Result<()> {
    let host = Host::builder().settings(valid_settings()).build()?;
    let server = host.serve()?;
    let path = "/dingding/dingding_auth_corp?corpId=dingcorp";

    let response = reqwest::blocking::get(server.url(path))?;
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("text/html"),
        "content-type {content_type:?}"
    );
    assert!(!response.text()?.is_empty());

    let (status, headers, body) = host.handle_http("GET", path, &[], b"")?;
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type").is_some_and(|v| v.starts_with("text/html")));
    assert!(!body.is_empty());

    assert!(host.http_errors().is_empty(), "{:?}", host.http_errors());
    assert!(!host.guest_logs().contains(APP_SECRET));
    Ok(())
}

#[test]
fn concurrent_requests_are_served() -> Result<()> {
    let host = Host::builder().settings(valid_settings()).build()?;
    let server = host.serve()?;
    let client = reqwest::blocking::Client::new();
    let statuses = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let url = if i % 2 == 0 {
                    server.url("/dingding/dingding_auth_corp?corpId=dingcorp")
                } else {
                    server.url("/dingding/nope")
                };
                let client = &client;
                scope.spawn(move || client.get(url).send().map(|r| r.status().as_u16()))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("request thread panicked"))
            .collect::<Result<Vec<_>, _>>()
    })?;
    assert_eq!(statuses, [200, 404, 200, 404, 200, 404, 200, 404]);
    Ok(())
}

#[test]
fn outbound_requests_outside_the_allow_list_are_denied() -> Result<()> {
    // No origin is allowed, so the guide's live checks cannot reach DingTalk.
    let host = Host::builder().build()?;
    let guide = host.setup_guide(&valid_settings())?;
    let guide =
        guide.map_err(|issues| anyhow::anyhow!("valid settings rejected: {}", issues.len()))?;
    assert!(!guide.checks.is_empty());
    assert!(guide.checks.iter().all(|c| !c.passed));
    assert!(host.outbound_requests().is_empty());
    let denied = host.denied_requests();
    assert!(
        denied
            .keys()
            .all(|origin| origin.ends_with(".dingtalk.com")),
        "{denied:?}"
    );
    assert!(!denied.is_empty());
    assert!(!host.guest_logs().contains(APP_SECRET));
    Ok(())
}

#[test]
fn exceeding_the_memory_limit_is_an_error() -> Result<()> {
    let host = Host::builder().memory_limit(16 << 20).build()?;
    // Lowering a 32 MiB argument needs more guest memory than the limit allows.
    let huge = vec![("corp_name".to_owned(), "x".repeat(32 << 20))];
    let error = host
        .validate(&huge)
        .expect_err("a 32 MiB argument fits in 16 MiB");
    let report = format!("{error:?}");
    assert!(
        report.contains("config.validate") && report.contains("growing memory"),
        "{report}"
    );
    // The host is unharmed: the next call gets a fresh store.
    assert!(!host.validate(&[])?.is_empty());
    Ok(())
}

#[test]
fn exceeding_the_deadline_is_an_error() -> Result<()> {
    // A zero deadline interrupts the guest at its first epoch check.
    let host = Host::builder().deadline(Duration::ZERO).build()?;
    let error = host
        .validate(&[])
        .expect_err("a zero deadline cannot be met");
    assert!(
        error
            .chain()
            .any(|e| e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt)),
        "{error:?}"
    );
    let error = host
        .handle_http("GET", "/dingding/nope", &[], b"")
        .expect_err("a zero deadline cannot be met");
    assert!(
        error
            .chain()
            .any(|e| e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt)),
        "{error:?}"
    );
    Ok(())
}

/// Under `spin up`, requests on one keep-alive connection are answered in about a millisecond.
/// The plugin writes and finishes the response body before handing the response to Spin; handed
/// over first, Spin wrote the head alone after the settings read, and the body waited for the
/// client's delayed ACK (Nagle): about 40 ms on every request but the first few.
#[test]
fn spin_answers_keep_alive_requests_without_a_delayed_ack_stall() -> Result<()> {
    let settings: dingtalk_host::demo::Settings = valid_settings().into_iter().collect();
    let Some(spin) = dingtalk_host::spin::SpinApp::start(&dingtalk_host::spin::SpinOptions {
        settings: &settings,
        runtime_config: None,
        label: "keep-alive",
    }) else {
        return Ok(());
    };
    let client = reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(1)
        .build()?;
    let mut took = Vec::new();
    for path in [
        "/dingding/nope",
        "/dingding/dingding_auth_corp?corpId=dingcorp",
    ] {
        for _ in 0..25 {
            let started = std::time::Instant::now();
            let response = client.get(format!("{}{path}", spin.base_url())).send()?;
            let status = response.status().as_u16();
            let body = response.bytes()?;
            took.push(started.elapsed());
            assert!(matches!(status, 200 | 404), "{path}: {status}");
            assert!(!body.is_empty(), "{path}: an empty body");
        }
    }
    took.sort();
    let median = took[took.len() / 2];
    assert!(
        median < Duration::from_millis(20),
        "median {median:?} over one keep-alive connection (all: {took:?})\n{}",
        spin.log_tail()
    );
    Ok(())
}
