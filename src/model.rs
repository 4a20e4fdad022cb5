//! The domain records the plugin hands to the platform: identities and directory entries.
//! They serialize to the JSON of the platform API (R7) and map 1:1 onto the WIT records.

use serde::de::{Deserializer, Error};
use serde::{Deserialize, Serialize};

/// How a person signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// R1, mobile workbench.
    InappMobile,
    /// R2, PC client.
    InappPc,
    /// R4/R5, QR or browser login.
    Qr,
    /// R3, admin backend.
    AdminSso,
}

/// A signed-in member (docs/http-contract.md §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Organisation.
    pub corp_id: String,
    /// userid in the organisation.
    pub userid: String,
    /// unionid (empty when unknown).
    pub unionid: String,
    /// Display name.
    pub name: String,
    /// Mobile, when readable.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mobile: Option<String>,
    /// Email from the organisation's own record.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub email: Option<String>,
    /// Avatar URL.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub avatar: Option<String>,
    /// Departments.
    pub dept_ids: Vec<i64>,
    /// Organisation admin.
    pub is_admin: bool,
    /// 0 none, 1 main admin, 2 sub-admin, 100 boss.
    pub admin_level: u32,
    /// Which flow.
    pub via: Via,
    /// Commercial edition: first-time binding needs SMS verification by the platform.
    #[serde(default)]
    pub requires_sms_binding: bool,
    /// Same-origin path to return to.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub return_to: Option<String>,
}

/// A department.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Department {
    /// Organisation.
    pub corp_id: String,
    /// Id; root is 1.
    pub dept_id: i64,
    /// Parent; none for the root.
    pub parent_id: Option<i64>,
    /// Name.
    pub name: String,
    /// Sort order.
    #[serde(default)]
    pub order: Option<i64>,
}

/// A member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Organisation.
    pub corp_id: String,
    /// userid.
    pub userid: String,
    /// unionid.
    #[serde(default)]
    pub unionid: Option<String>,
    /// Name.
    pub name: String,
    /// Mobile.
    #[serde(default)]
    pub mobile: Option<String>,
    /// Personal email.
    #[serde(default)]
    pub email: Option<String>,
    /// Organisation email.
    #[serde(default)]
    pub org_email: Option<String>,
    /// Avatar.
    #[serde(default)]
    pub avatar: Option<String>,
    /// Title.
    #[serde(default)]
    pub title: Option<String>,
    /// Employee number.
    #[serde(default)]
    pub job_number: Option<String>,
    /// All departments.
    pub dept_ids: Vec<i64>,
    /// Departments led.
    #[serde(default)]
    pub leader_dept_ids: Vec<i64>,
    /// Admin.
    #[serde(default)]
    pub is_admin: bool,
    /// Boss.
    #[serde(default)]
    pub is_boss: bool,
    /// Active.
    pub active: bool,
}

/// One change to mirror (WIT `directory-change`). JSON: the variant's fields beside a
/// snake_case `kind`; read through [`ChangeFields`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DirectoryChange {
    /// Create or update a department.
    DepartmentUpserted {
        /// The department.
        department: Department,
    },
    /// A department was removed.
    DepartmentRemoved {
        /// Organisation.
        corp_id: String,
        /// Id.
        dept_id: i64,
    },
    /// Create or update a member.
    MemberUpserted {
        /// The member.
        member: Member,
    },
    /// Joined and/or left departments.
    MemberMoved {
        /// Organisation.
        corp_id: String,
        /// userid.
        userid: String,
        /// Joined.
        added_dept_ids: Vec<i64>,
        /// Left.
        removed_dept_ids: Vec<i64>,
    },
    /// Left the organisation: deactivate, never delete.
    MemberDeactivated {
        /// Organisation.
        corp_id: String,
        /// userid.
        userid: String,
    },
    /// Became an admin.
    AdminGranted {
        /// Organisation.
        corp_id: String,
        /// userid.
        userid: String,
    },
    /// Stopped being an admin.
    AdminRevoked {
        /// Organisation.
        corp_id: String,
        /// userid.
        userid: String,
    },
}

/// A [`DirectoryChange`] as read: its `kind` and every variant's fields, each optional. serde's
/// own reading of an internally tagged enum first buffers the whole object into a generic tree
/// (the tag may come last), which costs about 30 KB of component; this flat record reads the
/// same JSON straight through, with the same errors.
#[derive(Deserialize)]
struct ChangeFields {
    kind: ChangeKind,
    department: Option<Department>,
    member: Option<Member>,
    corp_id: Option<String>,
    dept_id: Option<i64>,
    userid: Option<String>,
    added_dept_ids: Option<Vec<i64>>,
    removed_dept_ids: Option<Vec<i64>>,
}

/// The `kind` of a [`DirectoryChange`].
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ChangeKind {
    DepartmentUpserted,
    DepartmentRemoved,
    MemberUpserted,
    MemberMoved,
    MemberDeactivated,
    AdminGranted,
    AdminRevoked,
}

/// A field an enum variant needs, or serde's "missing field" error (for enums read through a
/// flat record of optional fields, as [`DirectoryChange`]).
pub(crate) fn required<T, E: Error>(value: Option<T>, name: &'static str) -> Result<T, E> {
    value.ok_or_else(|| E::missing_field(name))
}

impl<'de> Deserialize<'de> for DirectoryChange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ChangeFields {
            kind,
            department,
            member,
            corp_id,
            dept_id,
            userid,
            added_dept_ids,
            removed_dept_ids,
        } = ChangeFields::deserialize(deserializer)?;
        Ok(match kind {
            ChangeKind::DepartmentUpserted => DirectoryChange::DepartmentUpserted {
                department: required(department, "department")?,
            },
            ChangeKind::DepartmentRemoved => DirectoryChange::DepartmentRemoved {
                corp_id: required(corp_id, "corp_id")?,
                dept_id: required(dept_id, "dept_id")?,
            },
            ChangeKind::MemberUpserted => DirectoryChange::MemberUpserted {
                member: required(member, "member")?,
            },
            ChangeKind::MemberMoved => DirectoryChange::MemberMoved {
                corp_id: required(corp_id, "corp_id")?,
                userid: required(userid, "userid")?,
                added_dept_ids: required(added_dept_ids, "added_dept_ids")?,
                removed_dept_ids: required(removed_dept_ids, "removed_dept_ids")?,
            },
            ChangeKind::MemberDeactivated => DirectoryChange::MemberDeactivated {
                corp_id: required(corp_id, "corp_id")?,
                userid: required(userid, "userid")?,
            },
            ChangeKind::AdminGranted => DirectoryChange::AdminGranted {
                corp_id: required(corp_id, "corp_id")?,
                userid: required(userid, "userid")?,
            },
            ChangeKind::AdminRevoked => DirectoryChange::AdminRevoked {
                corp_id: required(corp_id, "corp_id")?,
                userid: required(userid, "userid")?,
            },
        })
    }
}

/// A change with its position in the change log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequencedChange {
    /// Strictly increasing position.
    pub seq: u64,
    /// When recorded, Unix ms.
    pub at_ms: u64,
    /// The change.
    pub change: DirectoryChange,
}

/// An organisation a person may pick when they can enter several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpOption {
    /// The organisation's CorpId.
    pub corp_id: String,
    /// Its display name.
    pub corp_name: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn every_change() -> Vec<DirectoryChange> {
        let (corp_id, userid) = ("dingcorp".to_string(), "u1".to_string());
        vec![
            DirectoryChange::DepartmentUpserted {
                department: Department {
                    corp_id: corp_id.clone(),
                    dept_id: 7,
                    parent_id: Some(1),
                    name: "研发".into(),
                    order: None,
                },
            },
            DirectoryChange::DepartmentRemoved {
                corp_id: corp_id.clone(),
                dept_id: 7,
            },
            DirectoryChange::MemberUpserted {
                member: Member {
                    corp_id: corp_id.clone(),
                    userid: userid.clone(),
                    unionid: Some("un1".into()),
                    name: "张三".into(),
                    mobile: None,
                    email: Some("z@example.com".into()),
                    org_email: None,
                    avatar: None,
                    title: Some("工程师".into()),
                    job_number: None,
                    dept_ids: vec![1, 7],
                    leader_dept_ids: vec![7],
                    is_admin: true,
                    is_boss: false,
                    active: true,
                },
            },
            DirectoryChange::MemberMoved {
                corp_id: corp_id.clone(),
                userid: userid.clone(),
                added_dept_ids: vec![8],
                removed_dept_ids: vec![7],
            },
            DirectoryChange::MemberDeactivated {
                corp_id: corp_id.clone(),
                userid: userid.clone(),
            },
            DirectoryChange::AdminGranted {
                corp_id: corp_id.clone(),
                userid: userid.clone(),
            },
            DirectoryChange::AdminRevoked { corp_id, userid },
        ]
    }

    #[test]
    fn every_change_reads_back_as_written_with_the_kind_anywhere() {
        for change in every_change() {
            let text = serde_json::to_string(&change).unwrap();
            assert!(text.starts_with(r#"{"kind":"#), "{text}");
            let read: DirectoryChange = serde_json::from_str(&text).unwrap();
            assert_eq!(read, change);
            // The kind last, as another writer may put it.
            let (kind, rest) = text[1..].split_once(',').unwrap();
            let kind_last = format!("{{{},{kind}}}", rest.strip_suffix('}').unwrap());
            let read: DirectoryChange = serde_json::from_str(&kind_last).unwrap();
            assert_eq!(read, change, "{kind_last}");
        }
    }

    #[test]
    fn a_change_without_a_field_of_its_kind_or_of_an_unknown_kind_is_an_error() {
        let read = |v: serde_json::Value| {
            serde_json::from_value::<DirectoryChange>(v)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            read(json!({"kind": "admin_granted", "corp_id": "c"})),
            "missing field `userid`"
        );
        assert_eq!(
            read(json!({"kind": "member_upserted", "userid": "u"})),
            "missing field `member`"
        );
        assert_eq!(read(json!({"corp_id": "c"})), "missing field `kind`");
        assert!(
            read(json!({"kind": "member_renamed"})).starts_with("unknown variant `member_renamed`")
        );
        assert!(
            read(json!({"kind": "department_removed", "corp_id": "c", "dept_id": "7"}))
                .starts_with("invalid type: string \"7\", expected i64")
        );
    }
}
