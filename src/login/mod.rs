//! Login flows, each a function from a parsed request to a [`LoginStep`] or a [`Failure`]:
//! in-app free login (R1/R2, [`inapp`]), QR / browser login (R5 → R4, [`qr`]), admin-backend
//! SSO (R3, [`admin_sso`]), and the ticket hand-off that ends every successful login
//! ([`handoff`]). Flows never render: the router turns a step into a page, a redirect, a ticket
//! hand-off or a typed outcome (docs/http-contract.md §1–§3).

pub mod admin_sso;
pub mod browser;
pub mod handoff;
pub mod inapp;
pub mod qr;

pub use handoff::redeem_ticket;

use crate::dingtalk::{contacts, Client, Problem};
use crate::directory::mirror;
use crate::env::Env;
use crate::failure::Failure;
use crate::kv::{self, Slot};
use crate::model::{CorpOption, Identity};
use crate::settings::{CorpApp, Edition, Settings};

/// Length in bytes of every random id a login flow issues (binding nonces, JSAPI page nonces).
pub(crate) const ID_BYTES: usize = 24;

/// Where a login flow ended; the router renders it.
#[derive(Debug, Clone, PartialEq)]
pub enum LoginStep {
    /// The person is signed in: hand the identity off (ticket and redirect, or typed outcome).
    /// The slot is the one the code exchange took from the budget; the ticket goes there.
    SignedIn(Box<Identity>, Slot),
    /// R1/R2 without a code: the page that asks DingTalk's JSAPI for an auth code.
    JsapiPage {
        /// The corp to ask the code for.
        corp_id: String,
        /// The app's AppKey (the JSAPI's `clientId`).
        client_id: String,
        /// The `set-cookie` value binding the coming code exchange to this browser.
        set_cookie: String,
        /// A code came back without this browser's cookie: the page asks again, once.
        retry: bool,
    },
    /// R5: off to DingTalk's login page, with a cookie binding the state to this browser.
    ToDingTalk {
        /// DingTalk's login page with client id, redirect URI and state.
        location: String,
        /// The `set-cookie` value binding the login to this browser.
        set_cookie: String,
    },
    /// R5 in the commercial edition without `corpId`: the organisations to pick from, each a
    /// link to `/dingding/login?corpId=C` (a QR login goes through the picked corp's own app).
    PickCorp {
        /// The organisations served: the configured one first, then the bound ones.
        options: Vec<CorpOption>,
        /// `return_to`, carried into each link.
        return_to: Option<String>,
    },
}

/// What every login flow returns.
pub type LoginResult = Result<LoginStep, Failure>;

/// Counts one code exchange against this minute's budget (`login_code_budget_per_minute`, an
/// atomic increment shared by every instance); 429 past it. The increment allocates the
/// [`Slot`] where a successful login's ticket is stored, so the budget costs the login no
/// write of its own: one `increment` in all.
pub(crate) fn spend_code_budget(env: &mut dyn Env, settings: &Settings) -> Result<Slot, Failure> {
    let slot = kv::allocate(env)?;
    if slot.n > u64::from(settings.login_code_budget_per_minute) {
        return Err(Failure::new(
            429,
            "login_busy",
            "Too many DingTalk sign-ins are being attempted right now. Wait a minute and try again.",
            "当前钉钉登录请求过多，请稍候一分钟再试。",
        ));
    }
    Ok(slot)
}

/// A ticket's id, handed to the platform: where its record lives (a [`Slot`], so it needs no
/// registry entry) and a 128-bit random secret only the holder knows (the record is sealed
/// under a key derived from it, src/login/handoff.rs). 48 hex digits: bucket (8), slot number (8), secret (32).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SlotId {
    /// Where the record lives.
    pub slot: Slot,
    /// The holder's secret; the record is sealed under a key derived from it.
    pub secret: [u8; 16],
}

impl std::fmt::Debug for SlotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotId")
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

impl SlotId {
    /// A fresh id for `slot`.
    pub fn new(env: &mut dyn Env, slot: Slot) -> SlotId {
        let mut secret = [0u8; 16];
        env.random_bytes(&mut secret);
        SlotId { slot, secret }
    }

    /// The id as handed out.
    pub fn text(&self) -> String {
        let mut out = format!("{:08x}{:08x}", self.slot.bucket, self.slot.n);
        for b in self.secret {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// Reads an id; `None` for anything this plugin did not format.
    pub fn parse(text: &str) -> Option<SlotId> {
        if !is_token_shaped(text) || !text.is_char_boundary(16) {
            return None;
        }
        let bucket = u64::from_str_radix(&text[..8], 16).ok()?;
        let n = u64::from_str_radix(&text[8..16], 16).ok()?;
        if n == 0 {
            return None;
        }
        let mut secret = [0u8; 16];
        for (i, b) in secret.iter_mut().enumerate() {
            *b = u8::from_str_radix(text.get(16 + 2 * i..18 + 2 * i)?, 16).ok()?;
        }
        Some(SlotId {
            slot: Slot { bucket, n },
            secret,
        })
    }
}

/// The bound corps to pick from on R5, as [`CorpOption`]s.
pub(crate) fn corp_options(apps: &[CorpApp]) -> Vec<CorpOption> {
    apps.iter()
        .map(|a| CorpOption {
            corp_id: a.corp_id.clone(),
            corp_name: a.corp_name.clone(),
        })
        .collect()
}

/// Whether `s` has the shape of an id this plugin issues (48 hex digits).
pub(crate) fn is_token_shaped(s: &str) -> bool {
    s.len() == ID_BYTES * 2 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks a DingTalk one-time code as it may appear in a URL.
pub(crate) fn check_code(code: &str, en: &str, zh: &str) -> Result<(), Failure> {
    let ok = !code.is_empty()
        && code.len() <= 256
        && code.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'=' | b'+' | b'/')
        });
    if ok {
        Ok(())
    } else {
        Err(Failure::bad_request("code_malformed", en, zh))
    }
}

/// Keeps `return_to` only when it is a same-origin relative path.
pub fn safe_return_to(value: Option<String>) -> Option<String> {
    let v = value?;
    let ok = v.starts_with('/')
        && !v.starts_with("//")
        && !v.starts_with("/\\")
        && v.len() <= 1024
        && !v.chars().any(|c| c.is_control() || c == '\\');
    ok.then_some(v)
}

/// The failure for a workbench or admin URL without `corpId`.
pub(crate) fn corp_param_failure() -> Failure {
    Failure::bad_request(
        "corp_missing",
        "The address has no corpId. Open the app from the DingTalk workbench; the home page URL in the developer console must end with corpId=$CORPID$ (set-up step 5).",
        "地址中缺少 corpId。请从钉钉工作台打开应用；开发者后台中的应用首页地址须以 corpId=$CORPID$ 结尾（步骤 5）。",
    )
}

/// The key recording that the platform completed a first-time binding of this member.
fn known_binding_key(corp_id: &str, userid: &str) -> String {
    format!("bound:{corp_id}:{userid}")
}

/// Records that the platform completed a first-time binding (after its SMS verification).
pub fn confirm_binding(env: &mut dyn Env, corp_id: &str, userid: &str) -> Result<(), Failure> {
    env.kv_set(&known_binding_key(corp_id, userid), b"1")?;
    Ok(())
}

/// The commercial edition's first-time binding rule, applied on every login path (QR, in-app,
/// admin SSO): a member of a bound corp other than the configured one who has not been bound
/// before needs SMS verification by the platform. Returns whether the identity must carry
/// `requires_sms_binding`; 403 when SMS is not set up.
pub(crate) fn first_binding_rule(
    env: &mut dyn Env,
    settings: &Settings,
    app: &CorpApp,
    userid: &str,
) -> Result<bool, Failure> {
    if settings.edition != Edition::Commercial || app.corp_id == settings.corp.corp_id {
        return Ok(false);
    }
    if env
        .kv_get(&known_binding_key(&app.corp_id, userid))?
        .is_some()
    {
        return Ok(false);
    }
    if !settings.sms_enabled {
        return Err(Failure::new(
            403,
            "sms_required",
            "Binding a DingTalk account of this organisation for the first time needs SMS verification, which is not set up. The platform admin must configure SMS (短信设置) and switch on sms_enabled.",
            "首次绑定该组织的钉钉账号需要短信验证，但平台尚未配置短信。请平台管理员完成【短信设置】并开启 sms_enabled。",
        ));
    }
    Ok(true)
}

/// Completes `identity` from the member's own-org record: the directory mirror when it holds
/// the member (no DingTalk call), else `topapi/v2/user/get`, whose answer is mirrored for the
/// next login. Both go through [`mirror::fill_identity`], so the identity is the same either
/// way. Only the org's own record is trusted (never the cross-org account profile). A missing
/// permission degrades the identity (no departments) instead of failing the login.
pub(crate) fn complete_profile(
    client: &mut Client<'_>,
    identity: &mut Identity,
) -> Result<(), Failure> {
    let corp_id = client.app().corp_id.clone();
    match mirror::load(client.env(), &corp_id, &identity.userid) {
        Ok(Some(member)) => {
            mirror::fill_identity(identity, &member);
            settle_admin_level(identity);
            return Ok(());
        }
        Ok(None) => {}
        Err(_) => client
            .env()
            .log("directory mirror unreadable: reading the member from DingTalk"),
    }
    let mut record = match contacts::user_get(client, &identity.userid) {
        Ok(record) => record,
        Err(e)
            if matches!(
                e.problem(),
                Problem::MissingPermission | Problem::OutOfScope
            ) =>
        {
            client.env().log(
                "user detail skipped: the app lacks qyapi_get_member; identity has no departments",
            );
            return Ok(());
        }
        Err(e) => return Err(e.to_failure("qyapi_get_member")),
    };
    if record.userid.is_none() {
        record.userid = Some(identity.userid.clone());
    }
    let Some(member) = record
        .to_member(&corp_id)
        .filter(|m| m.userid == identity.userid)
    else {
        return Ok(());
    };
    if mirror::store(client.env(), &member).is_err() {
        client
            .env()
            .log("directory mirror not updated: the next login reads DingTalk again");
    }
    mirror::fill_identity(identity, &member);
    settle_admin_level(identity);
    Ok(())
}

/// An admin whose level DingTalk did not say (the member record has `admin` and `boss`, not
/// main vs sub-admin) is level 1; a level DingTalk did say (`sys_level`) is kept.
fn settle_admin_level(identity: &mut Identity) {
    if identity.is_admin && identity.admin_level == 0 {
        identity.admin_level = 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_must_be_same_origin_path() {
        assert_eq!(
            safe_return_to(Some("/forms/1?x=2".into())).as_deref(),
            Some("/forms/1?x=2")
        );
        for bad in [
            "//evil.com",
            "https://evil.com",
            "/\\evil.com",
            "evil",
            "/a\nb",
            "/a\\b",
            "",
        ] {
            assert_eq!(safe_return_to(Some(bad.into())), None, "{bad}");
        }
    }

    #[test]
    fn code_exchanges_have_a_budget_per_minute_at_one_write_each() {
        use crate::settings::tests::sample;
        let mut env = crate::testing::FakeEnv::new();
        let mut s = sample();
        s.login_code_budget_per_minute = 50;
        env.now = 60_000 * 1_000_000 + 5_000;
        for i in 1..=50 {
            let slot = spend_code_budget(&mut env, &s).expect("within the budget");
            assert_eq!(slot.n, i);
        }
        assert_eq!(
            env.kv_writes(),
            50,
            "one increment per exchange, nothing else"
        );
        let over = spend_code_budget(&mut env, &s).unwrap_err();
        assert_eq!((over.status, over.code.as_str()), (429, "login_busy"));
        env.now += 60_000;
        assert!(
            spend_code_budget(&mut env, &s).is_ok(),
            "a new minute, a new budget"
        );
    }

    #[test]
    fn every_code_route_spends_the_budget_before_calling_dingtalk() {
        use crate::settings::tests::sample;
        let mut env = crate::testing::FakeEnv::new();
        env.answer("/v1.0/oauth2/ssoUserInfo", serde_json::json!({}));
        let s = sample();
        for _ in 0..s.login_code_budget_per_minute {
            spend_code_budget(&mut env, &s).unwrap();
        }
        let r = admin_sso::sign_in(
            &mut env,
            &s,
            admin_sso::AdminSsoRequest {
                corp_id: Some("dingcorp123".into()),
                code: Some("junkcode".into()),
                return_to: None,
            },
        );
        assert_eq!(r.unwrap_err().status, 429);
        let cookie = browser::issue(
            &mut env,
            &s.corp.app_secret,
            browser::Purpose::Inapp,
            "dingcorp123",
            60_000,
        );
        let r = inapp::sign_in(
            &mut env,
            &s,
            inapp::InappRequest {
                corp_id: Some("dingcorp123".into()),
                code: Some("junkcode".into()),
                return_to: None,
                page_cookie: Some(cookie),
            },
            crate::model::Via::InappMobile,
        );
        assert_eq!(r.unwrap_err().status, 429);
        assert!(
            env.requests.is_empty(),
            "no DingTalk call: {:?}",
            env.paths()
        );
    }

    #[test]
    fn slot_ids_round_trip_and_refuse_anything_else() {
        let mut env = crate::testing::FakeEnv::new();
        let slot = kv::allocate(&mut env).unwrap();
        let id = SlotId::new(&mut env, slot);
        let text = id.text();
        assert_eq!(text.len(), 48);
        let back = SlotId::parse(&text).unwrap();
        assert_eq!(back, id);
        for bad in [
            "",
            "zz",
            &"g".repeat(48),
            &format!("{}00000000{}", &text[..8], &text[16..]),
        ] {
            assert!(SlotId::parse(bad).is_none(), "{bad}");
        }
        assert!(
            !format!("{id:?}").contains(&text[16..]),
            "Debug hides the secret"
        );
    }

    #[test]
    fn codes_are_checked_for_url_shape() {
        assert!(check_code("abc-DEF_1.2~=+/", "", "").is_ok());
        for bad in ["", "a b", "a&b", "<x>"] {
            assert_eq!(
                check_code(bad, "e", "z").unwrap_err().code,
                "code_malformed"
            );
        }
        assert!(check_code(&"a".repeat(257), "", "").is_err());
    }
}
