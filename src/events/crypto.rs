//! DingTalk HTTP event-callback crypto (docs/dingtalk-api.md §8.3–8.6, §8.10).
//!
//! Pure: no I/O, no clock, no RNG. The 16 random bytes, the timestamp and the nonce of a
//! reply are arguments.
//!
//! * key: `AESKey = Base64_Decode(EncodingAESKey + "=")`, 32 bytes, AES-256-CBC, IV = key[0..16];
//! * plaintext: `random(16) || msg_len (u32 BE) || msg || owner_key`, PKCS#7 padded to 32 bytes;
//! * `encrypt = Base64(AES-256-CBC(padded))`, standard alphabet with `=` padding;
//! * `signature = hex(SHA1(concat(sort([token, timestamp, nonce, encrypt]))))`, ordinal sort.

use std::fmt;

use aes::Aes256;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::Engine as _;
use cbc::cipher::generic_array::GenericArray;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use sha1::{Digest, Sha1};
use subtle::{Choice, ConstantTimeEq};

/// Length of a DingTalk `EncodingAESKey` in characters.
pub const ENCODING_AES_KEY_LEN: usize = 43;

/// PKCS#7 block size used by DingTalk (32, not the AES block size 16).
const PAD_BLOCK: usize = 32;
/// AES block size.
const AES_BLOCK: usize = 16;
/// Length of the random prefix of the plaintext.
const RANDOM_LEN: usize = 16;
/// Offset of the message (random prefix + 4-byte length field).
const MSG_OFFSET: usize = RANDOM_LEN + 4;

/// Base64 engine for the `EncodingAESKey`: DingTalk keys are 43 random alphanumerics, so the
/// two trailing bits of the last character are usually not zero (Java's decoder ignores them).
const KEY_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

type Aes256CbcEnc = cbc::Encryptor<Aes256>;
type Aes256CbcDec = cbc::Decryptor<Aes256>;

/// Why a callback could not be verified, decrypted or set up.
///
/// Messages are meant for a person and never contain the token, the key or any ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The configured `EncodingAESKey` is not 43 Base64 characters decoding to 32 bytes.
    #[error("the event AES key must be exactly 43 Base64 characters (as shown in the DingTalk developer console)")]
    BadAesKey,
    /// The `encrypt` value is not valid standard Base64 with padding.
    #[error("the encrypted event is not valid Base64")]
    BadBase64,
    /// The decoded ciphertext is empty or not a multiple of the AES block size.
    #[error("the encrypted event has an invalid length")]
    BadCiphertextLength,
    /// The PKCS#7 padding (32-byte block) of the decrypted data is invalid.
    #[error("the decrypted event has invalid padding (wrong AES key?)")]
    BadPadding,
    /// The 4-byte message length inside the decrypted data is out of bounds.
    #[error("the decrypted event has an invalid length field (wrong AES key?)")]
    BadLengthField,
    /// The decrypted message or owner key is not UTF-8.
    #[error("the decrypted event is not valid UTF-8")]
    NotUtf8,
    /// The owner key (AppKey / corpId / suiteKey) at the end of the plaintext is not an expected one.
    #[error("the event was encrypted for another app or organization (owner key mismatch)")]
    OwnerKeyMismatch,
    /// The signature does not match the token, timestamp, nonce and ciphertext.
    #[error("the event signature does not match (wrong token or tampered request)")]
    SignatureMismatch,
}

impl CryptoError {
    /// A stable machine-readable code, e.g. `"bad_signature"`.
    pub fn code(&self) -> &'static str {
        match self {
            CryptoError::BadAesKey => "bad_aes_key",
            CryptoError::BadBase64 => "bad_base64",
            CryptoError::BadCiphertextLength => "bad_ciphertext_length",
            CryptoError::BadPadding => "bad_padding",
            CryptoError::BadLengthField => "bad_length_field",
            CryptoError::NotUtf8 => "not_utf8",
            CryptoError::OwnerKeyMismatch => "owner_key_mismatch",
            CryptoError::SignatureMismatch => "bad_signature",
        }
    }

    /// The matching error code of DingTalk's own crypto libraries (900001–900010, doc §8.10).
    ///
    /// Mirrors the Java library: decoding/cipher failures are 900008, failures while parsing
    /// the decrypted bytes are 900009.
    pub fn dingtalk_code(&self) -> u32 {
        match self {
            CryptoError::BadAesKey => 900_004,
            CryptoError::SignatureMismatch => 900_005,
            CryptoError::BadBase64 | CryptoError::BadCiphertextLength => 900_008,
            CryptoError::BadPadding | CryptoError::BadLengthField | CryptoError::NotUtf8 => 900_009,
            CryptoError::OwnerKeyMismatch => 900_010,
        }
    }
}

/// The parts of a decrypted callback plaintext.
#[derive(Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The 16 random bytes that prefix the plaintext.
    pub random: [u8; 16],
    /// The message (the event JSON, or `success`).
    pub msg: String,
    /// The trailing owner key (AppKey, corpId or suiteKey).
    pub owner_key: String,
}

impl fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decrypted")
            .field("msg_len", &self.msg.len())
            .field("owner_key", &self.owner_key)
            .finish_non_exhaustive()
    }
}

/// Signs, verifies, encrypts and decrypts DingTalk HTTP event callbacks for one app.
///
/// Holds secrets: `Debug` prints only `CallbackCrypto([redacted])`.
#[derive(Clone)]
pub struct CallbackCrypto {
    token: String,
    key: [u8; 32],
    owner_keys: Vec<String>,
}

impl fmt::Debug for CallbackCrypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CallbackCrypto([redacted])")
    }
}

impl CallbackCrypto {
    /// Builds the crypto for a `token`, a 43-character `encoding_aes_key` and the owner keys
    /// accepted when decrypting (AppKey and/or corpId; empty = accept any owner key).
    ///
    /// # Errors
    ///
    /// [`CryptoError::BadAesKey`] unless the key is 43 Base64 characters decoding
    /// (with a `=` appended) to exactly 32 bytes.
    pub fn new(
        token: &str,
        encoding_aes_key: &str,
        owner_keys: Vec<String>,
    ) -> Result<Self, CryptoError> {
        if encoding_aes_key.len() != ENCODING_AES_KEY_LEN {
            return Err(CryptoError::BadAesKey);
        }
        let mut padded = String::with_capacity(ENCODING_AES_KEY_LEN + 1);
        padded.push_str(encoding_aes_key);
        padded.push('=');
        let decoded = KEY_ENGINE
            .decode(padded.as_bytes())
            .map_err(|_| CryptoError::BadAesKey)?;
        let key: [u8; 32] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::BadAesKey)?;
        Ok(CallbackCrypto {
            token: token.to_owned(),
            key,
            owner_keys,
        })
    }

    /// The same crypto, accepting only `owner_keys` when decrypting (empty = any), without
    /// deriving the AES key again.
    pub fn with_owner_keys(mut self, owner_keys: Vec<String>) -> Self {
        self.owner_keys = owner_keys;
        self
    }

    /// Lowercase hex SHA-1 of `token`, `timestamp`, `nonce` and `encrypt` sorted in byte order
    /// and concatenated (doc §8.5).
    pub fn signature(&self, timestamp: &str, nonce: &str, encrypt: &str) -> String {
        let mut parts = [self.token.as_str(), timestamp, nonce, encrypt];
        parts.sort_unstable();
        let mut hasher = Sha1::new();
        for part in parts {
            hasher.update(part.as_bytes());
        }
        to_hex(&hasher.finalize())
    }

    /// Checks a received signature in constant time (hex digits compared case-insensitively).
    ///
    /// # Errors
    ///
    /// [`CryptoError::SignatureMismatch`] if it does not match.
    pub fn verify_signature(
        &self,
        signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypt: &str,
    ) -> Result<(), CryptoError> {
        let expected = self.signature(timestamp, nonce, encrypt);
        let received = signature.to_ascii_lowercase();
        if bool::from(expected.as_bytes().ct_eq(received.as_bytes())) {
            Ok(())
        } else {
            Err(CryptoError::SignatureMismatch)
        }
    }

    /// Decrypts an `encrypt` value and returns the message, after checking the owner key.
    ///
    /// # Errors
    ///
    /// As [`CallbackCrypto::decrypt_parts`].
    #[cfg(test)]
    pub fn decrypt(&self, encrypt: &str) -> Result<String, CryptoError> {
        self.decrypt_parts(encrypt).map(|d| d.msg)
    }

    /// Decrypts an `encrypt` value into its parts (random prefix, message, owner key), after
    /// checking the owner key against the configured ones. Never panics, whatever the input.
    ///
    /// # Errors
    ///
    /// Any [`CryptoError`] but `BadAesKey` and `SignatureMismatch`, for malformed input, a
    /// wrong key, or an owner key that is not one of the configured ones.
    pub fn decrypt_parts(&self, encrypt: &str) -> Result<Decrypted, CryptoError> {
        let mut data = STANDARD
            .decode(encrypt.as_bytes())
            .map_err(|_| CryptoError::BadBase64)?;
        if data.is_empty() || data.len() % AES_BLOCK != 0 {
            return Err(CryptoError::BadCiphertextLength);
        }
        let mut cipher = Aes256CbcDec::new(
            GenericArray::from_slice(&self.key),
            GenericArray::from_slice(&self.key[..AES_BLOCK]),
        );
        for block in data.chunks_exact_mut(AES_BLOCK) {
            cipher.decrypt_block_mut(GenericArray::from_mut_slice(block));
        }

        let plain = strip_padding(&data)?;
        if plain.len() < MSG_OFFSET {
            return Err(CryptoError::BadLengthField);
        }
        let mut random = [0u8; RANDOM_LEN];
        random.copy_from_slice(&plain[..RANDOM_LEN]);
        let len_field = [plain[16], plain[17], plain[18], plain[19]];
        let msg_len = usize::try_from(u32::from_be_bytes(len_field))
            .map_err(|_| CryptoError::BadLengthField)?;
        let msg_end = MSG_OFFSET
            .checked_add(msg_len)
            .filter(|end| *end <= plain.len())
            .ok_or(CryptoError::BadLengthField)?;
        let msg = &plain[MSG_OFFSET..msg_end];
        let owner = &plain[msg_end..];

        if !self.owner_key_matches(owner) {
            return Err(CryptoError::OwnerKeyMismatch);
        }
        let msg = std::str::from_utf8(msg).map_err(|_| CryptoError::NotUtf8)?;
        let owner = std::str::from_utf8(owner).map_err(|_| CryptoError::NotUtf8)?;
        Ok(Decrypted {
            random,
            msg: msg.to_owned(),
            owner_key: owner.to_owned(),
        })
    }

    /// Encrypts `msg` for `owner_key` with the given 16 random bytes: the exact inverse of
    /// [`CallbackCrypto::decrypt_parts`] (PKCS#7 to 32 bytes, standard Base64 with padding).
    ///
    /// # Panics
    ///
    /// If `msg` is longer than `u32::MAX` bytes (it cannot be represented in the format).
    pub fn encrypt(&self, msg: &str, random16: &[u8; 16], owner_key: &str) -> String {
        let msg_len = u32::try_from(msg.len()).expect("message longer than u32::MAX bytes");
        let unpadded = MSG_OFFSET + msg.len() + owner_key.len();
        let pad = PAD_BLOCK - unpadded % PAD_BLOCK;
        let mut data = Vec::with_capacity(unpadded + pad);
        data.extend_from_slice(random16);
        data.extend_from_slice(&msg_len.to_be_bytes());
        data.extend_from_slice(msg.as_bytes());
        data.extend_from_slice(owner_key.as_bytes());
        // `pad` is in 1..=32, so it fits a byte.
        data.resize(unpadded + pad, pad as u8);

        let mut cipher = Aes256CbcEnc::new(
            GenericArray::from_slice(&self.key),
            GenericArray::from_slice(&self.key[..AES_BLOCK]),
        );
        for block in data.chunks_exact_mut(AES_BLOCK) {
            cipher.encrypt_block_mut(GenericArray::from_mut_slice(block));
        }
        STANDARD.encode(&data)
    }

    /// The JSON body answering a callback: the encrypted plaintext `success`, signed with
    /// `timestamp` and `nonce` (doc §8.6; note the camel-case `timeStamp` key).
    pub fn success_reply(
        &self,
        random16: &[u8; 16],
        owner_key: &str,
        timestamp: &str,
        nonce: &str,
    ) -> serde_json::Value {
        let encrypt = self.encrypt("success", random16, owner_key);
        let msg_signature = self.signature(timestamp, nonce, &encrypt);
        serde_json::json!({
            "msg_signature": msg_signature,
            "timeStamp": timestamp,
            "nonce": nonce,
            "encrypt": encrypt,
        })
    }

    /// True if `owner` equals one of the configured owner keys (constant time per key), or
    /// if none are configured.
    fn owner_key_matches(&self, owner: &[u8]) -> bool {
        if self.owner_keys.is_empty() {
            return true;
        }
        let mut found = Choice::from(0);
        for key in &self.owner_keys {
            found |= key.as_bytes().ct_eq(owner);
        }
        bool::from(found)
    }
}

/// Removes PKCS#7 padding with a 32-byte block: the last byte `n` must be in 1..=32, not
/// exceed the data, and the last `n` bytes must all equal `n`.
fn strip_padding(data: &[u8]) -> Result<&[u8], CryptoError> {
    let pad = usize::from(*data.last().ok_or(CryptoError::BadPadding)?);
    if pad == 0 || pad > PAD_BLOCK || pad > data.len() {
        return Err(CryptoError::BadPadding);
    }
    let (plain, padding) = data.split_at(data.len() - pad);
    if padding.iter().any(|b| usize::from(*b) != pad) {
        return Err(CryptoError::BadPadding);
    }
    Ok(plain)
}

/// Lowercase hex encoding.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Vector {
        token: &'static str,
        aes_key: &'static str,
        owner_key: &'static str,
        timestamp: &'static str,
        nonce: &'static str,
        encrypt: &'static str,
        signature: &'static str,
        plaintext: &'static str,
        random: &'static str,
    }

    const V1: Vector = Vector {
        token: "mryue",
        aes_key: "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7",
        owner_key: "ding6ccabc44d2c8d38b",
        timestamp: "1608001896814",
        nonce: "WL4PK6yA",
        encrypt: "0vJiX6vliEpwG3U45CtXqi+m8PXbQRARJ8p8BbDuD1EMTDf0jKpQ79QS93qEk7XHpP6u+oTTrd15NRPvNvmBKyDCYxxOK+HZeKju4yhELOFchzNukR+t8SB/qk4ROMu3",
        signature: "03044561471240d4a14bb09372dfcfd4fd0e40cb",
        plaintext: r#"{"EventType":"check_url"}"#,
        random: "l7Y3EcX2CU5w8av3",
    };

    const V2: Vector = Vector {
        token: "tokenxxxx",
        aes_key: "o1w0aum42yaptlz8alnhwikjd3jenzt9cb9wmzptgus",
        owner_key: "dingxxxxxx",
        timestamp: "1605695694141",
        nonce: "WelUQl6bCqcBa2fM",
        encrypt: "X1VSe9cTJUMZu60d3kyLYTrBq5578ZRJtteU94wG0Q4Uk6E/wQYeJRIC0/UFW5Wkya1Ihz9oXAdLlyC9TRaqsQ==",
        signature: "f36f4ba5337d426c7d4bca0dbcb06b3ddc1388fc",
        plaintext: "success",
        random: "WelUQl6bCqcBa2fM",
    };

    const V3: Vector = Vector {
        token: "123456",
        aes_key: "4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij",
        owner_key: "suite4xxxxxxxxxxxxxxx",
        timestamp: "1445827045067",
        nonce: "nEXhMP4r",
        encrypt: "1a3NBxmCFwkCJvfoQ7WhJHB+iX3qHPsc9JbaDznE1i03peOk1LaOQoRz3+nlyGNhwmwJ3vDMG+OzrHMeiZI7gTRWVdUBmfxjZ8Ej23JVYa9VrYeJ5as7XM/ZpulX8NEQis44w53h1qAgnC3PRzM7Zc/D6Ibr0rgUathB6zRHP8PYrfgnNOS9PhSBdHlegK+AGGanfwjXuQ9+0pZcy0w9lQ==",
        signature: "5a65ceeef9aab2d149439f82dc191dd6c5cbe2c0",
        plaintext: r#"{"EventType":"check_create_suite_url","Random":"LPIdSnlF","TestSuiteKey":"suite4xxxxxxxxxxxxxxx"}"#,
        random: "hU3bEfGZZewzhG5a",
    };

    const V4: Vector = Vector {
        token: "123456",
        aes_key: "1234567890123456789012345678901234567890123",
        owner_key: "dingsnotzck6pm5veliw",
        timestamp: "1614767836",
        nonce: "A7Co0cJLMzIDtMMI",
        encrypt: "YvkvaGe4hQxd3VxRmEty0dVlnCOAqwf56xwTRHDHoOURqhalbmBJQk5FNcRk42Gl5T0YQXZNwpwWSm1xAFJ5ZA==",
        signature: "9a95a004dd16f5c307e849b994173f76aa26e5eb",
        plaintext: "success",
        random: "dICkEDLj0eb6yAbc",
    };

    const PUBLISHED: [&Vector; 4] = [&V1, &V2, &V3, &V4];

    fn crypto_for(v: &Vector) -> CallbackCrypto {
        CallbackCrypto::new(v.token, v.aes_key, vec![v.owner_key.to_owned()]).unwrap()
    }

    fn random16(s: &str) -> [u8; 16] {
        s.as_bytes().try_into().unwrap()
    }

    /// Decrypts without padding/layout checks (test helper to inspect the raw padded bytes).
    fn raw_decrypt(c: &CallbackCrypto, encrypt: &str) -> Vec<u8> {
        let mut data = STANDARD.decode(encrypt).unwrap();
        let mut cipher = Aes256CbcDec::new(
            GenericArray::from_slice(&c.key),
            GenericArray::from_slice(&c.key[..16]),
        );
        for block in data.chunks_exact_mut(16) {
            cipher.decrypt_block_mut(GenericArray::from_mut_slice(block));
        }
        data
    }

    /// Encrypts raw bytes (already padded to 16) without any layout, to craft bad plaintexts.
    fn raw_encrypt(c: &CallbackCrypto, plain: &[u8]) -> String {
        assert_eq!(plain.len() % 16, 0);
        let mut data = plain.to_vec();
        let mut cipher = Aes256CbcEnc::new(
            GenericArray::from_slice(&c.key),
            GenericArray::from_slice(&c.key[..16]),
        );
        for block in data.chunks_exact_mut(16) {
            cipher.encrypt_block_mut(GenericArray::from_mut_slice(block));
        }
        STANDARD.encode(&data)
    }

    #[test]
    fn v1_aes_key_bytes() {
        let c = crypto_for(&V1);
        assert_eq!(
            to_hex(&c.key),
            "62e7b411f74de7dd3473571ee5c7fa035e7673adc30ded7cd3c6bad1ce5e71de"
        );
    }

    #[test]
    fn published_vectors_signature_verifies() {
        for v in PUBLISHED {
            let c = crypto_for(v);
            assert_eq!(c.signature(v.timestamp, v.nonce, v.encrypt), v.signature);
            c.verify_signature(v.signature, v.timestamp, v.nonce, v.encrypt)
                .unwrap();
        }
    }

    #[test]
    fn published_vectors_fixed_order_is_not_the_signature() {
        // V1-V3 need the sort. In V4 the fixed order token+timestamp+nonce+encrypt happens to
        // be the sorted order already ("123456" < "1614767836" < "A7Co..." < "Yvkv..."), so
        // the fixed-order hash equals the signature there (doc §8.5 says otherwise).
        for v in PUBLISHED {
            let mut h = Sha1::new();
            h.update(format!("{}{}{}{}", v.token, v.timestamp, v.nonce, v.encrypt).as_bytes());
            let fixed = to_hex(&h.finalize());
            let mut parts = [v.token, v.timestamp, v.nonce, v.encrypt];
            let unsorted = parts;
            parts.sort_unstable();
            if parts == unsorted {
                assert_eq!(fixed, v.signature);
            } else {
                assert_ne!(fixed, v.signature);
            }
        }
        for v in [&V1, &V2, &V3] {
            let mut h = Sha1::new();
            h.update(format!("{}{}{}{}", v.token, v.timestamp, v.nonce, v.encrypt).as_bytes());
            assert_ne!(to_hex(&h.finalize()), v.signature);
        }
    }

    #[test]
    fn published_vectors_decrypt() {
        for v in PUBLISHED {
            let c = crypto_for(v);
            assert_eq!(c.decrypt(v.encrypt).unwrap(), v.plaintext);
            let parts = c.decrypt_parts(v.encrypt).unwrap();
            assert_eq!(parts.msg, v.plaintext);
            assert_eq!(parts.owner_key, v.owner_key);
            assert_eq!(&parts.random, v.random.as_bytes());
        }
    }

    #[test]
    fn published_vectors_reencrypt_byte_for_byte() {
        for v in PUBLISHED {
            let c = crypto_for(v);
            let parts = c.decrypt_parts(v.encrypt).unwrap();
            assert_eq!(
                c.encrypt(&parts.msg, &parts.random, &parts.owner_key),
                v.encrypt
            );
        }
    }

    #[test]
    fn published_vectors_internals() {
        // (msg_len, padded length, pad byte) as recovered in doc §8.9.
        let expected: [(Option<u32>, usize, u8); 4] = [
            (Some(25), 96, 31),
            (Some(7), 64, 27),
            (None, 160, 22),
            (None, 64, 17),
        ];
        for (v, (msg_len, padded_len, pad)) in PUBLISHED.iter().zip(expected) {
            let c = crypto_for(v);
            let raw = raw_decrypt(&c, v.encrypt);
            assert_eq!(raw.len(), padded_len);
            assert_eq!(*raw.last().unwrap(), pad);
            if let Some(len) = msg_len {
                assert_eq!(u32::from_be_bytes(raw[16..20].try_into().unwrap()), len);
            }
        }
    }

    #[test]
    fn v2_and_v4_success_reply_matches_published() {
        for v in [&V2, &V4] {
            let c = crypto_for(v);
            let reply = c.success_reply(&random16(v.random), v.owner_key, v.timestamp, v.nonce);
            assert_eq!(
                reply,
                serde_json::json!({
                    "msg_signature": v.signature,
                    "timeStamp": v.timestamp,
                    "nonce": v.nonce,
                    "encrypt": v.encrypt,
                })
            );
        }
    }

    struct Derived {
        token: &'static str,
        aes_key: &'static str,
        owner_key: &'static str,
        random: &'static str,
        msg: &'static str,
        timestamp: &'static str,
        nonce: &'static str,
        encrypt: &'static str,
        signature: &'static str,
    }

    const D1: Derived = Derived {
        token: "mryue",
        aes_key: "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7",
        owner_key: "ding6ccabc44d2c8d38b",
        random: "aaaabbbbccccdddd",
        msg: "success",
        timestamp: "1608001896814",
        nonce: "WL4PK6yA",
        encrypt: "WriYdpwgW9R3hQnNQCWb99OFF54g0q8jTnsnENNcQVQtGNNNONLnnaRRsyJDkd9rdVbNdMyRj842O3VhNVQOmw==",
        signature: "976c3d87779e1226ef62b26faf308bef50edc62d",
    };

    const D2: Derived = Derived {
        token: "666666",
        aes_key: "TXpRMU5qYzRPVEF4TWpNME5UWTNPRGt3TVRJek5EVTI",
        owner_key: "ding12345678901234567890123456789012",
        random: "aaaabbbbccccdddd",
        msg: "success",
        timestamp: "1561081681688",
        nonce: "88888888",
        encrypt: "vX4fIRZyaGG0IO7bLFB5yvsMjZkiEv2CS8JLAqRVelUHInjMVee9spSrDdnJNMxEe8EtqQ68fe5Grlz78LchUw==",
        signature: "d7561d6c3f9a27b6ec3e0cd220e8d69c0480f7d5",
    };

    const D3: Derived = Derived {
        token: "mryue",
        aes_key: "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7",
        owner_key: "ding6ccabc44d2c8d38b",
        random: "0123456789abcdef",
        msg: r#"{"EventType":"user_add_org","UserId":["张三"],"CorpId":"ding6ccabc44d2c8d38b","TimeStamp":"1608001896814"}"#,
        timestamp: "1608001896814",
        nonce: "WL4PK6yA",
        encrypt: "IJtyRhe3IwDdDbVy9KT2PbdZ/XoZOdYA3WoLk9SYvsri314EDAub12CKShn/OC+XgABo1UQfTzDsajftKKBN0G7nm9GxN9iSeWFicIjCwMBz+zBl/F26gMzrs0/NjpOmLzRKZt9YosXxEJk3czCMvyn4WdhqU+Qg27DW6VgGaVQ0oX/uFrc4sg2NKZBJcUTXp6vRV11saPyhVN1BaAKl8w==",
        signature: "5bb3599c003d4bb4117441316990f8d051ad9b16",
    };

    #[test]
    fn derived_vectors_encrypt_and_sign_exactly() {
        for d in [&D1, &D2, &D3] {
            let c = CallbackCrypto::new(d.token, d.aes_key, vec![d.owner_key.to_owned()]).unwrap();
            let enc = c.encrypt(d.msg, &random16(d.random), d.owner_key);
            assert_eq!(enc, d.encrypt);
            assert_eq!(c.signature(d.timestamp, d.nonce, &enc), d.signature);
            c.verify_signature(d.signature, d.timestamp, d.nonce, &enc)
                .unwrap();
            let parts = c.decrypt_parts(&enc).unwrap();
            assert_eq!(parts.msg, d.msg);
            assert_eq!(parts.owner_key, d.owner_key);
            assert_eq!(&parts.random, d.random.as_bytes());
        }
    }

    #[test]
    fn d1_and_d2_success_reply() {
        for d in [&D1, &D2] {
            let c = CallbackCrypto::new(d.token, d.aes_key, vec![]).unwrap();
            let reply = c.success_reply(&random16(d.random), d.owner_key, d.timestamp, d.nonce);
            assert_eq!(reply["msg_signature"], d.signature);
            assert_eq!(reply["timeStamp"], d.timestamp);
            assert_eq!(reply["nonce"], d.nonce);
            assert_eq!(reply["encrypt"], d.encrypt);
            assert_eq!(reply.as_object().unwrap().len(), 4);
        }
    }

    #[test]
    fn d3_length_field_counts_utf8_bytes() {
        let c = CallbackCrypto::new(D3.token, D3.aes_key, vec![]).unwrap();
        let raw = raw_decrypt(&c, D3.encrypt);
        assert_eq!(D3.msg.chars().count(), 104);
        assert_eq!(u32::from_be_bytes(raw[16..20].try_into().unwrap()), 108);
    }

    #[test]
    fn tampered_signature_is_rejected() {
        let c = crypto_for(&V1);
        let mut sig = V1.signature.to_owned();
        sig.replace_range(0..1, "1");
        assert_eq!(
            c.verify_signature(&sig, V1.timestamp, V1.nonce, V1.encrypt),
            Err(CryptoError::SignatureMismatch)
        );
        for bad in ["", "0304", &format!("{}0", V1.signature), "not hex at all"] {
            assert_eq!(
                c.verify_signature(bad, V1.timestamp, V1.nonce, V1.encrypt),
                Err(CryptoError::SignatureMismatch)
            );
        }
        // Any changed input also breaks the signature.
        assert!(c
            .verify_signature(V1.signature, "1608001896815", V1.nonce, V1.encrypt)
            .is_err());
        assert!(c
            .verify_signature(V1.signature, V1.timestamp, "WL4PK6yB", V1.encrypt)
            .is_err());
        assert!(c
            .verify_signature(V1.signature, V1.timestamp, V1.nonce, V2.encrypt)
            .is_err());
        let other_token = CallbackCrypto::new("other", V1.aes_key, vec![]).unwrap();
        assert!(other_token
            .verify_signature(V1.signature, V1.timestamp, V1.nonce, V1.encrypt)
            .is_err());
    }

    #[test]
    fn uppercase_signature_is_accepted() {
        let c = crypto_for(&V1);
        c.verify_signature(
            &V1.signature.to_ascii_uppercase(),
            V1.timestamp,
            V1.nonce,
            V1.encrypt,
        )
        .unwrap();
    }

    #[test]
    fn wrong_owner_key_is_rejected() {
        let c = CallbackCrypto::new(V1.token, V1.aes_key, vec!["dingother".into()]).unwrap();
        assert_eq!(c.decrypt(V1.encrypt), Err(CryptoError::OwnerKeyMismatch));
        // A prefix or extension of the right key does not match either.
        for k in ["ding6ccabc44d2c8d38", "ding6ccabc44d2c8d38bX", ""] {
            let c = CallbackCrypto::new(V1.token, V1.aes_key, vec![k.into()]).unwrap();
            assert_eq!(c.decrypt(V1.encrypt), Err(CryptoError::OwnerKeyMismatch));
        }
    }

    #[test]
    fn any_of_several_owner_keys_matches() {
        let c = CallbackCrypto::new(
            V1.token,
            V1.aes_key,
            vec!["dingappkey".into(), V1.owner_key.into()],
        )
        .unwrap();
        assert_eq!(c.decrypt(V1.encrypt).unwrap(), V1.plaintext);
    }

    #[test]
    fn empty_owner_keys_accept_any() {
        let c = CallbackCrypto::new(V3.token, V3.aes_key, vec![]).unwrap();
        let parts = c.decrypt_parts(V3.encrypt).unwrap();
        assert_eq!(parts.owner_key, V3.owner_key);
    }

    #[test]
    fn wrong_aes_key_is_rejected() {
        for key in [
            "",
            "short",
            &V1.aes_key[..42],
            &format!("{}A", V1.aes_key),
            &format!("{}=", V1.aes_key),
            &format!("{}==", &V1.aes_key[..42]),
            // 43 bytes but not Base64.
            "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd!",
            "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ec-_",
            "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ec  ",
            // 43 bytes, 42 characters.
            "é34567890123456789012345678901234567890123",
        ] {
            let err = CallbackCrypto::new("t", key, vec![]).unwrap_err();
            assert_eq!(err, CryptoError::BadAesKey, "key {key:?}");
            assert_eq!(err.code(), "bad_aes_key");
            assert_eq!(err.dingtalk_code(), 900_004);
        }
    }

    #[test]
    fn non_canonical_trailing_bits_in_key_are_accepted() {
        // V1 and V3 keys end in characters whose two low bits are not zero.
        assert!(CallbackCrypto::new("t", V1.aes_key, vec![]).is_ok());
        assert!(CallbackCrypto::new("t", V3.aes_key, vec![]).is_ok());
    }

    #[test]
    fn wrong_aes_key_fails_cleanly() {
        let c = CallbackCrypto::new(V1.token, V4.aes_key, vec![V1.owner_key.into()]).unwrap();
        let err = c.decrypt(V1.encrypt).unwrap_err();
        assert!(matches!(
            err,
            CryptoError::BadPadding
                | CryptoError::BadLengthField
                | CryptoError::OwnerKeyMismatch
                | CryptoError::NotUtf8
        ));
    }

    #[test]
    fn garbage_of_every_length_never_panics() {
        let c = crypto_for(&V1);
        let valid = STANDARD.decode(V1.encrypt).unwrap();
        for len in 0..200usize {
            // Arbitrary bytes of this length, Base64-encoded.
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + len * 11) as u8).collect();
            let _ = c.decrypt(&STANDARD.encode(&bytes));
            // Truncations and extensions of a valid ciphertext.
            let mut cut: Vec<u8> = valid.iter().copied().cycle().take(len).collect();
            let r = c.decrypt(&STANDARD.encode(&cut));
            if len != valid.len() {
                assert!(r.is_err() || len > valid.len(), "len {len}");
            }
            cut.reverse();
            let _ = c.decrypt(&STANDARD.encode(&cut));
            // Truncations of the Base64 text itself and raw garbage text.
            let _ = c.decrypt(&V1.encrypt[..len.min(V1.encrypt.len())]);
            let text: String = (0..len)
                .map(|i| char::from(b'!' + (i % 90) as u8))
                .collect();
            let _ = c.decrypt(&text);
        }
    }

    #[test]
    fn non_multiple_of_16_is_rejected() {
        let c = crypto_for(&V1);
        for len in [1usize, 15, 17, 31, 33, 95] {
            let enc = STANDARD.encode(vec![7u8; len]);
            assert_eq!(c.decrypt(&enc), Err(CryptoError::BadCiphertextLength));
        }
        assert_eq!(c.decrypt(""), Err(CryptoError::BadCiphertextLength));
    }

    #[test]
    fn bad_base64_is_rejected() {
        let c = crypto_for(&V1);
        for bad in [
            "!!!!",
            "abc",
            "ab=c",
            &V1.encrypt.replace('+', "-"),
            &format!(" {}", V1.encrypt),
            &format!("{}\n", V1.encrypt),
            V2.encrypt.trim_end_matches('='),
        ] {
            let err = c.decrypt(bad).unwrap_err();
            assert_eq!(err, CryptoError::BadBase64, "{bad:?}");
            assert_eq!(err.dingtalk_code(), 900_008);
        }
    }

    fn layout(msg: &[u8], owner: &[u8], len_field: u32) -> Vec<u8> {
        let mut v = b"0123456789abcdef".to_vec();
        v.extend_from_slice(&len_field.to_be_bytes());
        v.extend_from_slice(msg);
        v.extend_from_slice(owner);
        v
    }

    fn pad32(mut v: Vec<u8>) -> Vec<u8> {
        let n = 32 - v.len() % 32;
        v.resize(v.len() + n, n as u8);
        v
    }

    #[test]
    fn bad_padding_bytes_are_rejected() {
        let c = crypto_for(&V1);
        for last in [0u8, 33, 255] {
            let mut plain = layout(b"success", V1.owner_key.as_bytes(), 7);
            plain.resize(64, last);
            let enc = raw_encrypt(&c, &plain);
            assert_eq!(c.decrypt(&enc), Err(CryptoError::BadPadding), "pad {last}");
        }
        // Inconsistent padding bytes.
        let mut plain = pad32(layout(b"success", V1.owner_key.as_bytes(), 7));
        let n = plain.len();
        plain[n - 2] ^= 1;
        assert_eq!(
            c.decrypt(&raw_encrypt(&c, &plain)),
            Err(CryptoError::BadPadding)
        );
        // Pad larger than the data.
        let plain = vec![32u8; 16];
        assert_eq!(
            c.decrypt(&raw_encrypt(&c, &plain)),
            Err(CryptoError::BadPadding)
        );
        assert_eq!(CryptoError::BadPadding.dingtalk_code(), 900_009);
    }

    #[test]
    fn sixteen_byte_padding_is_accepted() {
        // DingTalkCrypto.go pads to 16; the 32-byte unpadding still accepts it.
        let c = crypto_for(&V1);
        let mut plain = layout(b"success", V1.owner_key.as_bytes(), 7);
        let n = 16 - plain.len() % 16;
        plain.resize(plain.len() + n, n as u8);
        assert_eq!(c.decrypt(&raw_encrypt(&c, &plain)).unwrap(), "success");
    }

    #[test]
    fn bad_length_field_is_rejected() {
        let c = crypto_for(&V1);
        for len_field in [8u32, 100, u32::MAX, u32::MAX - 19] {
            let plain = pad32(layout(b"success", b"", len_field));
            assert_eq!(
                c.decrypt(&raw_encrypt(&c, &plain)),
                Err(CryptoError::BadLengthField),
                "len {len_field}"
            );
        }
        // Too short to hold random + length after unpadding.
        let mut plain = vec![1u8; 19];
        plain.resize(32, 13);
        assert_eq!(
            c.decrypt(&raw_encrypt(&c, &plain)),
            Err(CryptoError::BadLengthField)
        );
        assert_eq!(CryptoError::BadLengthField.dingtalk_code(), 900_009);
    }

    #[test]
    fn length_field_too_small_leaves_rest_as_owner_key() {
        let c = crypto_for(&V1);
        let plain = pad32(layout(b"success", V1.owner_key.as_bytes(), 3));
        assert_eq!(
            c.decrypt(&raw_encrypt(&c, &plain)),
            Err(CryptoError::OwnerKeyMismatch)
        );
    }

    #[test]
    fn non_utf8_message_is_rejected() {
        let c = crypto_for(&V1);
        let plain = pad32(layout(&[0xff, 0xfe, b'a'], V1.owner_key.as_bytes(), 3));
        assert_eq!(
            c.decrypt(&raw_encrypt(&c, &plain)),
            Err(CryptoError::NotUtf8)
        );
        let open = CallbackCrypto::new(V1.token, V1.aes_key, vec![]).unwrap();
        let plain = pad32(layout(b"ok", &[0xc3], 2));
        assert_eq!(
            open.decrypt(&raw_encrypt(&c, &plain)),
            Err(CryptoError::NotUtf8)
        );
    }

    #[test]
    fn roundtrip_lengths_around_block_boundaries() {
        let c = crypto_for(&V1);
        for n in 0..100usize {
            let msg: String = "é".repeat(n / 2) + &"x".repeat(n % 2);
            let enc = c.encrypt(&msg, b"ABCDEFGHIJKLMNOP", V1.owner_key);
            assert!(!enc.contains('\n'));
            let raw = raw_decrypt(&c, &enc);
            assert_eq!(raw.len() % 32, 0);
            let pad = *raw.last().unwrap();
            assert!((1..=32).contains(&pad));
            let parts = c.decrypt_parts(&enc).unwrap();
            assert_eq!(parts.msg, msg);
            assert_eq!(&parts.random, b"ABCDEFGHIJKLMNOP");
        }
    }

    #[test]
    fn debug_is_redacted() {
        let c = crypto_for(&V1);
        assert_eq!(format!("{c:?}"), "CallbackCrypto([redacted])");
        assert_eq!(format!("{c:#?}"), "CallbackCrypto([redacted])");
    }

    #[test]
    fn errors_have_stable_codes_and_no_secrets() {
        let all = [
            CryptoError::BadAesKey,
            CryptoError::BadBase64,
            CryptoError::BadCiphertextLength,
            CryptoError::BadPadding,
            CryptoError::BadLengthField,
            CryptoError::NotUtf8,
            CryptoError::OwnerKeyMismatch,
            CryptoError::SignatureMismatch,
        ];
        let codes: Vec<&str> = all.iter().map(CryptoError::code).collect();
        assert_eq!(
            codes,
            [
                "bad_aes_key",
                "bad_base64",
                "bad_ciphertext_length",
                "bad_padding",
                "bad_length_field",
                "not_utf8",
                "owner_key_mismatch",
                "bad_signature"
            ]
        );
        for e in &all {
            assert!((900_001..=900_010).contains(&e.dingtalk_code()));
            let msg = e.to_string();
            assert!(!msg.is_empty());
            for secret in [V1.token, V1.aes_key, V1.owner_key, V1.encrypt] {
                assert!(!msg.contains(secret));
            }
        }
        assert_eq!(CryptoError::SignatureMismatch.dingtalk_code(), 900_005);
        assert_eq!(CryptoError::OwnerKeyMismatch.dingtalk_code(), 900_010);
    }
}
