//! [`Host`]: the builder, the per-call [`Store`], and the typed calls into the plugin.

use crate::bindings::wit::{
    ChangePage, CorpBinding, CorpSummary, Failure, Guide, HttpRequest, Identity, MessageBody,
    Plugin, Routed, SettingIssue, SyncBatch, SyncRequest, Todo, TodoRef,
};
use crate::engine::{self, Compiled, Linked, TICK};
use crate::kv::Kv;
use crate::logs::GuestLog;
use crate::outbound::Outbound;
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime::error::Context as _;
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Default cap on the guest's linear memory: 64 MiB.
pub const DEFAULT_MEMORY_LIMIT: usize = 64 * 1024 * 1024;

/// Default time a call or request may run before the guest is interrupted: 30 s.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// The state of one [`Store`]: one typed call or one HTTP request. Opaque to callers of
/// [`Host::with_plugin`]; it is what the host's WASI, wasi-http, config and key-value
/// implementations work on.
pub struct StoreState {
    pub(crate) table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: Outbound,
    limits: PeakLimits,
    pub(crate) kv: Kv,
    pub(crate) settings: Arc<BTreeMap<String, String>>,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

/// Settings as the WIT `settings` list, from any pairs: `settings_list([("corp_id", "ding1")])`.
pub fn settings_list<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Vec<(String, String)>
where
    K: Into<String>,
    V: Into<String>,
{
    pairs
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

/// Configures and builds a [`Host`]; start from [`Host::builder`].
#[derive(Clone)]
#[must_use]
pub struct HostBuilder {
    settings: BTreeMap<String, String>,
    allowed_origins: Vec<String>,
    memory_limit: usize,
    deadline: Duration,
    kv: Option<Kv>,
    component: Option<PathBuf>,
}

impl Default for HostBuilder {
    fn default() -> Self {
        HostBuilder {
            settings: BTreeMap::new(),
            allowed_origins: Vec::new(),
            memory_limit: DEFAULT_MEMORY_LIMIT,
            deadline: DEFAULT_DEADLINE,
            kv: None,
            component: None,
        }
    }
}

impl std::fmt::Debug for HostBuilder {
    /// Setting keys only: values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBuilder")
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .field("allowed_origins", &self.allowed_origins)
            .field("memory_limit", &self.memory_limit)
            .field("deadline", &self.deadline)
            .field("component", &self.component)
            .finish_non_exhaustive()
    }
}

impl HostBuilder {
    /// Settings served through `wasi:config/store` (what Spin's variables would hold), e.g. a
    /// `BTreeMap<String, String>` or `[("corp_id", "ding1")]`. Adds to earlier settings.
    pub fn settings<K, V>(mut self, settings: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.settings
            .extend(settings.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Origins the guest may call, as Spin's `allowed_outbound_hosts`: `scheme://host[:port]`,
    /// e.g. `"http://127.0.0.1:1234"`. Any other request fails with `HttpRequestDenied`.
    /// Adds to earlier origins; by default nothing is allowed.
    pub fn allow_outbound<S: Into<String>>(mut self, origins: impl IntoIterator<Item = S>) -> Self {
        self.allowed_origins
            .extend(origins.into_iter().map(Into::into));
        self
    }

    /// Cap on the guest's linear memory per call, in bytes (default 64 MiB). Growing beyond it
    /// traps, and the call returns an error.
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// Time a call or request may run (default 30 s), rounded up to the 10 ms epoch tick. The
    /// guest is then interrupted and the call returns an error. Time spent blocked in a host
    /// call is noticed when the guest resumes.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The key-value store to serve as bucket `default` (default: a new, empty one). Give
    /// several hosts clones of one [`Kv`] to model instances sharing a store.
    pub fn kv(mut self, kv: Kv) -> Self {
        self.kv = Some(kv);
        self
    }

    /// The component to load (default: [`component_path`](crate::component_path)).
    pub fn component(mut self, path: impl Into<PathBuf>) -> Self {
        self.component = Some(path.into());
        self
    }

    /// Compiles (once per process) and links the component.
    ///
    /// Fails when the component cannot be compiled, imports anything this host does not
    /// provide, or lacks one of the plugin world's exports.
    pub fn build(self) -> Result<Host> {
        let path = self.component.unwrap_or_else(crate::component_path);
        let compiled = engine::compiled(&path)?;
        let linked = compiled.linked()?;
        let ticks = self.deadline.as_nanos().div_ceil(TICK.as_nanos());
        Ok(Host {
            shared: Arc::new(Shared {
                compiled,
                linked,
                settings: Arc::new(self.settings),
                kv: self.kv.unwrap_or_default(),
                outbound: Outbound::new(&self.allowed_origins),
                logs: GuestLog::new(),
                memory_limit: self.memory_limit,
                deadline_ticks: u64::try_from(ticks).unwrap_or(u64::MAX),
                http_errors: Mutex::default(),
                peak_memory: Arc::default(),
            }),
            runtime: Arc::default(),
        })
    }
}

/// A loaded plugin component, ready to be called and served.
///
/// Every typed call and every HTTP request runs in a fresh [`Store`] and instance (as Spin
/// does), sharing only the host's [`Kv`], settings, outbound allow-list and log. `Host` is
/// cheap to clone and can be used from several threads at once.
#[derive(Clone)]
pub struct Host {
    pub(crate) shared: Arc<Shared>,
    pub(crate) runtime: Arc<LazyRuntime>,
}

/// What every store of one host shares.
pub(crate) struct Shared {
    compiled: Arc<Compiled>,
    pub(crate) linked: Arc<Linked>,
    settings: Arc<BTreeMap<String, String>>,
    kv: Kv,
    outbound: Outbound,
    logs: GuestLog,
    memory_limit: usize,
    deadline_ticks: u64,
    http_errors: Mutex<Vec<String>>,
    peak_memory: Arc<std::sync::atomic::AtomicUsize>,
}

/// The store's limits, also recording the largest linear memory any store asked for.
pub(crate) struct PeakLimits {
    limits: StoreLimits,
    peak: Arc<std::sync::atomic::AtomicUsize>,
}

impl wasmtime::ResourceLimiter for PeakLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.peak
                .fetch_max(desired, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl Shared {
    /// A fresh store: its own WASI context, limits and deadline; shared kv, settings, log.
    pub(crate) fn new_store(&self) -> Store<StoreState> {
        let wasi = WasiCtx::builder()
            .stdout(self.logs.clone())
            .stderr(self.logs.clone())
            .build();
        let state = StoreState {
            table: ResourceTable::new(),
            wasi,
            http: WasiHttpCtx::new(),
            outbound: self.outbound.clone(),
            limits: PeakLimits {
                limits: StoreLimitsBuilder::new()
                    .memory_size(self.memory_limit)
                    .trap_on_grow_failure(true)
                    .build(),
                peak: self.peak_memory.clone(),
            },
            kv: self.kv.clone(),
            settings: self.settings.clone(),
        };
        let mut store = Store::new(&self.compiled.engine, state);
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(self.deadline_ticks);
        store
    }

    /// Records an HTTP request the component failed to answer.
    pub(crate) fn record_http_error(&self, error: &anyhow::Error) {
        let text = format!("{error:?}");
        eprintln!("[dingtalk-host] request failed: {text}");
        self.http_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(text);
    }
}

/// A tokio runtime created on first use (for [`Host::handle_http`]) and shut down without
/// blocking when the last [`Host`] clone goes.
#[derive(Default)]
pub(crate) struct LazyRuntime(OnceLock<tokio::runtime::Runtime>);

impl LazyRuntime {
    pub(crate) fn get(&self) -> Result<&tokio::runtime::Runtime> {
        if let Some(runtime) = self.0.get() {
            return Ok(runtime);
        }
        let runtime = crate::http::new_runtime("dingtalk-host")?;
        // A concurrent caller may have won; its runtime is used and ours dropped unused.
        Ok(self.0.get_or_init(|| runtime))
    }
}

impl Drop for LazyRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Host {
    /// A builder with the defaults: no settings, no outbound origin, 64 MiB, 30 s, a new [`Kv`].
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// The key-value store served as bucket `default`.
    pub fn kv(&self) -> &Kv {
        &self.shared.kv
    }

    /// The settings served through `wasi:config/store`.
    pub fn settings(&self) -> &BTreeMap<String, String> {
        &self.shared.settings
    }

    /// The host's settings as the WIT `settings` list, to pass to a typed call.
    pub fn settings_list(&self) -> Vec<(String, String)> {
        settings_list(
            self.shared
                .settings
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        )
    }

    /// Everything the guest wrote to stdout and stderr so far, across all calls and requests.
    pub fn guest_logs(&self) -> String {
        self.shared.logs.contents()
    }

    /// Forgets the guest's output so far.
    pub fn clear_guest_logs(&self) {
        self.shared.logs.clear();
    }

    /// Outgoing requests sent so far, per origin (`scheme://host[:port]`).
    pub fn outbound_requests(&self) -> BTreeMap<String, u64> {
        self.shared.outbound.sent()
    }

    /// Outgoing requests refused with `HttpRequestDenied` so far, per origin.
    pub fn denied_requests(&self) -> BTreeMap<String, u64> {
        self.shared.outbound.denied()
    }

    /// The largest linear memory (bytes) any call or request of this host grew to since the last
    /// [`reset_peak_memory`](Host::reset_peak_memory).
    pub fn peak_memory(&self) -> usize {
        self.shared
            .peak_memory
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Forgets the recorded peak memory.
    pub fn reset_peak_memory(&self) {
        self.shared
            .peak_memory
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// Time the guest's outgoing requests spent waiting for upstream response headers, summed
    /// since the last [`reset_outbound_counts`](Host::reset_outbound_counts).
    pub fn outbound_waiting(&self) -> std::time::Duration {
        self.shared.outbound.waiting()
    }

    /// Resets the counts of [`outbound_requests`](Self::outbound_requests) and
    /// [`denied_requests`](Self::denied_requests).
    pub fn reset_outbound_counts(&self) {
        self.shared.outbound.reset();
    }

    /// HTTP requests the component failed to answer (trap, deadline, no response), as error
    /// reports; the client got a 500 for each. Tests can assert this stays empty.
    pub fn http_errors(&self) -> Vec<String> {
        self.shared
            .http_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Instantiates the plugin in a fresh store and runs `f` with it: the generic form of the
    /// typed calls.
    ///
    /// ```no_run
    /// # fn main() -> anyhow::Result<()> {
    /// let host = dingtalk_host::Host::builder().build()?;
    /// let issues = host.with_plugin(|plugin, store| {
    ///     Ok(plugin.dingtalk_plugin_config().call_validate(store, &Vec::new())?)
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn with_plugin<R>(
        &self,
        f: impl FnOnce(&Plugin, &mut Store<StoreState>) -> Result<R>,
    ) -> Result<R> {
        let mut store = self.shared.new_store();
        let plugin = self
            .shared
            .linked
            .plugin
            .instantiate(&mut store)
            .context("instantiating the plugin")?;
        f(&plugin, &mut store)
    }

    /// `config.validate`: every issue with `settings`, without any network call.
    pub fn validate(&self, settings: &[(String, String)]) -> Result<Vec<SettingIssue>> {
        self.with_plugin(|p, store| {
            Ok(p.dingtalk_plugin_config()
                .call_validate(store, &settings.to_vec())
                .context("calling config.validate")?)
        })
    }

    /// `config.setup-guide`: console URLs, permissions, steps and live checks.
    pub fn setup_guide(
        &self,
        settings: &[(String, String)],
    ) -> Result<Result<Guide, Vec<SettingIssue>>> {
        self.with_plugin(|p, store| {
            Ok(p.dingtalk_plugin_config()
                .call_setup_guide(store, &settings.to_vec())
                .context("calling config.setup-guide")?)
        })
    }

    /// `routes.handle`: one request to any route, with its typed outcome.
    pub fn handle(&self, settings: &[(String, String)], request: &HttpRequest) -> Result<Routed> {
        self.with_plugin(|p, store| {
            Ok(p.dingtalk_plugin_routes()
                .call_handle(store, &settings.to_vec(), request)
                .context("calling routes.handle")?)
        })
    }

    /// `routes.redeem-ticket`: the identity behind a hand-off ticket, once.
    pub fn redeem_ticket(
        &self,
        settings: &[(String, String)],
        ticket: &str,
    ) -> Result<Result<Identity, Failure>> {
        self.with_plugin(|p, store| {
            Ok(p.dingtalk_plugin_routes()
                .call_redeem_ticket(store, &settings.to_vec(), ticket)
                .context("calling routes.redeem-ticket")?)
        })
    }

    /// `directory.sync-step` with no acknowledgement: one bounded step of the full sync
    /// (`corp_id` empty = configured).
    pub fn sync_step(
        &self,
        settings: &[(String, String)],
        corp_id: &str,
    ) -> Result<Result<SyncBatch, Failure>> {
        let request = SyncRequest {
            corp_id: corp_id.to_string(),
            ack: None,
            restart: false,
        };
        self.sync_step_with(settings, &request)
    }

    /// `directory.sync-step` with a full request: the corp, the `cursor` of the last batch
    /// applied (`ack`), and `restart`.
    pub fn sync_step_with(
        &self,
        settings: &[(String, String)],
        request: &SyncRequest,
    ) -> Result<Result<SyncBatch, Failure>> {
        self.with_plugin(|p, store| {
            Ok(p.dingtalk_plugin_directory()
                .call_sync_step(store, &settings.to_vec(), request)
                .context("calling directory.sync-step")?)
        })
    }

    /// `directory.changes`: at most `limit` changes recorded after `after`.
    pub fn changes(
        &self,
        settings: &[(String, String)],
        after: u64,
        limit: u32,
    ) -> Result<Result<ChangePage, Failure>> {
        self.with_plugin(|p, store| {
            Ok(p.dingtalk_plugin_directory()
                .call_changes(store, &settings.to_vec(), after, limit)
                .context("calling directory.changes")?)
        })
    }

    /// `notify.create-todo` (idempotent by `source_id`).
    pub fn create_todo(
        &self,
        settings: &[(String, String)],
        todo: &Todo,
    ) -> Result<Result<TodoRef, Failure>> {
        self.with_plugin(|p, store| {
            Ok(p.dingtalk_plugin_notify()
                .call_create_todo(store, &settings.to_vec(), todo)
                .context("calling notify.create-todo")?)
        })
    }

    /// `notify.complete-todo`.
    pub fn complete_todo(
        &self,
        settings: &[(String, String)],
        corp_id: &str,
        source_id: &str,
    ) -> Result<Result<(), Failure>> {
        self.with_plugin(|p, store| {
            Ok(p.dingtalk_plugin_notify()
                .call_complete_todo(store, &settings.to_vec(), corp_id, source_id)
                .context("calling notify.complete-todo")?)
        })
    }

    /// `notify.delete-todo`.
    pub fn delete_todo(
        &self,
        settings: &[(String, String)],
        corp_id: &str,
        source_id: &str,
    ) -> Result<Result<(), Failure>> {
        self.with_plugin(|p, store| {
            Ok(p.dingtalk_plugin_notify()
                .call_delete_todo(store, &settings.to_vec(), corp_id, source_id)
                .context("calling notify.delete-todo")?)
        })
    }

    /// `notify.send-message`: a work notification; DingTalk's task id.
    pub fn send_message(
        &self,
        settings: &[(String, String)],
        corp_id: &str,
        userids: &[String],
        body: &MessageBody,
    ) -> Result<Result<u64, Failure>> {
        self.with_plugin(|p, store| {
            Ok(p.dingtalk_plugin_notify()
                .call_send_message(store, &settings.to_vec(), corp_id, userids, body)
                .context("calling notify.send-message")?)
        })
    }

    /// `corps.bind-corp` (commercial edition).
    pub fn bind_corp(
        &self,
        settings: &[(String, String)],
        binding: &CorpBinding,
    ) -> Result<Result<CorpSummary, Failure>> {
        self.with_plugin(|p, store| {
            Ok(p.dingtalk_plugin_corps()
                .call_bind_corp(store, &settings.to_vec(), binding)
                .context("calling corps.bind-corp")?)
        })
    }

    /// `corps.list-corps`.
    pub fn list_corps(
        &self,
        settings: &[(String, String)],
    ) -> Result<Result<Vec<CorpSummary>, Failure>> {
        self.with_plugin(|p, store| {
            Ok(p.dingtalk_plugin_corps()
                .call_list_corps(store, &settings.to_vec())
                .context("calling corps.list-corps")?)
        })
    }

    /// `corps.unbind-corp`.
    pub fn unbind_corp(
        &self,
        settings: &[(String, String)],
        corp_id: &str,
    ) -> Result<Result<(), Failure>> {
        self.with_plugin(|p, store| {
            Ok(p.dingtalk_plugin_corps()
                .call_unbind_corp(store, &settings.to_vec(), corp_id)
                .context("calling corps.unbind-corp")?)
        })
    }
}

impl std::fmt::Debug for Host {
    /// Setting keys only: values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("settings", &self.shared.settings.keys().collect::<Vec<_>>())
            .field("memory_limit", &self.shared.memory_limit)
            .field("deadline_ticks", &self.shared.deadline_ticks)
            .finish_non_exhaustive()
    }
}
