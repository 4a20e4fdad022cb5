//! Building the guest and inspecting the built component.

use crate::engine;
use anyhow::{ensure, Context as _, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Environment variable naming a prebuilt component; when it points at a file, nothing is built.
pub const WASM_ENV: &str = "DINGTALK_WASM";

/// The cargo package of the guest.
const GUEST_PACKAGE: &str = "dingtalk-plugin";

/// The guest's target.
const GUEST_TARGET: &str = "wasm32-wasip2";

/// The workspace root (the directory of the top-level `Cargo.toml`), found from this crate's
/// `CARGO_MANIFEST_DIR` (`<root>/tests/host`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// Path of the plugin component, built once per process.
///
/// When `DINGTALK_WASM` names an existing file, that file is used as is. Otherwise this runs
/// `cargo build --target wasm32-wasip2 --release -p dingtalk-plugin` in the workspace root (the
/// first call only; later calls return the same path) and returns
/// `target/wasm32-wasip2/release/dingtalk_plugin.wasm` (honouring `CARGO_TARGET_DIR`).
///
/// # Panics
///
/// When the build fails: every test needs the component, and the panic carries cargo's status.
pub fn component_path() -> PathBuf {
    // The outcome is kept either way, so a failing build runs (and is reported) once.
    static PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PATH.get_or_init(|| build_component().map_err(|e| format!("{e:?}"))) {
        Ok(path) => path.clone(),
        Err(e) => panic!("cannot provide the plugin component: {e}"),
    }
}

fn build_component() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(WASM_ENV).map(PathBuf::from) {
        if path.is_file() {
            return Ok(path);
        }
    }
    let root = workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--target",
            GUEST_TARGET,
            "--release",
            "-p",
            GUEST_PACKAGE,
        ])
        // Flags meant for the host build (e.g. from `cargo llvm-cov`) must not reach the guest.
        // `RUSTFLAGS` and `RUSTC_WORKSPACE_WRAPPER` do pass: `.ci/run` builds the component with
        // the same two (clippy-driver, `-D warnings`) before the tests, so this build is a no-op.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .with_context(|| {
            format!(
                "running cargo build for {GUEST_PACKAGE} in {}",
                root.display()
            )
        })?;
    ensure!(
        status.success(),
        "cargo build of {GUEST_PACKAGE} failed: {status}"
    );

    let path = target_dir()
        .join(GUEST_TARGET)
        .join("release")
        .join(format!("{}.wasm", GUEST_PACKAGE.replace('-', "_")));
    ensure!(
        path.is_file(),
        "the build succeeded but {} is missing",
        path.display()
    );
    Ok(path)
}

/// The workspace's cargo target directory (`CARGO_TARGET_DIR`, else `<root>/target`).
pub(crate) fn target_dir() -> PathBuf {
    let root = workspace_root();
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// Names of the component's imports, e.g. `wasi:http/outgoing-handler@0.2.0`, sorted.
///
/// Compiles the component (once per process and file, shared with [`Host`](crate::Host)).
pub fn component_imports(path: impl AsRef<Path>) -> Result<Vec<String>> {
    let compiled = engine::compiled(path.as_ref())?;
    let ty = compiled.component.component_type();
    let mut names: Vec<String> = ty
        .imports(&compiled.engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// Names of the component's exports, e.g. `dingtalk:plugin/config@0.2.0`, sorted.
pub fn component_exports(path: impl AsRef<Path>) -> Result<Vec<String>> {
    let compiled = engine::compiled(path.as_ref())?;
    let ty = compiled.component.component_type();
    let mut names: Vec<String> = ty
        .exports(&compiled.engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    names.sort();
    Ok(names)
}
