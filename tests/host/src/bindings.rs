//! Host bindings of the `dingtalk:plugin/plugin` world (`wit/world.wit`).

/// Everything `bindgen!` generates for the `plugin` world: the typed exports, and the
/// `wasi:config` / `wasi:keyvalue` import traits this crate implements.
pub(crate) mod generated {
    #![allow(missing_docs, reason = "bindgen-generated code")]

    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "dingtalk:plugin/plugin",
        imports: { default: trappable },
        with: {
            "wasi:keyvalue/store.bucket": crate::kv::Bucket,
            "wasi:keyvalue/atomics.cas": crate::kv::Cas,
        },
    });
}

/// The plugin's WIT types, re-exported so tests can build arguments and match on results.
///
/// Names follow `bindgen!`: WIT `setting-issue` is [`wit::SettingIssue`], variant cases are
/// `UpperCamelCase` (`Outcome::SignedIn(identity)`), fields are `snake_case`.
pub mod wit {
    pub use super::generated::dingtalk::plugin::types::{
        CorpOption, Department, DeptRef, DirectoryChange, Failure, HttpRequest, HttpResponse,
        Identity, LoginVia, Member, MemberRef, MembershipChange, Outcome, Routed, SequencedChange,
        SettingIssue, Settings,
    };
    pub use super::generated::exports::dingtalk::plugin::config::{Guide, Permission, SetupCheck};
    pub use super::generated::exports::dingtalk::plugin::corps::{CorpBinding, CorpSummary};
    pub use super::generated::exports::dingtalk::plugin::directory::{
        ChangePage, SyncBatch, SyncProgress, SyncRequest,
    };
    pub use super::generated::exports::dingtalk::plugin::notify::{
        ActionCard, MessageBody, Todo, TodoRef,
    };

    /// The instantiated plugin: `plugin.dingtalk_plugin_config().call_validate(store, …)`, etc.
    pub use super::generated::Plugin;

    /// The raw generated export modules, for anything the re-exports above leave out.
    pub use super::generated::exports;
}
