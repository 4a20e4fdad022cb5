//! `cargo run --release -p dingtalk-host --bin dingtalk-bench`: the plugin's cost and speed,
//! measured on the real component in the wasmtime host against the DingTalk simulator.
//!
//! Prints: component size; instantiation time; DingTalk calls per flow with cold and warm
//! caches; time inside the component per request (wall time minus the time the guest's outgoing
//! requests waited for the simulator), p50 and p99; full-sync calls against the minimum for the
//! org and wall time against calls ÷ QPS; events verified, decrypted and applied per second.
//! Options (environment): `BENCH_LOGINS` (default 300), `BENCH_SYNC_USERS` (2000),
//! `BENCH_SYNC_DEPTS` (100), `BENCH_EVENTS` (500).

use anyhow::{Context, Result};
use dingtalk_host::redis::Redis;
use dingtalk_host::spin::{spin_bin, SpinApp, SpinOptions};
use dingtalk_host::{component_path, demo, Host, Kv};
use dingtalk_sim::{CorpSpec, OrgSpec, Sim};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

struct Fixture {
    sim: Sim,
    settings: BTreeMap<String, String>,
    corp: String,
}

/// The tests' settings for `corp` on `sim`, with `sync_qps` set.
fn settings_for(sim: &Sim, corp: &str, sync_qps: u32) -> Result<BTreeMap<String, String>> {
    let mut settings = demo::settings_for(sim, corp);
    settings.insert("sync_qps".into(), sync_qps.to_string());
    Ok(settings)
}

fn host(f: &Fixture, kv: Kv) -> Result<Host> {
    Host::builder()
        .settings(f.settings.clone())
        .allow_outbound([f.sim.base_url().to_string()])
        .kv(kv)
        .build()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A timed answer: status, headers, wall time, time the guest waited on DingTalk.
type Timed = (u16, Vec<(String, String)>, Duration, Duration);

/// One request, timed.
fn timed(host: &Host, path: &str, headers: &[(String, String)]) -> Result<Timed> {
    let waited_before = host.outbound_waiting();
    let started = Instant::now();
    let (status, headers, _) = host.handle_http("GET", path, headers, b"")?;
    let wall = started.elapsed();
    Ok((
        status,
        headers,
        wall,
        host.outbound_waiting() - waited_before,
    ))
}

fn report_times(label: &str, samples: &mut [(Duration, Duration)]) {
    let mut inside: Vec<Duration> = samples.iter().map(|(w, d)| w.saturating_sub(*d)).collect();
    let mut walls: Vec<Duration> = samples.iter().map(|(w, _)| *w).collect();
    inside.sort();
    walls.sort();
    println!(
        "{label}: inside the component p50 {} p99 {} | wall p50 {} p99 {} (n = {})",
        ms(percentile(&inside, 0.5)),
        ms(percentile(&inside, 0.99)),
        ms(percentile(&walls, 0.5)),
        ms(percentile(&walls, 0.99)),
        samples.len()
    );
}

fn inapp_path(corp: &str, code: &str) -> String {
    format!("/dingding/dingding_auth_corp?corpId={corp}&code={code}")
}

/// The JSAPI page's cookie (`__Host-dd_inapp=…`), which binds the code exchange to the browser
/// that loaded the page; without it R1 serves the page again.
fn inapp_cookie(set_cookie: Option<&str>) -> Result<String> {
    let line = set_cookie.context("the JSAPI page set no cookie")?;
    Ok(line.split(';').next().unwrap_or_default().to_string())
}

fn bench_logins(f: &Fixture) -> Result<()> {
    let n = env_usize("BENCH_LOGINS", 300);
    let users: Vec<(String, String)> = f
        .sim
        .with_org(&f.corp, |o| {
            o.users()
                .filter(|u| u.active)
                .map(|u| (u.userid.clone(), u.unionid.clone()))
                .collect()
        })
        .unwrap_or_default();
    let admin = f
        .sim
        .with_org(&f.corp, |o| {
            o.users().find(|u| u.is_sys()).map(|u| u.userid.clone())
        })
        .flatten()
        .context("an admin")?;

    // In-app (R1): cold cache, then warm.
    let h = host(f, Kv::new())?;
    let (_, page_headers, ..) = timed(
        &h,
        &format!("/dingding/dingding_auth_corp?corpId={}", f.corp),
        &[],
    )?;
    let cookie = inapp_cookie(
        page_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str()),
    )?;
    let with_cookie = [("cookie".to_string(), cookie)];
    f.sim.reset_calls();
    let (uid, _) = &users[0];
    let (status, ..) = timed(
        &h,
        &inapp_path(&f.corp, &f.sim.mint_inapp_code(&f.corp, uid)),
        &with_cookie,
    )?;
    anyhow::ensure!(status == 302, "in-app login answered {status}");
    let cold = f.sim.calls().len();
    f.sim.reset_calls();
    let mut samples = Vec::new();
    for i in 0..n {
        let (uid, _) = &users[i % users.len()];
        let path = inapp_path(&f.corp, &f.sim.mint_inapp_code(&f.corp, uid));
        let (status, _, wall, waited) = timed(&h, &path, &with_cookie)?;
        anyhow::ensure!(status == 302, "in-app login answered {status}");
        samples.push((wall, waited));
    }
    let warm = f.sim.calls().len() as f64 / n as f64;
    println!(
        "in-app login (R1): DingTalk calls cold {cold}, warm {warm:.2} (getuserinfo + user/get)"
    );
    report_times("in-app login (R1) exchange", &mut samples);

    // QR (R5 → R4): cold, then warm.
    let h = host(f, Kv::new())?;
    let mut cold_calls = None;
    f.sim.reset_calls();
    let mut samples = Vec::new();
    for i in 0..=n.min(200) {
        let (status, headers, ..) = timed(&h, "/dingding/login", &[])?;
        anyhow::ensure!(status == 302, "QR start answered {status}");
        let location = header(&headers, "location").context("location")?;
        let state = url::Url::parse(location)?
            .query_pairs()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
            .context("state")?;
        let cookie = header(&headers, "set-cookie")
            .context("cookie")?
            .split(';')
            .next()
            .unwrap_or("")
            .to_string();
        let (_, unionid) = &users[i % users.len()];
        let code = f.sim.mint_oauth_code(unionid);
        let path = format!("/dingding/dd_or_code_corp_list?authCode={code}&state={state}");
        let before = f.sim.calls().len();
        let (status, _, wall, waited) = timed(&h, &path, &[("cookie".into(), cookie)])?;
        anyhow::ensure!(status == 302, "QR callback answered {status}");
        if i == 0 {
            cold_calls = Some(f.sim.calls().len() - before);
            f.sim.reset_calls();
        } else {
            samples.push((wall, waited));
        }
    }
    let warm = f.sim.calls().len() as f64 / samples.len() as f64;
    println!(
        "QR login (R4): DingTalk calls cold {}, warm {warm:.2} (userAccessToken + users/me + getbyunionid + user/get)",
        cold_calls.unwrap_or(0)
    );
    report_times("QR login (R4) callback", &mut samples);

    // Admin SSO (R3): cold, then warm.
    let h = host(f, Kv::new())?;
    let mut cold_calls = 0;
    let mut samples = Vec::new();
    f.sim.reset_calls();
    for i in 0..=n.min(200) {
        let code = f.sim.mint_sso_code(&f.corp, &admin);
        let path = format!(
            "/index.php?dingding/dd_callback&usertype=admin&corpId={}&code={code}",
            f.corp
        );
        let (status, _, wall, waited) = timed(&h, &path, &[])?;
        anyhow::ensure!(status == 302, "admin login answered {status}");
        if i == 0 {
            cold_calls = f.sim.calls().len();
            f.sim.reset_calls();
        } else {
            samples.push((wall, waited));
        }
    }
    let warm = f.sim.calls().len() as f64 / samples.len() as f64;
    println!(
        "admin SSO login (R3): DingTalk calls cold {cold_calls}, warm {warm:.2} (ssoUserInfo)"
    );
    report_times("admin SSO login (R3)", &mut samples);
    Ok(())
}

fn bench_events(f: &Fixture) -> Result<()> {
    let n = env_usize("BENCH_EVENTS", 500);
    let h = host(f, Kv::new())?;
    let crypto = f.sim.event_crypto(&f.corp).context("event crypto")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let mut bodies = Vec::with_capacity(n);
    for i in 0..n {
        let payload = format!(
            r#"{{"EventType":"user_leave_org","TimeStamp":"{now}","UserId":["gone{i}"],"CorpId":"{}"}}"#,
            f.corp
        );
        let mut random = [0u8; 16];
        random[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let encrypt = crypto.encrypt_with_random(&payload, &random);
        let nonce = format!("n{i:07}");
        let ts = now.to_string();
        let sig = crypto.signature(&ts, &nonce, &encrypt);
        let path = format!("/dingding/events?msg_signature={sig}&timestamp={ts}&nonce={nonce}");
        bodies.push((path, serde_json::json!({ "encrypt": encrypt }).to_string()));
    }
    let started = Instant::now();
    let headers = [("content-type".to_string(), "application/json".to_string())];
    for (path, body) in &bodies {
        let (status, _, _) = h.handle_http("POST", path, &headers, body.as_bytes())?;
        anyhow::ensure!(status == 200, "event answered {status}");
    }
    let took = started.elapsed();
    println!(
        "events (user_leave_org, no detail fetch): {n} verified, decrypted, de-duplicated, logged and answered in {} = {:.0} events/s",
        ms(took),
        n as f64 / took.as_secs_f64()
    );
    Ok(())
}

fn bench_sync() -> Result<()> {
    let users = env_usize("BENCH_SYNC_USERS", 2000);
    let depts = env_usize("BENCH_SYNC_DEPTS", 100);
    let spec = OrgSpec {
        seed: 7,
        ..OrgSpec::sized(depts, users)
    };
    let sim = Sim::builder()
        .corp(CorpSpec::generated("dingsynccorp", &spec))
        .qps_limit(Some(20))
        .start()?;
    let qps = 15;
    let settings = settings_for(&sim, "dingsynccorp", qps)?;
    let f = Fixture {
        sim,
        settings,
        corp: "dingsynccorp".into(),
    };
    let h = host(&f, Kv::new())?;
    let (minimum, members) = f
        .sim
        .with_org(&f.corp, |o| {
            let pages: usize = o
                .departments()
                .map(|d| o.members(d.dept_id).len().div_ceil(100).max(1))
                .sum();
            (o.department_count() + pages, o.user_count())
        })
        .context("org")?;
    f.sim.reset_calls();
    let started = Instant::now();
    let mut steps = 0;
    let mut seen = 0;
    let mut max_step = Duration::ZERO;
    let mut peak_memory = 0;
    let mut ack: Option<String> = None;
    loop {
        steps += 1;
        h.reset_peak_memory();
        let t = Instant::now();
        let request = dingtalk_host::wit::SyncRequest {
            corp_id: String::new(),
            ack: ack.clone(),
            restart: false,
        };
        let batch = h
            .sync_step_with(&h.settings_list(), &request)?
            .map_err(|e| anyhow::anyhow!("sync failed: {} {}", e.code, e.message))?;
        ack = Some(batch.cursor.clone());
        max_step = max_step.max(t.elapsed());
        peak_memory = peak_memory.max(h.peak_memory());
        seen += batch.members.len();
        if let Some(ms) = batch.retry_after_ms {
            std::thread::sleep(Duration::from_millis(ms as u64));
        }
        if batch.progress.complete || steps > 10_000 {
            break;
        }
    }
    let wall = started.elapsed();
    let calls = f.sim.calls();
    let mut per_second: BTreeMap<i64, usize> = BTreeMap::new();
    for c in &calls {
        *per_second.entry(c.at_ms / 1000).or_default() += 1;
    }
    let peak = per_second.values().max().copied().unwrap_or(0);
    println!(
        "full sync of {members} members in {} departments: {} DingTalk calls (minimum for this org {minimum}: one listsub per department + one user/list per 100 members), {steps} steps, {seen} members reported",
        spec.departments,
        calls.len()
    );
    println!(
        "sync wall time {:.1} s at sync_qps {qps} (calls ÷ QPS = {:.1} s); peak {peak} calls in one clock second; slowest step {}",
        wall.as_secs_f64(),
        calls.len() as f64 / qps as f64,
        ms(max_step)
    );
    println!(
        "memory per sync step: peak guest linear memory {:.1} MiB (fresh instance per step)",
        peak_memory as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

/// Median time of `n` sequential GETs of `path` on `base`, a new connection each (keep-alive
/// timings on loopback are dominated by delayed-ACK interplay, not by the server).
fn median_get(base: &str, path: &str, n: usize) -> Result<Duration> {
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .tcp_nodelay(true)
        .no_proxy()
        .build()?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = client.get(format!("{base}{path}")).send()?;
        anyhow::ensure!(r.status().as_u16() == 200, "GET {path}: {}", r.status());
        let _ = r.bytes()?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok(percentile(&times, 0.5))
}

/// Completed in-app logins per second over `seconds`, `threads` clients spread over `bases`;
/// also DingTalk calls per login.
fn logins_per_second(
    sim: &Sim,
    bases: &[&str],
    threads: usize,
    seconds: u64,
) -> Result<(f64, f64)> {
    let users = ["zhangsan", "lisi", "wangwu", "zhaoliu", "qianqi"];
    sim.reset_calls();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (done, failed) = (&done, &failed);
            let base = bases[t % bases.len()].to_string();
            scope.spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .no_proxy()
                    .build()
                    .expect("client");
                let mut i = t;
                let page = format!("{base}/dingding/dingding_auth_corp?corpId={DEMO_CORP}");
                let cookie = client
                    .get(&page)
                    .send()
                    .ok()
                    .and_then(|r| {
                        r.headers()
                            .get("set-cookie")
                            .and_then(|v| v.to_str().ok())
                            .map(|v| v.split(';').next().unwrap_or_default().to_string())
                    })
                    .unwrap_or_default();
                while Instant::now() < deadline {
                    let code = sim.mint_inapp_code(DEMO_CORP, users[i % users.len()]);
                    i += threads;
                    let url = format!("{page}&code={code}");
                    match client.get(url).header("cookie", &cookie).send() {
                        Ok(r) if r.status().as_u16() == 302 => {
                            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        }
                        _ => failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    };
                }
            });
        }
    });
    let done = done.into_inner();
    anyhow::ensure!(failed.into_inner() == 0, "some logins failed");
    Ok((
        done as f64 / seconds as f64,
        sim.calls().len() as f64 / done.max(1) as f64,
    ))
}

const DEMO_CORP: &str = demo::DEMO;

/// Issue 6: Spin against the wasmtime host, and one Spin instance against two sharing Redis.
fn bench_spin() -> Result<()> {
    if spin_bin().is_none() {
        println!("spin: skipped (no Spin found)");
        return Ok(());
    }
    let sim = Sim::builder()
        .corp(CorpSpec::demo())
        .qps_limit(None)
        .start()?;
    let settings = demo::settings_for(&sim, DEMO_CORP);
    let page = format!("/dingding/dingding_auth_corp?corpId={DEMO_CORP}");

    let wasmtime = Host::builder()
        .settings(settings.clone())
        .allow_outbound([sim.base_url().to_string()])
        .build()?;
    let server = wasmtime.serve()?;
    let single = SpinApp::start(&SpinOptions {
        settings: &settings,
        runtime_config: None,
        label: "bench",
    })
    .context("spin up")?;
    let w = median_get(&server.base_url(), &page, 400)?;
    let sp = median_get(single.base_url(), &page, 400)?;
    println!(
        "R1 page over HTTP, median: wasmtime host {} vs spin up {} (Spin/wasmtime = {:.2})",
        ms(w),
        ms(sp),
        sp.as_secs_f64() / w.as_secs_f64()
    );
    drop(single);

    let Some(redis) = Redis::start() else {
        println!("scale-out: skipped (no redis-server)");
        return Ok(());
    };
    let opts = |label| SpinOptions {
        settings: &settings,
        runtime_config: Some(redis.runtime_config()),
        label,
    };
    let a = SpinApp::start(&opts("bench-a")).context("spin a")?;
    let (one, calls_one) = logins_per_second(&sim, &[a.base_url()], 8, 5)?;
    let b = SpinApp::start(&opts("bench-b")).context("spin b")?;
    let (two, calls_two) = logins_per_second(&sim, &[a.base_url(), b.base_url()], 8, 5)?;
    println!(
        "in-app logins/s on Redis: one Spin instance {one:.0}, two instances {two:.0} (ratio {:.2}; one 2-core machine runs both, the simulator and the clients)",
        two / one
    );
    println!("DingTalk calls per login with the token cache shared in Redis: {calls_one:.3} (one instance), {calls_two:.3} (two)");
    Ok(())
}

fn main() -> Result<()> {
    let wasm = component_path();
    println!(
        "component: {} bytes ({})",
        std::fs::metadata(&wasm)?.len(),
        wasm.display()
    );

    // No QPS limit here: these figures are per-request cost, not DingTalk's throttling (the sync
    // below runs against the limit).
    let sim = Sim::builder()
        .corp(CorpSpec::demo())
        .qps_limit(None)
        .start()?;
    let settings = settings_for(&sim, DEMO_CORP, 15)?;
    let f = Fixture {
        sim,
        settings,
        corp: DEMO_CORP.into(),
    };

    let started = Instant::now();
    let h = host(&f, Kv::new())?;
    println!(
        "host build (engine + compiled component, disk-cached): {}",
        ms(started.elapsed())
    );
    let mut inst = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        h.with_plugin(|_, _| Ok(()))?;
        inst.push(t.elapsed());
    }
    inst.sort();
    println!(
        "instantiation (fresh store + instance): p50 {} p99 {}",
        ms(percentile(&inst, 0.5)),
        ms(percentile(&inst, 0.99))
    );

    bench_logins(&f)?;
    bench_events(&f)?;
    bench_sync()?;
    bench_spin()?;
    Ok(())
}
