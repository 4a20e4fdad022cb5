//! The hand-off that ends every successful login over HTTP (docs/http-contract.md §2): the
//! identity is stored under a random single-use ticket and the browser goes to the platform's
//! login URL with it; the platform redeems the ticket server-to-server, once.

use super::{is_token_shaped, ID_BYTES};
use crate::env::{random_id, Env};
use crate::failure::Failure;
use crate::kv;
use crate::model::Identity;

/// Tickets live this long (60 s).
pub const TICKET_TTL_MS: u64 = 60_000;

/// Stores the identity under a fresh single-use ticket and returns the ticket.
pub fn mint_ticket(env: &mut dyn Env, identity: &Identity) -> Result<String, Failure> {
    let ticket = random_id(env, ID_BYTES);
    let expires = env.now_ms() + TICKET_TTL_MS;
    kv::put_expiring(env, &format!("ticket:{ticket}"), identity, expires)?;
    Ok(ticket)
}

fn ticket_gone() -> Failure {
    Failure::new(
        410,
        "ticket_invalid",
        "This ticket is unknown, expired (tickets live 60 s) or already redeemed. Start the DingTalk sign-in again.",
        "该票据不存在、已过期（有效期 60 秒）或已被使用，请重新发起钉钉登录。",
    )
}

/// Redeems a ticket: the identity once, then 410 forever.
pub fn redeem_ticket(env: &mut dyn Env, ticket: &str) -> Result<Identity, Failure> {
    let ticket = ticket.trim();
    if !is_token_shaped(ticket) {
        return Err(Failure::new(
            404,
            "ticket_unknown",
            "This is not a ticket issued by the DingTalk plugin.",
            "这不是钉钉插件签发的票据。",
        ));
    }
    let key = format!("ticket:{ticket}");
    let Some(identity) = kv::get_live::<Identity>(env, &key)? else {
        return Err(ticket_gone());
    };
    let expires = env.now_ms() + TICKET_TTL_MS;
    if !kv::claim(env, &format!("claim:ticket:{ticket}"), expires)? {
        return Err(ticket_gone());
    }
    env.kv_delete(&key)?;
    Ok(identity)
}

/// `base` with `pairs` appended as query parameters, each form-encoded (spaces as `%20`).
pub fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = base.to_string();
    let mut sep = if base.contains('?') { '&' } else { '?' };
    for (k, v) in pairs {
        url.push(sep);
        url.push_str(&crate::dingtalk::encode(k));
        url.push('=');
        url.push_str(&crate::dingtalk::encode(v).replace('+', "%20"));
        sep = '&';
    }
    url
}

/// Where the browser goes after a login: `platform_login_url` with the ticket (when one was
/// issued) and the identity's `return_to`.
pub fn landing_url(platform_login_url: &str, ticket: Option<&str>, identity: &Identity) -> String {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if let Some(t) = ticket {
        pairs.push(("ticket", t));
    }
    if let Some(r) = identity.return_to.as_deref() {
        pairs.push(("return_to", r));
    }
    with_query(platform_login_url, &pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Via;
    use crate::testing::FakeEnv;

    pub(crate) fn identity() -> Identity {
        Identity {
            corp_id: "dingcorp123".into(),
            userid: "u1".into(),
            unionid: "un1".into(),
            name: "张三".into(),
            mobile: None,
            email: None,
            avatar: None,
            dept_ids: vec![1],
            is_admin: false,
            admin_level: 0,
            via: Via::InappMobile,
            requires_sms_binding: false,
            return_to: None,
        }
    }

    #[test]
    fn ticket_redeems_once_and_expires() {
        let mut env = FakeEnv::new();
        let t = mint_ticket(&mut env, &identity()).unwrap();
        assert_eq!(t.len(), 48);
        assert_eq!(redeem_ticket(&mut env, &t).unwrap(), identity());
        assert_eq!(redeem_ticket(&mut env, &t).unwrap_err().status, 410);
        let t2 = mint_ticket(&mut env, &identity()).unwrap();
        env.now += TICKET_TTL_MS + 1;
        assert_eq!(redeem_ticket(&mut env, &t2).unwrap_err().status, 410);
        assert_eq!(redeem_ticket(&mut env, "nope").unwrap_err().status, 404);
    }

    #[test]
    fn landing_url_carries_ticket_and_return_to() {
        let mut i = identity();
        i.return_to = Some("/forms/1?a=b c".into());
        assert_eq!(
            landing_url("https://h/done", Some("t1"), &i),
            "https://h/done?ticket=t1&return_to=%2Fforms%2F1%3Fa%3Db%20c"
        );
        assert_eq!(
            landing_url("https://h/done?x=1", None, &identity()),
            "https://h/done?x=1"
        );
    }
}
