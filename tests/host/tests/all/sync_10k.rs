//! Issue 4, item 2: a full sync of 10,000 members in 500 departments through the real component,
//! with DingTalk failing at random (busy, throttled, 502 pages, broken connections) and the
//! instance killed mid-step at random (an epoch deadline traps it), ends with every member and
//! department reported exactly as the simulator holds them: none lost, none twice.

use anyhow::{Context, Result};
use dingtalk_host::{wit, Host, Kv};
use dingtalk_sim::{CorpSpec, Fault, FaultKind, OrgSpec, Sim};
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const CORP: &str = "dingbigcorp";

fn settings(sim: &Sim) -> Result<Vec<(String, String)>> {
    let c = sim.credentials(CORP).context("credentials")?;
    let base = sim.base_url().to_string();
    Ok(vec![
        ("site_url".into(), "https://forms.example.com".into()),
        ("corp_id".into(), c.corp_id),
        ("agent_id".into(), c.agent_id.to_string()),
        ("app_key".into(), c.app_key),
        ("app_secret".into(), c.app_secret),
        ("oapi_base_url".into(), base.clone()),
        ("api_base_url".into(), base.clone()),
        ("login_base_url".into(), base),
        ("sync_qps".into(), "20".into()),
    ])
}

#[test]
fn full_sync_of_10k_members_survives_kills_and_faults() -> Result<()> {
    let spec = OrgSpec {
        seed: 42,
        ..OrgSpec::sized(500, 10_000)
    };
    let sim = Sim::builder()
        .corp(CorpSpec::generated(CORP, &spec))
        .qps_limit(Some(20))
        .seed(7)
        .start()?;
    // The pass calls these two only (no department/get, and no user/get without departures).
    for api in ["/topapi/v2/user/list", "/topapi/v2/department/listsub"] {
        sim.inject(Fault::new(api, FaultKind::Busy).probability(0.02));
        sim.inject(
            Fault::new(api, FaultKind::Errcode(90018, "请求被限流".into())).probability(0.02),
        );
        sim.inject(
            Fault::new(api, FaultKind::Http(502, "<html>bad gateway</html>".into()))
                .probability(0.01),
        );
        sim.inject(Fault::new(api, FaultKind::Drop).probability(0.01));
    }
    let settings = settings(&sim)?;
    let kv = Kv::new();
    let build = |deadline: Duration| {
        Host::builder()
            .settings(settings.clone())
            .allow_outbound([sim.base_url().to_string()])
            .kv(kv.clone())
            .deadline(deadline)
            .build()
    };
    let steady = build(Duration::from_secs(60))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);

    let mut members: BTreeMap<String, (usize, BTreeSet<i64>, bool)> = BTreeMap::new();
    let mut departments: BTreeMap<i64, (usize, Option<i64>)> = BTreeMap::new();
    let (mut kills, mut failures, mut steps) = (0, 0, 0);
    // The platform acknowledges each batch it received (mandatory): a batch whose step was
    // killed after its commit, or whose answer was lost, comes again with the same ack.
    let mut ack: Option<String> = None;
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(1200),
            "sync did not finish in 20 minutes"
        );
        steps += 1;
        // One step in ten runs in an instance that is killed after a random time. A killed
        // step's lease stops being renewed; the next step watches it for the lease time (6 s of
        // its own clock) and takes over, as it would after a real crash.
        let request = wit::SyncRequest {
            corp_id: String::new(),
            ack: ack.clone(),
            restart: false,
        };
        let result = if rng.gen_bool(1.0 / 10.0) {
            let killer = build(Duration::from_millis(rng.gen_range(20..1500)))?;
            match killer.sync_step_with(&settings, &request) {
                Err(_) => {
                    kills += 1;
                    continue;
                }
                Ok(r) => r,
            }
        } else {
            steady.sync_step_with(&settings, &request)?
        };
        let batch = match result {
            Ok(b) => b,
            Err(f) => {
                // DingTalk's injected failures: the step reports them and did not advance.
                assert!(
                    f.status >= 500,
                    "unexpected failure {} {}",
                    f.code,
                    f.message
                );
                failures += 1;
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        ack = Some(batch.cursor.clone());
        for d in &batch.departments {
            let entry = departments.entry(d.dept_id).or_insert((0, d.parent_id));
            entry.0 += 1;
            if let Some(parent) = d.parent_id {
                assert!(
                    departments.contains_key(&parent),
                    "department {} before its parent {parent}",
                    d.dept_id
                );
            }
        }
        for m in &batch.members {
            let entry = members
                .entry(m.userid.clone())
                .or_insert((0, BTreeSet::new(), m.active));
            entry.0 += 1;
            entry.1 = m.dept_ids.iter().copied().collect();
            entry.2 = m.active;
        }
        for c in &batch.changes {
            assert!(
                !matches!(c, wit::DirectoryChange::MemberDeactivated(_)),
                "nobody may be deactivated on a first pass"
            );
        }
        if let Some(ms) = batch.retry_after_ms {
            std::thread::sleep(Duration::from_millis(u64::from(ms).min(2_000)));
        }
        if batch.progress.complete {
            break;
        }
    }
    eprintln!(
        "10k sync: {steps} steps, {kills} killed, {failures} failed steps, {} DingTalk calls, {:.1} s",
        sim.calls().len(),
        started.elapsed().as_secs_f64()
    );
    let faulted = sim
        .calls()
        .iter()
        .filter(|c| c.status >= 500 || c.errcode.is_some_and(|e| e != 0))
        .count();
    assert!(
        kills > 0 && faulted > 0,
        "the test must exercise kills ({kills}) and DingTalk faults ({faulted} faulted calls, {failures} failed steps)"
    );

    let org = sim.org(CORP).context("org")?;
    let twice: Vec<_> = members
        .iter()
        .filter(|(_, v)| v.0 != 1)
        .map(|(k, v)| (k.clone(), v.0))
        .collect();
    assert!(
        twice.is_empty(),
        "members reported more than once: {:?}",
        &twice[..twice.len().min(10)]
    );
    let expected: BTreeMap<String, (BTreeSet<i64>, bool)> = org
        .users()
        .map(|u| {
            (
                u.userid.clone(),
                (u.dept_ids.iter().copied().collect(), u.active),
            )
        })
        .collect();
    assert_eq!(expected.len(), 10_000);
    let got: BTreeMap<String, (BTreeSet<i64>, bool)> =
        members.into_iter().map(|(k, v)| (k, (v.1, v.2))).collect();
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(10)
        .collect();
    assert!(missing.is_empty(), "members lost: {missing:?}");
    assert_eq!(got, expected, "members differ from the simulator's org");

    let dtwice: Vec<_> = departments
        .iter()
        .filter(|(_, v)| v.0 != 1)
        .map(|(k, _)| *k)
        .collect();
    assert!(
        dtwice.is_empty(),
        "departments reported more than once: {dtwice:?}"
    );
    let expected_depts: BTreeMap<i64, Option<i64>> = org
        .departments()
        .map(|d| (d.dept_id, (d.dept_id != 1).then_some(d.parent_id)))
        .collect();
    let got_depts: BTreeMap<i64, Option<i64>> =
        departments.into_iter().map(|(k, v)| (k, v.1)).collect();
    assert_eq!(got_depts, expected_depts);
    Ok(())
}
