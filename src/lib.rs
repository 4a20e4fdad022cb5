//! DingTalk (钉钉) integration for self-hosted form and low-code platforms, as one WASI 0.2
//! component: in-app free login, QR login, admin-backend SSO, directory sync, events, to-dos and
//! work notifications.
//!
//! The core is pure (no I/O, clock or randomness of its own: they come through [`env::Env`]) and is
//! unit-tested natively; `wasm` holds the thin adapters to WASI and the WIT exports.
#![deny(missing_docs)]

mod corps;
mod dingtalk;
mod directory;
mod env;
mod events;
mod failure;
mod kv;
mod login;
mod model;
mod notify;
mod openapi;
mod operations;
mod secret;
mod settings;
mod setup;
mod sync;
mod web;

#[cfg(test)]
mod testing;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use env::Env;
pub use failure::Failure;
pub use model::{CorpOption, Department, DirectoryChange, Identity, Member, SequencedChange, Via};
pub use operations::{run, validate, Answer, Operation, OperationSpec, TypedExport, OPERATIONS};
pub use settings::{raw_from_pairs, Issue, RawSettings, Settings, KEYS, SECRET_KEYS};
pub use web::http::{Request, Response, MAX_BODY};
pub use web::router::{handle, Mode, Outcome, Routed};

#[cfg(target_arch = "wasm32")]
mod wasm;
