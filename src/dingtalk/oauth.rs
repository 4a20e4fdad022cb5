//! Tokens and identities from DingTalk's OAuth endpoints (new API family).
//!
//! The app token and the SSO token share one cache ([`TokenSlot`]): the key-value entry
//! `tok:{kind}:{owner}` → `{t, exp}`, refreshed [`EARLY_REFRESH_MS`] before it expires, fetched
//! by one instance at a time (the others use the still-valid token or wait briefly), and dropped
//! only when DingTalk says the token is invalid (never on a permission error).
//! User tokens (QR login) are single-use and not cached.

use super::client::decode_new;
use super::error::{ApiError, Problem};
use super::records::{as_bool, as_text};
use super::{encode, Client};
use crate::kv;
use crate::secret::{AccessToken, SsoSecret};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Refresh a cached token this long before it expires (the calling guide says ~10 minutes).
pub const EARLY_REFRESH_MS: u64 = 10 * 60 * 1000;
/// How long a loser of the refresh race waits for the winner's token.
const TOKEN_WAIT_MS: u64 = 3_000;
/// Fetch locks are removed by the sweep after this long (far longer than a fetch, and than any
/// plausible clock skew of the sweeping instance).
const LOCK_KEEP_MS: u64 = 24 * 3600 * 1000;
/// Longest token lifetime believed, whatever DingTalk says.
const MAX_EXPIRE_S: u64 = 7 * 24 * 3600;

/// The stored form of a cached token: the token and its expiry (Unix ms).
#[derive(Serialize, Deserialize)]
struct CachedToken {
    t: String,
    exp: u64,
}

/// Where one cached token lives in the key-value store: the token entry, the generation counter
/// (bumped whenever the token is found invalid), the refresh round counter (bumped when a fetch
/// is over) and the prefix of the fetch lock (one per generation and round).
struct TokenSlot {
    key: String,
    generation: String,
    round: String,
    lock: String,
}

impl TokenSlot {
    /// The app token of `app_key`: `tok:app:{app_key}`.
    fn app(app_key: &str) -> Self {
        TokenSlot {
            key: format!("tok:app:{app_key}"),
            generation: format!("tokgen:{app_key}"),
            round: format!("tokround:{app_key}"),
            lock: format!("lock:tok:{app_key}"),
        }
    }

    /// The SSO token of `corp_id`: `tok:sso:{corp_id}`.
    fn sso(corp_id: &str) -> Self {
        TokenSlot {
            key: format!("tok:sso:{corp_id}"),
            generation: format!("tokgen:sso:{corp_id}"),
            round: format!("tokround:sso:{corp_id}"),
            lock: format!("lock:tok:sso:{corp_id}"),
        }
    }

    /// The cached token, or a fresh one from `fetch` (stored), with early refresh and one
    /// fetch at a time across every instance.
    fn get(
        &self,
        client: &mut Client<'_>,
        fetch: impl FnOnce(&mut Client<'_>) -> Result<(String, u64), ApiError>,
    ) -> Result<AccessToken, ApiError> {
        let now = client.env().now_ms();
        let cached: Option<CachedToken> =
            kv::get_json(client.env(), &self.key).map_err(ApiError::Store)?;
        let mut still_valid = None;
        if let Some(c) = cached {
            if c.exp > now + EARLY_REFRESH_MS {
                return Ok(AccessToken::new(c.t));
            }
            if c.exp > now + 5_000 {
                still_valid = Some(c.t);
            }
        }
        // One fetch at a time across every instance, whatever their clocks say: the fetch lock
        // is claimed per refresh *round* (a counter the winner bumps when it is done), never per
        // wall-clock slot, so instances with skewed clocks still contend for the same lock. A
        // loser uses the still-valid token, or waits (on its own clock) for the winner's token
        // and, when none comes, moves to the next round and fetches itself (the winner died).
        // The generation changes whenever a token is found invalid, so a refresh after a token
        // error never waits on the lock of the fetch that produced the bad token.
        let generation = client
            .env()
            .kv_increment(&self.generation, 0)
            .map_err(ApiError::Store)?;
        let round = client
            .env()
            .kv_increment(&self.round, 0)
            .map_err(ApiError::Store)?;
        let lock = format!("{}:{generation}:{round}", self.lock);
        let won = kv::claim(client.env(), &lock, now + LOCK_KEEP_MS).map_err(ApiError::Store)?;
        if won {
            // A winner of a new round may have read the cache just before the previous round's
            // token was stored.
            let fresh: Option<CachedToken> =
                kv::get_json(client.env(), &self.key).map_err(ApiError::Store)?;
            let result = match fresh {
                Some(c) if c.exp > client.env().now_ms() + EARLY_REFRESH_MS => {
                    Ok(AccessToken::new(c.t))
                }
                _ => self.fetch(client, fetch),
            };
            // Release: the next refresh (or a retry after a failure) uses a new round.
            if client.env().kv_increment(&self.round, 1).is_err() {
                client
                    .env()
                    .log("token: could not release the refresh lock; the next refresh waits 3 s");
            }
            return result;
        }
        if let Some(t) = still_valid {
            return Ok(AccessToken::new(t));
        }
        let started = client.env().now_ms();
        while client.env().now_ms().saturating_sub(started) < TOKEN_WAIT_MS {
            client.env().sleep_ms(100);
            let fresh: Option<CachedToken> =
                kv::get_json(client.env(), &self.key).map_err(ApiError::Store)?;
            if let Some(c) = fresh {
                if c.exp > client.env().now_ms() + EARLY_REFRESH_MS {
                    return Ok(AccessToken::new(c.t));
                }
            }
        }
        // The winner vanished: take the lock over (the next round) so that later refreshes do
        // not wait for it either.
        client
            .env()
            .kv_increment(&self.round, 1)
            .map_err(ApiError::Store)?;
        self.fetch(client, fetch)
    }

    /// Fetches a token now with `fetch` (token, lifetime in seconds) and stores it.
    fn fetch(
        &self,
        client: &mut Client<'_>,
        fetch: impl FnOnce(&mut Client<'_>) -> Result<(String, u64), ApiError>,
    ) -> Result<AccessToken, ApiError> {
        let (token, expire_in) = fetch(client)?;
        let exp = client.env().now_ms() + expire_in.clamp(60, MAX_EXPIRE_S) * 1000;
        let entry = CachedToken {
            t: token.clone(),
            exp,
        };
        kv::put_json(client.env(), &self.key, &entry).map_err(ApiError::Store)?;
        Ok(AccessToken::new(token))
    }

    /// Drops the cached token if it is still the one that failed, and moves to a new generation.
    fn forget(&self, client: &mut Client<'_>, failed: &AccessToken) -> Result<(), ApiError> {
        let cached: Option<CachedToken> =
            kv::get_json(client.env(), &self.key).map_err(ApiError::Store)?;
        if cached.is_some_and(|c| failed.matches(&c.t)) {
            client.env().kv_delete(&self.key).map_err(ApiError::Store)?;
            client
                .env()
                .kv_increment(&self.generation, 1)
                .map_err(ApiError::Store)?;
        }
        Ok(())
    }
}

/// `accessToken` and `expireIn` (seconds, `default_expire` when absent) of a token answer.
/// The token and its lifetime from a token answer: `accessToken`/`expireIn` (most endpoints) or
/// `access_token`/`expires_in` (`oauth2/{corpId}/token`, docs/dingtalk-api.md §1.3).
fn token_of(value: &Value, default_expire: u64) -> Result<(String, u64), ApiError> {
    let token = value
        .get("accessToken")
        .or_else(|| value.get("access_token"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Parse("accessToken"))?
        .to_string();
    let expire_in = value
        .get("expireIn")
        .or_else(|| value.get("expires_in"))
        .and_then(Value::as_u64)
        .unwrap_or(default_expire);
    Ok((token, expire_in))
}

/// `POST /v1.0/oauth2/accessToken` {appKey, appSecret}: one attempt, no throttling retry.
fn request_app_token(client: &mut Client<'_>) -> Result<(String, u64), ApiError> {
    let url = format!("{}/v1.0/oauth2/accessToken", client.endpoints().api);
    let app = client.app();
    let body = json!({"appKey": app.app_key, "appSecret": app.app_secret.expose()});
    let request = client.request("POST", url, Some(&body));
    let response = client.send(request)?;
    token_of(&decode_new(&response)?, 7200)
}

/// `POST /v1.0/oauth2/ssoAccessToken` {corpid, ssoSecret} for the client's corp.
fn request_sso_token(
    client: &mut Client<'_>,
    sso_secret: &SsoSecret,
) -> Result<(String, u64), ApiError> {
    let body = json!({"corpid": client.app().corp_id, "ssoSecret": sso_secret.expose()});
    let value = client.api_call_with("POST", "/v1.0/oauth2/ssoAccessToken", None, Some(&body))?;
    token_of(&value, 3600)
}

/// The app access token of the client's app (`POST /v1.0/oauth2/accessToken`), from the shared
/// cache `tok:app:{appKey}`.
pub fn app_token(client: &mut Client<'_>) -> Result<AccessToken, ApiError> {
    let slot = TokenSlot::app(&client.app().app_key);
    slot.get(client, request_app_token)
}

/// A new app token fetched now, bypassing the cache (and stored in it): proves AppKey and
/// AppSecret (set-up check, binding a corp).
pub fn fresh_app_token(client: &mut Client<'_>) -> Result<AccessToken, ApiError> {
    let slot = TokenSlot::app(&client.app().app_key);
    slot.fetch(client, request_app_token)
}

/// Drops the cached app token `failed` after DingTalk called it invalid.
pub(super) fn forget_app_token(
    client: &mut Client<'_>,
    failed: &AccessToken,
) -> Result<(), ApiError> {
    TokenSlot::app(&client.app().app_key).forget(client, failed)
}

/// The SSO access token of the client's corp (`POST /v1.0/oauth2/ssoAccessToken` with
/// `{corpid, ssoSecret}`), from the shared cache `tok:sso:{corpId}`. For the admin-backend
/// sign-in (R3); see [`sso_user_info`].
pub fn sso_token(client: &mut Client<'_>, sso_secret: &SsoSecret) -> Result<AccessToken, ApiError> {
    let slot = TokenSlot::sso(&client.app().corp_id);
    slot.get(client, |c| request_sso_token(c, sso_secret))
}

/// A new SSO token fetched now, bypassing the cache (and stored in it): proves the SSOsecret
/// (set-up check, binding a corp).
pub fn fresh_sso_token(
    client: &mut Client<'_>,
    sso_secret: &SsoSecret,
) -> Result<AccessToken, ApiError> {
    let slot = TokenSlot::sso(&client.app().corp_id);
    slot.fetch(client, |c| request_sso_token(c, sso_secret))
}

/// A person's user access token from a QR / browser login code
/// (`POST /v1.0/oauth2/userAccessToken` with `{clientId, clientSecret, code, grantType:
/// "authorization_code"}`, the client's app credentials). Single-use, not cached.
pub fn user_token(client: &mut Client<'_>, code: &str) -> Result<AccessToken, ApiError> {
    let app = client.app();
    let body = json!({
        "clientId": app.app_key,
        "clientSecret": app.app_secret.expose(),
        "code": code,
        "grantType": "authorization_code",
    });
    let value = client.api_call_with("POST", "/v1.0/oauth2/userAccessToken", None, Some(&body))?;
    token_of(&value, 7200).map(|(t, _)| AccessToken::new(t))
}

/// The signed-in person as `GET /v1.0/contact/users/me` describes them (user token).
/// Only `union_id` is trusted for identity; the rest is what the person shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    /// unionId, the same in every corp of one app developer.
    pub union_id: String,
    /// Nickname.
    pub nick: Option<String>,
    /// Avatar URL.
    pub avatar_url: Option<String>,
    /// Mobile, when shared.
    pub mobile: Option<String>,
    /// Email, when shared.
    pub email: Option<String>,
    /// openId for this app.
    pub open_id: Option<String>,
}

/// `GET /v1.0/contact/users/me` with a user token from [`user_token`]; `unionId` is required.
pub fn me(client: &mut Client<'_>, user_token: &AccessToken) -> Result<Me, ApiError> {
    let v = client.api_call_with("GET", "/v1.0/contact/users/me", Some(user_token), None)?;
    let s = |k: &str| v.get(k).and_then(as_text);
    Ok(Me {
        union_id: v
            .get("unionId")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .ok_or(ApiError::Parse("unionId"))?
            .to_string(),
        nick: s("nick"),
        avatar_url: s("avatarUrl"),
        mobile: s("mobile"),
        email: s("email"),
        open_id: s("openId"),
    })
}

/// An administrator as `GET /v1.0/oauth2/ssoUserInfo` describes them (admin backend, R3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoUser {
    /// The corp DingTalk says the admin signed in to (`corpId`), when it says.
    pub corp_id: Option<String>,
    /// userid in that corp.
    pub userid: String,
    /// Name (`userName`).
    pub name: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Avatar URL.
    pub avatar: Option<String>,
    /// Whether DingTalk calls the person an admin (`isAdmin`; absent = false).
    pub is_admin: bool,
}

/// `GET /v1.0/oauth2/ssoUserInfo?code=…` with the corp's SSO token ([`sso_token`]); on a token
/// error the cached SSO token is dropped and the call retried once with a fresh one.
pub fn sso_user_info(
    client: &mut Client<'_>,
    sso_secret: &SsoSecret,
    code: &str,
) -> Result<SsoUser, ApiError> {
    let path = format!("/v1.0/oauth2/ssoUserInfo?code={}", encode(code));
    let mut retried = false;
    let info = loop {
        let token = sso_token(client, sso_secret)?;
        match client.api_call_with("GET", &path, Some(&token), None) {
            Ok(v) => break v,
            Err(e) if e.problem() == Problem::TokenInvalid && !retried => {
                retried = true;
                TokenSlot::sso(&client.app().corp_id).forget(client, &token)?;
            }
            Err(e) => return Err(e),
        }
    };
    let s = |k: &str| info.get(k).and_then(as_text);
    Ok(SsoUser {
        corp_id: s("corpId"),
        userid: s("userId").ok_or(ApiError::Parse("userId"))?,
        name: s("userName"),
        email: s("email"),
        avatar: s("avatar"),
        is_admin: info.get("isAdmin").and_then(as_bool).unwrap_or(false),
    })
}

/// A corp access token for a third-party (ISV) app: `POST /v1.0/oauth2/{corpId}/token` with
/// `{client_id, client_secret, grant_type: "client_credentials"}` and the client's app
/// credentials. Not cached.
pub fn corp_token(client: &mut Client<'_>, corp_id: &str) -> Result<AccessToken, ApiError> {
    let app = client.app();
    let body = json!({
        "client_id": app.app_key,
        "client_secret": app.app_secret.expose(),
        "grant_type": "client_credentials",
    });
    let path = format!("/v1.0/oauth2/{}/token", encode(corp_id));
    let value = client.api_call_with("POST", &path, None, Some(&body))?;
    token_of(&value, 7200).map(|(t, _)| AccessToken::new(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dingtalk::Endpoints;
    use crate::settings::tests::sample;
    use crate::testing::{body_of, json_response, FakeEnv};

    const SSO_TOKEN: &str = "/v1.0/oauth2/ssoAccessToken";
    const SSO_INFO: &str = "/v1.0/oauth2/ssoUserInfo";

    #[test]
    fn sso_token_is_cached_per_corp_and_refreshed_on_token_errors_only() {
        let s = sample();
        let ep = Endpoints::from_settings(&s);
        let secret = SsoSecret::new("sso-secret-value");
        let mut env = FakeEnv::new();
        let mut n = 0;
        env.route(SSO_TOKEN, move |r| {
            n += 1;
            assert_eq!(
                body_of(r),
                json!({"corpid": "dingcorp123", "ssoSecret": "sso-secret-value"})
            );
            json_response(
                200,
                &format!(r#"{{"accessToken":"sso{n}","expireIn":7200}}"#),
            )
        });
        env.route(SSO_INFO, |r| {
            let token = r
                .headers
                .iter()
                .find(|h| h.0 == "x-acs-dingtalk-access-token")
                .map(|h| h.1.clone());
            if token.as_deref() == Some("sso1") {
                json_response(401, r#"{"code":"InvalidAuthentication","message":"token invalid"}"#)
            } else {
                json_response(
                    200,
                    r#"{"corpId":"dingcorp123","userId":"admin1","userName":" 管理员 ","isAdmin":true}"#,
                )
            }
        });
        let user = {
            let mut client = Client::new(&mut env, &ep, &s.corp);
            sso_user_info(&mut client, &secret, "c/1").unwrap()
        };
        assert_eq!(
            user,
            SsoUser {
                corp_id: Some("dingcorp123".into()),
                userid: "admin1".into(),
                name: Some("管理员".into()),
                email: None,
                avatar: None,
                is_admin: true,
            }
        );
        assert_eq!(
            env.calls_to(SSO_TOKEN),
            2,
            "one refresh after the token error"
        );
        assert!(env.requests[1]
            .url
            .ends_with("/v1.0/oauth2/ssoUserInfo?code=c%2F1"));
        let mut client = Client::new(&mut env, &ep, &s.corp);
        sso_user_info(&mut client, &secret, "c2").unwrap();
        assert_eq!(env.calls_to(SSO_TOKEN), 2, "the cached token is reused");
        assert!(env.kv.contains_key("tok:sso:dingcorp123"));
    }

    #[test]
    fn user_token_and_me() {
        let s = sample();
        let ep = Endpoints::from_settings(&s);
        let mut env = FakeEnv::new();
        env.answer(
            "/v1.0/oauth2/userAccessToken",
            json!({"accessToken": "user-tok", "expireIn": 7200}),
        );
        env.answer(
            "/v1.0/contact/users/me",
            json!({"unionId": "un1", "nick": "Z"}),
        );
        let mut client = Client::new(&mut env, &ep, &s.corp);
        let token = user_token(&mut client, "code1").unwrap();
        let person = me(&mut client, &token).unwrap();
        assert_eq!(
            (person.union_id.as_str(), person.nick.as_deref()),
            ("un1", Some("Z"))
        );
        assert_eq!(
            body_of(&env.requests[0]),
            json!({"clientId": "dingappkey123", "clientSecret": s.corp.app_secret.expose(),
                "code": "code1", "grantType": "authorization_code"})
        );
        assert!(env.requests[1]
            .headers
            .contains(&("x-acs-dingtalk-access-token".into(), "user-tok".into())));
        env.answer("/v1.0/contact/users/me", json!({"nick": "Z"}));
        let mut client = Client::new(&mut env, &ep, &s.corp);
        assert!(matches!(
            me(&mut client, &AccessToken::new("t")),
            Err(ApiError::Parse("unionId"))
        ));
    }

    /// Another instance on the same store: its own clock, and `on_sleep` standing for what the
    /// other instances do while it sleeps.
    struct Instance<'a> {
        inner: &'a mut FakeEnv,
        offset: i64,
        on_sleep: Box<dyn FnMut(&mut FakeEnv) + 'a>,
    }

    impl crate::env::Env for Instance<'_> {
        fn now_ms(&self) -> u64 {
            self.inner.now.saturating_add_signed(self.offset)
        }
        fn random_bytes(&mut self, buf: &mut [u8]) {
            self.inner.random_bytes(buf)
        }
        fn http(
            &mut self,
            request: crate::env::HttpRequest,
        ) -> Result<crate::env::HttpResponse, crate::env::TransportError> {
            self.inner.http(request)
        }
        fn sleep_ms(&mut self, ms: u64) {
            self.inner.sleep_ms(ms);
            (self.on_sleep)(self.inner);
        }
        fn kv_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, crate::env::KvError> {
            self.inner.kv_get(key)
        }
        fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), crate::env::KvError> {
            self.inner.kv_set(key, value)
        }
        fn kv_delete(&mut self, key: &str) -> Result<(), crate::env::KvError> {
            self.inner.kv_delete(key)
        }
        fn kv_increment(&mut self, key: &str, delta: i64) -> Result<i64, crate::env::KvError> {
            self.inner.kv_increment(key, delta)
        }
        fn log(&mut self, line: &str) {
            self.inner.log(line)
        }
    }

    /// Instance A wins the refresh lock of the app token as `TokenSlot::get` would, and is now
    /// fetching.
    fn a_holds_the_refresh_lock(env: &mut FakeEnv) {
        let slot = TokenSlot::app("dingappkey123");
        let generation = env.kv_increment(&slot.generation, 0).unwrap();
        let round = env.kv_increment(&slot.round, 0).unwrap();
        let now = env.now;
        assert!(kv::claim(
            env,
            &format!("{}:{generation}:{round}", slot.lock),
            now + 120_000
        )
        .unwrap());
    }

    use crate::env::Env as _;

    #[test]
    fn a_skewed_clock_does_not_fetch_the_token_while_another_instance_fetches_it() {
        let s = sample();
        let ep = Endpoints::from_settings(&s);
        for offset in [10 * 60_000, -10 * 60_000, 90_000] {
            let mut env = FakeEnv::new();
            env.answer("/v1.0/none", json!({}));
            a_holds_the_refresh_lock(&mut env);
            // A's fetch lands 300 ms later.
            let mut slept = 0;
            let a_stored_at = env.now;
            let mut b = Instance {
                inner: &mut env,
                offset,
                on_sleep: Box::new(move |e: &mut FakeEnv| {
                    slept += 100;
                    if slept == 300 {
                        let entry = CachedToken {
                            t: "from-a".into(),
                            exp: a_stored_at + 7_200_000,
                        };
                        kv::put_json(e, "tok:app:dingappkey123", &entry).unwrap();
                    }
                }),
            };
            let token = {
                let mut client = Client::new(&mut b, &ep, &s.corp);
                app_token(&mut client).unwrap()
            };
            drop(b);
            assert!(token.matches("from-a"), "offset {offset}");
            assert_eq!(
                env.calls_to(crate::testing::TOKEN_PATH),
                0,
                "B fetched while A held the lock (offset {offset})"
            );
        }
    }

    #[test]
    fn a_refresh_lock_whose_holder_died_is_taken_over_after_the_local_wait() {
        let s = sample();
        let ep = Endpoints::from_settings(&s);
        for offset in [0, 10 * 60_000, -10 * 60_000] {
            let mut env = FakeEnv::new();
            env.answer("/v1.0/none", json!({}));
            a_holds_the_refresh_lock(&mut env);
            let started = env.now;
            let token = {
                let mut b = Instance {
                    inner: &mut env,
                    offset,
                    on_sleep: Box::new(|_: &mut FakeEnv| {}),
                };
                let mut client = Client::new(&mut b, &ep, &s.corp);
                app_token(&mut client).unwrap()
            };
            assert!(token.matches("tok1"));
            assert_eq!(env.calls_to(crate::testing::TOKEN_PATH), 1);
            let waited = env.now - started;
            assert!(
                (TOKEN_WAIT_MS..TOKEN_WAIT_MS + 500).contains(&waited),
                "{waited}"
            );
            // The lock moved on: the next refresh (token found invalid later) does not wait.
            env.kv.remove("tok:app:dingappkey123");
            let before = env.now;
            let mut client = Client::new(&mut env, &ep, &s.corp);
            app_token(&mut client).unwrap();
            assert_eq!(env.now, before, "the next refresh waited for a dead lock");
        }
    }
}
