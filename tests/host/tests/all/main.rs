//! The host's integration tests as one test binary: wasmtime is linked once instead of once per
//! file. Filter by module, e.g. `cargo test -p dingtalk-host --test all scenarios::spin_target::`
//! or `-- --skip sync_10k`.

/// Generates `wasmtime_target::NAME` and `spin_target::NAME` for every `fn NAME(kind: Kind)` of
/// the module that invokes it (which imports `Kind`). Defined before the modules, so each sees it.
macro_rules! on_both_targets {
    ($( $(#[$meta:meta])* $name:ident, )*) => {
        mod wasmtime_target {
            $( $(#[$meta])* #[test] fn $name() { super::$name(super::Kind::Wasmtime) } )*
        }
        mod spin_target {
            $( $(#[$meta])* #[test] fn $name() { super::$name(super::Kind::Spin) } )*
        }
    };
}

mod api_contract;
mod artifact;
mod browser;
mod events_real;
mod fault_matrix;
mod flows;
mod hardening;
mod helpers;
mod login_real;
mod real_dingtalk;
mod scale_out;
mod scenarios;
mod smoke;
mod store_hardening;
mod sync_10k;
mod sync_real;
