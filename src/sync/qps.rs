//! The per-corp call-rate limiter (`sync_qps`): an [`Env`] wrapper that spaces DingTalk calls.

use super::*;

// ---------------------------------------------------------------------------------------------
// Rate limiting: an Env that claims a per-second slot before every outgoing call.

/// What a step's calls used: how many were made, whether the time budget ran out, whether the
/// store failed while pacing.
#[derive(Default)]
pub(super) struct Meter {
    pub(super) calls: Cell<u32>,
    pub(super) out_of_time: Cell<bool>,
    pub(super) store_failed: Cell<bool>,
}

/// The host environment seen through the rate limiter: every outgoing call first claims a slot.
pub(super) struct QpsEnv<'a> {
    pub(super) inner: &'a mut dyn Env,
    pub(super) corp: String,
    pub(super) qps: i64,
    pub(super) deadline_ms: u64,
    pub(super) meter: &'a Meter,
    /// The step lease's heartbeat key, bumped before every call and every pacing wait.
    pub(super) heartbeat: String,
}

impl QpsEnv<'_> {
    /// Paces calls: one call per slot of `1050 / qps` ms, slots shared by every instance on the
    /// store and claimed with `increment("syncq:{corp}:{slot}") == 1`. A call starts at the
    /// start of its slot (never part-way into one), so any sliding second holds at most `qps`
    /// calls; the 5 % margin absorbs scheduling jitter.
    fn claim_slot(&mut self) -> Result<(), TransportError> {
        if lease::beat(self.inner, &self.heartbeat).is_err() {
            self.meter.store_failed.set(true);
            return Err(TransportError::Unreachable("key-value store".into()));
        }
        let width = (1050 / self.qps.max(1)).max(1) as u64;
        let now = self.inner.now_ms();
        // The first slot that starts at or after now.
        let mut slot = now.div_ceil(width);
        loop {
            let now = self.inner.now_ms();
            if now >= self.deadline_ms || slot * width >= self.deadline_ms {
                self.meter.out_of_time.set(true);
                return Err(TransportError::Timeout);
            }
            if slot * width + width <= now {
                // Fell behind (slow store): continue from the next slot boundary.
                slot = now.div_ceil(width);
                continue;
            }
            let key = format!("syncq:{}:{slot}", self.corp);
            let claimed = self.inner.kv_increment(&key, 1).and_then(|n| {
                if n == 1 {
                    kv::register_expiry(self.inner, &key, slot * width + 60_000)?;
                }
                Ok(n)
            });
            match claimed {
                Ok(1) => {
                    let start = slot * width;
                    let now = self.inner.now_ms();
                    if start > now {
                        self.inner.sleep_ms(start - now);
                    }
                    return Ok(());
                }
                Ok(_) => slot += 1,
                Err(_) => {
                    self.meter.store_failed.set(true);
                    return Err(TransportError::Unreachable("key-value store".into()));
                }
            }
        }
    }
}

impl Env for QpsEnv<'_> {
    fn now_ms(&self) -> u64 {
        self.inner.now_ms()
    }
    fn random_bytes(&mut self, buf: &mut [u8]) {
        self.inner.random_bytes(buf)
    }
    fn http(&mut self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        self.claim_slot()?;
        self.meter.calls.set(self.meter.calls.get() + 1);
        self.inner.http(request)
    }
    fn sleep_ms(&mut self, ms: u64) {
        self.inner.sleep_ms(ms)
    }
    fn kv_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.inner.kv_get(key)
    }
    fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.inner.kv_set(key, value)
    }
    fn kv_delete(&mut self, key: &str) -> Result<(), KvError> {
        self.inner.kv_delete(key)
    }
    fn kv_increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.inner.kv_increment(key, delta)
    }
    fn log(&mut self, line: &str) {
        self.inner.log(line)
    }
}
