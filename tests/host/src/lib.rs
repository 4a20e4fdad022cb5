//! A wasmtime host that loads the DingTalk plugin component exactly as a platform would.
//!
//! The plugin is one WebAssembly component (`wasm32-wasip2`, WASI 0.2) with two faces:
//!
//! * typed exports of package `dingtalk:plugin@0.2.0` (`wit/world.wit`), called here through
//!   [`Host::with_plugin`] and one convenience method per export ([`Host::validate`],
//!   [`Host::handle`], [`Host::sync_step`], …);
//! * the `wasi:http/incoming-handler@0.2.0` export that Spin serves, reached through
//!   [`Host::serve`] (a real loopback HTTP server) or [`Host::handle_http`] (in-process).
//!
//! Like Spin, every call and every request gets a fresh [`wasmtime::Store`] and instance; what
//! survives between them lives in the shared key-value store ([`Kv`]). The host provides:
//!
//! * `wasi:config/store@0.2.0-draft-2024-09-27` from a settings map;
//! * `wasi:keyvalue/{store,atomics}@0.2.0-draft2` with Spin's semantics (bucket `default`
//!   only; counters as 8 little-endian bytes; no compare-and-swap);
//! * `wasi:http/outgoing-handler@0.2.0` limited to an allow-list of origins, every other request
//!   answered with `HttpRequestDenied`, and counted per origin;
//! * the standard `wasi:cli`, `wasi:clocks`, `wasi:random`, `wasi:io` (and `wasi:filesystem`
//!   with no preopened directory), with the guest's stdout/stderr captured
//!   ([`Host::guest_logs`]) and echoed to the real stderr when `DINGTALK_HOST_ECHO=1`;
//! * a memory limit and an epoch deadline per call, so a runaway guest is an error, not a hang.
//!
//! For the end-to-end tests and the benchmark it also has the pieces around the plugin:
//! [`demo`] settings for a simulator corp, a plain HTTP [`client`], launchers for a real
//! `spin up` ([`spin`]) and a throw-away Redis ([`redis`]), the two [`targets`] a scenario runs
//! on with its [`Fixture`](targets::Fixture), and the process plumbing they share ([`support`]).
//!
//! ```no_run
//! use dingtalk_host::{component_path, Host};
//! use std::collections::BTreeMap;
//!
//! # fn main() -> anyhow::Result<()> {
//! let host = Host::builder()
//!     .settings(BTreeMap::from([("corp_id", "dingcorp")]))
//!     .build()?;
//! let issues = host.validate(&[])?;
//! assert!(issues.iter().any(|i| i.field == "corp_id"));
//! let server = host.serve()?;
//! println!("{} serves {}", server.base_url(), component_path().display());
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod artifact;
mod bindings;
mod config;
mod engine;
mod host;
mod http;
mod kv;
mod logs;
mod outbound;

pub mod client;
pub mod demo;
pub mod kv_proxy;
pub mod redis;
pub mod spin;
pub mod support;
pub mod targets;

pub use artifact::{
    component_exports, component_imports, component_path, workspace_root, WASM_ENV,
};
pub use bindings::wit;
pub use host::{
    settings_list, Host, HostBuilder, StoreState, DEFAULT_DEADLINE, DEFAULT_MEMORY_LIMIT,
};
pub use http::{HttpReply, Server};
pub use kv::{Kv, KvFaultKind, KvOp, KvStats};
