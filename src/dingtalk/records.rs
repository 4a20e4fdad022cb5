//! Reading DingTalk's user and department JSON into typed records, tolerantly.
//!
//! Sources: `topapi/v2/user/list` list items and the `topapi/v2/user/get` result (docs/dingtalk-api.md §5.4, §5.6),
//! `topapi/v2/department/listsub` items and the `topapi/v2/department/get` result (§5.1, §5.3).
//! Every field may be missing or wrongly typed: numbers may arrive as strings and the other way
//! round, booleans as `"true"`/`1`. Nothing here panics; a record without its id is `None`.

use crate::model::{Department, Member};
use serde_json::Value;

/// The root department's id (docs/dingtalk-api.md §5: "根部门ID为1").
pub const ROOT_DEPT: i64 = 1;

/// Longest userid accepted (DingTalk's are far shorter); longer ones are treated as malformed.
pub const MAX_USERID_LEN: usize = 128;

/// An integer from a JSON number or a numeric string.
pub fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A boolean from `true`/`false`, `1`/`0` or their string forms.
pub fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|i| i != 0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A trimmed, non-empty string from a JSON string or number.
pub fn as_text(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(as_text)
}

fn flag(v: &Value, key: &str) -> Option<bool> {
    v.get(key).and_then(as_bool)
}

/// A list of department ids (array of numbers or numeric strings, or one id), de-duplicated in
/// first-seen order; malformed entries are dropped.
pub fn dept_ids(v: Option<&Value>) -> Vec<i64> {
    let items: Vec<&Value> = match v {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(one) => vec![one],
    };
    let mut out: Vec<i64> = Vec::new();
    for id in items.into_iter().filter_map(as_i64) {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// True for a userid we can use as a key: 1..=128 printable characters, no whitespace.
pub fn valid_userid(userid: &str) -> bool {
    !userid.is_empty()
        && userid.len() <= MAX_USERID_LEN
        && userid
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace())
}

/// A user as DingTalk describes them in a `v2/user/get` result or a `v2/user/list` item. Every
/// field is optional and already cleaned: texts trimmed and non-empty, ids de-duplicated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserRecord {
    /// userid as sent (`userid` or `userId`); not yet checked with [`valid_userid`].
    pub userid: Option<String>,
    /// unionid (`unionid` or `unionId`).
    pub unionid: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Mobile, when the app may read it.
    pub mobile: Option<String>,
    /// Personal email.
    pub email: Option<String>,
    /// Organisation email.
    pub org_email: Option<String>,
    /// Avatar URL.
    pub avatar: Option<String>,
    /// Job title.
    pub title: Option<String>,
    /// Employee number.
    pub job_number: Option<String>,
    /// Departments (`dept_id_list`).
    pub dept_ids: Vec<i64>,
    /// Departments the user leads (`leader_in_dept` entries with `leader: true`).
    pub leader_dept_ids: Vec<i64>,
    /// `admin`, when sent.
    pub admin: Option<bool>,
    /// `boss`, when sent.
    pub boss: Option<bool>,
    /// `active`, when sent.
    pub active: Option<bool>,
}

impl UserRecord {
    /// Reads a user object; anything else gives an empty record.
    pub fn from_json(v: &Value) -> Self {
        if !v.is_object() {
            return UserRecord::default();
        }
        let mut leader_dept_ids = Vec::new();
        if let Some(Value::Array(items)) = v.get("leader_in_dept") {
            for item in items {
                let dept = item.get("dept_id").and_then(as_i64);
                let leader = item.get("leader").and_then(as_bool).unwrap_or(false);
                if let (Some(d), true) = (dept, leader) {
                    if !leader_dept_ids.contains(&d) {
                        leader_dept_ids.push(d);
                    }
                }
            }
        }
        UserRecord {
            userid: text(v, "userid").or_else(|| text(v, "userId")),
            unionid: text(v, "unionid").or_else(|| text(v, "unionId")),
            name: text(v, "name"),
            mobile: text(v, "mobile"),
            email: text(v, "email"),
            org_email: text(v, "org_email"),
            avatar: text(v, "avatar"),
            title: text(v, "title"),
            job_number: text(v, "job_number"),
            dept_ids: dept_ids(v.get("dept_id_list")),
            leader_dept_ids,
            admin: flag(v, "admin"),
            boss: flag(v, "boss"),
            active: flag(v, "active"),
        }
    }

    /// The directory member in `corp_id`; `None` without a usable userid. A missing name is the
    /// userid, a missing `active` is true.
    pub fn to_member(&self, corp_id: &str) -> Option<Member> {
        let userid = self.userid.clone().filter(|u| valid_userid(u))?;
        Some(Member {
            corp_id: corp_id.to_string(),
            name: self.name.clone().unwrap_or_else(|| userid.clone()),
            unionid: self.unionid.clone(),
            mobile: self.mobile.clone(),
            email: self.email.clone(),
            org_email: self.org_email.clone(),
            avatar: self.avatar.clone(),
            title: self.title.clone(),
            job_number: self.job_number.clone(),
            dept_ids: self.dept_ids.clone(),
            leader_dept_ids: self.leader_dept_ids.clone(),
            is_admin: self.admin.unwrap_or(false),
            is_boss: self.boss.unwrap_or(false),
            active: self.active.unwrap_or(true),
            userid,
        })
    }
}

/// A member from a `v2/user/get` result or a `v2/user/list` item. Leader flags come from
/// `leader_in_dept` (`[{dept_id, leader}]`); `None` without a usable `userid`.
pub fn member_from_json(corp_id: &str, v: &Value) -> Option<Member> {
    UserRecord::from_json(v).to_member(corp_id)
}

/// A member from a `v2/user/list` item of department `listed_dept`: as [`member_from_json`], plus
/// the item's `leader` flag, which is about `listed_dept`.
pub fn member_from_list_item(corp_id: &str, v: &Value, listed_dept: i64) -> Option<Member> {
    let mut m = member_from_json(corp_id, v)?;
    if flag(v, "leader") == Some(true) && !m.leader_dept_ids.contains(&listed_dept) {
        m.leader_dept_ids.push(listed_dept);
    }
    if !m.dept_ids.contains(&listed_dept) {
        // A list item always belongs to the listed department, even when dept_id_list says otherwise.
        m.dept_ids.push(listed_dept);
    }
    Some(m)
}

/// A department from a `department/get` result or a `listsub` item; `None` without `dept_id`.
/// The root (id 1) and a parent of 0 mean no parent.
pub fn department_from_json(corp_id: &str, v: &Value) -> Option<Department> {
    if !v.is_object() {
        return None;
    }
    let dept_id = v.get("dept_id").and_then(as_i64)?;
    let parent_id = v
        .get("parent_id")
        .and_then(as_i64)
        .filter(|p| *p > 0 && dept_id != ROOT_DEPT && *p != dept_id);
    Some(Department {
        corp_id: corp_id.to_string(),
        dept_id,
        parent_id,
        name: text(v, "name").unwrap_or_else(|| dept_id.to_string()),
        order: v.get("order").and_then(as_i64),
    })
}

/// The userids of a department's managers (`dept_manager_userid_list` of `department/get`).
pub fn dept_managers(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(Value::Array(items)) = v.get("dept_manager_userid_list") {
        for id in items.iter().filter_map(as_text) {
            if valid_userid(&id) && !out.contains(&id) {
                out.push(id);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn user_get_result() {
        let v = json!({
            "userid": "zhangsan", "unionid": "un1", "name": "张三", "avatar": "https://a/x.png",
            "mobile": "13800000000", "email": "", "org_email": "z@corp.com", "title": "工程师",
            "job_number": "007", "dept_id_list": [2, 3], "active": true, "admin": true, "boss": false,
            "leader_in_dept": [{"dept_id": 2, "leader": true}, {"dept_id": 3, "leader": false}]
        });
        let m = member_from_json("c1", &v).unwrap();
        assert_eq!(m.userid, "zhangsan");
        assert_eq!(m.corp_id, "c1");
        assert_eq!(m.unionid.as_deref(), Some("un1"));
        assert_eq!(m.email, None, "empty strings are absent");
        assert_eq!(m.org_email.as_deref(), Some("z@corp.com"));
        assert_eq!(m.dept_ids, vec![2, 3]);
        assert_eq!(m.leader_dept_ids, vec![2]);
        assert!(m.is_admin && !m.is_boss && m.active);
    }

    #[test]
    fn list_item_leader_flag_is_about_the_listed_dept() {
        let v = json!({"userid": "u", "name": "U", "dept_id_list": [5, 6], "leader": true, "boss": "true"});
        let m = member_from_list_item("c", &v, 6).unwrap();
        assert_eq!(m.leader_dept_ids, vec![6]);
        assert!(m.is_boss);
        let m = member_from_list_item("c", &json!({"userid": "u", "leader": false}), 6).unwrap();
        assert!(m.leader_dept_ids.is_empty());
        assert_eq!(m.dept_ids, vec![6]);
        assert_eq!(m.name, "u");
    }

    #[test]
    fn tolerates_missing_and_wrongly_typed_fields() {
        let v = json!({
            "userid": 12345, "name": null, "mobile": 13800000000u64, "dept_id_list": ["7", 7, "x", null, 8.5, 9],
            "active": "false", "admin": 1, "boss": [], "leader_in_dept": "nope", "email": {"a": 1}
        });
        let m = member_from_json("c", &v).unwrap();
        assert_eq!(m.userid, "12345");
        assert_eq!(m.mobile.as_deref(), Some("13800000000"));
        assert_eq!(m.dept_ids, vec![7, 9]);
        assert!(!m.active && m.is_admin && !m.is_boss);
        assert_eq!(m.email, None);
        for bad in [
            json!(null),
            json!([]),
            json!("u"),
            json!({}),
            json!({"userid": ""}),
            json!({"userid": "a b"}),
        ] {
            assert!(member_from_json("c", &bad).is_none(), "{bad}");
        }
        assert!(member_from_json("c", &json!({"userid": "x".repeat(200)})).is_none());
    }

    #[test]
    fn departments() {
        let d = department_from_json(
            "c",
            &json!({"dept_id": 2, "name": "研发", "parent_id": 1, "order": "3"}),
        )
        .unwrap();
        assert_eq!(
            (d.dept_id, d.parent_id, d.name.as_str(), d.order),
            (2, Some(1), "研发", Some(3))
        );
        let root = department_from_json(
            "c",
            &json!({"dept_id": "1", "name": "公司", "parent_id": 0}),
        )
        .unwrap();
        assert_eq!(root.parent_id, None);
        let odd = department_from_json("c", &json!({"dept_id": 9, "parent_id": "x"})).unwrap();
        assert_eq!((odd.parent_id, odd.name.as_str()), (None, "9"));
        assert!(department_from_json("c", &json!({"name": "x"})).is_none());
        assert!(department_from_json("c", &json!([1])).is_none());
        assert_eq!(
            dept_managers(&json!({"dept_manager_userid_list": ["a", "", "a", 5, null]})),
            vec!["a".to_string(), "5".to_string()]
        );
        assert!(dept_managers(&json!({"dept_manager_userid_list": "a"})).is_empty());
    }
}
