//! R6, DingTalk's contact events over HTTP push: the callback crypto, the event payloads, the
//! route that verifies and queues them, and the deferred queue that records their changes.

pub mod apply;
pub mod crypto;
pub mod parse;
pub mod queue;

pub use queue::{drain_deferred, DrainBudget};

#[cfg(test)]
mod profile;
