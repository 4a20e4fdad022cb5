//! Editions (docs/http-contract.md §7): the configured corp, and in the commercial edition further bound corps
//! stored in the key-value store (secrets stored, never returned).

use crate::dingtalk::{oauth, ApiError, Client, Endpoints};
use crate::env::Env;
use crate::failure::Failure;
use crate::kv;
use crate::secret::{AppSecret, SsoSecret};
use crate::settings::{CorpApp, Edition, Settings};
use serde::{Deserialize, Serialize};

/// Credentials of a corp to bind.
#[derive(Clone, Deserialize)]
pub struct CorpBinding {
    /// Organisation.
    pub corp_id: String,
    /// Display name.
    #[serde(default)]
    pub corp_name: String,
    /// AgentId.
    pub agent_id: String,
    /// AppKey.
    pub app_key: String,
    /// AppSecret.
    pub app_secret: String,
    /// SSOsecret.
    #[serde(default)]
    pub sso_secret: Option<String>,
}

impl std::fmt::Debug for CorpBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CorpBinding")
            .field("corp_id", &self.corp_id)
            .field("app_key", &self.app_key)
            .finish_non_exhaustive()
    }
}

/// A corp as listed: no secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CorpSummary {
    /// Organisation.
    pub corp_id: String,
    /// Display name.
    pub corp_name: String,
    /// AgentId.
    pub agent_id: String,
    /// AppKey.
    pub app_key: String,
    /// SSOsecret stored.
    pub has_sso_secret: bool,
    /// The corp from the settings.
    pub configured: bool,
}

#[derive(Serialize, Deserialize)]
struct StoredCorp {
    corp_id: String,
    corp_name: String,
    agent_id: String,
    app_key: String,
    app_secret: String,
    sso_secret: Option<String>,
}

impl StoredCorp {
    fn into_app(self) -> CorpApp {
        CorpApp {
            corp_id: self.corp_id,
            corp_name: self.corp_name,
            agent_id: self.agent_id,
            app_key: self.app_key,
            app_secret: AppSecret::new(self.app_secret),
            sso_secret: self.sso_secret.map(SsoSecret::new),
        }
    }
}

fn summary(app: &CorpApp, configured: bool) -> CorpSummary {
    CorpSummary {
        corp_id: app.corp_id.clone(),
        corp_name: app.corp_name.clone(),
        agent_id: app.agent_id.clone(),
        app_key: app.app_key.clone(),
        has_sso_secret: app.sso_secret.is_some(),
        configured,
    }
}

fn corp_key(corp_id: &str) -> String {
    format!("corp:{corp_id}")
}

fn commercial_only() -> Failure {
    Failure::new(
        403,
        "requires_commercial_edition",
        "Binding further DingTalk organisations requires the commercial edition (商务授权). This platform runs the self-use edition and serves only its configured corp.",
        "绑定其他钉钉组织需要商务授权版本。本平台为企业自用版，只服务后台配置的组织。",
    )
}

/// The failure for a corp this platform does not serve.
pub fn not_served(settings: &Settings, corp_id: &str) -> Failure {
    let shown: String = corp_id.chars().take(64).collect();
    match settings.edition {
        Edition::SelfUse => Failure::new(
            403,
            "corp_not_served",
            format!("This platform (self-use edition) serves only the organisation configured by its admin, not {shown}. Open the app from that organisation's DingTalk workbench."),
            format!("本平台（企业自用版）只服务后台配置的组织，不服务 {shown}。请从该组织的钉钉工作台打开应用。"),
        ),
        Edition::Commercial => Failure::new(
            403,
            "corp_not_bound",
            format!("The organisation {shown} is not bound to this platform. Its admin can bind it in the platform's DingTalk settings."),
            format!("组织 {shown} 尚未绑定到本平台，请其管理员在平台的钉钉设置中完成绑定。"),
        ),
    }
}

/// The app of `corp_id` (`None` or empty: the configured corp), or 403 when not served.
pub fn resolve(
    env: &mut dyn Env,
    settings: &Settings,
    corp_id: Option<&str>,
) -> Result<CorpApp, Failure> {
    let corp_id = corp_id.map(str::trim).filter(|c| !c.is_empty());
    match corp_id {
        None => Ok(settings.corp.clone()),
        Some(c) if c == settings.corp.corp_id => Ok(settings.corp.clone()),
        Some(c) if settings.edition == Edition::Commercial && valid_corp_id(c) => {
            let stored: Option<StoredCorp> = kv::get_json(env, &corp_key(c))?;
            stored
                .map(StoredCorp::into_app)
                .ok_or_else(|| not_served(settings, c))
        }
        Some(c) => Err(not_served(settings, c)),
    }
}

fn valid_corp_id(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 64
        && c.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' || ch == '.')
}

/// Every corp served: the configured one first, then the bound ones.
pub fn all(env: &mut dyn Env, settings: &Settings) -> Result<Vec<CorpApp>, Failure> {
    let mut apps = vec![settings.corp.clone()];
    if settings.edition == Edition::Commercial {
        let n = env.kv_increment("corps:n", 0)?;
        for i in 1..=n.max(0) {
            let Some(raw) = env.kv_get(&format!("corps:slot:{i}"))? else {
                continue;
            };
            let Ok(corp_id) = String::from_utf8(raw) else {
                continue;
            };
            if apps.iter().any(|a| a.corp_id == corp_id) {
                continue;
            }
            let stored: Option<StoredCorp> = kv::get_json(env, &corp_key(&corp_id))?;
            if let Some(s) = stored {
                apps.push(s.into_app());
            }
        }
    }
    Ok(apps)
}

/// Lists the served corps without secrets.
pub fn list(env: &mut dyn Env, settings: &Settings) -> Result<Vec<CorpSummary>, Failure> {
    Ok(all(env, settings)?
        .iter()
        .map(|a| summary(a, a.corp_id == settings.corp.corp_id))
        .collect())
}

fn field_failure(field: &str, what: &str) -> Failure {
    Failure::bad_request(
        "invalid_binding",
        format!("{field} is missing or malformed: {what}"),
        format!("{field} 缺失或格式不正确：{what}"),
    )
}

/// A refused ownership proof: DingTalk's `unauthorized.client` for the corp means the app
/// belongs to another organisation; other errors keep their usual meaning.
fn ownership_failure(e: &ApiError, corp_id: &str) -> Failure {
    match e {
        ApiError::New { code, .. } if code == "unauthorized.client" => Failure::new(
            403,
            "app_not_of_corp",
            format!("DingTalk refused a token for this app in organisation {corp_id}: the app belongs to another organisation. Bind the app created in {corp_id}'s own developer console."),
            format!("钉钉拒绝为该应用签发组织 {corp_id} 的令牌：该应用属于其他组织。请绑定在 {corp_id} 自己的开发者后台创建的应用。"),
        ),
        _ => e.to_failure("qyapi_base"),
    }
}

/// Validates the credentials live (one token call, one SSO token call if given), then stores.
pub fn bind(
    env: &mut dyn Env,
    settings: &Settings,
    binding: &CorpBinding,
) -> Result<CorpSummary, Failure> {
    if settings.edition != Edition::Commercial {
        return Err(commercial_only());
    }
    let b = binding;
    if !valid_corp_id(b.corp_id.trim()) {
        return Err(field_failure(
            "corp_id",
            "copy the CorpId from the DingTalk developer console",
        ));
    }
    if b.corp_id.trim() == settings.corp.corp_id {
        return Err(Failure::new(
            409,
            "corp_is_configured",
            "This organisation is the one configured in the settings; change it there.",
            "该组织就是后台设置中配置的组织，请在设置中修改。",
        ));
    }
    if b.agent_id.trim().is_empty() || !b.agent_id.trim().chars().all(|c| c.is_ascii_digit()) {
        return Err(field_failure("agent_id", "digits only"));
    }
    if !valid_corp_id(b.app_key.trim()) {
        return Err(field_failure(
            "app_key",
            "copy the AppKey from the app's credentials page",
        ));
    }
    let secret_ok =
        |s: &str| (8..=128).contains(&s.len()) && s.chars().all(|c| c.is_ascii_graphic());
    if !secret_ok(&b.app_secret) {
        return Err(field_failure(
            "app_secret",
            "copy the AppSecret from the app's credentials page",
        ));
    }
    if let Some(sso) = &b.sso_secret {
        if !sso.is_empty() && !secret_ok(sso) {
            return Err(field_failure(
                "sso_secret",
                "copy the SSOsecret from 开发信息（旧版）",
            ));
        }
    }
    if b.corp_name.chars().count() > 100 {
        return Err(field_failure("corp_name", "at most 100 characters"));
    }
    let app = CorpApp {
        corp_id: b.corp_id.trim().to_string(),
        corp_name: b.corp_name.trim().to_string(),
        agent_id: b.agent_id.trim().to_string(),
        app_key: b.app_key.trim().to_string(),
        app_secret: AppSecret::new(b.app_secret.clone()),
        sso_secret: b
            .sso_secret
            .clone()
            .filter(|s| !s.is_empty())
            .map(SsoSecret::new),
    };
    // Never replace a binding silently: the platform unbinds first.
    if env.kv_get(&corp_key(&app.corp_id))?.is_some() {
        return Err(Failure::new(
            409,
            "corp_already_bound",
            "This organisation is already bound. Unbind it first (DELETE /dingding/api/corps/{corp_id}) to bind other credentials.",
            "该组织已绑定。如需更换凭据，请先解除绑定（DELETE /dingding/api/corps/{corp_id}）。",
        ));
    }
    // Live check before storing: a token for the app *in the named corp* proves the AppKey and
    // AppSecret and that the app belongs to that corp (docs/dingtalk-api.md §1.3, §13.9); a
    // fresh SSO token proves the SSOsecret.
    let endpoints = Endpoints::from_settings(settings);
    env.kv_delete(&format!("tok:app:{}", app.app_key))?;
    {
        let mut client = Client::new(env, &endpoints, &app);
        oauth::corp_token(&mut client, &app.corp_id)
            .map_err(|e| ownership_failure(&e, &app.corp_id))?;
        if let Some(sso) = &app.sso_secret {
            oauth::fresh_sso_token(&mut client, sso)
                .map_err(|e| e.to_failure("qyapi_get_omp_sso_userinfo"))?;
        }
    }
    let stored = StoredCorp {
        corp_id: app.corp_id.clone(),
        corp_name: app.corp_name.clone(),
        agent_id: app.agent_id.clone(),
        app_key: app.app_key.clone(),
        app_secret: app.app_secret.expose().to_string(),
        sso_secret: app.sso_secret.as_ref().map(|s| s.expose().to_string()),
    };
    kv::put_json(env, &corp_key(&app.corp_id), &stored)?;
    let n = env.kv_increment("corps:n", 1)?;
    env.kv_set(&format!("corps:slot:{n}"), app.corp_id.as_bytes())?;
    Ok(summary(&app, false))
}

/// Unbinds a corp: its record and cached tokens go at once; other corps are untouched.
pub fn unbind(env: &mut dyn Env, settings: &Settings, corp_id: &str) -> Result<(), Failure> {
    if settings.edition != Edition::Commercial {
        return Err(commercial_only());
    }
    let corp_id = corp_id.trim();
    if corp_id == settings.corp.corp_id {
        return Err(Failure::new(
            409,
            "corp_is_configured",
            "The configured organisation cannot be unbound; change the settings instead.",
            "后台设置中配置的组织不能解绑，请修改设置。",
        ));
    }
    if !valid_corp_id(corp_id) {
        return Err(field_failure("corp_id", "a CorpId"));
    }
    let stored: Option<StoredCorp> = kv::get_json(env, &corp_key(corp_id))?;
    let Some(stored) = stored else {
        return Err(Failure::new(
            404,
            "corp_not_bound",
            "This organisation is not bound.",
            "该组织未绑定。",
        ));
    };
    env.kv_delete(&corp_key(corp_id))?;
    env.kv_delete(&format!("tok:app:{}", stored.app_key))?;
    env.kv_delete(&format!("tok:sso:{corp_id}"))?;
    Ok(())
}
