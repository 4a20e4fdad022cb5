//! Scale-out: one Redis and two `spin up` instances (A and B) of the project's `spin.toml`
//! sharing it through a runtime config file, as SpinKube replicas would. Real races, bounded:
//! a few threads on loopback, each test under a minute.
//!
//! Without Spin or `redis-server` each missing tier prints one SKIP line and the tests return
//! early, unless env `CI` is set: then they fail.

use crate::flows::{inapp_login, qr_start, redeem, ticket_of};
use crate::helpers::{self, race};
use dingtalk_host::client::{Http, Resp};
use dingtalk_host::demo::{settings_for, Settings, DEMO, PLATFORM_TOKEN};
use dingtalk_host::redis::Redis;
use dingtalk_host::spin::{spin_bin, SpinApp, SpinOptions};
use dingtalk_host::support::wait_until;
use dingtalk_sim::{CorpSpec, OrgSpec, Sim, User};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Threads per race: bounded, split evenly across A and B.
const RACERS: usize = 16;

/// Two Spin instances on one Redis, calling one simulator.
struct Cluster {
    // Dropped first: both instances stop before Redis and the simulator go.
    a: SpinApp,
    b: SpinApp,
    http: [Http; 2],
    redis: Redis,
    sim: Sim,
}

impl Cluster {
    /// `None` when Spin or Redis is missing here (after their SKIP lines).
    fn start(sim: Sim, corp_id: &str, tweak: impl FnOnce(&mut Settings)) -> Option<Cluster> {
        spin_bin()?;
        let redis = Redis::start()?;
        let mut settings = settings_for(&sim, corp_id);
        tweak(&mut settings);
        let runtime_config = redis.runtime_config();
        let start = |label: &str| {
            SpinApp::start(&SpinOptions {
                settings: &settings,
                runtime_config: Some(runtime_config.clone()),
                label,
            })
        };
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| start("a"));
            let b = s.spawn(|| start("b"));
            (
                a.join().expect("starting A panicked"),
                b.join().expect("starting B panicked"),
            )
        });
        let (a, b) = (a?, b?);
        let http = [Http::new(a.base_url()), Http::new(b.base_url())];
        Some(Cluster {
            a,
            b,
            http,
            redis,
            sim,
        })
    }

    fn demo(tweak: impl FnOnce(&mut Settings)) -> Option<Cluster> {
        let sim = Sim::builder()
            .corp(CorpSpec::demo())
            .qps_limit(None)
            .start()
            .expect("starting the simulator");
        Cluster::start(sim, DEMO, tweak)
    }

    /// The client of instance `i % 2` (0 = A, 1 = B).
    fn on(&self, i: usize) -> &Http {
        &self.http[i % 2]
    }

    fn logs(&self) -> String {
        format!(
            "--- A ---\n{}\n--- B ---\n{}",
            self.a.log_tail(),
            self.b.log_tail()
        )
    }

    #[track_caller]
    fn check(&self, cond: bool, what: &str) {
        if !cond {
            panic!("{what}\n{}", self.logs());
        }
    }
}

fn statuses(results: &[Resp]) -> BTreeMap<u16, usize> {
    let mut out = BTreeMap::new();
    for r in results {
        *out.entry(r.status).or_default() += 1;
    }
    out
}

/// The instances really share one store: a ticket minted on A redeems on B.
#[test]
fn instances_share_the_redis_store() {
    let Some(c) = Cluster::demo(|_| {}) else {
        return;
    };
    let ticket = inapp_login(&c.http[0], &c.sim, DEMO, "wangwu");
    let r = redeem(&c.http[1], &ticket);
    c.check(r.status == 200, &format!("redeem on B: {r}"));
    assert_eq!(r.json()["userid"], "wangwu");
    let again = redeem(&c.http[0], &ticket);
    assert!([404, 410].contains(&again.status), "{again}");
    assert!(
        c.redis.keys().iter().any(|k| k.starts_with("tok:app:")),
        "the plugin's state lives in Redis: {:?}",
        c.redis.keys()
    );
}

/// A ticket minted on A, redeemed by 16 concurrent requests split across A and B: exactly one
/// gets the identity.
#[test]
fn ticket_redeems_once_across_instances() {
    let Some(c) = Cluster::demo(|_| {}) else {
        return;
    };
    for round in 0..3 {
        let ticket = inapp_login(&c.http[0], &c.sim, DEMO, "zhaoliu");
        let results = race(RACERS, |i| redeem(c.on(i), &ticket));
        let by_status = statuses(&results);
        c.check(
            by_status.get(&200) == Some(&1),
            &format!("round {round}: exactly one redeem succeeds: {by_status:?}"),
        );
        assert!(
            results.iter().all(|r| [200, 404, 410].contains(&r.status)),
            "the others are 404/410: {by_status:?}"
        );
        let winner = results.iter().find(|r| r.status == 200).expect("a winner");
        assert_eq!(winner.json()["userid"], "zhaoliu");
    }
}

/// One QR callback delivered 16 times at once (a double-submitted redirect: one state, one
/// cookie, one OAuth code) across A and B: exactly one signs in, the others meet DingTalk's
/// single-use code with a clear 400, and no request fails with a 5xx.
#[test]
fn a_qr_callback_signs_in_once_across_instances() {
    let Some(c) = Cluster::demo(|_| {}) else {
        return;
    };
    let union = "demoUnionQianqi00001iE";
    for round in 0..2 {
        let s = qr_start(&c.http[0], "", None);
        let code = c.sim.mint_oauth_code(union);
        let results = race(RACERS, |i| {
            c.on(i).get_with_cookie(
                &format!(
                    "/dingding/dd_or_code_corp_list?authCode={code}&code={code}&state={}",
                    s.state
                ),
                &s.cookie,
            )
        });
        let by_status = statuses(&results);
        c.check(
            by_status.get(&302) == Some(&1),
            &format!("round {round}: exactly one callback signs in: {by_status:?}"),
        );
        for r in results.iter().filter(|r| r.status != 302) {
            assert_eq!(r.status, 400, "{r}");
            assert!(r.page_has_code("code_invalid"), "{r}");
        }
        let winner = results.iter().find(|r| r.status == 302).expect("a winner");
        let id = redeem(&c.http[1], &ticket_of(winner)).json();
        assert_eq!(id["unionid"], union);
        assert_eq!(id["via"], "qr");
    }
}

/// Twenty logins at once, spread over A and B, with a cold token cache: the app token is fetched
/// once in total. Then every ticket is redeemed and Redis holds nothing personal, and only a
/// bounded number of keys outside the sweep's reach.
#[test]
fn cold_logins_fetch_the_app_token_once_across_instances() {
    const LOGINS: usize = 20;
    let Some(c) = Cluster::demo(|_| {}) else {
        return;
    };
    let users = ["zhangsan", "lisi", "wangwu", "zhaoliu", "qianqi"];
    let codes: Vec<String> = (0..LOGINS)
        .map(|i| c.sim.mint_inapp_code(DEMO, users[i % users.len()]))
        .collect();
    // The plugin's refresh lock is one `increment` claim per token generation and minute
    // (src/dingtalk/mod.rs, Client::app_token), so a burst that straddles a minute boundary may
    // legitimately fetch twice. Start well inside a minute.
    wait_until(Duration::from_secs(61), || {
        (200..55_000).contains(&(helpers::now_ms() % 60_000))
    });
    // The JSAPI page's cookie, from one instance, binds the exchange on either (it is signed
    // with a key derived from the AppSecret; nothing is stored).
    let page = format!("/dingding/dingding_auth_corp?corpId={DEMO}");
    let cookie = crate::flows::inapp_page(c.on(0), &page);
    let slot = helpers::now_ms() / 60_000;
    let results = race(LOGINS, |i| {
        crate::flows::inapp_with_code(c.on(i), &page, &codes[i], &cookie)
    });
    let same_slot = helpers::now_ms() / 60_000 == slot;
    let token_calls = c.sim.count("/v1.0/oauth2/accessToken") + c.sim.count("/gettoken");
    c.check(
        token_calls == 1 || (!same_slot && token_calls == 2),
        &format!(
            "the app token is fetched once across both instances, got {token_calls} (burst within one minute: {same_slot})"
        ),
    );
    let by_status = statuses(&results);
    c.check(
        by_status.get(&302) == Some(&LOGINS),
        &format!(
            "every login succeeds: {by_status:?}{}",
            if by_status.contains_key(&504) {
                " — a 504 is the plugin's 8 s DingTalk call timeout: the simulator left the \
                 request unread (tiny_http's TaskPool can strand a new keep-alive connection \
                 from Spin's outbound pool; see tests/sim/src/server.rs)"
            } else {
                ""
            }
        ),
    );
    assert_eq!(c.sim.count("/topapi/v2/user/getuserinfo"), LOGINS);

    let tickets: Vec<String> = results.iter().map(ticket_of).collect();
    let redeemed = race(LOGINS, |i| redeem(c.on(i + 1), &tickets[i]));
    assert!(
        redeemed.iter().all(|r| r.status == 200),
        "{:?}",
        statuses(&redeemed)
    );

    let keys = c.redis.keys();
    // Tickets and their claims live in slots of the `t:` series (src/kv.rs), found by the sweep
    // through their bucket's counter; other claims and locks are registered (`gc:`).
    let is_slot = |k: &str| {
        let parts: Vec<&str> = k.split(':').collect();
        parts.len() >= 3 && matches!(parts[0], "t" | "s" | "gc") && parts[1].parse::<u64>().is_ok()
    };
    for k in keys
        .iter()
        .filter(|k| k.starts_with("t:") && !k.ends_with(":c"))
    {
        let v = c
            .redis
            .get(k)
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        assert!(
            !v.unwrap_or_default().contains(DEMO),
            "a ticket's identity is sealed in the store: {k}"
        );
    }
    let is_claim = |k: &str| k.starts_with("claim:") || k.starts_with("lock:");
    let durable: Vec<&String> = keys
        .iter()
        .filter(|k| {
            !is_slot(k) && !k.starts_with("sweep:") && !k.starts_with("dir:") && !is_claim(k)
        })
        .collect();
    assert!(
        durable.len() <= 8,
        "keys outside claims and the sweep's bookkeeping stay few: {durable:?}"
    );
    let registered: BTreeSet<String> = keys
        .iter()
        .filter(|k| {
            let parts: Vec<&str> = k.split(':').collect();
            parts.len() == 3
                && parts[0] == "gc"
                && parts[1].parse::<u64>().is_ok()
                && parts[2].parse::<u64>().is_ok()
        })
        .filter_map(|k| c.redis.get(k))
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .collect();
    for k in keys.iter().filter(|k| is_claim(k)) {
        assert!(registered.contains(k), "{k} is registered for the sweep");
    }
}

/// The same event delivered to A and B at once (and again) is applied once.
#[test]
fn an_event_is_applied_once_across_instances() {
    let Some(c) = Cluster::demo(|_| {}) else {
        return;
    };
    let event = c
        .sim
        .add_user(
            DEMO,
            User::new("newbie", "demoUnionNewbie00001iE", "新人", &[2]),
        )
        .expect("adding a member");
    let payload = event.payload();
    let urls = [
        c.http[0].url("/dingding/events"),
        c.http[1].url("/dingding/events"),
    ];
    // DingTalk retries an unacknowledged push; a duplicate of an event still being applied is
    // answered 503 `event_in_progress` (src/events_route.rs), so retry those, bounded.
    let deliveries = race(8, |i| {
        let mut d = c.sim.send_event(&urls[i % 2], DEMO, &payload);
        for _ in 0..20 {
            if d.success || !d.body.contains("event_in_progress") {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
            d = c.sim.send_event(&urls[i % 2], DEMO, &payload);
        }
        d
    });
    for d in &deliveries {
        c.check(d.success, &format!("every delivery is acknowledged: {d:?}"));
    }
    for http in &c.http {
        let r = http.api(
            "GET",
            "/dingding/api/changes?after=0&limit=1000",
            Some(PLATFORM_TOKEN),
            None,
        );
        assert_eq!(r.status, 200, "{r}");
        let changes = r.json()["changes"].as_array().cloned().unwrap_or_default();
        let about: Vec<&Value> = changes
            .iter()
            .filter(|ch| ch["change"]["member"]["userid"] == "newbie")
            .collect();
        assert_eq!(about.len(), 1, "applied once: {changes:?}");
    }
}

/// The platform's sync steps land on A or B, whichever thread wins: together they never exceed
/// `sync_qps` DingTalk calls in any second, and every member is reported exactly once in the
/// pass. The platform is one consumer: each step acknowledges the last batch it applied (the ack
/// is mandatory), so its steps follow one another; which instance serves each is a race.
#[test]
fn concurrent_sync_steps_respect_sync_qps_and_report_once() {
    const SYNC_QPS: usize = 5;
    let sim = Sim::builder()
        .corp(CorpSpec::generated("dingsynccorp", &OrgSpec::sized(15, 80)))
        .start()
        .expect("starting the simulator");
    let Some(c) = Cluster::start(sim, "dingsynccorp", |s| {
        s.insert("sync_qps".into(), SYNC_QPS.to_string());
    }) else {
        return;
    };
    let org = c.sim.org("dingsynccorp").expect("org");
    c.sim.reset_calls();
    let done = AtomicBool::new(false);
    let reported: Mutex<Vec<String>> = Mutex::new(Vec::new());
    // The platform's cursor; held while a step is in flight.
    let cursor: Mutex<Value> = Mutex::new(Value::Null);
    let deadline = Instant::now() + Duration::from_secs(120);
    race(2, |i| {
        for _ in 0..400 {
            if done.load(Ordering::SeqCst) || Instant::now() > deadline {
                return;
            }
            let mut ack = cursor.lock().expect("lock");
            if done.load(Ordering::SeqCst) {
                return;
            }
            let body = serde_json::json!({ "ack": *ack }).to_string();
            let r = c.on(i).api(
                "POST",
                "/dingding/api/sync",
                Some(PLATFORM_TOKEN),
                Some(&body),
            );
            assert_eq!(r.status, 200, "sync step on instance {i}: {r}");
            let batch = r.json();
            *ack = batch["cursor"].clone();
            drop(ack);
            let mut seen = reported.lock().expect("lock");
            for m in batch["members"].as_array().into_iter().flatten() {
                seen.push(m["userid"].as_str().expect("userid").to_string());
            }
            drop(seen);
            if batch["progress"]["complete"] == true {
                done.store(true, Ordering::SeqCst);
                return;
            }
            if let Some(ms) = batch["retry_after_ms"].as_u64() {
                std::thread::sleep(Duration::from_millis(ms.min(2_000)));
            }
        }
    });
    c.check(done.load(Ordering::SeqCst), "the pass completes in time");
    let reported = reported.into_inner().expect("lock");
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for u in &reported {
        *counts.entry(u.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "reported more than once: {twice:?}");
    let expected: BTreeSet<&str> = org.users().map(|u| u.userid.as_str()).collect();
    let got: BTreeSet<&str> = counts.keys().copied().collect();
    assert_eq!(got, expected, "every member is reported");
    let peak = helpers::max_calls_per_second(&c.sim);
    let per_calendar_second = helpers::max_calls_per_calendar_second(&c.sim);
    c.check(
        peak <= SYNC_QPS,
        &format!(
            "both instances together stay within sync_qps={SYNC_QPS} in any 1 s window: peak {peak} \
             (per calendar second at most {per_calendar_second})"
        ),
    );
}
