//! Process plumbing shared by the launchers ([`crate::spin`], [`crate::redis`]): per-run
//! directories, loopback ports, bounded polling, process groups, and the SKIP-or-fail rule for
//! tools a machine may lack.

use crate::artifact::target_dir;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A directory for one run's files under `<target>/tmp`; removed on drop unless the thread is
/// panicking (a failing test: then kept, and its path printed).
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
}

impl TestDir {
    /// A fresh directory whose name starts with `prefix`.
    pub fn new(prefix: &str) -> TestDir {
        // `<target>/tmp`: what cargo names CARGO_TARGET_TMPDIR for integration tests.
        let base = target_dir().join("tmp");
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

/// An executable file called `name` in a `PATH` directory.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.is_file()
                && p.metadata()
                    .is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
        })
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
