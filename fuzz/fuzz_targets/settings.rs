//! Arbitrary key/value settings through `Settings::parse` / `validate`: never panics, and no
//! issue (nor the `Debug` of valid settings) ever contains a secret value.
//!
//! Each secret value gets a canary inserted at a fuzzed position; the canary must never show up
//! in an issue. (Skipped when a non-secret value carries the canary itself.)
#![no_main]

use arbitrary::Arbitrary;
use dingtalk_plugin::{validate, RawSettings, Settings, KEYS, SECRET_KEYS};
use libfuzzer_sys::fuzz_target;

const CANARY: &str = "Zq7CanaryXw9";

#[derive(Arbitrary, Debug)]
struct Input {
    /// (key index into KEYS or a custom key, value, canary position)
    pairs: Vec<(u8, String, String, u8)>,
    start_valid: bool,
}

fn with_canary(value: &str, at: u8) -> String {
    let mut i = usize::from(at).min(value.len());
    while !value.is_char_boundary(i) {
        i -= 1;
    }
    format!("{}{CANARY}{}", &value[..i], &value[i..])
}

fuzz_target!(|input: Input| {
    let mut raw: RawSettings = if input.start_valid {
        dingtalk_plugin::fuzzing::sample_raw()
    } else {
        RawSettings::new()
    };
    for (k, custom, value, _at) in input.pairs.iter().take(32) {
        let key = KEYS
            .get(usize::from(*k))
            .map(|s| s.to_string())
            .unwrap_or_else(|| custom.clone());
        raw.insert(key, value.clone());
    }
    let mut tagged = raw.clone();
    for (key, value) in tagged.iter_mut() {
        if SECRET_KEYS.contains(&key.as_str()) {
            let at = input
                .pairs
                .iter()
                .find(|p| KEYS.get(usize::from(p.0)) == Some(&key.as_str()))
                .map_or(0, |p| p.3);
            *value = with_canary(value, at);
        }
    }
    let _ = validate(&raw);
    let canary_elsewhere = tagged.iter().any(|(k, v)| {
        !SECRET_KEYS.contains(&k.as_str()) && (v.contains(CANARY) || k.contains(CANARY))
    });
    match Settings::parse(&tagged) {
        Err(issues) => {
            assert!(!issues.is_empty(), "Err with no issues");
            if !canary_elsewhere {
                for issue in &issues {
                    assert!(
                        !issue.message_en.contains(CANARY),
                        "secret echoed: {issue:?}"
                    );
                    assert!(
                        !issue.message_zh.contains(CANARY),
                        "secret echoed: {issue:?}"
                    );
                }
            }
        }
        Ok(settings) => {
            if !canary_elsewhere {
                let printed = format!("{settings:?}");
                assert!(!printed.contains(CANARY), "secret in Debug");
            }
            assert!(
                !settings.site_url.ends_with('/'),
                "site_url keeps a trailing slash"
            );
        }
    }
});
