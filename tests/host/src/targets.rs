//! Where the plugin runs: the [`Target`] abstraction and its two implementations, plus a
//! [`Fixture`] (simulator + target + clients) that scenarios start with one call.

use crate::client::{Http, Resp};
use crate::demo::{settings_for, Settings, DEMO, PLATFORM_TOKEN};
use crate::spin::{SpinApp, SpinOptions};
use crate::{Host, Kv, Server};
use dingtalk_sim::Sim;

/// Which host runs the component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// [`Host::serve`] on loopback.
    Wasmtime,
    /// `spin up -f <repo>/spin.toml`.
    Spin,
}

/// The plugin, started with some settings against a running simulator, serving HTTP.
pub trait Target: Send + Sync {
    /// Which host.
    fn kind(&self) -> Kind;
    /// `http://127.0.0.1:PORT`.
    fn base_url(&self) -> &str;
    /// The host's key-value store, when the test can read it directly (wasmtime only).
    fn kv(&self) -> Option<&Kv> {
        None
    }
    /// What the host and the guest logged, for failure messages.
    fn logs(&self) -> String;
}

/// The wasmtime host of this crate, serving the component's `wasi:http` export.
pub struct WasmtimeTarget {
    // Dropped first: stops serving before the host goes.
    server: Server,
    host: Host,
    base: String,
}

impl WasmtimeTarget {
    /// Loads the component with `settings`, allowing outbound calls to `allowed` origins only,
    /// and serves it; `kv` shares a store with other hosts (several instances).
    pub fn start(settings: &Settings, allowed: &[&str], kv: Option<Kv>) -> WasmtimeTarget {
        let mut builder = Host::builder()
            .settings(settings.clone())
            .allow_outbound(allowed.iter().copied());
        if let Some(kv) = kv {
            builder = builder.kv(kv);
        }
        let host = builder
            .build()
            .expect("loading the plugin in the wasmtime host");
        let server = host.serve().expect("serving the plugin on loopback");
        let base = server.base_url();
        WasmtimeTarget { server, host, base }
    }

    /// The host, for typed calls and counters.
    pub fn host(&self) -> &Host {
        &self.host
    }
}

impl Target for WasmtimeTarget {
    fn kind(&self) -> Kind {
        Kind::Wasmtime
    }

    fn base_url(&self) -> &str {
        &self.base
    }

    fn kv(&self) -> Option<&Kv> {
        Some(self.host.kv())
    }

    fn logs(&self) -> String {
        let errors = self.host.http_errors();
        let logs = self.host.guest_logs();
        let start = logs.len().saturating_sub(8000);
        let start = (start..logs.len())
            .find(|i| logs.is_char_boundary(*i))
            .unwrap_or(logs.len());
        format!(
            "wasmtime host {} — http errors: {errors:?}\nguest log (end):\n{}",
            self.server.base_url(),
            &logs[start..]
        )
    }
}

impl Target for SpinApp {
    fn kind(&self) -> Kind {
        Kind::Spin
    }

    fn base_url(&self) -> &str {
        SpinApp::base_url(self)
    }

    fn logs(&self) -> String {
        self.log_tail()
    }
}

/// Starts the plugin on `kind` with `settings`, calling DingTalk at `sim`. `None` when the tier
/// is unavailable here (Spin missing, after its one SKIP line).
pub fn start(kind: Kind, settings: &Settings, sim: &Sim, label: &str) -> Option<Box<dyn Target>> {
    start_with_store(kind, settings, sim, label, None)
}

/// As [`start`], with Spin's key-value store configured by `runtime_config` (e.g. Redis behind
/// a [`FaultProxy`](crate::kv_proxy::FaultProxy)); the wasmtime host keeps its own store.
pub fn start_with_store(
    kind: Kind,
    settings: &Settings,
    sim: &Sim,
    label: &str,
    runtime_config: Option<String>,
) -> Option<Box<dyn Target>> {
    match kind {
        Kind::Wasmtime => Some(Box::new(WasmtimeTarget::start(
            settings,
            &[sim.base_url()],
            None,
        ))),
        Kind::Spin => SpinApp::start(&SpinOptions {
            settings,
            runtime_config,
            label,
        })
        .map(|app| Box::new(app) as Box<dyn Target>),
    }
}

/// One scenario's world: a simulator, the plugin on one target, and clients for both.
pub struct Fixture {
    // Dropped first: the plugin stops before the simulator it calls.
    /// The plugin.
    pub t: Box<dyn Target>,
    /// A client for the plugin.
    pub http: Http,
    /// A client for the simulator (its browser login page).
    pub sim_http: Http,
    /// The settings the plugin runs with.
    pub settings: Settings,
    /// The DingTalk simulator.
    pub sim: Sim,
}

impl Fixture {
    /// The demo corp, default settings changed by `tweak`; `None` when the tier is unavailable.
    pub fn start(kind: Kind, label: &str, tweak: impl FnOnce(&mut Settings)) -> Option<Fixture> {
        let sim = Sim::builder()
            .corp(dingtalk_sim::CorpSpec::demo())
            .qps_limit(None)
            .start()
            .expect("starting the DingTalk simulator");
        Fixture::with_sim(kind, label, sim, DEMO, tweak)
    }

    /// A given simulator and configured corp.
    pub fn with_sim(
        kind: Kind,
        label: &str,
        sim: Sim,
        corp_id: &str,
        tweak: impl FnOnce(&mut Settings),
    ) -> Option<Fixture> {
        Fixture::with_store(kind, label, sim, corp_id, None, tweak)
    }

    /// As [`Fixture::with_sim`], with Spin's key-value store configured by `runtime_config`.
    pub fn with_store(
        kind: Kind,
        label: &str,
        sim: Sim,
        corp_id: &str,
        runtime_config: Option<String>,
        tweak: impl FnOnce(&mut Settings),
    ) -> Option<Fixture> {
        let mut settings = settings_for(&sim, corp_id);
        tweak(&mut settings);
        let t = start_with_store(kind, &settings, &sim, label, runtime_config)?;
        let http = Http::new(t.base_url());
        let sim_http = Http::new(sim.base_url());
        Some(Fixture {
            t,
            http,
            sim_http,
            settings,
            sim,
        })
    }

    /// A platform-API call with the right bearer.
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> Resp {
        self.http.api(method, path, Some(PLATFORM_TOKEN), body)
    }

    /// Panics with the target's logs when `cond` is false.
    #[track_caller]
    pub fn check(&self, cond: bool, what: &str) {
        if !cond {
            panic!(
                "{what}\n--- {:?} target logs ---\n{}",
                self.t.kind(),
                self.t.logs()
            );
        }
    }
}
