//! The host's integration tests as one test binary: wasmtime is linked once instead of once per
//! file. Filter by module, e.g. `cargo test -p dingtalk-host --test all scenarios::spin_target::`
//! or `-- --skip sync_10k`.

mod artifact;
mod fault_matrix;
mod flows;
mod hardening;
mod helpers;
mod real_dingtalk;
mod scale_out;
mod scenarios;
mod smoke;
mod store_hardening;
mod sync_10k;
