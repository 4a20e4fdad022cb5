//! The event-callback crypto on arbitrary input: `CallbackCrypto::new`, `verify_signature` and
//! `decrypt_parts` never panic, and encrypt → decrypt gives back the message, random prefix and
//! owner key, signed so that `verify_signature` accepts it (in either hex case) and rejects a
//! changed signature.
//!
//! Input: text lines `token`, `EncodingAESKey` (or `#0`..`#3`: a published key), `owner key`,
//! `timestamp`, `nonce`, `encrypt`, `signature`, then the message (rest of the input).
#![no_main]

use dingtalk_plugin::fuzzing::CallbackCrypto;
use dingtalk_plugin_fuzz::parts;
use libfuzzer_sys::fuzz_target;

const KEYS: [&str; 4] = [
    "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7",
    "o1w0aum42yaptlz8alnhwikjd3jenzt9cb9wmzptgus",
    "4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij",
    "1234567890123456789012345678901234567890123",
];

fuzz_target!(|data: &[u8]| {
    let p = parts(data, 8);
    let (token, key, owner, timestamp, nonce, encrypt, signature, msg) =
        (&p[0], &p[1], &p[2], &p[3], &p[4], &p[5], &p[6], &p[7]);
    let key = match key.strip_prefix('#').and_then(|i| i.parse::<usize>().ok()) {
        Some(i) => KEYS[i % KEYS.len()].to_string(),
        None => key.clone(),
    };
    let mut random = [0u8; 16];
    for (r, b) in random.iter_mut().zip(data.iter().rev()) {
        *r = *b;
    }

    // Arbitrary owner-key lists: the configured owner, none, or two.
    for owners in [
        vec![owner.clone()],
        vec![],
        vec!["dingcorp".into(), owner.clone()],
    ] {
        let Ok(crypto) = CallbackCrypto::new(token, &key, owners) else {
            return;
        };
        let _ = crypto.verify_signature(signature, timestamp, nonce, encrypt);
        if let Ok(d) = crypto.decrypt_parts(encrypt) {
            let _ = format!("{d:?}");
        }
    }

    // Round trip.
    let crypto = CallbackCrypto::new(token, &key, vec![owner.clone()]).expect("accepted above");
    let sealed = crypto.encrypt(msg, &random, owner);
    let opened = crypto
        .decrypt_parts(&sealed)
        .expect("own ciphertext decrypts");
    assert_eq!(opened.msg, *msg);
    assert_eq!(opened.owner_key, *owner);
    assert_eq!(opened.random, random);
    let sig = crypto.signature(timestamp, nonce, &sealed);
    assert_eq!(sig.len(), 40);
    crypto
        .verify_signature(&sig, timestamp, nonce, &sealed)
        .expect("own signature verifies");
    crypto
        .verify_signature(&sig.to_ascii_uppercase(), timestamp, nonce, &sealed)
        .expect("upper-case signature verifies");
    let mut bad = sig.into_bytes();
    bad[0] = if bad[0] == b'0' { b'1' } else { b'0' };
    let bad = String::from_utf8(bad).unwrap();
    assert!(crypto
        .verify_signature(&bad, timestamp, nonce, &sealed)
        .is_err());
    // Another owner key is refused unless it is the same.
    if !owner.is_empty() {
        let other = CallbackCrypto::new(token, &key, vec![format!("{owner}x")]).unwrap();
        assert!(
            other.decrypt_parts(&sealed).is_err(),
            "foreign owner key accepted"
        );
    }
    let reply = crypto.success_reply(&random, owner, timestamp, nonce);
    let enc = reply["encrypt"].as_str().expect("encrypt in reply");
    assert_eq!(
        crypto.decrypt_parts(enc).expect("reply decrypts").msg,
        "success"
    );
});
