//! Hardening of the store patterns (leases, claims) through the real component: a sync step
//! killed mid-way holds the lease only until another instance has watched it go silent for the
//! lease time of its own clock (seconds), not until a wall-clock slot passes (up to a minute).

use anyhow::{Context, Result};
use dingtalk_host::{Host, Kv};
use dingtalk_sim::{CorpSpec, OrgSpec, Sim};
use std::time::{Duration, Instant};

const CORP: &str = "dinghardcorp";

#[test]
fn a_killed_sync_step_blocks_the_next_instance_for_seconds_not_a_minute() -> Result<()> {
    let sim = Sim::builder()
        .corp(CorpSpec::generated(CORP, &OrgSpec::sized(10, 60)))
        .start()?;
    let c = sim.credentials(CORP).context("credentials")?;
    let base = sim.base_url().to_string();
    let settings: Vec<(String, String)> = vec![
        ("site_url".into(), "https://forms.example.com".into()),
        ("corp_id".into(), c.corp_id),
        ("agent_id".into(), c.agent_id.to_string()),
        ("app_key".into(), c.app_key),
        ("app_secret".into(), c.app_secret),
        ("oapi_base_url".into(), base.clone()),
        ("api_base_url".into(), base.clone()),
        ("login_base_url".into(), base),
        // Slow pacing: the step is still at work when it is killed.
        ("sync_qps".into(), "2".into()),
    ];
    let kv = Kv::new();
    let build = |deadline: Duration| {
        Host::builder()
            .settings(settings.clone())
            .allow_outbound([sim.base_url().to_string()])
            .kv(kv.clone())
            .deadline(deadline)
            .build()
    };
    let killer = build(Duration::from_millis(700))?;
    assert!(
        killer.sync_step(&settings, "").is_err(),
        "the first instance was meant to be killed mid-step"
    );
    let steady = build(Duration::from_secs(30))?;
    let started = Instant::now();
    loop {
        let batch = steady
            .sync_step(&settings, "")?
            .map_err(|f| anyhow::anyhow!("{} {}", f.code, f.message))?;
        if !batch.departments.is_empty() || !batch.members.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the killed step's lease still blocks after {:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(
            u64::from(batch.retry_after_ms.unwrap_or(200)).min(2_000),
        ));
    }
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(20),
        "took over after {waited:?}"
    );
    assert!(
        steady.guest_logs().contains("taken over"),
        "the second instance did not take the lease over: {}",
        steady.guest_logs()
    );
    Ok(())
}
