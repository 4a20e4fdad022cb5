//! Settings (docs/http-contract.md §6): parsed once into a typed [`Settings`], or every problem at once.
//!
//! Keys are the Spin variable names. A message never contains a secret's value.

use crate::secret::{AppSecret, EventAesKey, EventToken, PlatformToken, SsoSecret};
use std::collections::BTreeMap;
use url::Url;

/// Every settings key, in the order the admin meets them.
pub const KEYS: &[&str] = &[
    "site_url",
    "edition",
    "qr_login_enabled",
    "sms_enabled",
    "corp_id",
    "corp_name",
    "agent_id",
    "app_key",
    "app_secret",
    "sso_secret",
    "event_token",
    "event_aes_key",
    "platform_token",
    "platform_login_url",
    "oapi_base_url",
    "api_base_url",
    "login_base_url",
    "sync_qps",
    "login_code_budget_per_minute",
];

/// Keys whose values are secrets.
pub const SECRET_KEYS: &[&str] = &[
    "app_secret",
    "sso_secret",
    "event_token",
    "event_aes_key",
    "platform_token",
];

/// DingTalk's public hosts, the defaults of the `*_base_url` settings.
pub const DEFAULT_OAPI_BASE_URL: &str = "https://oapi.dingtalk.com";
/// Default of `api_base_url`.
pub const DEFAULT_API_BASE_URL: &str = "https://api.dingtalk.com";
/// Default of `login_base_url`.
pub const DEFAULT_LOGIN_BASE_URL: &str = "https://login.dingtalk.com";
/// Default of `sync_qps`: below DingTalk's 20 calls/s per app and API, leaving room for logins.
pub const DEFAULT_SYNC_QPS: u32 = 15;
/// Default of `login_code_budget_per_minute`.
pub const DEFAULT_LOGIN_CODE_BUDGET: u32 = 600;
/// Bounds of `login_code_budget_per_minute`.
pub const LOGIN_CODE_BUDGET_RANGE: std::ops::RangeInclusive<u32> = 10..=100_000;

/// Which licence the platform runs under (seed 注意事项).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edition {
    /// 企业自用: one corp only.
    SelfUse,
    /// 商务授权: further corps can be bound.
    Commercial,
}

impl Edition {
    /// The settings value.
    pub fn as_str(self) -> &'static str {
        match self {
            Edition::SelfUse => "self_use",
            Edition::Commercial => "commercial",
        }
    }
}

/// One corp's DingTalk app credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpApp {
    /// CorpId.
    pub corp_id: String,
    /// Display name (seed step 2, shown on the QR corp list).
    pub corp_name: String,
    /// AgentId (work notifications).
    pub agent_id: String,
    /// AppKey (Client ID).
    pub app_key: String,
    /// AppSecret.
    pub app_secret: AppSecret,
    /// SSOsecret (admin-backend login); optional.
    pub sso_secret: Option<SsoSecret>,
}

/// Event subscription keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKeys {
    /// Signing token.
    pub token: EventToken,
    /// 43-character EncodingAESKey.
    pub aes_key: EventAesKey,
}

/// Validated settings. Built only by [`Settings::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Public origin of the platform (no path), without a trailing slash.
    pub site_url: String,
    /// Licence.
    pub edition: Edition,
    /// Seed step 11.
    pub qr_login_enabled: bool,
    /// Commercial: SMS verification is ready for first-time binding.
    pub sms_enabled: bool,
    /// The configured corp.
    pub corp: CorpApp,
    /// Event subscription keys, when events are configured.
    pub events: Option<EventKeys>,
    /// Bearer for the platform API; the API is closed without it.
    pub platform_token: Option<PlatformToken>,
    /// Where the hand-off goes.
    pub platform_login_url: String,
    /// Old API host.
    pub oapi_base_url: String,
    /// New API host.
    pub api_base_url: String,
    /// Browser login host.
    pub login_base_url: String,
    /// Cap on DingTalk calls per second during sync.
    pub sync_qps: u32,
    /// DingTalk code exchanges (R1–R4) allowed per minute across every instance.
    pub login_code_budget_per_minute: u32,
}

/// One problem with the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The key.
    pub field: String,
    /// Stable code.
    pub code: &'static str,
    /// Message in Simplified Chinese.
    pub message_zh: String,
    /// Message in English.
    pub message_en: String,
}

impl Issue {
    fn new(field: &str, code: &'static str, zh: impl Into<String>, en: impl Into<String>) -> Self {
        Issue {
            field: field.to_string(),
            code,
            message_zh: zh.into(),
            message_en: en.into(),
        }
    }
}

/// Raw key/value settings as a host hands them over.
pub type RawSettings = BTreeMap<String, String>;

/// Builds raw settings from pairs; later pairs win.
pub fn raw_from_pairs<I, K, V>(pairs: I) -> RawSettings
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    let pairs: Vec<(String, String)> = pairs
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    // Collected from a `Vec` whatever the caller's iterator: the map's sort-and-build is then
    // compiled once, not once per caller (about 2 KB of component each).
    RawSettings::from_iter(pairs)
}

struct Reader<'a> {
    raw: &'a RawSettings,
    issues: Vec<Issue>,
}

impl<'a> Reader<'a> {
    /// The trimmed value, `None` when absent or blank.
    fn value(&self, key: &str) -> Option<&'a str> {
        self.raw
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn required(&mut self, key: &str, what_zh: &str, what_en: &str) -> Option<&'a str> {
        let v = self.value(key);
        if v.is_none() {
            self.issues.push(Issue::new(
                key,
                "required",
                format!("请填写 {key}（{what_zh}）"),
                format!("{key} is required ({what_en})"),
            ));
        }
        v
    }

    fn bool(&mut self, key: &str, default: bool) -> bool {
        match self.value(key).map(|v| v.to_ascii_lowercase()) {
            None => default,
            Some(v) => match v.as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => {
                    self.issues.push(Issue::new(
                        key,
                        "not_bool",
                        format!("{key} 只能是 true 或 false"),
                        format!("{key} must be true or false"),
                    ));
                    default
                }
            },
        }
    }

    fn identifier(&mut self, key: &str, value: &str, max: usize) -> bool {
        let ok = value.len() <= max
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if !ok {
            self.issues.push(Issue::new(
                key,
                "bad_format",
                format!("{key} 格式不正确：只能包含字母、数字、下划线、连字符，最长 {max} 个字符；请从钉钉开发者后台复制"),
                format!("{key} has the wrong format: letters, digits, '_', '-' only, at most {max} characters; copy it from the DingTalk developer console"),
            ));
        }
        ok
    }

    /// A secret: checked for shape only, never echoed.
    fn secret(&mut self, key: &str, value: &str, min: usize, max: usize) -> bool {
        let len = value.chars().count();
        let printable = value.chars().all(|c| c.is_ascii_graphic());
        if !printable {
            self.issues.push(Issue::new(
                key,
                "bad_format",
                format!("{key} 含有空白或非 ASCII 字符；请从钉钉开发者后台重新复制"),
                format!("{key} contains spaces or non-ASCII characters; copy it again from the DingTalk developer console"),
            ));
            false
        } else if len < min || len > max {
            self.issues.push(Issue::new(
                key,
                "bad_length",
                format!(
                    "{key} 的长度应在 {min} 到 {max} 个字符之间；请从钉钉开发者后台重新完整复制"
                ),
                format!("{key} must be {min} to {max} characters long; copy it again, completely"),
            ));
            false
        } else {
            true
        }
    }

    /// An absolute URL; https unless the host is loopback.
    fn url(&mut self, key: &str, value: &str, allow_path: bool) -> Option<String> {
        // The component carries no Unicode IDNA tables (Cargo.toml, `idna_adapter`): an
        // internationalised domain is entered in its ASCII (punycode) form.
        if !value.is_ascii() {
            self.issues.push(Issue::new(
                key,
                "not_ascii",
                format!("{key} 含非 ASCII 字符；中文域名请填写其 punycode 形式（xn--…），路径中的中文请先进行 URL 编码"),
                format!("{key} contains non-ASCII characters; enter an internationalised domain in its punycode form (xn--…) and percent-encode the rest"),
            ));
            return None;
        }
        let parsed = match Url::parse(value) {
            Ok(u) => u,
            Err(_) => {
                self.issues.push(Issue::new(
                    key,
                    "not_url",
                    format!("{key} 不是完整的网址，应形如 https://example.com"),
                    format!(
                        "{key} is not an absolute URL; expected something like https://example.com"
                    ),
                ));
                return None;
            }
        };
        let loopback = is_loopback(&parsed);
        let scheme_ok = parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback);
        if !scheme_ok || parsed.host_str().is_none() {
            self.issues.push(Issue::new(
                key,
                "not_https",
                format!("{key} 必须以 https:// 开头（仅本机地址可用 http://）"),
                format!("{key} must start with https:// (http:// only for loopback addresses)"),
            ));
            return None;
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            self.issues.push(Issue::new(
                key,
                "has_query",
                format!("{key} 不能包含 ? 查询参数或 # 片段"),
                format!("{key} must not contain a ?query or #fragment"),
            ));
            return None;
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            self.issues.push(Issue::new(
                key,
                "has_credentials",
                format!("{key} 不能包含用户名或密码"),
                format!("{key} must not contain a user name or password"),
            ));
            return None;
        }
        let text = parsed.as_str().trim_end_matches('/').to_string();
        if !allow_path && parsed.path() != "/" {
            self.issues.push(Issue::new(
                key,
                "has_path",
                format!("{key} 只能是协议加域名（可带端口），不能带路径（如 /forms）：钉钉登录的回调地址和 Cookie 都位于站点根路径下的 /dingding/…，请让平台在域名根路径提供服务，或为其单独配置一个域名"),
                format!("{key} must be a scheme and host (and port) only, without a path such as /forms: DingTalk's callbacks and the login cookies live at /dingding/… on the site's root, so serve the platform at the root of its own host name"),
            ));
            return None;
        }
        Some(text)
    }
}

/// True for `localhost`, 127.0.0.0/8 and `[::1]`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl Settings {
    /// Parses and validates; returns every issue at once.
    pub fn parse(raw: &RawSettings) -> Result<Settings, Vec<Issue>> {
        let mut r = Reader {
            raw,
            issues: Vec::new(),
        };

        let site_url = r
            .required(
                "site_url",
                "私有云域名，如 https://forms.example.com",
                "the platform's public https address, e.g. https://forms.example.com",
            )
            .and_then(|v| r.url("site_url", v, false));

        let edition = match r.value("edition").map(|v| v.to_ascii_lowercase()) {
            None => Edition::SelfUse,
            Some(v) if v == "self_use" => Edition::SelfUse,
            Some(v) if v == "commercial" => Edition::Commercial,
            Some(_) => {
                r.issues.push(Issue::new(
                    "edition",
                    "invalid_choice",
                    "edition 只能是 self_use（企业自用）或 commercial（商务授权）",
                    "edition must be self_use or commercial",
                ));
                Edition::SelfUse
            }
        };
        let qr_login_enabled = r.bool("qr_login_enabled", false);
        let sms_enabled = r.bool("sms_enabled", false);

        let corp_id = r.required(
            "corp_id",
            "钉钉开放平台首页的 CorpId，见步骤 2",
            "the CorpId shown on the DingTalk developer console home page, step 2",
        );
        if let Some(v) = corp_id {
            r.identifier("corp_id", v, 64);
        }
        let corp_name = r.value("corp_name").unwrap_or("").to_string();
        if corp_name.chars().count() > 100 {
            r.issues.push(Issue::new(
                "corp_name",
                "too_long",
                "corp_name 最长 100 个字符",
                "corp_name must be at most 100 characters",
            ));
        }
        let agent_id = r.required(
            "agent_id",
            "应用凭证中的 AgentId，见步骤 4",
            "the app's AgentId from its credentials page, step 4",
        );
        if let Some(v) = agent_id {
            if v.len() > 20 || !v.chars().all(|c| c.is_ascii_digit()) {
                r.issues.push(Issue::new(
                    "agent_id",
                    "not_number",
                    "agent_id 应为纯数字（应用凭证中的 AgentId）",
                    "agent_id must be digits only (the app's AgentId)",
                ));
            }
        }
        let app_key = r.required(
            "app_key",
            "应用凭证中的 AppKey（Client ID），见步骤 4",
            "the app's AppKey (Client ID), step 4",
        );
        if let Some(v) = app_key {
            r.identifier("app_key", v, 64);
        }
        let app_secret = r.required(
            "app_secret",
            "应用凭证中的 AppSecret（Client Secret），见步骤 4",
            "the app's AppSecret (Client Secret), step 4",
        );
        if let Some(v) = app_secret {
            r.secret("app_secret", v, 8, 128);
        }
        let sso_secret = r.value("sso_secret");
        if let Some(v) = sso_secret {
            r.secret("sso_secret", v, 8, 128);
        }

        let event_token = r.value("event_token");
        let event_aes_key = r.value("event_aes_key");
        match (event_token, event_aes_key) {
            (Some(t), Some(k)) => {
                if r.secret("event_token", t, 3, 64)
                    && !t.chars().all(|c| c.is_ascii_alphanumeric())
                {
                    r.issues.push(Issue::new(
                        "event_token",
                        "bad_format",
                        "event_token 只能包含英文字母和数字（与钉钉后台事件订阅的签名 token 一致）",
                        "event_token must be letters and digits only (the signing token of the event subscription)",
                    ));
                }
                // The same decoding the callback crypto uses (DingTalk keys may carry
                // non-zero trailing bits in their 43rd character).
                let decodes = crate::events::crypto::CallbackCrypto::new(t, k, Vec::new()).is_ok();
                if !decodes {
                    r.issues.push(Issue::new(
                        "event_aes_key",
                        "bad_aes_key",
                        "event_aes_key 必须是钉钉后台事件订阅生成的 43 位加密 aes_key",
                        "event_aes_key must be the 43-character aes_key generated in the event subscription settings",
                    ));
                }
            }
            (None, None) => {}
            (Some(_), None) => r.issues.push(Issue::new(
                "event_aes_key",
                "required_with",
                "已填写 event_token，还需填写 event_aes_key",
                "event_aes_key is required when event_token is set",
            )),
            (None, Some(_)) => r.issues.push(Issue::new(
                "event_token",
                "required_with",
                "已填写 event_aes_key，还需填写 event_token",
                "event_token is required when event_aes_key is set",
            )),
        }

        let platform_token = r.value("platform_token");
        if let Some(v) = platform_token {
            r.secret("platform_token", v, 32, 256);
        }

        let platform_login_url = match r.value("platform_login_url") {
            Some(v) => r.url("platform_login_url", v, true),
            None => site_url
                .as_ref()
                .map(|s| format!("{s}/dingding/login/complete")),
        };
        let mut base = |key: &str, default: &str| match r.value(key) {
            Some(v) => r.url(key, v, true),
            None => Some(default.to_string()),
        };
        let oapi_base_url = base("oapi_base_url", DEFAULT_OAPI_BASE_URL);
        let api_base_url = base("api_base_url", DEFAULT_API_BASE_URL);
        let login_base_url = base("login_base_url", DEFAULT_LOGIN_BASE_URL);

        let sync_qps = match r.value("sync_qps") {
            None => DEFAULT_SYNC_QPS,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=20).contains(&n) => n,
                _ => {
                    r.issues.push(Issue::new(
                        "sync_qps",
                        "out_of_range",
                        "sync_qps 应为 1 到 20 之间的整数（钉钉限制每个应用每个接口每秒 20 次）",
                        "sync_qps must be a whole number from 1 to 20 (DingTalk allows 20 calls/s per app and API)",
                    ));
                    DEFAULT_SYNC_QPS
                }
            },
        };
        let login_code_budget_per_minute = match r.value("login_code_budget_per_minute") {
            None => DEFAULT_LOGIN_CODE_BUDGET,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if LOGIN_CODE_BUDGET_RANGE.contains(&n) => n,
                _ => {
                    r.issues.push(Issue::new(
                        "login_code_budget_per_minute",
                        "out_of_range",
                        "login_code_budget_per_minute 应为 10 到 100000 之间的整数（每分钟最多兑换的钉钉登录授权码数，默认 600）",
                        "login_code_budget_per_minute must be a whole number from 10 to 100000 (DingTalk sign-in codes exchanged per minute across all instances; default 600)",
                    ));
                    DEFAULT_LOGIN_CODE_BUDGET
                }
            },
        };

        if !r.issues.is_empty() {
            return Err(r.issues);
        }
        // Every required value is present when there are no issues.
        let (
            Some(site_url),
            Some(corp_id),
            Some(agent_id),
            Some(app_key),
            Some(app_secret),
            Some(platform_login_url),
            Some(oapi_base_url),
            Some(api_base_url),
            Some(login_base_url),
        ) = (
            site_url,
            corp_id,
            agent_id,
            app_key,
            app_secret,
            platform_login_url,
            oapi_base_url,
            api_base_url,
            login_base_url,
        )
        else {
            return Err(vec![Issue::new(
                "site_url",
                "internal",
                "设置不完整",
                "settings are incomplete",
            )]);
        };
        Ok(Settings {
            site_url,
            edition,
            qr_login_enabled,
            sms_enabled,
            corp: CorpApp {
                corp_id: corp_id.to_string(),
                corp_name,
                agent_id: agent_id.to_string(),
                app_key: app_key.to_string(),
                app_secret: AppSecret::new(app_secret),
                sso_secret: sso_secret.map(SsoSecret::new),
            },
            events: match (event_token, event_aes_key) {
                (Some(t), Some(k)) => Some(EventKeys {
                    token: EventToken::new(t),
                    aes_key: EventAesKey::new(k),
                }),
                _ => None,
            },
            platform_token: platform_token.map(PlatformToken::new),
            platform_login_url,
            oapi_base_url,
            api_base_url,
            login_base_url,
            sync_qps,
            login_code_budget_per_minute,
        })
    }

    /// A URL on the platform for a path that starts with `/`.
    pub fn site_path(&self, path: &str) -> String {
        format!("{}{}", self.site_url, path)
    }
}

/// Valid sample settings shared by the unit tests and the fuzz targets (`src/fuzzing.rs`).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod samples {
    use super::{raw_from_pairs, RawSettings, Settings};

    /// Valid settings (events, SSO and platform token configured), as raw pairs.
    pub fn sample_raw() -> RawSettings {
        raw_from_pairs([
            ("site_url", "https://forms.example.com"),
            ("corp_id", "dingcorp123"),
            ("corp_name", "示例公司"),
            ("agent_id", "1000001"),
            ("app_key", "dingappkey123"),
            ("app_secret", SAMPLE_SECRETS[0]),
            ("sso_secret", SAMPLE_SECRETS[1]),
            ("event_token", "tokenxxxx"),
            ("event_aes_key", SAMPLE_SECRETS[2]),
            ("platform_token", SAMPLE_SECRETS[3]),
        ])
    }

    /// [`sample_raw`] parsed.
    pub fn sample() -> Settings {
        Settings::parse(&sample_raw()).expect("sample settings are valid")
    }

    /// The secret values of [`sample_raw`]: none may appear in a response or a log line unless
    /// the request itself carried it.
    pub const SAMPLE_SECRETS: &[&str] = &[
        "app-secret-value-123456",
        "sso-secret-value-123456",
        "o1w0aum42yaptlz8alnhwikjd3jenzt9cb9wmzptgus",
        "platform-token-0123456789abcdef0123",
    ];
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) use super::samples::{sample, sample_raw};

    fn issues(raw: &RawSettings) -> Vec<Issue> {
        Settings::parse(raw).expect_err("expected issues")
    }

    #[test]
    fn defaults_apply() {
        let s = sample();
        assert_eq!(s.edition, Edition::SelfUse);
        assert!(!s.qr_login_enabled);
        assert_eq!(
            s.platform_login_url,
            "https://forms.example.com/dingding/login/complete"
        );
        assert_eq!(s.oapi_base_url, DEFAULT_OAPI_BASE_URL);
        assert_eq!(s.sync_qps, DEFAULT_SYNC_QPS);
        assert!(s.events.is_some());
    }

    #[test]
    fn empty_settings_report_every_required_key() {
        let found: Vec<_> = issues(&RawSettings::new())
            .into_iter()
            .map(|i| (i.field, i.code))
            .collect();
        for key in ["site_url", "corp_id", "agent_id", "app_key", "app_secret"] {
            assert!(
                found.contains(&(key.to_string(), "required")),
                "{key}: {found:?}"
            );
        }
        assert_eq!(found.len(), 5, "{found:?}");
    }

    #[test]
    fn url_rules() {
        for (value, code) in [
            ("forms.example.com", "not_url"),
            ("http://forms.example.com", "not_https"),
            ("https://forms.example.com/?a=1", "has_query"),
            ("https://forms.example.com/#x", "has_query"),
            ("ftp://forms.example.com", "not_https"),
            ("https://user:pw@forms.example.com", "has_credentials"),
            ("https://表单.example.com", "not_ascii"),
            ("https://forms.example.com/forms", "has_path"),
            ("https://forms.example.com/forms/", "has_path"),
        ] {
            let mut raw = sample_raw();
            raw.insert("site_url".into(), value.into());
            let found = issues(&raw);
            assert_eq!(found.len(), 1, "{value}: {found:?}");
            assert_eq!(
                (found[0].field.as_str(), found[0].code),
                ("site_url", code),
                "{value}"
            );
        }
        let mut raw = sample_raw();
        raw.insert("site_url".into(), "http://127.0.0.1:3000/".into());
        assert_eq!(
            Settings::parse(&raw).unwrap().site_url,
            "http://127.0.0.1:3000"
        );
        let mut raw = sample_raw();
        raw.insert("site_url".into(), "https://forms.example.com/forms".into());
        let found = issues(&raw);
        assert!(found[0].message_en.contains("without a path"), "{found:?}");
        assert!(found[0].message_zh.contains("不能带路径"), "{found:?}");
        // platform_login_url may still have a path.
        let mut raw = sample_raw();
        raw.insert(
            "platform_login_url".into(),
            "https://forms.example.com/app/sso/dingtalk".into(),
        );
        assert!(Settings::parse(&raw).is_ok());
    }

    #[test]
    fn messages_never_reveal_a_secret_length() {
        for (key, value) in [
            ("app_secret", "a"),
            ("sso_secret", "abcd"),
            ("platform_token", "0123456789abcdefghij"),
            ("event_token", "ab"),
        ] {
            let mut raw = sample_raw();
            raw.insert(key.into(), value.into());
            let found = issues(&raw);
            let i = found.iter().find(|i| i.field == key).expect(key);
            let len = value.len().to_string();
            for m in [&i.message_en, &i.message_zh] {
                assert!(!m.contains("it has") && !m.contains("当前"), "{key}: {m}");
                // The only digits allowed are the documented bounds.
                let digits: Vec<&str> = m
                    .split(|c: char| !c.is_ascii_digit())
                    .filter(|d| !d.is_empty())
                    .collect();
                assert!(!digits.contains(&len.as_str()), "{key}: {m}");
            }
        }
    }

    #[test]
    fn published_dingtalk_aes_keys_are_accepted() {
        // V1, V3 and V4 of docs/dingtalk-api.md §8.9 do not decode under strict base64 (non-zero trailing bits).
        for key in [
            "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7",
            "4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij",
            "1234567890123456789012345678901234567890123",
        ] {
            let mut raw = sample_raw();
            raw.insert("event_aes_key".into(), key.into());
            assert!(Settings::parse(&raw).is_ok(), "{key}");
        }
    }

    #[test]
    fn secrets_never_echoed() {
        let mut raw = sample_raw();
        raw.insert("app_secret".into(), "short".into());
        raw.insert("sso_secret".into(), "has space inside it".into());
        raw.insert("platform_token".into(), "tooshort-platform".into());
        raw.insert("event_aes_key".into(), "not-a-43-char-key".into());
        let found = issues(&raw);
        assert_eq!(found.len(), 4, "{found:?}");
        for i in &found {
            for secret in [
                "short",
                "has space inside it",
                "tooshort-platform",
                "not-a-43-char-key",
            ] {
                assert!(
                    !i.message_en.contains(secret) && !i.message_zh.contains(secret),
                    "{i:?}"
                );
            }
        }
    }

    #[test]
    fn all_issues_at_once() {
        let raw = raw_from_pairs([
            ("site_url", "nope"),
            ("edition", "enterprise"),
            ("qr_login_enabled", "maybe"),
            ("corp_id", "ding corp"),
            ("agent_id", "12a"),
            ("app_key", "k"),
            ("app_secret", "0123456789"),
            ("event_token", "abc"),
            ("sync_qps", "50"),
        ]);
        let codes: Vec<_> = issues(&raw)
            .into_iter()
            .map(|i| (i.field, i.code))
            .collect();
        for expected in [
            ("site_url", "not_url"),
            ("edition", "invalid_choice"),
            ("qr_login_enabled", "not_bool"),
            ("corp_id", "bad_format"),
            ("agent_id", "not_number"),
            ("event_aes_key", "required_with"),
            ("sync_qps", "out_of_range"),
        ] {
            assert!(
                codes.contains(&(expected.0.to_string(), expected.1)),
                "{expected:?} in {codes:?}"
            );
        }
    }

    #[test]
    fn login_code_budget_is_a_bounded_setting() {
        assert_eq!(sample().login_code_budget_per_minute, 600);
        let mut raw = sample_raw();
        raw.insert("login_code_budget_per_minute".into(), "10".into());
        assert_eq!(
            Settings::parse(&raw).unwrap().login_code_budget_per_minute,
            10
        );
        for bad in ["9", "100001", "-1", "lots"] {
            raw.insert("login_code_budget_per_minute".into(), bad.into());
            let found = issues(&raw);
            assert_eq!(found.len(), 1, "{bad}: {found:?}");
            assert_eq!(found[0].code, "out_of_range");
            assert!(found[0].message_en.contains("10 to 100000"));
        }
    }

    #[test]
    fn debug_of_settings_has_no_secret() {
        let printed = format!("{:?}", sample());
        for secret in [
            "app-secret-value-123456",
            "sso-secret-value-123456",
            "tokenxxxx",
            "o1w0aum42yaptlz8alnhwikjd3jenzt9cb9wmzptgus",
            "platform-token-0123456789abcdef0123",
        ] {
            assert!(!printed.contains(secret), "{secret} leaked");
        }
    }
}
