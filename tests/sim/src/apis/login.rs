//! In-app login (doc §2), QR / browser login (§3) and admin-console SSO (§4).

use serde_json::json;

use super::token::invalid_client;
use super::{body_json_only, body_object, get_str, ApiError, ApiResult, Ctx};
use crate::control::perms;
use crate::org::User;
use crate::state::{State, TokenKind};

fn not_found_user() -> ApiError {
    ApiError::Old(60121, "找不到该用户".into())
}

fn device_id(userid: &str) -> String {
    let mut h: u64 = 0x9e3779b97f4a7c15;
    for b in userid.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// `POST /topapi/v2/user/getuserinfo {code}`.
pub(super) fn getuserinfo(st: &mut State, ctx: &Ctx) -> ApiResult {
    let corp = ctx.corp()?;
    let body = body_object(ctx.req)?;
    let code = get_str(&body, "code")?.unwrap_or_default();
    if code.is_empty() {
        return Err(ApiError::BadParam("code".into()));
    }
    let rec = State::take_code(&mut st.inapp_codes, &code, ctx.now)
        .filter(|r| r.corp == Some(corp))
        .ok_or_else(|| ApiError::Old(40078, "不存在的临时授权码".into()))?;
    let u = st.corps[corp]
        .org
        .user(&rec.subject)
        .cloned()
        .ok_or_else(not_found_user)?;
    Ok(json!({"result": {
        "userid": u.userid,
        "unionid": u.unionid,
        "name": u.name,
        "device_id": device_id(&u.userid),
        "sys": u.is_sys(),
        "sys_level": u.sys_level(),
        "associated_unionid": "",
    }}))
}

fn invalid_code() -> ApiError {
    ApiError::New(400, "invalidCode".into(), "不合法的临时授权码".into())
}

/// `POST /v1.0/oauth2/userAccessToken {clientId, clientSecret, code|refreshToken, grantType}`.
pub(super) fn user_access_token(st: &mut State, ctx: &Ctx) -> ApiResult {
    let body = body_json_only(ctx.req)?;
    let client_id = get_str(&body, "clientId")?.unwrap_or_default();
    let client_secret = get_str(&body, "clientSecret")?.unwrap_or_default();
    let grant = get_str(&body, "grantType")?.unwrap_or_default();
    for (name, v) in [
        ("clientId", &client_id),
        ("clientSecret", &client_secret),
        ("grantType", &grant),
    ] {
        if v.is_empty() {
            return Err(ApiError::BadParam(format!(
                "{name} is mandatory for this action."
            )));
        }
    }
    let app = match st.app_index.get(&client_id) {
        Some(i) if st.corps[*i].creds.app_secret == client_secret => *i,
        _ => return Err(invalid_client()),
    };
    let (unionid, user_corp) = match grant.as_str() {
        "authorization_code" => {
            let code = get_str(&body, "code")?.unwrap_or_default();
            if code.is_empty() {
                return Err(ApiError::BadParam(
                    "code is mandatory for this action.".into(),
                ));
            }
            let rec = State::take_code(&mut st.oauth_codes, &code, ctx.now)
                .filter(|r| r.client.is_none_or(|c| c == app))
                .ok_or_else(invalid_code)?;
            (rec.subject, rec.corp)
        }
        "refresh_token" => {
            let rt = get_str(&body, "refreshToken")?.unwrap_or_default();
            if rt.is_empty() {
                return Err(ApiError::BadParam(
                    "refreshToken is mandatory for this action.".into(),
                ));
            }
            let rec = st
                .refresh_tokens
                .remove(&rt)
                .filter(|r| r.expires_at > ctx.now && r.app_corp == app)
                .ok_or_else(|| {
                    ApiError::New(
                        400,
                        "invalidRefreshToken".into(),
                        "不合法的refreshToken".into(),
                    )
                })?;
            (rec.unionid, rec.user_corp)
        }
        _ => {
            return Err(ApiError::New(
                400,
                "invalidParameter.grantType".into(),
                "grantType must be authorization_code or refresh_token".into(),
            ))
        }
    };
    let (token, refresh, ttl) = st.user_token(app, user_corp, &unionid);
    let corp_id = st.corps[user_corp.unwrap_or(app)].creds.corp_id.clone();
    Ok(json!({
        "accessToken": token,
        "refreshToken": refresh,
        "expireIn": ttl,
        "corpId": corp_id,
    }))
}

fn find_person(st: &State, unionid: &str) -> Option<User> {
    // The person's DingTalk account outlives a membership: fall back to former members.
    st.corps
        .iter()
        .find_map(|c| c.org.user_by_unionid(unionid).cloned())
        .or_else(|| {
            st.corps.iter().find_map(|c| {
                c.org
                    .departed_users()
                    .find(|u| u.unionid == unionid)
                    .cloned()
            })
        })
}

/// `GET /v1.0/contact/users/{unionId}` with a user token (`me` = the token's person).
pub(super) fn users_me(st: &mut State, ctx: &Ctx) -> ApiResult {
    let corp = ctx.corp()?;
    let unionid = match ctx.token.as_ref().map(|t| &t.kind) {
        Some(TokenKind::User { unionid }) => unionid.clone(),
        _ => return Err(ApiError::BadToken),
    };
    let asked = ctx.param("unionId");
    if asked != "me" && asked != unionid {
        return Err(ApiError::New(
            403,
            "Forbidden.AccessDenied.AccessTokenPermissionDenied".into(),
            "a user token can only read its own profile (use me)".into(),
        ));
    }
    let u = find_person(st, &unionid).ok_or_else(|| {
        ApiError::New(
            404,
            "invalidParameter.user.notFound".into(),
            "用户不存在".into(),
        )
    })?;
    let email = st.account_email(&unionid, u.account_email.as_deref());
    let app_key = st.corps[corp].creds.app_key.clone();
    let mut out = json!({
        "nick": u.nick,
        "avatarUrl": u.avatar,
        "openId": format!("{:016x}", fnv(&format!("{app_key}/{unionid}"))),
        "unionId": u.unionid,
        "stateCode": u.state_code,
    });
    if st.corps[corp].perms.contains(perms::CONTACT_USER_MOBILE) {
        out["mobile"] = json!(u.account_mobile);
    }
    if let Some(e) = email {
        out["email"] = json!(e);
    }
    Ok(out)
}

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// `POST /topapi/user/getbyunionid {unionid}`.
pub(super) fn getbyunionid(st: &mut State, ctx: &Ctx) -> ApiResult {
    let corp = ctx.corp()?;
    let body = body_object(ctx.req)?;
    let unionid = get_str(&body, "unionid")?.unwrap_or_default();
    if unionid.is_empty() {
        return Err(ApiError::Old(400002, "无效的参数".into()));
    }
    let u = st.corps[corp]
        .org
        .user_by_unionid(&unionid)
        .ok_or_else(|| ApiError::Old(60121, "未找到对应员工".into()))?;
    Ok(json!({"result": {"contact_type": 0, "userid": u.userid}}))
}

/// `POST /v1.0/oauth2/ssoAccessToken {corpid, ssoSecret}`.
pub(super) fn sso_access_token(st: &mut State, ctx: &Ctx) -> ApiResult {
    let body = body_json_only(ctx.req)?;
    let corpid = get_str(&body, "corpid")?.unwrap_or_default();
    let secret = get_str(&body, "ssoSecret")?.unwrap_or_default();
    if corpid.is_empty() {
        return Err(ApiError::BadParam(
            "corpid is mandatory for this action.".into(),
        ));
    }
    if secret.is_empty() {
        return Err(ApiError::BadParam(
            "ssoSecret is mandatory for this action.".into(),
        ));
    }
    let idx = match st.corp_index.get(&corpid) {
        Some(i) if st.corps[*i].creds.sso_secret == secret => *i,
        _ => {
            return Err(ApiError::New(
                400,
                "invalidClientIdOrSecret".into(),
                "无效的corpid或者ssoSecret".into(),
            ))
        }
    };
    let (token, ttl) = st.sso_token(idx);
    Ok(json!({"accessToken": token, "expireIn": ttl}))
}

/// `GET /v1.0/oauth2/ssoUserInfo?code=` with an SSO token.
pub(super) fn sso_user_info(st: &mut State, ctx: &Ctx) -> ApiResult {
    let corp = ctx.corp()?;
    let code = ctx.req.q("code").unwrap_or("");
    if code.is_empty() {
        return Err(ApiError::BadParam(
            "code is mandatory for this action.".into(),
        ));
    }
    let rec = State::take_code(&mut st.sso_codes, code, ctx.now)
        .filter(|r| r.corp == Some(corp))
        .ok_or_else(invalid_code)?;
    let c = &st.corps[corp];
    let u = c.org.user(&rec.subject).ok_or_else(invalid_code)?;
    Ok(json!({
        "corpId": c.creds.corp_id,
        "corpName": c.creds.corp_name,
        "userId": u.userid,
        "userName": u.name,
        "email": u.email.clone().unwrap_or_default(),
        "avatar": u.avatar,
        "isAdmin": u.is_sys(),
    }))
}

/// `GET /sso/gettoken?corpid=&corpsecret=` (old form).
pub(super) fn sso_gettoken_old(st: &mut State, ctx: &Ctx) -> ApiResult {
    let corpid = ctx.req.q("corpid").unwrap_or("");
    let secret = ctx.req.q("corpsecret").unwrap_or("");
    let idx = match st.corp_index.get(corpid) {
        Some(i) if !secret.is_empty() && st.corps[*i].creds.sso_secret == secret => *i,
        _ => return Err(ApiError::Old(40089, "不合法的corpId或corpSecret".into())),
    };
    let (token, _) = st.sso_token(idx);
    Ok(json!({"access_token": token}))
}

/// `GET /sso/getuserinfo?access_token=&code=` (old form).
pub(super) fn sso_getuserinfo_old(st: &mut State, ctx: &Ctx) -> ApiResult {
    let corp = ctx.corp()?;
    let code = ctx.req.q("code").unwrap_or("");
    if code.is_empty() {
        return Err(ApiError::BadParam("code".into()));
    }
    let rec = State::take_code(&mut st.sso_codes, code, ctx.now)
        .filter(|r| r.corp == Some(corp))
        .ok_or_else(|| ApiError::Old(40078, "不存在的临时授权码".into()))?;
    let c = &st.corps[corp];
    let u = c.org.user(&rec.subject).ok_or_else(not_found_user)?;
    Ok(json!({
        "user_info": {
            "name": u.name,
            "avatar": u.avatar,
            "userid": u.userid,
            "email": u.email.clone().unwrap_or_default(),
        },
        "is_sys": u.is_sys(),
        "corp_info": {"corpid": c.creds.corp_id, "corp_name": c.creds.corp_name},
    }))
}
