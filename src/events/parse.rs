//! Typed parsing of decrypted DingTalk contact-event payloads (docs/dingtalk-api.md §8.7–8.8).
//!
//! Pure: takes the plaintext returned by `CallbackCrypto::decrypt` (crypto module) and never
//! panics. Both documented payload shapes are accepted, keys are matched case-insensitively:
//!
//! * classic: `{"EventType":"user_add_org","TimeStamp":43535463645,"UserId":["a"],"CorpId":"c"}`
//! * current: `{"EventType":"user_add_org","EventTime":1663143335567,"CorpId":"c","BizId":"..",
//!   "eventId":"..","timeStamp":"1685501863357","userId":["a"]}`

use std::collections::HashSet;
use std::hash::Hash;

use serde_json::{Map, Value};

/// Most ids kept per list; further ids are dropped.
pub const MAX_IDS: usize = 10_000;

/// A contact event (or the `check_url` probe) received over the HTTP callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactEvent {
    /// `check_url`: DingTalk validating the callback URL.
    CheckUrl,
    /// `user_add_org`: users joined; their userids.
    UserAdded(Vec<String>),
    /// `user_modify_org`: users changed; their userids.
    UserModified(Vec<String>),
    /// `user_leave_org`: users left (they can no longer be fetched); their userids.
    UserLeft(Vec<String>),
    /// `user_active_org`: users activated their account; their userids.
    UserActivated(Vec<String>),
    /// `org_admin_add`: users became administrators; their userids.
    AdminAdded(Vec<String>),
    /// `org_admin_remove`: users are no longer administrators; their userids.
    AdminRemoved(Vec<String>),
    /// `org_dept_create`: departments created; their ids.
    DeptCreated(Vec<i64>),
    /// `org_dept_modify`: departments changed; their ids.
    DeptModified(Vec<i64>),
    /// `org_dept_remove`: departments removed; their ids.
    DeptRemoved(Vec<i64>),
    /// `org_remove`: the organization was dissolved.
    OrgRemoved,
    /// Any other event type (e.g. `org_change`, `label_user_change`), kept by name.
    Other {
        /// The `EventType` value as received.
        event_type: String,
    },
}

/// A parsed event with the metadata common to all events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEvent {
    /// The typed event.
    pub event: ContactEvent,
    /// `CorpId` of the organization, if present and non-empty.
    pub corp_id: Option<String>,
    /// `eventId` (or `BizId` as fallback), if present and non-empty; useful for de-duplication.
    pub event_id: Option<String>,
    /// `TimeStamp` / `timeStamp` (or `EventTime` as fallback) as sent, normally epoch milliseconds.
    pub event_time_ms: Option<u64>,
}

/// Why an event plaintext could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The plaintext is not JSON.
    #[error("the event is not valid JSON (line {line}, column {column})")]
    InvalidJson {
        /// Line of the syntax error (1-based).
        line: usize,
        /// Column of the syntax error (1-based).
        column: usize,
    },
    /// The plaintext is JSON but not an object.
    #[error("the event is not a JSON object")]
    NotAnObject,
    /// The object has no non-empty string `EventType`.
    #[error("the event has no EventType")]
    MissingEventType,
}

impl EventError {
    /// A stable machine-readable code, e.g. `"missing_event_type"`.
    pub fn code(&self) -> &'static str {
        match self {
            EventError::InvalidJson { .. } => "invalid_json",
            EventError::NotAnObject => "not_an_object",
            EventError::MissingEventType => "missing_event_type",
        }
    }
}

/// Parses a decrypted event plaintext into a [`ParsedEvent`].
///
/// Ids are trimmed, de-duplicated (first occurrence kept), empty or malformed ones dropped, and
/// each list is capped at [`MAX_IDS`]. Missing id keys give an empty list, not an error.
///
/// # Errors
///
/// [`EventError`] if the plaintext is not a JSON object with a non-empty string `EventType`.
pub fn parse_event(plaintext: &str) -> Result<ParsedEvent, EventError> {
    // `from_slice`, as everywhere else: a `from_str` would compile serde_json's parser a second
    // time for `&str` input (8 KB of component) for the same result.
    let value: Value =
        serde_json::from_slice(plaintext.as_bytes()).map_err(|e| EventError::InvalidJson {
            line: e.line(),
            column: e.column(),
        })?;
    let obj = value.as_object().ok_or(EventError::NotAnObject)?;

    let event_type = lookup(obj, &["EventType"])
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(EventError::MissingEventType)?;

    let users = || user_ids(lookup(obj, &["UserId"]));
    let depts = || dept_ids(lookup(obj, &["DeptId"]));
    let event = match event_type {
        "check_url" => ContactEvent::CheckUrl,
        "user_add_org" => ContactEvent::UserAdded(users()),
        "user_modify_org" => ContactEvent::UserModified(users()),
        "user_leave_org" => ContactEvent::UserLeft(users()),
        "user_active_org" => ContactEvent::UserActivated(users()),
        "org_admin_add" => ContactEvent::AdminAdded(users()),
        "org_admin_remove" => ContactEvent::AdminRemoved(users()),
        "org_dept_create" => ContactEvent::DeptCreated(depts()),
        "org_dept_modify" => ContactEvent::DeptModified(depts()),
        "org_dept_remove" => ContactEvent::DeptRemoved(depts()),
        "org_remove" => ContactEvent::OrgRemoved,
        other => ContactEvent::Other {
            event_type: other.to_owned(),
        },
    };

    let corp_id = lookup(obj, &["CorpId"]).and_then(non_empty_string);
    let event_id = lookup(obj, &["eventId"])
        .and_then(non_empty_string)
        .or_else(|| lookup(obj, &["BizId"]).and_then(non_empty_string));
    let event_time_ms = lookup(obj, &["TimeStamp"])
        .and_then(as_u64)
        .or_else(|| lookup(obj, &["EventTime"]).and_then(as_u64));

    Ok(ParsedEvent {
        event,
        corp_id,
        event_id,
        event_time_ms,
    })
}

/// Finds the first of `names` in `obj`: exact spellings first, then case-insensitively.
fn lookup<'a>(obj: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| obj.get(*n)).or_else(|| {
        names.iter().find_map(|n| {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v)
        })
    })
}

/// A trimmed non-empty string from a JSON string or number.
fn non_empty_string(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

/// A non-negative integer from a JSON number or a numeric string.
fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A department id from a JSON integer or a numeric string.
fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The elements of an array, or the value itself as a one-element list (null: none).
fn elements(v: Option<&Value>) -> &[Value] {
    match v {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => &[],
        Some(single) => std::slice::from_ref(single),
    }
}

/// Userids: strings (or numbers), trimmed, non-empty, de-duplicated, capped.
fn user_ids(v: Option<&Value>) -> Vec<String> {
    dedupe_capped(elements(v).iter().filter_map(non_empty_string))
}

/// Department ids: integers or numeric strings, de-duplicated, capped.
fn dept_ids(v: Option<&Value>) -> Vec<i64> {
    dedupe_capped(elements(v).iter().filter_map(as_i64))
}

/// Keeps the first occurrence of each id, at most [`MAX_IDS`] of them.
fn dedupe_capped<T: Eq + Hash + Clone>(ids: impl Iterator<Item = T>) -> Vec<T> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for id in ids {
        if out.len() >= MAX_IDS {
            break;
        }
        if seen.insert(id.clone()) {
            out.push(id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ParsedEvent {
        parse_event(s).unwrap()
    }

    #[test]
    fn check_url() {
        let p = parse(r#"{"EventType":"check_url"}"#);
        assert_eq!(p.event, ContactEvent::CheckUrl);
        assert_eq!(p.corp_id, None);
        assert_eq!(p.event_id, None);
        assert_eq!(p.event_time_ms, None);
    }

    #[test]
    fn classic_shape_user_add() {
        let p = parse(
            r#"{"EventType":"user_add_org","TimeStamp":43535463645,"UserId":["efefef","111111"],"CorpId":"corpid"}"#,
        );
        assert_eq!(
            p,
            ParsedEvent {
                event: ContactEvent::UserAdded(vec!["efefef".into(), "111111".into()]),
                corp_id: Some("corpid".into()),
                event_id: None,
                event_time_ms: Some(43_535_463_645),
            }
        );
    }

    #[test]
    fn classic_shape_dept_with_string_timestamp() {
        let p = parse(
            r#"{"EventType":"org_dept_create","TimeStamp":"1608001896814","DeptId":[1,2],"CorpId":"ding1"}"#,
        );
        assert_eq!(p.event, ContactEvent::DeptCreated(vec![1, 2]));
        assert_eq!(p.event_time_ms, Some(1_608_001_896_814));
        assert_eq!(p.corp_id.as_deref(), Some("ding1"));
    }

    #[test]
    fn current_shape_user_add() {
        let p = parse(
            r#"{"EventType":"user_add_org","EventTime":1663143335567,"CorpId":"ding9f50b15bxxxx16741","BizId":"1663**35567",
                "eventId":"c7c7120f2c07419**ebdba0318c8","timeStamp":"1685501863357","userId":["015xxxx227"]}"#,
        );
        assert_eq!(
            p,
            ParsedEvent {
                event: ContactEvent::UserAdded(vec!["015xxxx227".into()]),
                corp_id: Some("ding9f50b15bxxxx16741".into()),
                event_id: Some("c7c7120f2c07419**ebdba0318c8".into()),
                event_time_ms: Some(1_685_501_863_357),
            }
        );
    }

    #[test]
    fn current_shape_dept_events() {
        for (name, expect) in [
            ("org_dept_create", ContactEvent::DeptCreated(vec![5, 6])),
            ("org_dept_modify", ContactEvent::DeptModified(vec![5, 6])),
            ("org_dept_remove", ContactEvent::DeptRemoved(vec![5, 6])),
        ] {
            let p = parse(&format!(
                r#"{{"EventType":"{name}","EventTime":1663143335567,"CorpId":"c","eventId":"e1","deptId":[5,6]}}"#
            ));
            assert_eq!(p.event, expect);
            assert_eq!(p.event_time_ms, Some(1_663_143_335_567));
            assert_eq!(p.event_id.as_deref(), Some("e1"));
        }
    }

    #[test]
    fn all_user_event_names() {
        let ids = || vec!["u1".to_owned()];
        for (name, expect) in [
            ("user_add_org", ContactEvent::UserAdded(ids())),
            ("user_modify_org", ContactEvent::UserModified(ids())),
            ("user_leave_org", ContactEvent::UserLeft(ids())),
            ("user_active_org", ContactEvent::UserActivated(ids())),
            ("org_admin_add", ContactEvent::AdminAdded(ids())),
            ("org_admin_remove", ContactEvent::AdminRemoved(ids())),
        ] {
            let p = parse(&format!(r#"{{"EventType":"{name}","userid":"u1"}}"#));
            assert_eq!(p.event, expect, "{name}");
        }
        assert_eq!(
            parse(r#"{"EventType":"org_remove","CorpId":"c"}"#).event,
            ContactEvent::OrgRemoved
        );
    }

    #[test]
    fn user_modify_with_diff_info() {
        let p = parse(
            r#"{"EventType":"user_modify_org","timeStamp":"1","diffInfo":{"prev":{"name":"a"},"curr":{"name":"b"},"userid":"zz"},"userId":["u9"]}"#,
        );
        assert_eq!(p.event, ContactEvent::UserModified(vec!["u9".into()]));
    }

    #[test]
    fn mixed_string_and_number_dept_ids() {
        let p = parse(
            r#"{"EventType":"org_dept_modify","DeptId":[1,"2"," 3 ","x",4.5,null,true,-7,"",2,1]}"#,
        );
        assert_eq!(p.event, ContactEvent::DeptModified(vec![1, 2, 3, -7]));
    }

    #[test]
    fn single_values_instead_of_arrays() {
        assert_eq!(
            parse(r#"{"EventType":"user_leave_org","UserId":"abc"}"#).event,
            ContactEvent::UserLeft(vec!["abc".into()])
        );
        assert_eq!(
            parse(r#"{"EventType":"org_dept_remove","deptid":42}"#).event,
            ContactEvent::DeptRemoved(vec![42])
        );
        assert_eq!(
            parse(r#"{"EventType":"org_dept_remove","DeptId":"42"}"#).event,
            ContactEvent::DeptRemoved(vec![42])
        );
        assert_eq!(
            parse(r#"{"EventType":"org_dept_remove","DeptId":null}"#).event,
            ContactEvent::DeptRemoved(vec![])
        );
    }

    #[test]
    fn user_ids_deduped_trimmed_and_numbers_accepted() {
        let p = parse(
            r#"{"EventType":"user_add_org","UserId":["a"," a ","",null,"b",123,{},["c"],"a"]}"#,
        );
        assert_eq!(
            p.event,
            ContactEvent::UserAdded(vec!["a".into(), "b".into(), "123".into()])
        );
    }

    #[test]
    fn keys_are_case_insensitive_and_exact_spelling_wins() {
        let p = parse(
            r#"{"eventtype":"user_add_org","USERID":["x"],"corpid":"c","EVENTID":"e","timestamp":"5"}"#,
        );
        assert_eq!(p.event, ContactEvent::UserAdded(vec!["x".into()]));
        assert_eq!(p.corp_id.as_deref(), Some("c"));
        assert_eq!(p.event_id.as_deref(), Some("e"));
        assert_eq!(p.event_time_ms, Some(5));

        let p = parse(r#"{"EventType":"user_add_org","userid":["lower"],"UserId":["exact"]}"#);
        assert_eq!(p.event, ContactEvent::UserAdded(vec!["exact".into()]));
    }

    #[test]
    fn event_id_falls_back_to_biz_id() {
        let p = parse(r#"{"EventType":"org_remove","BizId":"biz-1"}"#);
        assert_eq!(p.event_id.as_deref(), Some("biz-1"));
        let p = parse(r#"{"EventType":"org_remove","eventId":"","BizId":"biz-1"}"#);
        assert_eq!(p.event_id.as_deref(), Some("biz-1"));
        let p = parse(r#"{"EventType":"org_remove","EventId":"E","BizId":"biz-1"}"#);
        assert_eq!(p.event_id.as_deref(), Some("E"));
        let p = parse(r#"{"EventType":"org_remove","BizId":12345}"#);
        assert_eq!(p.event_id.as_deref(), Some("12345"));
    }

    #[test]
    fn timestamps() {
        let p = parse(r#"{"EventType":"org_remove","EventTime":"1663143335567"}"#);
        assert_eq!(p.event_time_ms, Some(1_663_143_335_567));
        // Unparseable TimeStamp falls back to EventTime.
        let p = parse(r#"{"EventType":"org_remove","TimeStamp":"soon","EventTime":7}"#);
        assert_eq!(p.event_time_ms, Some(7));
        for bad in [r#""-1""#, "-1", "1.5", "true", "[]", r#""""#] {
            let p = parse(&format!(
                r#"{{"EventType":"org_remove","TimeStamp":{bad}}}"#
            ));
            assert_eq!(p.event_time_ms, None, "{bad}");
        }
    }

    #[test]
    fn missing_keys() {
        let p = parse(r#"{"EventType":"user_add_org"}"#);
        assert_eq!(
            p,
            ParsedEvent {
                event: ContactEvent::UserAdded(vec![]),
                corp_id: None,
                event_id: None,
                event_time_ms: None,
            }
        );
        assert_eq!(
            parse(r#"{"EventType":"org_dept_create","CorpId":""}"#),
            ParsedEvent {
                event: ContactEvent::DeptCreated(vec![]),
                corp_id: None,
                event_id: None,
                event_time_ms: None,
            }
        );
    }

    #[test]
    fn unknown_events_are_other() {
        for name in [
            "org_change",
            "label_user_change",
            "check_create_suite_url",
            "USER_ADD_ORG",
            "something_new",
        ] {
            let p = parse(&format!(r#"{{"EventType":"{name}","UserId":["a"]}}"#));
            assert_eq!(
                p.event,
                ContactEvent::Other {
                    event_type: name.to_owned()
                }
            );
        }
    }

    #[test]
    fn errors() {
        let cases: [(&str, &str); 10] = [
            ("", "invalid_json"),
            ("not json", "invalid_json"),
            (r#"{"EventType":"check_url""#, "invalid_json"),
            ("[]", "not_an_object"),
            (r#""check_url""#, "not_an_object"),
            ("null", "not_an_object"),
            ("{}", "missing_event_type"),
            (r#"{"EventType":""}"#, "missing_event_type"),
            (r#"{"EventType":" "}"#, "missing_event_type"),
            (r#"{"EventType":1}"#, "missing_event_type"),
        ];
        for (input, code) in cases {
            let err = parse_event(input).unwrap_err();
            assert_eq!(err.code(), code, "{input:?}");
            assert!(!err.to_string().is_empty());
        }
        assert_eq!(
            parse_event("{\n  x").unwrap_err(),
            EventError::InvalidJson { line: 2, column: 3 }
        );
    }

    #[test]
    fn id_lists_are_capped() {
        let ids: Vec<String> = (0..MAX_IDS + 50).map(|i| format!("\"u{i}\"")).collect();
        let p = parse(&format!(
            r#"{{"EventType":"user_add_org","UserId":[{}]}}"#,
            ids.join(",")
        ));
        match p.event {
            ContactEvent::UserAdded(v) => {
                assert_eq!(v.len(), MAX_IDS);
                assert_eq!(v[0], "u0");
                assert_eq!(v[MAX_IDS - 1], format!("u{}", MAX_IDS - 1));
            }
            other => panic!("unexpected {other:?}"),
        }
        let depts: Vec<String> = (0..MAX_IDS as i64 + 5).map(|i| i.to_string()).collect();
        let p = parse(&format!(
            r#"{{"EventType":"org_dept_create","DeptId":[{}]}}"#,
            depts.join(",")
        ));
        assert!(matches!(p.event, ContactEvent::DeptCreated(v) if v.len() == MAX_IDS));
    }

    #[test]
    fn truncations_and_garbage_never_panic() {
        let valid = r#"{"EventType":"user_add_org","EventTime":1663143335567,"CorpId":"ding9f50b15bxxxx16741","BizId":"1663**35567","eventId":"c7c7","timeStamp":"1685501863357","userId":["015xxxx227","张三"],"DeptId":[1,"2"]}"#;
        for (i, _) in valid.char_indices() {
            let _ = parse_event(&valid[..i]);
            let _ = parse_event(&valid[i..]);
        }
        assert!(parse_event(valid).is_ok());
        // Byte-level corruption (kept valid UTF-8 by replacing with ASCII).
        for i in 0..valid.len() {
            for b in [b'"', b'{', b']', b'0', b'x', b'\\'] {
                let mut bytes = valid.as_bytes().to_vec();
                if bytes[i].is_ascii() {
                    bytes[i] = b;
                    if let Ok(s) = std::str::from_utf8(&bytes) {
                        let _ = parse_event(s);
                    }
                }
            }
        }
        // Deep nesting is refused by serde_json's recursion limit, not a stack overflow.
        let deep = format!(
            r#"{{"EventType":"x","UserId":{}{}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert!(parse_event(&deep).is_err());
    }
}
