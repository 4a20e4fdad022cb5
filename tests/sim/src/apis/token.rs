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
