//! Settings that point the plugin at a corp of the DingTalk simulator, shared by the tests, the
//! benchmark and the dev runner.

use dingtalk_sim::Sim;
use std::collections::BTreeMap;

/// The platform's public origin (never called: the plugin only builds URLs from it).
pub const SITE_URL: &str = "https://forms.example.com";
/// Where the hand-off lands by default (`{site_url}/dingding/login/complete`).
pub const LOGIN_COMPLETE: &str = "https://forms.example.com/dingding/login/complete";
/// Bearer of the platform API (R7); at least 32 characters.
pub const PLATFORM_TOKEN: &str = "platform-token-for-tests-0123456789abcdef";
/// The simulator's demo corp.
pub const DEMO: &str = "dingdemocorp";

/// Settings as DESIGN §4 keys (also the Spin variable names).
pub type Settings = BTreeMap<String, String>;

/// The corp's identity and credentials as the simulator holds them, with every DingTalk host
/// pointed at the simulator: the settings a real corp would be configured with.
///
/// # Panics
///
/// When the simulator has no corp `corp_id`.
pub fn corp_settings(sim: &Sim, corp_id: &str) -> Settings {
    let c = sim
        .credentials(corp_id)
        .unwrap_or_else(|| panic!("the simulator has no corp {corp_id}"));
    let pairs = [
        ("corp_id", c.corp_id),
        ("corp_name", c.corp_name),
        ("agent_id", c.agent_id.to_string()),
        ("app_key", c.app_key),
        ("app_secret", c.app_secret),
        ("sso_secret", c.sso_secret),
        ("event_token", c.event_token),
        ("event_aes_key", c.event_aes_key),
        ("oapi_base_url", sim.base_url().to_string()),
        ("api_base_url", sim.base_url().to_string()),
        ("login_base_url", sim.base_url().to_string()),
    ];
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Valid settings for `corp_id` of `sim` ([`corp_settings`]), with [`SITE_URL`],
/// [`PLATFORM_TOKEN`], the self-use edition, QR login on, SMS off and `sync_qps` 15.
///
/// # Panics
///
/// When the simulator has no corp `corp_id`.
pub fn settings_for(sim: &Sim, corp_id: &str) -> Settings {
    let mut settings = corp_settings(sim, corp_id);
    for (k, v) in [
        ("site_url", SITE_URL),
        ("edition", "self_use"),
        ("qr_login_enabled", "true"),
        ("sms_enabled", "false"),
        ("platform_token", PLATFORM_TOKEN),
        ("sync_qps", "15"),
    ] {
        settings.insert(k.to_string(), v.to_string());
    }
    settings
}
