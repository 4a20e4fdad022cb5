//! The hand-off that ends every successful login over HTTP (docs/http-contract.md §2): the
//! identity is stored under a random single-use ticket and the browser goes to the platform's
//! login URL with it; the platform redeems it server-to-server, once.
//!
//! Key-value cost: the ticket lives in the [`Slot`] its login's code exchange took from the
//! budget (src/login/mod.rs), so minting is one `set` and redeeming one `increment` (the
//! claim); the sweep removes both with the slot's bucket. The record is sealed with a key
//! derived from the ticket's secret, which only the ticket carries: a redeemed or expired
//! ticket's identity is unreadable in the store until the sweep removes it.

use super::SlotId;
use crate::env::Env;
use crate::failure::Failure;
use crate::kv::{self, Slot};
use crate::model::Identity;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Tickets live this long (60 s).
pub const TICKET_TTL_MS: u64 = 60_000;

/// A ticket's record as stored: the identity encrypted and authenticated under keys derived
/// from the ticket's secret.
#[derive(Serialize, Deserialize)]
struct Sealed {
    /// HMAC-SHA256 of `data` (hex).
    mac: String,
    /// The identity's JSON XOR an HMAC-SHA256 counter-mode keystream (base64).
    data: String,
}

fn derive(secret: &[u8; 16], label: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(b"dingtalk-plugin ticket v1 ");
    mac.update(label);
    HmacSha256::new_from_slice(&mac.finalize().into_bytes()).expect("HMAC accepts any key length")
}

fn keystream_xor(secret: &[u8; 16], data: &mut [u8]) {
    let key = derive(secret, b"enc");
    for (i, chunk) in data.chunks_mut(32).enumerate() {
        let mut block = key.clone();
        block.update(&(i as u64).to_be_bytes());
        for (b, k) in chunk.iter_mut().zip(block.finalize().into_bytes()) {
            *b ^= k;
        }
    }
}

fn tag(secret: &[u8; 16], data: &[u8]) -> HmacSha256 {
    let mut mac = derive(secret, b"mac");
    mac.update(data);
    mac
}

fn seal(secret: &[u8; 16], identity: &Identity) -> Result<Sealed, Failure> {
    let mut data = serde_json::to_vec(identity).map_err(|_| Failure::storage())?;
    keystream_xor(secret, &mut data);
    let mac: String = tag(secret, &data)
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Sealed {
        mac,
        data: base64::engine::general_purpose::STANDARD.encode(data),
    })
}

fn open(secret: &[u8; 16], sealed: &Sealed) -> Option<Identity> {
    let mut data = base64::engine::general_purpose::STANDARD
        .decode(&sealed.data)
        .ok()?;
    if sealed.mac.len() != 64 {
        return None;
    }
    let expected: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(sealed.mac.get(i * 2..i * 2 + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    tag(secret, &data).verify_slice(&expected).ok()?;
    keystream_xor(secret, &mut data);
    serde_json::from_slice(&data).ok()
}

/// Stores the identity sealed in `slot` (one `set`) and returns the ticket.
pub fn mint_ticket(env: &mut dyn Env, slot: Slot, identity: &Identity) -> Result<String, Failure> {
    let id = SlotId::new(env, slot);
    let sealed = seal(&id.secret, identity)?;
    let expires = env.now_ms() + TICKET_TTL_MS;
    kv::put_slot(env, &id.slot, &sealed, expires)?;
    Ok(id.text())
}

fn ticket_gone() -> Failure {
    Failure::new(
        410,
        "ticket_invalid",
        "This ticket is unknown, expired (tickets live 60 s) or already redeemed. Start the DingTalk sign-in again.",
        "该票据不存在、已过期（有效期 60 秒）或已被使用，请重新发起钉钉登录。",
    )
}

/// Redeems a ticket: the identity once (one read, one `increment`), then 410 forever. A
/// ticket id without its secret neither reads nor spends the ticket.
pub fn redeem_ticket(env: &mut dyn Env, ticket: &str) -> Result<Identity, Failure> {
    let Some(id) = SlotId::parse(ticket.trim()) else {
        return Err(Failure::new(
            404,
            "ticket_unknown",
            "This is not a ticket issued by the DingTalk plugin.",
            "这不是钉钉插件签发的票据。",
        ));
    };
    let Some(sealed) = kv::get_slot::<Sealed>(env, &id.slot)? else {
        return Err(ticket_gone());
    };
    let Some(identity) = open(&id.secret, &sealed) else {
        return Err(ticket_gone());
    };
    if !kv::claim_slot(env, &id.slot)? {
        return Err(ticket_gone());
    }
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

    fn minted(env: &mut FakeEnv) -> String {
        let slot = kv::allocate(env).unwrap();
        mint_ticket(env, slot, &identity()).unwrap()
    }

    #[test]
    fn ticket_redeems_once_and_expires() {
        let mut env = FakeEnv::new();
        let t = minted(&mut env);
        assert_eq!(t.len(), 48);
        assert_eq!(redeem_ticket(&mut env, &t).unwrap(), identity());
        assert_eq!(redeem_ticket(&mut env, &t).unwrap_err().status, 410);
        let t2 = minted(&mut env);
        env.now += TICKET_TTL_MS + 1;
        assert_eq!(redeem_ticket(&mut env, &t2).unwrap_err().status, 410);
        assert_eq!(redeem_ticket(&mut env, "nope").unwrap_err().status, 404);
    }

    #[test]
    fn a_ticket_costs_one_set_and_its_redeem_one_increment() {
        let mut env = FakeEnv::new();
        let slot = kv::allocate(&mut env).unwrap();
        env.kv_ops.clear();
        let t = mint_ticket(&mut env, slot, &identity()).unwrap();
        redeem_ticket(&mut env, &t).unwrap();
        let writes: Vec<&str> = env
            .kv_ops
            .iter()
            .filter(|(op, _)| *op != "get")
            .map(|(op, _)| *op)
            .collect();
        assert_eq!(writes, ["set", "increment"]);
    }

    #[test]
    fn the_stored_identity_is_sealed_and_a_wrong_secret_neither_reads_nor_spends_it() {
        let mut env = FakeEnv::new();
        let t = minted(&mut env);
        let stored: String = env
            .kv
            .values()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        assert!(
            !stored.contains("张三") && !stored.contains("\\u5f20"),
            "{stored}"
        );
        assert!(!stored.contains("dingcorp123"));
        // Same slot, another secret: 410, and the real ticket still redeems.
        let forged = format!("{}{}", &t[..16], "0".repeat(32));
        assert_eq!(redeem_ticket(&mut env, &forged).unwrap_err().status, 410);
        assert_eq!(redeem_ticket(&mut env, &t).unwrap(), identity());
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
