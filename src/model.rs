//! The domain records the plugin hands to the platform: identities and directory entries.
//! They serialize to the JSON of the platform API (R7) and map 1:1 onto the WIT records.

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

/// One change to mirror (WIT `directory-change`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
