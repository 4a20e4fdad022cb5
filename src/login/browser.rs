//! Values the plugin hands a browser in a cookie and later checks it issued: a random nonce, the
//! corp and an expiry, signed with HMAC-SHA256 under a key derived from the corp's AppSecret.
//! Nothing is written to the key-value store; a forged, altered, expired or other-corp value
//! is simply not recognised.
//!
//! Cookies are `__Host-` prefixed (`Secure`, `Path=/`, no `Domain`), so a sibling subdomain
//! cannot plant ("toss") one. Browsers accept `Secure` cookies only over https, and over plain
//! `http://` only on `localhost` (Chromium, Firefox); a loopback trial on `http://127.0.0.1`
//! may therefore need `http://localhost` instead.

use super::ID_BYTES;
use crate::env::{random_id, Env};
use crate::secret::AppSecret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a signed value is for; part of the signature, so one cannot stand in for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// R1/R2: the browser that loaded the JSAPI page.
    Inapp,
    /// R5 → R4: the browser that started a QR login.
    Qr,
    /// R5 → R4: the QR login's `state` itself (the corp, where to land, the binding's hash).
    QrState,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::Inapp => "inapp",
            Purpose::Qr => "qr",
            Purpose::QrState => "qr-state",
        }
    }
}

fn key(secret: &AppSecret) -> Vec<u8> {
    // Derived, so the AppSecret itself never keys anything but this derivation.
    let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC accepts any key length");
    mac.update(b"dingtalk-plugin browser binding v1");
    mac.finalize().into_bytes().to_vec()
}

fn mac(
    secret: &AppSecret,
    purpose: Purpose,
    nonce: &str,
    corp_id: &str,
    expires_ms: u64,
) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(&key(secret)).expect("HMAC accepts any key length");
    mac.update(format!("{}|{nonce}|{corp_id}|{expires_ms}", purpose.label()).as_bytes());
    mac
}

/// A fresh signed value `nonce.expiry.mac` (hex, digits and dots: safe in a cookie).
pub fn issue(
    env: &mut dyn Env,
    secret: &AppSecret,
    purpose: Purpose,
    corp_id: &str,
    ttl_ms: u64,
) -> String {
    let nonce = random_id(env, ID_BYTES);
    let expires_ms = env.now_ms().saturating_add(ttl_ms);
    let tag = mac(secret, purpose, &nonce, corp_id, expires_ms)
        .finalize()
        .into_bytes();
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("{nonce}.{expires_ms}.{tag}")
}

/// When `value` is a live value this plugin signed for `purpose` and `corp_id`: its expiry.
pub fn verify(
    secret: &AppSecret,
    purpose: Purpose,
    corp_id: &str,
    value: &str,
    now_ms: u64,
) -> Option<u64> {
    if value.len() > 200 {
        return None;
    }
    let mut parts = value.split('.');
    let (nonce, expires, tag) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !super::is_token_shaped(nonce) || tag.len() != 64 {
        return None;
    }
    if !expires.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let expires_ms: u64 = expires.parse().ok()?;
    if expires_ms <= now_ms {
        return None;
    }
    let tag: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(tag.get(i * 2..i * 2 + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    mac(secret, purpose, nonce, corp_id, expires_ms)
        .verify_slice(&tag)
        .ok()?;
    Some(expires_ms)
}

/// `payload` signed for `purpose`: `base64url(payload).tag` (tag: HMAC-SHA256, hex). URL- and
/// cookie-safe; the payload is readable by whoever holds the value, so it must hold no secret.
pub fn sign(secret: &AppSecret, purpose: Purpose, payload: &[u8]) -> String {
    let body = URL_SAFE_NO_PAD.encode(payload);
    let tag = payload_mac(secret, purpose, &body).finalize().into_bytes();
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("{body}.{tag}")
}

/// The payload of a value [`sign`] made for `purpose` under `secret`; `None` for anything
/// longer than `max_len`, malformed, altered or signed for another purpose or key.
pub fn open(secret: &AppSecret, purpose: Purpose, value: &str, max_len: usize) -> Option<Vec<u8>> {
    if value.len() > max_len {
        return None;
    }
    let (body, tag) = value.split_once('.')?;
    if tag.len() != 64 {
        return None;
    }
    let tag: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(tag.get(i * 2..i * 2 + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    payload_mac(secret, purpose, body).verify_slice(&tag).ok()?;
    URL_SAFE_NO_PAD.decode(body).ok()
}

fn payload_mac(secret: &AppSecret, purpose: Purpose, body: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(&key(secret)).expect("HMAC accepts any key length");
    mac.update(format!("{}|payload|{body}", purpose.label()).as_bytes());
    mac
}

/// A `Set-Cookie` value for a `__Host-` cookie: `Path=/`, no `Domain`, `Secure`, `HttpOnly`,
/// `SameSite=Lax` (top-level navigations from DingTalk still carry it).
pub fn host_cookie(name: &str, value: &str, max_age_s: u64) -> String {
    format!("{name}={value}; Path=/; Max-Age={max_age_s}; HttpOnly; Secure; SameSite=Lax")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeEnv;

    #[test]
    fn only_live_values_of_this_purpose_corp_and_key_verify() {
        let mut env = FakeEnv::new();
        let secret = AppSecret::new("app-secret-value-123456");
        let v = issue(&mut env, &secret, Purpose::Inapp, "dingA", 60_000);
        let now = env.now;
        assert_eq!(
            verify(&secret, Purpose::Inapp, "dingA", &v, now),
            Some(now + 60_000)
        );
        assert_eq!(verify(&secret, Purpose::Qr, "dingA", &v, now), None);
        assert_eq!(verify(&secret, Purpose::Inapp, "dingB", &v, now), None);
        let other = AppSecret::new("another-secret-value-1");
        assert_eq!(verify(&other, Purpose::Inapp, "dingA", &v, now), None);
        assert_eq!(
            verify(&secret, Purpose::Inapp, "dingA", &v, now + 60_000),
            None
        );
        // Altered expiry, nonce or tag; junk; a bare token-shaped id (what qr::start adopted).
        let (nonce, rest) = v.split_once('.').unwrap();
        let (exp, tag) = rest.split_once('.').unwrap();
        let later = format!("{nonce}.{}.{tag}", exp.parse::<u64>().unwrap() + 1);
        let flipped = format!("{}0.{exp}.{tag}", &nonce[..47]);
        for bad in [
            later.as_str(),
            flipped.as_str(),
            &format!("{nonce}.{exp}.{}", "0".repeat(64)),
            &"a".repeat(48),
            "",
            "..",
            &format!("{v}.x"),
            &format!("{nonce}.+1.{tag}"),
        ] {
            assert_eq!(
                verify(&secret, Purpose::Inapp, "dingA", bad, now),
                None,
                "{bad}"
            );
        }
        assert!(!v.contains("app-secret"));
    }

    #[test]
    fn signed_payloads_open_only_unaltered_for_their_purpose_and_key() {
        let secret = AppSecret::new("app-secret-value-123456");
        let v = sign(&secret, Purpose::QrState, br#"{"c":"dingA"}"#);
        assert_eq!(
            open(&secret, Purpose::QrState, &v, 200).as_deref(),
            Some(&br#"{"c":"dingA"}"#[..])
        );
        assert!(v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        let other = AppSecret::new("another-secret-value-1");
        let (body, tag) = v.split_once('.').unwrap();
        let altered = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(br#"{"c":"dingB"}"#));
        for (key, purpose, value, max) in [
            (&other, Purpose::QrState, v.as_str(), 200),
            (&secret, Purpose::Qr, v.as_str(), 200),
            (&secret, Purpose::QrState, v.as_str(), v.len() - 1),
            (&secret, Purpose::QrState, altered.as_str(), 200),
            (&secret, Purpose::QrState, body, 200),
            (
                &secret,
                Purpose::QrState,
                &format!("{body}.{}", &tag[..62]),
                200,
            ),
            (
                &secret,
                Purpose::QrState,
                &format!("{body}.{}é", &tag[..62]),
                200,
            ),
            (&secret, Purpose::QrState, "", 200),
        ] {
            assert_eq!(open(key, purpose, value, max), None, "{value}");
        }
    }

    #[test]
    fn host_cookie_has_the_prefix_rules() {
        let c = host_cookie("__Host-x", "v", 60);
        assert!(c.starts_with("__Host-x=v;"));
        assert!(c.contains("; Path=/;") && c.contains("Secure") && c.contains("HttpOnly"));
        assert!(!c.to_ascii_lowercase().contains("domain"));
    }
}
