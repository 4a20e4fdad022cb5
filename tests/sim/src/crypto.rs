//! DingTalk event-callback crypto (doc §8.3–8.5), implemented independently of the plugin.
//!
//! `encrypt = Base64(AES-256-CBC(key, iv = key[..16], pkcs7_32(random16 || len_be32 || msg || owner_key)))`,
//! `signature = hex(sha1(concat(sort([token, timestamp, nonce, encrypt]))))`.

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::Engine as _;
use sha1::{Digest, Sha1};

type Enc = cbc::Encryptor<aes::Aes256>;
type Dec = cbc::Decryptor<aes::Aes256>;

/// Padding block size used by DingTalk (PKCS#7 with k = 32, not 16).
const PAD_BLOCK: usize = 32;

/// Why a callback message could not be processed (names follow the library codes of doc §8.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// 900004: the EncodingAESKey is not 43 Base64 characters.
    AesKeyIllegal,
    /// 900005: the signature does not match.
    SignatureMismatch,
    /// 900008: Base64 / AES / padding failure.
    DecryptError,
    /// 900009: the length prefix does not fit the plaintext, or the message is not UTF-8.
    LengthMismatch,
    /// 900010: the trailing owner key is not the expected one.
    OwnerKeyMismatch {
        /// The owner key found in the plaintext.
        found: String,
    },
}

impl std::fmt::Display for CryptoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CryptoError::AesKeyIllegal => write!(f, "900004 aes key illegal"),
            CryptoError::SignatureMismatch => write!(f, "900005 signature mismatch"),
            CryptoError::DecryptError => write!(f, "900008 decrypt error"),
            CryptoError::LengthMismatch => write!(f, "900009 decrypted length mismatch"),
            CryptoError::OwnerKeyMismatch { found } => {
                write!(f, "900010 owner key mismatch (found {found:?})")
            }
        }
    }
}

impl std::error::Error for CryptoError {}

/// A decrypted callback message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The 16 random bytes that prefixed the message.
    pub random: Vec<u8>,
    /// The message (UTF-8).
    pub msg: String,
    /// The trailing owner key (AppKey or corpId).
    pub owner_key: String,
}

/// Key material of one event subscription: signing token, AES key and owner key.
#[derive(Clone)]
pub struct EventCrypto {
    token: String,
    key: [u8; 32],
    owner_key: String,
}

impl std::fmt::Debug for EventCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventCrypto")
            .field("token", &"[redacted]")
            .field("key", &"[redacted]")
            .field("owner_key", &self.owner_key)
            .finish()
    }
}

impl EventCrypto {
    /// Builds the crypto from the console values: `token`, the 43-character `EncodingAESKey`, and
    /// the owner key (the AppKey for console subscriptions, the corpId for `register_call_back`).
    pub fn new(token: &str, encoding_aes_key: &str, owner_key: &str) -> Result<Self, CryptoError> {
        if encoding_aes_key.len() != 43 {
            return Err(CryptoError::AesKeyIllegal);
        }
        // Like the official libraries, ignore the unused low bits of the 43rd character.
        let lenient = GeneralPurpose::new(
            &alphabet::STANDARD,
            GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
        );
        let raw = lenient
            .decode(format!("{encoding_aes_key}="))
            .map_err(|_| CryptoError::AesKeyIllegal)?;
        let key: [u8; 32] = raw.try_into().map_err(|_| CryptoError::AesKeyIllegal)?;
        Ok(EventCrypto {
            token: token.to_string(),
            key,
            owner_key: owner_key.to_string(),
        })
    }

    /// The owner key appended to every plaintext.
    pub fn owner_key(&self) -> &str {
        &self.owner_key
    }

    /// The signing token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `hex(sha1(sorted(token, timestamp, nonce, encrypt)))`.
    pub fn signature(&self, timestamp: &str, nonce: &str, encrypt: &str) -> String {
        signature(&self.token, timestamp, nonce, encrypt)
    }

    /// Encrypts `msg` with the given 16-byte random prefix (deterministic; for tests).
    pub fn encrypt_with_random(&self, msg: &str, random: &[u8; 16]) -> String {
        self.encrypt_owner(msg, random, &self.owner_key)
    }

    /// Encrypts `msg` with a fresh random alphanumeric prefix.
    pub fn encrypt(&self, msg: &str) -> String {
        let random = random_alnum16();
        self.encrypt_with_random(msg, &random)
    }

    /// Encrypts with an explicit owner key (to simulate a wrong one).
    pub fn encrypt_owner(&self, msg: &str, random: &[u8; 16], owner_key: &str) -> String {
        let mut plain = Vec::with_capacity(20 + msg.len() + owner_key.len() + PAD_BLOCK);
        plain.extend_from_slice(random);
        plain.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        plain.extend_from_slice(msg.as_bytes());
        plain.extend_from_slice(owner_key.as_bytes());
        let pad = PAD_BLOCK - (plain.len() % PAD_BLOCK);
        plain.extend(std::iter::repeat_n(pad as u8, pad));
        let len = plain.len();
        let enc =
            Enc::new_from_slices(&self.key, &self.key[..16]).expect("32-byte key, 16-byte iv");
        let out = enc
            .encrypt_padded_mut::<NoPadding>(&mut plain, len)
            .expect("length is a multiple of the block size");
        STANDARD.encode(out)
    }

    /// Decrypts without checking the owner key.
    pub fn decrypt_any_owner(&self, encrypt: &str) -> Result<Decrypted, CryptoError> {
        let mut data = STANDARD
            .decode(encrypt.trim())
            .map_err(|_| CryptoError::DecryptError)?;
        if data.is_empty() || data.len() % 16 != 0 {
            return Err(CryptoError::DecryptError);
        }
        let dec = Dec::new_from_slices(&self.key, &self.key[..16])
            .map_err(|_| CryptoError::DecryptError)?;
        let plain = dec
            .decrypt_padded_mut::<NoPadding>(&mut data)
            .map_err(|_| CryptoError::DecryptError)?;
        let pad = *plain.last().ok_or(CryptoError::DecryptError)? as usize;
        if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
            return Err(CryptoError::DecryptError);
        }
        let body = &plain[..plain.len() - pad];
        if body.len() < 20 {
            return Err(CryptoError::LengthMismatch);
        }
        let n = u32::from_be_bytes([body[16], body[17], body[18], body[19]]) as usize;
        if 20 + n > body.len() {
            return Err(CryptoError::LengthMismatch);
        }
        let msg =
            std::str::from_utf8(&body[20..20 + n]).map_err(|_| CryptoError::LengthMismatch)?;
        let owner =
            std::str::from_utf8(&body[20 + n..]).map_err(|_| CryptoError::LengthMismatch)?;
        Ok(Decrypted {
            random: body[..16].to_vec(),
            msg: msg.to_string(),
            owner_key: owner.to_string(),
        })
    }

    /// Decrypts and checks that the trailing owner key is this crypto's owner key.
    pub fn decrypt(&self, encrypt: &str) -> Result<Decrypted, CryptoError> {
        let d = self.decrypt_any_owner(encrypt)?;
        if d.owner_key != self.owner_key {
            return Err(CryptoError::OwnerKeyMismatch { found: d.owner_key });
        }
        Ok(d)
    }

    /// Verifies the signature, then decrypts (owner key checked).
    pub fn verify_and_decrypt(
        &self,
        signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypt: &str,
    ) -> Result<Decrypted, CryptoError> {
        let expected = self.signature(timestamp, nonce, encrypt);
        if !ct_eq(expected.as_bytes(), signature.as_bytes()) {
            return Err(CryptoError::SignatureMismatch);
        }
        self.decrypt(encrypt)
    }

    /// Builds the JSON reply `{msg_signature, timeStamp, nonce, encrypt}` a receiver sends back.
    pub fn reply(&self, msg: &str, timestamp: &str, nonce: &str) -> serde_json::Value {
        let encrypt = self.encrypt(msg);
        let sig = self.signature(timestamp, nonce, &encrypt);
        serde_json::json!({
            "msg_signature": sig,
            "timeStamp": timestamp,
            "nonce": nonce,
            "encrypt": encrypt,
        })
    }
}

/// `hex(sha1(concat(sort([token, timestamp, nonce, encrypt]))))`, ordinal (byte) order.
pub fn signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    let mut parts = [token, timestamp, nonce, encrypt];
    parts.sort_unstable();
    let mut h = Sha1::new();
    for p in parts {
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 16 random ASCII alphanumerics, as the official libraries use.
pub fn random_alnum16() -> [u8; 16] {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let mut out = [0u8; 16];
    for b in out.iter_mut() {
        *b = CHARS[rng.gen_range(0..CHARS.len())];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Vector {
        token: &'static str,
        key: &'static str,
        owner: &'static str,
        ts: &'static str,
        nonce: &'static str,
        encrypt: &'static str,
        sig: &'static str,
        plain: &'static str,
        random: &'static str,
    }

    const V1: Vector = Vector {
        token: "mryue",
        key: "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7",
        owner: "ding6ccabc44d2c8d38b",
        ts: "1608001896814",
        nonce: "WL4PK6yA",
        encrypt: "0vJiX6vliEpwG3U45CtXqi+m8PXbQRARJ8p8BbDuD1EMTDf0jKpQ79QS93qEk7XHpP6u+oTTrd15NRPvNvmBKyDCYxxOK+HZeKju4yhELOFchzNukR+t8SB/qk4ROMu3",
        sig: "03044561471240d4a14bb09372dfcfd4fd0e40cb",
        plain: r#"{"EventType":"check_url"}"#,
        random: "l7Y3EcX2CU5w8av3",
    };
    const V2: Vector = Vector {
        token: "tokenxxxx",
        key: "o1w0aum42yaptlz8alnhwikjd3jenzt9cb9wmzptgus",
        owner: "dingxxxxxx",
        ts: "1605695694141",
        nonce: "WelUQl6bCqcBa2fM",
        encrypt: "X1VSe9cTJUMZu60d3kyLYTrBq5578ZRJtteU94wG0Q4Uk6E/wQYeJRIC0/UFW5Wkya1Ihz9oXAdLlyC9TRaqsQ==",
        sig: "f36f4ba5337d426c7d4bca0dbcb06b3ddc1388fc",
        plain: "success",
        random: "WelUQl6bCqcBa2fM",
    };
    const V3: Vector = Vector {
        token: "123456",
        key: "4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij",
        owner: "suite4xxxxxxxxxxxxxxx",
        ts: "1445827045067",
        nonce: "nEXhMP4r",
        encrypt: "1a3NBxmCFwkCJvfoQ7WhJHB+iX3qHPsc9JbaDznE1i03peOk1LaOQoRz3+nlyGNhwmwJ3vDMG+OzrHMeiZI7gTRWVdUBmfxjZ8Ej23JVYa9VrYeJ5as7XM/ZpulX8NEQis44w53h1qAgnC3PRzM7Zc/D6Ibr0rgUathB6zRHP8PYrfgnNOS9PhSBdHlegK+AGGanfwjXuQ9+0pZcy0w9lQ==",
        sig: "5a65ceeef9aab2d149439f82dc191dd6c5cbe2c0",
        plain: r#"{"EventType":"check_create_suite_url","Random":"LPIdSnlF","TestSuiteKey":"suite4xxxxxxxxxxxxxxx"}"#,
        random: "hU3bEfGZZewzhG5a",
    };
    const V4: Vector = Vector {
        token: "123456",
        key: "1234567890123456789012345678901234567890123",
        owner: "dingsnotzck6pm5veliw",
        ts: "1614767836",
        nonce: "A7Co0cJLMzIDtMMI",
        encrypt: "YvkvaGe4hQxd3VxRmEty0dVlnCOAqwf56xwTRHDHoOURqhalbmBJQk5FNcRk42Gl5T0YQXZNwpwWSm1xAFJ5ZA==",
        sig: "9a95a004dd16f5c307e849b994173f76aa26e5eb",
        plain: "success",
        random: "dICkEDLj0eb6yAbc",
    };

    fn check_published(v: &Vector) {
        let c = EventCrypto::new(v.token, v.key, v.owner).unwrap();
        assert_eq!(c.signature(v.ts, v.nonce, v.encrypt), v.sig);
        let d = c
            .verify_and_decrypt(v.sig, v.ts, v.nonce, v.encrypt)
            .unwrap();
        assert_eq!(d.msg, v.plain);
        assert_eq!(d.owner_key, v.owner);
        assert_eq!(d.random, v.random.as_bytes());
        // Re-encrypting with the recovered random reproduces the published ciphertext byte for byte.
        let random: [u8; 16] = d.random.clone().try_into().unwrap();
        assert_eq!(c.encrypt_with_random(v.plain, &random), v.encrypt);
    }

    #[test]
    fn published_vector_v1_check_url() {
        check_published(&V1);
    }

    #[test]
    fn published_vector_v2_success() {
        check_published(&V2);
    }

    #[test]
    fn published_vector_v3_suite() {
        check_published(&V3);
    }

    #[test]
    fn published_vector_v4_console_success() {
        check_published(&V4);
    }

    #[test]
    fn v1_aes_key_hex_matches_doc() {
        let c = EventCrypto::new(V1.token, V1.key, V1.owner).unwrap();
        let hex: String = c.key.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "62e7b411f74de7dd3473571ee5c7fa035e7673adc30ded7cd3c6bad1ce5e71de"
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn check_derived(
        token: &str,
        key: &str,
        owner: &str,
        random: &[u8; 16],
        msg: &str,
        ts: &str,
        nonce: &str,
        encrypt: &str,
        sig: &str,
    ) {
        let c = EventCrypto::new(token, key, owner).unwrap();
        let e = c.encrypt_with_random(msg, random);
        assert_eq!(e, encrypt);
        assert_eq!(c.signature(ts, nonce, &e), sig);
        let d = c.verify_and_decrypt(sig, ts, nonce, &e).unwrap();
        assert_eq!(d.msg, msg);
    }

    #[test]
    fn derived_vector_d1() {
        check_derived(
            V1.token,
            V1.key,
            V1.owner,
            b"aaaabbbbccccdddd",
            "success",
            "1608001896814",
            "WL4PK6yA",
            "WriYdpwgW9R3hQnNQCWb99OFF54g0q8jTnsnENNcQVQtGNNNONLnnaRRsyJDkd9rdVbNdMyRj842O3VhNVQOmw==",
            "976c3d87779e1226ef62b26faf308bef50edc62d",
        );
    }

    #[test]
    fn derived_vector_d2() {
        check_derived(
            "666666",
            "TXpRMU5qYzRPVEF4TWpNME5UWTNPRGt3TVRJek5EVTI",
            "ding12345678901234567890123456789012",
            b"aaaabbbbccccdddd",
            "success",
            "1561081681688",
            "88888888",
            "vX4fIRZyaGG0IO7bLFB5yvsMjZkiEv2CS8JLAqRVelUHInjMVee9spSrDdnJNMxEe8EtqQ68fe5Grlz78LchUw==",
            "d7561d6c3f9a27b6ec3e0cd220e8d69c0480f7d5",
        );
    }

    #[test]
    fn derived_vector_d3_non_ascii() {
        let msg = r#"{"EventType":"user_add_org","UserId":["张三"],"CorpId":"ding6ccabc44d2c8d38b","TimeStamp":"1608001896814"}"#;
        assert_eq!(msg.len(), 108);
        check_derived(
            V1.token,
            V1.key,
            V1.owner,
            b"0123456789abcdef",
            msg,
            "1608001896814",
            "WL4PK6yA",
            "IJtyRhe3IwDdDbVy9KT2PbdZ/XoZOdYA3WoLk9SYvsri314EDAub12CKShn/OC+XgABo1UQfTzDsajftKKBN0G7nm9GxN9iSeWFicIjCwMBz+zBl/F26gMzrs0/NjpOmLzRKZt9YosXxEJk3czCMvyn4WdhqU+Qg27DW6VgGaVQ0oX/uFrc4sg2NKZBJcUTXp6vRV11saPyhVN1BaAKl8w==",
            "5bb3599c003d4bb4117441316990f8d051ad9b16",
        );
    }

    #[test]
    fn fixed_order_signature_is_not_the_published_one() {
        let mut h = Sha1::new();
        h.update(format!("{}{}{}{}", V1.token, V1.ts, V1.nonce, V1.encrypt).as_bytes());
        let fixed: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_ne!(fixed, V1.sig);
    }

    #[test]
    fn rejects_bad_inputs_without_panicking() {
        let c = EventCrypto::new(V1.token, V1.key, V1.owner).unwrap();
        assert_eq!(
            c.verify_and_decrypt("00", V1.ts, V1.nonce, V1.encrypt),
            Err(CryptoError::SignatureMismatch)
        );
        assert_eq!(c.decrypt("not base64!!"), Err(CryptoError::DecryptError));
        assert_eq!(c.decrypt("AAAA"), Err(CryptoError::DecryptError));
        assert_eq!(c.decrypt(""), Err(CryptoError::DecryptError));
        let other = EventCrypto::new(V1.token, V1.key, "dingother").unwrap();
        assert!(matches!(
            other.decrypt(V1.encrypt),
            Err(CryptoError::OwnerKeyMismatch { .. })
        ));
        assert!(EventCrypto::new("t", "short", "o").is_err());
        // Random garbage of the right block size decrypts to something, never panics.
        for i in 0..200u32 {
            let mut blob = vec![0u8; 64];
            for (j, b) in blob.iter_mut().enumerate() {
                *b = (i.wrapping_mul(31).wrapping_add(j as u32 * 7)) as u8;
            }
            let _ = c.decrypt(&STANDARD.encode(&blob));
        }
    }

    #[test]
    fn round_trip_and_reply() {
        let c = EventCrypto::new("tok", V2.key, "dingapp").unwrap();
        let e = c.encrypt("你好, world");
        assert_eq!(c.decrypt(&e).unwrap().msg, "你好, world");
        let r = c.reply("success", "123", "nonce");
        let enc = r["encrypt"].as_str().unwrap();
        let d = c
            .verify_and_decrypt(r["msg_signature"].as_str().unwrap(), "123", "nonce", enc)
            .unwrap();
        assert_eq!(d.msg, "success");
    }
}
