//! R6, DingTalk's contact events over HTTP push: the callback crypto, the event payloads, and
//! the route that verifies, records and applies them.

pub mod apply;
pub mod crypto;
pub mod parse;
