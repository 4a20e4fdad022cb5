//! `wasi:keyvalue/{store,atomics}@0.2.0-draft2` over a shared in-memory map, with the semantics
//! Spin's default (SQLite) store really has (`shared/docs/hosts.md`).

use crate::bindings::generated::wasi::keyvalue::{atomics, store};
use crate::host::StoreState;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use wasmtime::component::Resource;

/// The only bucket the host serves, as Spin's `key_value_stores = ["default"]`.
const DEFAULT_BUCKET: &str = "default";

/// A shared in-memory key-value store: what `wasi:keyvalue` bucket `default` holds.
///
/// Cloning is cheap and every clone sees the same entries, so one `Kv` given to several
/// [`Host`](crate::Host)s behaves like several Spin instances sharing one store. Tests can also
/// read and seed it directly; the direct accessors do not count as guest operations.
#[derive(Clone, Default)]
pub struct Kv {
    inner: Arc<KvInner>,
}

#[derive(Default)]
struct KvInner {
    map: Mutex<BTreeMap<String, Vec<u8>>>,
    gets: AtomicU64,
    sets: AtomicU64,
    deletes: AtomicU64,
    exists: AtomicU64,
    list_keys: AtomicU64,
    increments: AtomicU64,
    /// Every guest operation, in order (1-based index = position + 1), bounded.
    log: Mutex<VecDeque<KvOp>>,
    /// Guest operations so far (all kinds), the index [`Kv::fail_op`] counts in.
    ops: AtomicU64,
    faults: Mutex<Vec<ArmedFault>>,
    fired: Mutex<Vec<(KvOp, KvFaultKind)>>,
}

/// How many guest operations the op log keeps (older ones are dropped).
const OP_LOG_LIMIT: usize = 4096;

/// One guest operation on the store, as the op log and the fault reports show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvOp {
    /// 1-based index among every guest operation on this store.
    pub index: u64,
    /// `get`, `set`, `delete`, `exists`, `list-keys` or `increment`.
    pub op: &'static str,
    /// The key (empty for `list-keys`).
    pub key: String,
}

impl std::fmt::Display for KvOp {
    /// `increment ticket:…` with the key cut after its first segment (keys may hold tickets).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = match self.key.find(':') {
            Some(at) => format!("{}:…", &self.key[..at]),
            None => self.key.clone(),
        };
        write!(f, "{} {shown}", self.op)
    }
}

/// How an injected key-value fault fails the guest's operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvFaultKind {
    /// The store is down: the operation is not applied and fails at once with
    /// `wasi:keyvalue/store.error.other` (what Spin answers when its backend is unreachable).
    StoreDown,
    /// The store is slow: the operation **is applied**, then the answer stalls for this long
    /// and the guest gets `error.other("timeout")`, the ambiguous case of a lost reply. The
    /// stall is bounded by the caller (keep it short: it blocks the request).
    Timeout(Duration),
}

/// Which guest operations an injected fault hits.
#[derive(Clone, Debug, PartialEq, Eq)]
enum KvTarget {
    /// The operation with this absolute index (see [`Kv::ops`]).
    Index(u64),
    /// The next operations on keys that start with this prefix.
    Prefix(String),
}

#[derive(Clone, Debug)]
struct ArmedFault {
    target: KvTarget,
    kind: KvFaultKind,
    remaining: u32,
}

/// How many operations guests made on a [`Kv`], by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvStats {
    /// `bucket.get` calls.
    pub gets: u64,
    /// `bucket.set` calls.
    pub sets: u64,
    /// `bucket.delete` calls.
    pub deletes: u64,
    /// `bucket.exists` calls.
    pub exists: u64,
    /// `bucket.list-keys` calls.
    pub list_keys: u64,
    /// `atomics.increment` calls.
    pub increments: u64,
}

impl Kv {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }

    /// Every key, in order.
    pub fn keys(&self) -> Vec<String> {
        self.map().keys().cloned().collect()
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.map().get(key).cloned()
    }

    /// Stores `value` under `key` (to seed state or simulate another instance).
    pub fn set(&self, key: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.map().insert(key.into(), value.into());
    }

    /// Removes `key`; returns its value, if any.
    pub fn remove(&self, key: &str) -> Option<Vec<u8>> {
        self.map().remove(key)
    }

    /// A copy of every entry.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        self.map().clone()
    }

    /// Operations guests made so far.
    pub fn stats(&self) -> KvStats {
        let i = &self.inner;
        KvStats {
            gets: i.gets.load(Ordering::Relaxed),
            sets: i.sets.load(Ordering::Relaxed),
            deletes: i.deletes.load(Ordering::Relaxed),
            exists: i.exists.load(Ordering::Relaxed),
            list_keys: i.list_keys.load(Ordering::Relaxed),
            increments: i.increments.load(Ordering::Relaxed),
        }
    }

    /// `bucket.get` calls so far.
    pub fn gets(&self) -> u64 {
        self.stats().gets
    }

    /// `bucket.set` calls so far.
    pub fn sets(&self) -> u64 {
        self.stats().sets
    }

    /// `atomics.increment` calls so far.
    pub fn increments(&self) -> u64 {
        self.stats().increments
    }

    /// Spin's SQLite `increment`: an absent key counts from 0; the counter is kept as 8
    /// little-endian bytes; a key holding anything else is an error (Spin's store panics there).
    fn increment(&self, key: String, delta: i64) -> Result<i64, store::Error> {
        let mut map = self.map();
        let current = match map.get(&key) {
            None => 0,
            Some(bytes) => {
                let bytes: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                    store::Error::Other(format!(
                        "key {key:?} holds {} bytes that are not a counter",
                        bytes.len()
                    ))
                })?;
                i64::from_le_bytes(bytes)
            }
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| store::Error::Other(format!("counter {key:?} overflows")))?;
        map.insert(key, next.to_le_bytes().to_vec());
        Ok(next)
    }

    /// Guest operations so far, of every kind: the index space of [`fail_op`](Kv::fail_op).
    pub fn ops(&self) -> u64 {
        self.inner.ops.load(Ordering::SeqCst)
    }

    /// The guest operations with an index above `after` (as returned by [`ops`](Kv::ops)),
    /// from the bounded op log.
    pub fn ops_since(&self, after: u64) -> Vec<KvOp> {
        lock(&self.inner.log)
            .iter()
            .filter(|o| o.index > after)
            .cloned()
            .collect()
    }

    /// Fails the `nth` guest operation counted from now (1 = the very next one), once.
    pub fn fail_op(&self, nth: u64, kind: KvFaultKind) {
        let index = self.ops() + nth.max(1);
        lock(&self.inner.faults).push(ArmedFault {
            target: KvTarget::Index(index),
            kind,
            remaining: 1,
        });
    }

    /// Fails the next `times` guest operations on keys starting with `prefix`.
    pub fn fail_prefix(&self, prefix: &str, kind: KvFaultKind, times: u32) {
        lock(&self.inner.faults).push(ArmedFault {
            target: KvTarget::Prefix(prefix.to_string()),
            kind,
            remaining: times.max(1),
        });
    }

    /// Removes every armed fault (fired ones stay in [`fired`](Kv::fired)).
    pub fn clear_faults(&self) {
        lock(&self.inner.faults).clear();
    }

    /// Armed faults that have not fired yet.
    pub fn pending_faults(&self) -> usize {
        lock(&self.inner.faults).len()
    }

    /// The operations failed so far by injected faults, in order, and forgets them.
    pub fn take_fired(&self) -> Vec<(KvOp, KvFaultKind)> {
        std::mem::take(&mut *lock(&self.inner.fired))
    }

    /// Counts one guest operation, logs it, and says whether an armed fault hits it.
    fn begin(&self, counter: &AtomicU64, op: &'static str, key: &str) -> Option<KvFaultKind> {
        Kv::count(counter);
        let index = self.inner.ops.fetch_add(1, Ordering::SeqCst) + 1;
        let entry = KvOp {
            index,
            op,
            key: key.to_string(),
        };
        {
            let mut log = lock(&self.inner.log);
            if log.len() >= OP_LOG_LIMIT {
                // A ring: dropping the oldest is O(1) (a Vec's `remove(0)` moved 4,096 entries
                // on every operation, 15% of the benchmark's event time).
                log.pop_front();
            }
            log.push_back(entry.clone());
        }
        let mut faults = lock(&self.inner.faults);
        let at = faults.iter().position(|f| match &f.target {
            KvTarget::Index(i) => *i == index,
            KvTarget::Prefix(p) => !key.is_empty() && key.starts_with(p.as_str()),
        })?;
        let kind = faults[at].kind;
        faults[at].remaining -= 1;
        if faults[at].remaining == 0 {
            faults.remove(at);
        }
        drop(faults);
        lock(&self.inner.fired).push((entry, kind));
        Some(kind)
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        // A panic while holding the lock cannot leave the map half-written: recover it.
        self.inner.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Applies `apply` unless the fault says the store is down; a timeout applies it, stalls, fails.
fn faulted<T>(
    fault: Option<KvFaultKind>,
    apply: impl FnOnce() -> Result<T, store::Error>,
) -> Result<T, store::Error> {
    match fault {
        None => apply(),
        Some(KvFaultKind::StoreDown) => Err(store::Error::Other(
            "injected fault: the key-value store is unreachable".into(),
        )),
        Some(KvFaultKind::Timeout(stall)) => {
            let _ = apply();
            std::thread::sleep(stall.min(Duration::from_secs(2)));
            Err(store::Error::Other(
                "injected fault: timeout waiting for the key-value store".into(),
            ))
        }
    }
}

impl std::fmt::Debug for Kv {
    /// Keys and value sizes only: values may hold tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let map = self.map();
        f.debug_map()
            .entries(map.iter().map(|(k, v)| (k, v.len())))
            .finish()
    }
}

/// The host side of a `wasi:keyvalue/store.bucket` handle (always bucket `default`).
pub struct Bucket;

/// The host side of a `wasi:keyvalue/atomics.cas` handle; never created (CAS is unsupported).
pub struct Cas;

fn unsupported(what: &str) -> store::Error {
    store::Error::Other(format!(
        "{what} is unsupported: compare-and-swap is not safe on Spin (docs/hosts.md)"
    ))
}

impl store::Host for StoreState {
    fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, store::Error>> {
        if identifier != DEFAULT_BUCKET {
            return Ok(Err(store::Error::AccessDenied));
        }
        Ok(Ok(self.table.push(Bucket)?))
    }
}

impl store::HostBucket for StoreState {
    fn get(
        &mut self,
        _bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let fault = self.kv.begin(&self.kv.inner.gets, "get", &key);
        Ok(faulted(fault, || Ok(self.kv.get(&key))))
    }

    fn set(
        &mut self,
        _bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let fault = self.kv.begin(&self.kv.inner.sets, "set", &key);
        Ok(faulted(fault, || {
            self.kv.set(key, value);
            Ok(())
        }))
    }

    fn delete(
        &mut self,
        _bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let fault = self.kv.begin(&self.kv.inner.deletes, "delete", &key);
        Ok(faulted(fault, || {
            self.kv.remove(&key);
            Ok(())
        }))
    }

    fn exists(
        &mut self,
        _bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, store::Error>> {
        let fault = self.kv.begin(&self.kv.inner.exists, "exists", &key);
        Ok(faulted(fault, || Ok(self.kv.map().contains_key(&key))))
    }

    /// Like Spin: every key at once, no cursor.
    fn list_keys(
        &mut self,
        _bucket: Resource<Bucket>,
        _cursor: Option<String>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        let fault = self.kv.begin(&self.kv.inner.list_keys, "list-keys", "");
        Ok(faulted(fault, || {
            Ok(store::KeyResponse {
                keys: self.kv.keys(),
                cursor: None,
            })
        }))
    }

    fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for StoreState {
    fn increment(
        &mut self,
        _bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, store::Error>> {
        let fault = self.kv.begin(&self.kv.inner.increments, "increment", &key);
        Ok(faulted(fault, || self.kv.increment(key, delta)))
    }

    fn swap(
        &mut self,
        cas: Resource<Cas>,
        _value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        self.table.delete(cas)?;
        Ok(Err(atomics::CasError::StoreError(unsupported("swap"))))
    }
}

impl atomics::HostCas for StoreState {
    fn new(
        &mut self,
        _bucket: Resource<Bucket>,
        _key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, store::Error>> {
        Ok(Err(unsupported("cas.new")))
    }

    fn current(
        &mut self,
        _cas: Resource<Cas>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        Ok(Err(unsupported("cas.current")))
    }

    fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increment_counts_from_zero_as_little_endian() {
        let kv = Kv::new();
        assert_eq!(kv.increment("c".into(), 1).unwrap(), 1);
        assert_eq!(kv.increment("c".into(), 5).unwrap(), 6);
        assert_eq!(kv.get("c").unwrap(), 6i64.to_le_bytes().to_vec());
    }

    #[test]
    fn increment_of_other_bytes_is_an_error() {
        let kv = Kv::new();
        kv.set("k", b"hello".to_vec());
        assert!(matches!(
            kv.increment("k".into(), 1),
            Err(store::Error::Other(_))
        ));
        assert_eq!(kv.get("k").unwrap(), b"hello");
    }

    #[test]
    fn injected_faults_hit_the_chosen_operation_once() {
        let kv = Kv::new();
        let c = AtomicU64::new(0);
        kv.fail_op(2, KvFaultKind::StoreDown);
        assert_eq!(kv.begin(&c, "get", "a"), None);
        assert_eq!(kv.begin(&c, "set", "b"), Some(KvFaultKind::StoreDown));
        assert_eq!(kv.begin(&c, "set", "b"), None);
        kv.fail_prefix("tic", KvFaultKind::StoreDown, 1);
        assert_eq!(kv.begin(&c, "get", "x"), None);
        assert_eq!(
            kv.begin(&c, "get", "ticket:1"),
            Some(KvFaultKind::StoreDown)
        );
        assert_eq!(kv.pending_faults(), 0);
        let fired = kv.take_fired();
        assert_eq!(fired.len(), 2);
        assert_eq!(fired[0].0.index, 2);
        assert_eq!(fired[1].0.to_string(), "get ticket:…");
        assert_eq!(kv.ops(), 5);
        assert_eq!(kv.ops_since(3).len(), 2);
    }

    #[test]
    fn debug_hides_values() {
        let kv = Kv::new();
        kv.set("token", b"secret-value".to_vec());
        let shown = format!("{kv:?}");
        assert!(shown.contains("token") && !shown.contains("secret-value"));
    }
}
