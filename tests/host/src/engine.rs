//! One wasmtime [`Engine`] per process, its epoch ticker, and compiled components cached per file.

use crate::bindings::generated::wasi::{config::store as config, keyvalue};
use crate::bindings::generated::PluginPre;
use crate::host::StoreState;
use anyhow::Result;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::error::Context as _;
use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
};
use wasmtime_wasi_http::p2::bindings::sync::ProxyPre;

/// How often the ticker thread advances the engine's epoch: the granularity of deadlines.
pub(crate) const TICK: Duration = Duration::from_millis(10);
/// Component instances alive at once, across every host in the process (tests run in parallel,
/// scale-out tests race 16 requests per instance).
const POOL_INSTANCES: u32 = 1_000;
/// The largest linear memory a pooled instance may grow to; each store's own limit
/// ([`crate::host::DEFAULT_MEMORY_LIMIT`] unless set) applies below it.
const POOL_MAX_MEMORY: usize = 1 << 30;
/// Bytes of a pooled memory or table reset in place when its instance is dropped.
const KEEP_RESIDENT: usize = 2 << 20;

/// A compiled component, plus its pre-linked forms once linking succeeded.
pub(crate) struct Compiled {
    /// The process-wide engine the component was compiled with.
    pub(crate) engine: Engine,
    /// The compiled component.
    pub(crate) component: Component,
    linked: Mutex<Option<Arc<Linked>>>,
}

/// The component linked against every import the host provides, ready to instantiate.
pub(crate) struct Linked {
    /// For the typed `dingtalk:plugin/*` exports.
    pub(crate) plugin: PluginPre<StoreState>,
    /// For the `wasi:http/incoming-handler` export.
    pub(crate) proxy: ProxyPre<StoreState>,
}

/// The process-wide engine: component model, epoch interruption, and a ticker thread.
pub(crate) fn engine() -> Result<Engine> {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    if let Some(engine) = ENGINE.get() {
        return Ok(engine.clone());
    }
    let mut config = Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    // Instances come from a pool of pre-reserved slots: no mmap/munmap per request (a fresh
    // instance per request is the platform's model; the on-demand allocator spent a fifth of
    // the event path in the kernel mapping and unmapping linear memory).
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * 8)
        .total_memories(POOL_INSTANCES * 2)
        .total_tables(POOL_INSTANCES * 8)
        .max_memory_size(POOL_MAX_MEMORY)
        // Reset the first pages of a returned slot with memset, not madvise: no syscall and
        // no TLB shootdown per request for a component whose working set is this small.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // `DINGTALK_HOST_PERFMAP=1`: write /tmp/perf-<pid>.map so `perf report` names the guest's
    // functions (the benchmark's event profile, README "Benchmark").
    if std::env::var_os("DINGTALK_HOST_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    // Compiled code is cached on disk, so each test binary does not compile the component anew.
    let mut cache = CacheConfig::new();
    cache.with_directory(crate::artifact::target_dir().join("wasmtime-cache"));
    match Cache::new(cache) {
        Ok(cache) => {
            config.cache(Some(cache));
        }
        Err(e) => eprintln!("[dingtalk-host] compiling without a cache: {e}"),
    }
    let engine = Engine::new(&config).context("creating the wasmtime engine")?;
    let engine = ENGINE.get_or_init(|| {
        start_ticker(&engine);
        engine
    });
    Ok(engine.clone())
}

/// Advances the epoch every [`TICK`] for as long as the engine lives.
fn start_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasmtime-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .expect("spawning the epoch ticker thread");
}

/// The component at `path`, compiled once per process (again if the file changed).
pub(crate) fn compiled(path: &Path) -> Result<Arc<Compiled>> {
    type Key = (PathBuf, Option<SystemTime>, u64);
    static CACHE: OnceLock<Mutex<HashMap<Key, Arc<Compiled>>>> = OnceLock::new();

    let meta = std::fs::metadata(path)
        .with_context(|| format!("reading the component {}", path.display()))?;
    let key = (path.to_path_buf(), meta.modified().ok(), meta.len());
    // Held while compiling so that concurrent callers compile a file once.
    let mut cache = CACHE
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(compiled) = cache.get(&key) {
        return Ok(compiled.clone());
    }
    let engine = engine()?;
    let component = Component::from_file(&engine, path)
        .with_context(|| format!("compiling the component {}", path.display()))?;
    let compiled = Arc::new(Compiled {
        engine,
        component,
        linked: Mutex::default(),
    });
    cache.insert(key, compiled.clone());
    Ok(compiled)
}

impl Compiled {
    /// The component linked with WASI p2, wasi-http and the plugin world's imports.
    ///
    /// Fails when the component imports anything else (e.g. `fermyon:spin/*`).
    pub(crate) fn linked(&self) -> Result<Arc<Linked>> {
        let mut linked = self.linked.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(linked) = linked.as_ref() {
            return Ok(linked.clone());
        }
        let mut linker = Linker::<StoreState>::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).context("linking WASI p2")?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)
            .context("linking wasi:http")?;
        // Not `Plugin::add_to_linker`: that also defines `dingtalk:plugin/types`, which holds
        // only types and needs no definition. Leaving it out links the component as Spin does.
        config::add_to_linker::<_, HasSelf<StoreState>>(&mut linker, |state| state)
            .context("linking wasi:config/store")?;
        keyvalue::store::add_to_linker::<_, HasSelf<StoreState>>(&mut linker, |state| state)
            .context("linking wasi:keyvalue/store")?;
        keyvalue::atomics::add_to_linker::<_, HasSelf<StoreState>>(&mut linker, |state| state)
            .context("linking wasi:keyvalue/atomics")?;
        let pre = linker
            .instantiate_pre(&self.component)
            .context("the component imports something this host (and Spin) does not provide")?;
        let plugin = PluginPre::new(pre.clone())
            .context("the component lacks a dingtalk:plugin export of wit/world.wit")?;
        let proxy = ProxyPre::new(pre)
            .context("the component lacks the wasi:http/incoming-handler@0.2.0 export")?;
        let new = Arc::new(Linked { plugin, proxy });
        *linked = Some(new.clone());
        Ok(new)
    }
}
