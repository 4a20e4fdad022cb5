//! DingTalk errors of both families, classified into the few problems a flow acts on, and
//! turned into a [`Failure`] that tells the admin the one action that fixes it.

use crate::env::{KvError, TransportError};
use crate::failure::Failure;
use serde_json::Value;

/// An error from a DingTalk call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// Old API: `errcode != 0`.
    Old {
        /// `errcode`.
        errcode: i64,
        /// `sub_code` (under errcode 88).
        sub_code: Option<String>,
        /// `errmsg`.
        errmsg: String,
        /// `request_id`, for DingTalk's diagnostic tool.
        request_id: Option<String>,
    },
    /// New API: non-2xx with a JSON error.
    New {
        /// HTTP status.
        status: u16,
        /// `code`.
        code: String,
        /// `message`.
        message: String,
        /// `requestid`.
        request_id: Option<String>,
    },
    /// A non-JSON answer (an HTML error page, a proxy error).
    Http {
        /// HTTP status.
        status: u16,
    },
    /// DingTalk banned the egress IP for a few minutes (10,000 calls / 20 s).
    IpBanned,
    /// No response.
    Transport(TransportError),
    /// A success response without the named field.
    Parse(&'static str),
    /// The key-value store failed.
    Store(KvError),
}

/// What a flow does about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The access token is invalid or expired: refresh once and retry.
    TokenInvalid,
    /// Per-second throttling: back off and retry.
    Throttled,
    /// The monthly call quota is used up.
    MonthlyQuota,
    /// The app lacks a permission point.
    MissingPermission,
    /// The department is outside the app's contact scope.
    OutOfScope,
    /// The egress IP is not in the app's IP whitelist.
    IpNotWhitelisted,
    /// Wrong AppKey/AppSecret (or SSOsecret).
    BadCredentials,
    /// A one-time code is unknown, used or expired.
    CodeInvalid,
    /// The person is not a member of this organisation.
    NotMember,
    /// The thing asked for does not exist.
    NotFound,
    /// DingTalk said a parameter is invalid.
    InvalidParameter,
    /// DingTalk is busy or failing; retry later.
    Unavailable,
    /// The egress IP is banned for a few minutes (DingTalk's HTML or `punish` answer).
    IpBanned,
    /// DingTalk disabled calls for a while (90001, 90003–90008, 90017): back off for minutes.
    TemporarilyBanned,
    /// Per-minute throttling (`QpmLimit…`): retry after the minute, not within the request.
    MinuteLimited,
    /// DingTalk could not be reached in time.
    Unreachable,
    /// The host refused the outgoing call.
    OutboundDenied,
    /// The key-value store failed.
    Storage,
    /// Anything else.
    Other,
}

pub(crate) fn as_i64(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

pub(crate) fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn old_problem(code: i64) -> Problem {
    match code {
        40001 | 40014 | 41001 | 42001 => Problem::TokenInvalid,
        90018 | 90002 => Problem::Throttled,
        90001 | 90003..=90008 | 90017 => Problem::TemporarilyBanned,
        90020 => Problem::MonthlyQuota,
        60011 | 43007 => Problem::MissingPermission,
        50004 => Problem::OutOfScope,
        60020 => Problem::IpNotWhitelisted,
        40089 => Problem::BadCredentials,
        40078 | 40029 => Problem::CodeInvalid,
        60121 => Problem::NotMember,
        33012 | 60003 => Problem::NotFound,
        40035 | 400002 | 40068 | 40069 => Problem::InvalidParameter,
        -1 => Problem::Unavailable,
        _ => Problem::Other,
    }
}

impl ApiError {
    /// The problem behind the error; errcode 88 is decoded by its `sub_code`.
    pub fn problem(&self) -> Problem {
        match self {
            ApiError::Old {
                errcode, sub_code, ..
            } => {
                if *errcode == 88 {
                    match sub_code
                        .as_deref()
                        .and_then(|s| s.trim().parse::<i64>().ok())
                    {
                        Some(sub) => old_problem(sub),
                        None => Problem::Other,
                    }
                } else {
                    old_problem(*errcode)
                }
            }
            ApiError::New { status, code, .. } => {
                let lower = code.to_ascii_lowercase();
                if code == "InvalidAuthentication" || lower == "invalidtoken" {
                    Problem::TokenInvalid
                } else if code.starts_with("Forbidden.AccessDenied.Qpm") {
                    Problem::MinuteLimited
                } else if code.starts_with("Forbidden.AccessDenied.Qps")
                    || lower.contains("flowcontrol")
                    || *status == 429
                {
                    Problem::Throttled
                } else if let Some(n) = code
                    .strip_prefix("Forbidden.AccessDenied.")
                    .and_then(|n| n.parse::<i64>().ok())
                {
                    old_problem(n)
                } else if code.contains("ApiCountLimit") {
                    Problem::MonthlyQuota
                } else if code.contains("AccessTokenPermissionDenied") {
                    Problem::MissingPermission
                } else if code.contains("IpNotInWhiteList") {
                    Problem::IpNotWhitelisted
                } else if lower.contains("invalidclientidorsecret")
                    || lower == "invalid.client"
                    || lower == "unauthorized.client"
                    || lower.contains("ssosecret")
                {
                    Problem::BadCredentials
                } else if lower.contains("code")
                    && (lower.contains("invalid")
                        || lower.contains("notfound")
                        || lower.contains("expire"))
                {
                    Problem::CodeInvalid
                } else if lower.contains("notfound") || *status == 404 {
                    Problem::NotFound
                } else if *status >= 500 || lower.contains("busy") || lower.contains("timeout") {
                    Problem::Unavailable
                } else if lower.starts_with("invalidparameter")
                    || lower.starts_with("missingparameter")
                {
                    Problem::InvalidParameter
                } else {
                    Problem::Other
                }
            }
            ApiError::Http { status } if *status == 429 => Problem::Throttled,
            ApiError::Http { .. } => Problem::Unavailable,
            ApiError::IpBanned => Problem::IpBanned,
            ApiError::Transport(TransportError::Denied) => Problem::OutboundDenied,
            ApiError::Transport(_) => Problem::Unreachable,
            ApiError::Parse(_) => Problem::Unavailable,
            ApiError::Store(_) => Problem::Storage,
        }
    }

    /// The DingTalk error code as text (`errcode`, `errcode/sub_code` or the new-API `code`).
    pub fn code_text(&self) -> String {
        match self {
            ApiError::Old {
                errcode,
                sub_code: Some(sub),
                ..
            } => format!("{errcode}/{sub}"),
            ApiError::Old { errcode, .. } => errcode.to_string(),
            ApiError::New { status, code, .. } => format!("{status} {code}"),
            ApiError::Http { status } => format!("HTTP {status}"),
            ApiError::IpBanned => "ip banned".into(),
            ApiError::Transport(_) => "transport".into(),
            ApiError::Parse(field) => format!("missing {field}"),
            ApiError::Store(_) => "store".into(),
        }
    }

    fn request_id(&self) -> Option<&str> {
        match self {
            ApiError::Old { request_id, .. } | ApiError::New { request_id, .. } => {
                request_id.as_deref()
            }
            _ => None,
        }
    }

    /// The egress IP DingTalk reported in an IP-whitelist error (`request ip=1.2.3.4 …`).
    pub fn reported_ip(&self) -> Option<String> {
        let text = match self {
            ApiError::Old { errmsg, .. } => errmsg,
            ApiError::New { message, .. } => message,
            _ => return None,
        };
        let start = text
            .find("ip=")
            .map(|i| i + 3)
            .or_else(|| text.find("ip:").map(|i| i + 3))?;
        let ip: String = text[start..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_hexdigit() || *c == '.' || *c == ':')
            .collect();
        (!ip.is_empty()).then_some(ip)
    }

    /// The failure a person sees. `permission` names the permission point the call needs.
    pub fn to_failure(&self, permission: &str) -> Failure {
        let rid = self
            .request_id()
            .map(|r| format!(" (DingTalk request id {r})"))
            .unwrap_or_default();
        let code = self.code_text();
        match self.problem() {
            Problem::BadCredentials => Failure::new(
                502,
                "bad_app_credentials",
                format!("DingTalk rejected the app credentials ({code}). Copy AppKey and AppSecret again from the app's 凭证与基础信息 page in the DingTalk developer console (set-up step 4).{rid}"),
                format!("钉钉拒绝了应用凭证（{code}）。请从钉钉开发者后台应用的“凭证与基础信息”页面重新复制 AppKey 和 AppSecret（步骤 4）。{rid}"),
            ),
            Problem::MissingPermission => Failure::new(
                502,
                "missing_permission",
                format!("The DingTalk app lacks the permission {permission} ({code}). Enable it under 权限管理 in the DingTalk developer console (set-up step 6), then publish a new version (step 7).{rid}"),
                format!("钉钉应用缺少权限 {permission}（{code}）。请在钉钉开发者后台“权限管理”中开通（步骤 6），并发布新版本（步骤 7）。{rid}"),
            ),
            Problem::OutOfScope => Failure::new(
                502,
                "outside_contact_scope",
                format!("The department is outside the app's contact scope ({code}). Widen 通讯录权限范围 to the whole organisation in the DingTalk developer console (权限管理).{rid}"),
                format!("该部门不在应用的通讯录权限范围内（{code}）。请在钉钉开发者后台“权限管理”中把通讯录权限范围设为全部员工。{rid}"),
            ),
            Problem::IpNotWhitelisted => {
                let ip = self.reported_ip().unwrap_or_else(|| "of this server".into());
                Failure::new(
                    502,
                    "ip_not_whitelisted",
                    format!("DingTalk refused the call because the server's egress IP is not whitelisted ({code}). Add IP {ip} to the app's 服务器出口IP whitelist in the DingTalk developer console.{rid}"),
                    format!("服务器出口 IP 不在应用的白名单中（{code}）。请在钉钉开发者后台把 IP {ip} 加入“服务器出口IP”白名单。{rid}"),
                )
            }
            Problem::Throttled => Failure::new(
                503,
                "dingtalk_throttled",
                format!("DingTalk is throttling this app ({code}). Wait a few seconds and try again.{rid}"),
                format!("钉钉对本应用限流（{code}），请稍等几秒再试。{rid}"),
            ),
            Problem::MinuteLimited => Failure::new(
                503,
                "dingtalk_minute_limit",
                format!("DingTalk's per-minute limit for this app and API is used up ({code}). Try again after the minute.{rid}"),
                format!("本应用调用该接口已达到钉钉每分钟上限（{code}），请一分钟后再试。{rid}"),
            ),
            Problem::IpBanned => Failure::new(
                503,
                "dingtalk_ip_banned",
                format!("DingTalk has banned this server's IP for a few minutes for calling too often ({code}). Wait about 5 minutes; lower sync_qps if it happens during a sync.{rid}"),
                format!("钉钉因调用过于频繁暂时封禁了本服务器 IP（{code}）。请等待约 5 分钟；如在同步时出现，请调低 sync_qps。{rid}"),
            ),
            Problem::TemporarilyBanned => Failure::new(
                503,
                "dingtalk_temporarily_banned",
                format!("DingTalk has temporarily disabled these calls ({code}). Wait several minutes before trying again; check the developer console for the app's call volume.{rid}"),
                format!("钉钉暂时禁用了这些调用（{code}）。请等待几分钟后再试，并在开发者后台检查应用的调用量。{rid}"),
            ),
            Problem::MonthlyQuota => Failure::new(
                503,
                "dingtalk_monthly_quota",
                format!("The organisation has used up DingTalk's monthly API call quota ({code}). Upgrade the DingTalk edition or wait for next month.{rid}"),
                format!("本组织本月的钉钉接口调用次数已用完（{code}）。请升级钉钉版本或等待下月重置。{rid}"),
            ),
            Problem::CodeInvalid => Failure::new(
                400,
                "code_invalid",
                format!("This sign-in code was already used or has expired ({code}). Open the app from DingTalk again.{rid}"),
                format!("登录授权码已使用或已过期（{code}），请从钉钉重新打开应用。{rid}"),
            ),
            Problem::NotMember => Failure::new(
                403,
                "not_a_member",
                format!("This DingTalk account is not a member of the organisation bound to this platform ({code}). Ask the organisation's admin to add you in DingTalk.{rid}"),
                format!("该钉钉账号不是本平台所绑定组织的成员（{code}），请联系组织管理员在钉钉中添加您。{rid}"),
            ),
            Problem::OutboundDenied => Failure::new(
                502,
                "outbound_denied",
                "The host does not allow outgoing calls to DingTalk. Add the DingTalk hosts (oapi_base_url, api_base_url) to the allowed outbound hosts.",
                "宿主不允许访问钉钉。请把钉钉地址（oapi_base_url、api_base_url）加入允许的出站地址。",
            ),
            Problem::Unreachable => Failure::new(
                504,
                "dingtalk_unreachable",
                "DingTalk did not answer in time. Try again in a moment; if it persists, check the server's outbound network.",
                "钉钉未及时响应，请稍后重试；如持续出现，请检查服务器的出站网络。",
            ),
            Problem::Storage => Failure::storage(),
            Problem::Unavailable | Problem::TokenInvalid => Failure::new(
                502,
                "dingtalk_unavailable",
                format!("DingTalk is not answering normally right now ({code}). Try again in a moment.{rid}"),
                format!("钉钉暂时无法正常响应（{code}），请稍后重试。{rid}"),
            ),
            Problem::NotFound | Problem::InvalidParameter | Problem::Other => Failure::new(
                502,
                "dingtalk_error",
                format!("DingTalk answered with error {code}.{rid}"),
                format!("钉钉返回错误 {code}。{rid}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old(errcode: i64, sub: Option<&str>, msg: &str) -> ApiError {
        ApiError::Old {
            errcode,
            sub_code: sub.map(String::from),
            errmsg: msg.into(),
            request_id: Some("rid1".into()),
        }
    }

    #[test]
    fn errcode_88_is_decoded_by_sub_code() {
        assert_eq!(old(88, Some("40014"), "").problem(), Problem::TokenInvalid);
        assert_eq!(old(88, Some("42001"), "").problem(), Problem::TokenInvalid);
        assert_eq!(
            old(88, Some("60011"), "").problem(),
            Problem::MissingPermission
        );
        assert_eq!(
            old(88, Some("60020"), "").problem(),
            Problem::IpNotWhitelisted
        );
        assert_eq!(old(88, None, "").problem(), Problem::Other);
    }

    #[test]
    fn new_api_codes() {
        let new = |status, code: &str| ApiError::New {
            status,
            code: code.into(),
            message: "m".into(),
            request_id: None,
        };
        assert_eq!(
            new(400, "InvalidAuthentication").problem(),
            Problem::TokenInvalid
        );
        assert_eq!(
            new(403, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi").problem(),
            Problem::Throttled
        );
        assert_eq!(
            new(403, "Forbidden.AccessDenied.QpsLimitForApi").problem(),
            Problem::Throttled
        );
        assert_eq!(
            new(403, "Forbidden.AccessDenied.AccessTokenPermissionDenied").problem(),
            Problem::MissingPermission
        );
        assert_eq!(
            new(403, "Forbidden.AccessDenied.IpNotInWhiteList").problem(),
            Problem::IpNotWhitelisted
        );
        assert_eq!(
            new(400, "invalidClientIdOrSecret").problem(),
            Problem::BadCredentials
        );
        assert_eq!(new(400, "invalidCode").problem(), Problem::CodeInvalid);
        assert_eq!(new(503, "systemBusy").problem(), Problem::Unavailable);
        assert_eq!(new(429, "system.busy").problem(), Problem::Throttled);
        assert_eq!(
            new(403, "Forbidden.AccessDenied.QpmLimitForAppkeyAndApi").problem(),
            Problem::MinuteLimited
        );
        assert_eq!(
            new(403, "Forbidden.AccessDenied.90003").problem(),
            Problem::TemporarilyBanned
        );
    }

    #[test]
    fn temporary_bans_are_their_own_problem() {
        for code in [90001, 90003, 90004, 90005, 90006, 90007, 90008, 90017] {
            let e = old(code, None, "请求被暂时禁用了");
            assert_eq!(e.problem(), Problem::TemporarilyBanned, "{code}");
            assert_eq!(
                e.to_failure("qyapi_base").code,
                "dingtalk_temporarily_banned"
            );
        }
        assert_eq!(old(90018, None, "").problem(), Problem::Throttled);
        assert_eq!(old(90002, None, "").problem(), Problem::Throttled);
        assert_eq!(
            ApiError::IpBanned.to_failure("qyapi_base").code,
            "dingtalk_ip_banned"
        );
    }

    #[test]
    fn whitelist_failure_names_the_ip() {
        let e = old(
            60020,
            None,
            "访问ip不在白名单之中,request ip=203.0.113.7 appKey(dingabc)",
        );
        assert_eq!(e.reported_ip().as_deref(), Some("203.0.113.7"));
        let f = e.to_failure("qyapi_base");
        assert!(f.message.contains("203.0.113.7"), "{}", f.message);
        assert_eq!(f.code, "ip_not_whitelisted");
    }

    #[test]
    fn permission_failure_names_the_permission() {
        let f = old(60011, None, "").to_failure("qyapi_get_member");
        assert!(f.message.contains("qyapi_get_member"));
        assert!(f.message.contains("rid1"));
    }
}
