//! Shared by `scenarios.rs` and `scale_out.rs`: the plugin under test behind a [`Target`]
//! (the wasmtime host of `dingtalk_host`, or a real `spin up` of the project's `spin.toml`), a
//! DingTalk simulator, a plain HTTP client with cookies handled by hand, and a Redis for
//! scale-out.
//!
//! Every loop here is bounded in count and time; every address is loopback.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod flows;
pub mod http;
pub mod redis;
pub mod spin;
pub mod targets;

// Each test binary uses a different part of these.
#[allow(unused_imports)]
pub use http::{path_and_query, query_param, Http, Resp};
#[allow(unused_imports)]
pub use targets::{Fixture, Kind, Target};

use dingtalk_sim::Sim;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// The platform's public origin (never called: the plugin only builds URLs from it).
pub const SITE_URL: &str = "https://forms.example.com";
/// Where the hand-off lands by default (`{site_url}/dingding/login/complete`).
pub const LOGIN_COMPLETE: &str = "https://forms.example.com/dingding/login/complete";
/// Bearer of the platform API (R7); at least 32 characters.
pub const PLATFORM_TOKEN: &str = "platform-token-for-tests-0123456789abcdef";
/// The simulator's demo corp.
pub const DEMO: &str = "dingdemocorp";

/// Settings as DESIGN §4 keys (also the Spin variable names).
pub type Settings = BTreeMap<String, String>;

/// Valid settings for `corp_id` of `sim`, every DingTalk host pointed at the simulator, QR login on.
pub fn settings_for(sim: &Sim, corp_id: &str) -> Settings {
    let c = sim
        .credentials(corp_id)
        .unwrap_or_else(|| panic!("the simulator has no corp {corp_id}"));
    let pairs = [
        ("site_url", SITE_URL.to_string()),
        ("edition", "self_use".to_string()),
        ("qr_login_enabled", "true".to_string()),
        ("sms_enabled", "false".to_string()),
        ("corp_id", c.corp_id),
        ("corp_name", c.corp_name),
        ("agent_id", c.agent_id.to_string()),
        ("app_key", c.app_key),
        ("app_secret", c.app_secret),
        ("sso_secret", c.sso_secret),
        ("event_token", c.event_token),
        ("event_aes_key", c.event_aes_key),
        ("platform_token", PLATFORM_TOKEN.to_string()),
        ("oapi_base_url", sim.base_url().to_string()),
        ("api_base_url", sim.base_url().to_string()),
        ("login_base_url", sim.base_url().to_string()),
        ("sync_qps", "15".to_string()),
    ];
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The workspace root (`/work/main`).
pub fn repo_root() -> PathBuf {
    dingtalk_host::workspace_root()
}

/// A directory for one test's files under cargo's per-target temporary directory; removed on
/// drop unless the test is failing (then kept, and its path printed).
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
}

impl TestDir {
    /// A fresh directory whose name starts with `prefix`.
    pub fn new(prefix: &str) -> TestDir {
        // Cargo's per-target tmp directory for tests; target/tmp for the benchmark binary.
        let base = option_env!("CARGO_TARGET_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target").join("tmp"));
        std::fs::create_dir_all(&base).expect("creating cargo's target tmp directory");
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&base)
            .expect("creating a test directory");
        TestDir { dir: Some(dir) }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("present until drop").path()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            if std::thread::panicking() {
                let kept = dir.keep();
                say(&format!("kept for debugging: {}", kept.display()));
            }
        }
    }
}

/// Writes one line straight to the process's stderr, past the test harness's output capture
/// (used for the SKIP lines, which must be visible in a normal `cargo test` run).
pub fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// Whether this is a CI run (env `CI` set and not empty): missing tools are then failures.
pub fn is_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// A tier cannot run here: one visible SKIP line (the caller makes it once per process), or a
/// panic when `CI` is set.
pub fn skip_or_fail(line: &str) {
    if is_ci() {
        panic!("{line} — CI is set, so this tier is required");
    }
    say(line);
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a loopback port");
    listener.local_addr().expect("local address").port()
}

/// Whether something accepts TCP connections on `127.0.0.1:port`.
pub fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Polls `ready` every 50 ms until it is true or `limit` has passed; returns whether it became true.
pub fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `f(0..n)` on `n` threads released together by a barrier, and returns the results in
/// index order. `n` is a small, fixed number (at most 32).
pub fn race<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    assert!(n <= 32, "races stay small: {n} threads asked");
    let barrier = Barrier::new(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let barrier = &barrier;
                let f = &f;
                s.spawn(move || {
                    barrier.wait();
                    f(i)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a racing thread panicked"))
            .collect()
    })
}

/// Milliseconds since the Unix epoch (the clock the guest reads too).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `(method, path)` of every call in the simulator's log, in order.
pub fn call_list(sim: &Sim) -> Vec<(String, String)> {
    sim.calls().into_iter().map(|c| (c.method, c.api)).collect()
}

/// The largest number of simulator calls (any API, token calls included) that arrived within
/// any 1-second window.
pub fn max_calls_per_second(sim: &Sim) -> usize {
    let mut ts: Vec<i64> = sim.calls().into_iter().map(|c| c.at_ms).collect();
    ts.sort_unstable();
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..ts.len() {
        while ts[hi] - ts[lo] >= 1000 {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// The largest number of simulator calls within one calendar second (`at_ms / 1000`).
pub fn max_calls_per_calendar_second(sim: &Sim) -> usize {
    let mut per: BTreeMap<i64, usize> = BTreeMap::new();
    for c in sim.calls() {
        *per.entry(c.at_ms.div_euclid(1000)).or_default() += 1;
    }
    per.into_values().max().unwrap_or(0)
}

/// Sends `signal` to the process group `pgid` (a child started with `process_group(0)`, whose
/// pid is the group id): the child and every process it started, nothing else. Only called
/// while the child is not yet reaped, so the id cannot have been reused.
fn signal_group(pgid: u32, signal: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals exactly that process group; no memory is
        // shared with the callee.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// Whether the child has exited, without reaping it (so its pid, and its process group id,
/// stay reserved until [`stop_group`] reaps it).
pub fn has_exited(child: &std::process::Child) -> bool {
    let pid: libc::id_t = child.id();
    // SAFETY: waitid(2) writes only into `info`, a zeroed siginfo_t owned by this frame.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rc = libc::waitid(
            libc::P_PID,
            pid,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        // -1: no such child (already reaped); 0 with si_pid 0: still running.
        rc != 0 || info.si_pid() != 0
    }
}

/// Stops a child started in its own process group: SIGTERM to the group, up to `grace` for the
/// child to exit, then SIGKILL to the whole group (stragglers included); then reaps the child.
pub fn stop_group(child: &mut std::process::Child, grace: Duration) {
    let pgid = child.id();
    signal_group(pgid, libc::SIGTERM);
    wait_until(grace, || has_exited(child));
    // The child is running or a zombie: either way its group id is still ours.
    signal_group(pgid, libc::SIGKILL);
    let _ = child.wait();
}

/// The last `max` bytes of a text file, for failure messages.
pub fn tail(path: &Path, max: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return format!("({} unreadable)", path.display());
    };
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}
