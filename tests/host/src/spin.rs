//! A real `spin up` of the project's own `spin.toml`, one process per test (or benchmark run).
//!
//! Spin is found through env `SPIN_BIN`, else `spin` on `PATH`, else by decompressing
//! `../shared/tools/spin/spin-4.0.2-linux-x86_64.xz` (relative to the repository root) into
//! `target/spin` once. Without any of them the Spin tier prints one SKIP line and its tests
//! return early, unless env `CI` is set: then they fail.
//!
//! Each instance gets its own working and state directory (so a fresh SQLite key-value store),
//! its settings as `SPIN_VARIABLE_<KEY>` environment variables, optionally a runtime config file
//! (the Redis key-value store for scale-out), a free loopback port, and its own process group,
//! which is terminated on drop. Spin's output goes to `spin.log` in that directory.

use crate::demo::Settings;
use crate::support::{
    free_port, has_exited, on_path, port_open, say, skip_or_fail, stop_group, tail, wait_until,
    TestDir,
};
use crate::workspace_root;
use std::fs::File;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// How long `spin up` may take to listen (it compiles the component on a cold cache).
const READY_LIMIT: Duration = Duration::from_secs(90);
/// Attempts when the free port was taken between probing and binding.
const PORT_ATTEMPTS: usize = 3;
/// Where the manifest expects the component, relative to the repository root.
const MANIFEST_SOURCE: &str = "target/wasm32-wasip2/release/dingtalk_plugin.wasm";
/// The Spin release shipped next to the repository.
const SHIPPED_SPIN: &str = "../shared/tools/spin/spin-4.0.2-linux-x86_64.xz";

/// The Spin binary, found once per process; `None` (after one SKIP line) when there is none.
pub fn spin_bin() -> Option<PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(find_spin).clone()
}

fn find_spin() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("SPIN_BIN").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "SPIN_BIN={} does not name a file",
            bin.display()
        );
        return Some(bin);
    }
    if let Some(bin) = on_path("spin") {
        return Some(bin);
    }
    let shipped = workspace_root().join(SHIPPED_SPIN);
    if shipped.is_file() {
        return match decompress(&shipped) {
            Ok(bin) => Some(bin),
            Err(e) => {
                skip_or_fail(&format!(
                    "SKIP spin tier: cannot decompress {} ({e})",
                    shipped.display()
                ));
                None
            }
        };
    }
    skip_or_fail("SKIP spin tier: no SPIN_BIN, no spin on PATH, no ../shared/tools/spin");
    None
}

/// `xz -dc shipped > target/spin`, once: an existing executable `target/spin` is reused; a new
/// one is written to a unique temporary name and renamed into place, so concurrent test
/// processes never see a partial file.
fn decompress(shipped: &Path) -> Result<PathBuf, String> {
    let target = workspace_root().join("target");
    let dest = target.join("spin");
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.len() > 0 && m.permissions().mode() & 0o111 != 0)
    };
    if executable(&dest) {
        return Ok(dest);
    }
    std::fs::create_dir_all(&target).map_err(|e| format!("creating {}: {e}", target.display()))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = target.join(format!("spin.tmp.{}.{nanos}", std::process::id()));
    let out = File::create(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    let status = Command::new("xz")
        .arg("-dc")
        .arg(shipped)
        .stdout(out)
        .stderr(Stdio::inherit())
        .status();
    let ok = matches!(status, Ok(s) if s.success());
    if !ok {
        let _ = std::fs::remove_file(&tmp);
        return Err(match status {
            Ok(s) => format!("xz -dc exited with {s}"),
            Err(e) => format!("cannot run xz: {e}"),
        });
    }
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &dest).map_err(|e| format!("renaming into {}: {e}", dest.display()))?;
    say(&format!("spin tier: decompressed {}", dest.display()));
    Ok(dest)
}

/// The manifest to run: the project's own `spin.toml`, unless the component was built somewhere
/// else (`DINGTALK_WASM`, `CARGO_TARGET_DIR`): then a copy in `dir` whose `source` names the
/// built file, everything else unchanged.
fn manifest(dir: &Path, wasm: &Path) -> PathBuf {
    let own = workspace_root().join("spin.toml");
    let expected = workspace_root().join(MANIFEST_SOURCE);
    let same = match (expected.canonicalize(), wasm.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return own;
    }
    let text = std::fs::read_to_string(&own).expect("reading spin.toml");
    let quoted = format!("\"{MANIFEST_SOURCE}\"");
    assert!(
        text.contains(&quoted),
        "spin.toml no longer has source = {quoted}; update tests/host/src/spin.rs"
    );
    let copy = dir.join("spin.toml");
    let text = text.replace(&quoted, &format!("{:?}", wasm.display().to_string()));
    std::fs::write(&copy, text).expect("writing the manifest copy");
    copy
}

/// What to start.
pub struct SpinOptions<'a> {
    /// DESIGN §4 settings, passed as `SPIN_VARIABLE_<KEY>`.
    pub settings: &'a Settings,
    /// Contents of a runtime config file (`--runtime-config-file`), e.g. the Redis store.
    pub runtime_config: Option<String>,
    /// A short name for the directory and messages.
    pub label: &'a str,
}

/// A running `spin up`; stopped (with its whole process group) on drop.
pub struct SpinApp {
    child: Child,
    port: u16,
    base: String,
    log: PathBuf,
    // Declared last: removed after the process is gone.
    dir: TestDir,
}

impl SpinApp {
    /// Starts `spin up` and waits until it listens; `None` when there is no Spin (see the
    /// module docs). Panics, with Spin's log, when it does not come up.
    pub fn start(opts: &SpinOptions<'_>) -> Option<SpinApp> {
        let bin = spin_bin()?;
        let wasm = crate::component_path();
        let dir = TestDir::new(&format!("spin-{}-", opts.label));
        let manifest = manifest(dir.path(), &wasm);
        Some(launch(&bin, dir, &manifest, opts))
    }

    /// Starts `spin up` of one other component (e.g. the benchmark's hello-world baseline) on
    /// the plugin's routes, with no variables; `None` when there is no Spin.
    pub fn start_component(label: &str, wasm: &Path) -> Option<SpinApp> {
        let bin = spin_bin()?;
        let dir = TestDir::new(&format!("spin-{label}-"));
        let manifest = dir.path().join("spin.toml");
        let text = format!(
            "spin_manifest_version = 2\n\n[application]\nname = {label:?}\n\n\
             [[trigger.http]]\nroute = \"/dingding/...\"\ncomponent = \"c\"\n\n\
             [component.c]\nsource = {:?}\n",
            wasm.display().to_string()
        );
        std::fs::write(&manifest, text).expect("writing the manifest");
        let settings = Settings::new();
        let opts = SpinOptions {
            settings: &settings,
            runtime_config: None,
            label,
        };
        Some(launch(&bin, dir, &manifest, &opts))
    }
}

/// Runs `spin up -f manifest` in `dir` on a free port and waits until it listens; panics, with
/// Spin's log, when it does not come up.
fn launch(bin: &Path, dir: TestDir, manifest: &Path, opts: &SpinOptions<'_>) -> SpinApp {
    let state_dir = dir.path().join("state");
    std::fs::create_dir_all(&state_dir).expect("creating the state directory");
    let runtime_config = opts.runtime_config.as_ref().map(|text| {
        let path = dir.path().join("runtime-config.toml");
        std::fs::write(&path, text).expect("writing the runtime config");
        path
    });
    let log = dir.path().join("spin.log");
    let mut last_error = String::new();
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port();
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .expect("opening spin.log");
        let err = out.try_clone().expect("cloning the log handle");
        let mut cmd = Command::new(bin);
        cmd.arg("up")
            .arg("-f")
            .arg(manifest)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--state-dir")
            .arg(&state_dir);
        if let Some(rc) = &runtime_config {
            cmd.arg("--runtime-config-file").arg(rc);
        }
        // Hermetic: nothing from the caller's environment configures this instance.
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("SPIN_VARIABLE_")
                || matches!(
                    k.as_ref(),
                    "RUNTIME_CONFIG_FILE"
                        | "SPIN_HTTP_LISTEN_ADDR"
                        | "SPIN_LOG_DIR"
                        | "SPIN_ALWAYS_BUILD"
                        | "SPIN_TLS_CERT"
                        | "SPIN_TLS_KEY"
                )
            {
                cmd.env_remove(&key);
            }
        }
        for (key, value) in opts.settings {
            cmd.env(format!("SPIN_VARIABLE_{}", key.to_ascii_uppercase()), value);
        }
        cmd.current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let up = wait_until(READY_LIMIT, || port_open(port) || has_exited(&child));
        if up && !has_exited(&child) {
            return SpinApp {
                child,
                port,
                base: format!("http://127.0.0.1:{port}"),
                log,
                dir,
            };
        }
        stop_group(&mut child, Duration::from_secs(2));
        last_error = tail(&log, 4000);
        let taken = last_error.contains("in use") || last_error.contains("AddrInUse");
        if !taken {
            break;
        }
    }
    panic!(
        "spin up ({}) did not listen within {READY_LIMIT:?}; its log ({}):\n{last_error}",
        opts.label,
        log.display()
    );
}

impl SpinApp {
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The end of Spin's log (its own output and the component's stdout/stderr).
    pub fn log_tail(&self) -> String {
        format!("{}:\n{}", self.log.display(), tail(&self.log, 8000))
    }

    /// The test directory (kept when the test fails).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SpinApp {
    fn drop(&mut self) {
        stop_group(&mut self.child, Duration::from_secs(3));
        if std::thread::panicking() {
            say(&format!("spin log: {}", self.log.display()));
        }
    }
}
