//! Thin adapters between WASI 0.2 and the pure core: the environment (clock, random, outgoing
//! HTTP, key-value, config), the `wasi:http` entry point and the typed WIT exports.

mod entry;
mod exports;
mod host;
