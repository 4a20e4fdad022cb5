//! One attempt's work: the [`Run`] that drives the phases until the step's call or time budget
//! is spent, and how DingTalk errors end it.

use super::*;

/// Why a unit of work stopped the step.
pub(super) enum Halt {
    /// A DingTalk error, and the permission the call needs.
    Api(ApiError, &'static str),
    /// A failure to report as is.
    Fail(Failure),
}

impl From<KvError> for Halt {
    fn from(_: KvError) -> Self {
        Halt::Fail(Failure::storage())
    }
}

pub(super) enum Flow {
    Continue,
    Stop,
}

pub(super) struct Run<'k, 'c> {
    pub(super) client: Client<'c>,
    pub(super) keys: &'k Keys,
    pub(super) valid: Validity,
    pub(super) me: u64,
    pub(super) pass: u64,
    pub(super) dept_cache: HashMap<i64, DeptState>,
    pub(super) meter: &'k Meter,
    pub(super) max_calls: u32,
    pub(super) started: u64,
    /// The lease's heartbeat key, bumped before every unit of work.
    pub(super) heartbeat: String,
}

fn backoff_ms(streak: u32) -> u32 {
    1_000u32 << streak.saturating_sub(1).min(4)
}

impl Run<'_, '_> {
    pub(super) fn env(&mut self) -> &mut dyn Env {
        self.client.env()
    }

    pub(super) fn corp(&self) -> String {
        self.keys.corp.clone()
    }

    /// Whether the step may make another DingTalk call: the token is fetched first (so its
    /// call is counted too), then the call and time budgets are checked.
    pub(super) fn can_call(&mut self, permission: &'static str) -> Result<bool, Halt> {
        if self.meter.calls.get() >= self.max_calls
            || self.env().now_ms().saturating_sub(self.started) >= STEP_BUDGET_MS
        {
            return Ok(false);
        }
        self.client
            .app_token()
            .map_err(|e| Halt::Api(e, permission))?;
        Ok(self.meter.calls.get() < self.max_calls)
    }

    pub(super) fn go(
        &mut self,
        base: &State,
        restart: bool,
    ) -> Result<(State, SyncBatch), Failure> {
        let meter = self.meter;
        let mut s = base.clone();
        s.attempt = self.me;
        if s.phase == Phase::Done || restart {
            s = State {
                pass: base.pass + 1,
                attempt: self.me,
                phase: Phase::Tree,
                scope: base.scope.clone(),
                ..State::default()
            };
        }
        self.pass = s.pass;
        let mut b = SyncBatch::default();
        let mut units = 0u32;
        loop {
            let before = meter.calls.get();
            let heartbeat = self.heartbeat.clone();
            if lease::beat(self.env(), &heartbeat).is_err() {
                return Err(Failure::storage());
            }
            let result = match s.phase {
                Phase::Tree => self.tree(&mut s, &mut b),
                Phase::Members => self.walk(&mut s, &mut b),
                Phase::Users => self.users(&mut s, &mut b),
                Phase::SweepMembers => self.sweep_members(&mut s, &mut b),
                Phase::SweepDepts => self.sweep_depts(&mut s, &mut b),
                Phase::Done => break,
            };
            match result {
                Ok(Flow::Continue) => {
                    units += 1;
                    if meter.calls.get() > before {
                        s.throttled = 0;
                    }
                }
                Ok(Flow::Stop) => break,
                Err(Halt::Fail(f)) => return Err(f),
                Err(Halt::Api(e, permission)) => {
                    if meter.store_failed.get() {
                        return Err(Failure::storage());
                    }
                    if meter.out_of_time.get() {
                        b.retry_after_ms = Some(1_000);
                        break;
                    }
                    match e.problem() {
                        Problem::Throttled => {
                            s.throttled = s.throttled.saturating_add(1);
                            b.retry_after_ms = Some(backoff_ms(s.throttled));
                            self.env().log(&format!(
                                "sync: DingTalk throttled ({}); backing off",
                                e.code_text()
                            ));
                            break;
                        }
                        Problem::IpBanned | Problem::MinuteLimited => {
                            b.retry_after_ms = Some(60_000);
                            break;
                        }
                        Problem::TemporarilyBanned => {
                            b.retry_after_ms = Some(300_000);
                            break;
                        }
                        Problem::MonthlyQuota
                        | Problem::MissingPermission
                        | Problem::OutOfScope
                        | Problem::IpNotWhitelisted
                        | Problem::BadCredentials
                        | Problem::OutboundDenied
                        | Problem::Storage => return Err(e.to_failure(permission)),
                        _ if units > 0 => {
                            self.env().log(&format!(
                                "sync: DingTalk error {}; step ends early",
                                e.code_text()
                            ));
                            b.retry_after_ms = Some(BUSY_RETRY_MS);
                            break;
                        }
                        _ => return Err(e.to_failure(permission)),
                    }
                }
            }
        }
        b.progress = progress_of(&s, meter.calls.get());
        Ok((s, b))
    }
}
