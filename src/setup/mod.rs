//! The admin's set-up guide: the seed's eleven steps (plus the event subscription), each with its
//! status, the exact values to paste into the DingTalk developer console, which settings are set
//! (never their values), the permissions to enable, and live checks that call DingTalk once each
//! and name the one action that fixes a failure. One model for the set-up page
//! (`web::setup_page`), the platform API (`GET /dingding/api/setup`) and the typed
//! `config.setup-guide`. Step 10 is driven from the page by [`drive_sync`].
//!
//! * [`model`] — the guide's data: steps, checks, values to paste, permissions, the console URLs;
//! * [`walk`] — builds the guide: the seed's steps in order, each with its status;
//! * [`checks`] — the live checks (credentials, contacts permission, contact scope, IP
//!   whitelist, SSOsecret, event subscription);
//! * [`sync_driver`] — step 10, the full sync driven from the set-up page's button.

mod checks;
mod model;
mod sync_driver;
mod walk;

pub use checks::note_verified_event;
pub use model::{Guide, Status, Step, Text};
pub use sync_driver::{drive_sync, SyncView, DRIVER_QUIET_MS};
pub use walk::guide;

// The rest of the module's public items, at the paths they had before the split (the crate uses
// them through `Guide`'s fields today).
#[allow(unused_imports)]
pub use checks::Scope;
#[allow(unused_imports)]
pub use model::{urls, Check, CopyValue, Permission, SettingState, PERMISSIONS};
#[allow(unused_imports)]
pub use sync_driver::sync_status;
