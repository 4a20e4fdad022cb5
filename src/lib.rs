//! DingTalk (钉钉) integration for self-hosted form and low-code platforms, as one WASI 0.2
//! component: in-app free login, QR login, admin-backend SSO, directory sync, events, to-dos and
//! work notifications.
//!
//! The core is pure (no I/O, clock or randomness of its own: they come through [`env::Env`]) and is
//! unit-tested natively; `wasm` holds the thin adapters to WASI and the WIT exports.
#![deny(missing_docs)]

pub mod corps;
pub mod dingtalk;
pub mod directory;
pub mod env;
pub mod events;
pub mod failure;
pub mod kv;
pub mod login;
pub mod model;
pub mod notify;
pub mod operations;
pub mod secret;
pub mod settings;
pub mod setup;
pub mod sync;
pub mod web;

#[cfg(test)]
pub(crate) mod testing;

#[cfg(target_arch = "wasm32")]
mod wasm;
