//! App access tokens (doc §1).

use serde_json::json;

use super::{body_json_only, get_str, ApiError, ApiResult, Ctx};
use crate::state::State;

/// `GET /gettoken?appkey=&appsecret=`.
pub(super) fn gettoken(st: &mut State, ctx: &Ctx) -> ApiResult {
    let key = ctx.req.q("appkey").unwrap_or("");
    let secret = ctx.req.q("appsecret").unwrap_or("");
    if key.is_empty() || secret.is_empty() {
        return Err(ApiError::Old(40089, "不合法的corpId或corpSecret".into()));
    }
    let idx = match st.app_index.get(key) {
        Some(i) if st.corps[*i].creds.app_secret == secret => *i,
        _ => return Err(ApiError::Old(40089, "不合法的corpId或corpSecret".into())),
    };
    let (token, ttl) = st.app_token(idx);
    Ok(json!({"access_token": token, "expires_in": ttl}))
}

/// `POST /v1.0/oauth2/accessToken {appKey, appSecret}`.
pub(super) fn access_token(st: &mut State, ctx: &Ctx) -> ApiResult {
    let body = body_json_only(ctx.req)?;
    let key = get_str(&body, "appKey")?.unwrap_or_default();
    let secret = get_str(&body, "appSecret")?.unwrap_or_default();
    if key.is_empty() {
        return Err(ApiError::BadParam(
            "appKey is mandatory for this action.".into(),
        ));
    }
    if secret.is_empty() {
        return Err(ApiError::BadParam(
            "appSecret is mandatory for this action.".into(),
        ));
    }
    let idx = match st.app_index.get(&key) {
        Some(i) if st.corps[*i].creds.app_secret == secret => *i,
        _ => return Err(invalid_client()),
    };
    let (token, ttl) = st.app_token(idx);
    Ok(json!({"accessToken": token, "expireIn": ttl}))
}

pub(super) fn invalid_client() -> ApiError {
    ApiError::New(
        400,
        "invalidClientIdOrSecret".into(),
        "无效的clientId或者clientSecret".into(),
    )
}

/// `POST /v1.0/oauth2/{corpId}/token {client_id, client_secret, grant_type: client_credentials}`
/// (doc §1.3): snake_case answer `{access_token, expires_in}`, the same token as the other token
/// endpoints. Errors: bad client → `400 invalid.client`; an app of another corp →
/// `401 unauthorized.client`; another grant type → `400 unsupported.grant.type`.
pub(super) fn corp_token(st: &mut State, ctx: &Ctx) -> ApiResult {
    let body = body_json_only(ctx.req)?;
    let corp_id = ctx.param("corpId").to_string();
    let id = get_str(&body, "client_id")?.unwrap_or_default();
    let secret = get_str(&body, "client_secret")?.unwrap_or_default();
    let grant = get_str(&body, "grant_type")?.unwrap_or_default();
    for (name, v) in [
        ("client_id", &id),
        ("client_secret", &secret),
        ("grant_type", &grant),
    ] {
        if v.is_empty() {
            return Err(ApiError::BadParam(format!(
                "{name} is mandatory for this action."
            )));
        }
    }
    if grant != "client_credentials" {
        return Err(ApiError::New(
            400,
            "unsupported.grant.type".into(),
            format!("不支持的grant_type: {grant}"),
        ));
    }
    let idx = match st.app_index.get(&id) {
        Some(i) if st.corps[*i].creds.app_secret == secret => *i,
        _ => {
            return Err(ApiError::New(
                400,
                "invalid.client".into(),
                "无效的client_id或者client_secret".into(),
            ))
        }
    };
    if st.corps[idx].creds.corp_id != corp_id {
        return Err(ApiError::New(
            401,
            "unauthorized.client".into(),
            format!("应用未授权给该企业: {corp_id}"),
        ));
    }
    let (token, ttl) = st.app_token(idx);
    Ok(json!({"access_token": token, "expires_in": ttl}))
}
