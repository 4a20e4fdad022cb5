//! The directory mirror: each member's record by userid, kept in the key-value store so a warm
//! login needs no `user/get` (issue 12). The full sync writes every member it emits, contact
//! events write or drop the members they name, and a login reads the record of the userid
//! DingTalk just named. A login whose member is not mirrored yet falls back to `user/get` and
//! mirrors what it read; both paths produce the same identity ([`fill_identity`]).
//!
//! One key per member, `dir:{corp}:{userid}`, holding the [`Member`] as JSON; no expiry, since a
//! departed member is dropped by the event or sync pass that saw them leave.

use crate::env::{Env, KvError};
use crate::kv;
use crate::model::{Identity, Member};

/// The key of one member's mirrored record.
pub fn key(corp_id: &str, userid: &str) -> String {
    format!("dir:{corp_id}:{userid}")
}

/// The mirrored record of `userid` in `corp_id`: `None` when not mirrored, unreadable or no
/// longer active (a login then asks DingTalk).
pub fn load(env: &mut dyn Env, corp_id: &str, userid: &str) -> Result<Option<Member>, KvError> {
    Ok(kv::get_json::<Member>(env, &key(corp_id, userid))?
        .filter(|m| m.active && m.corp_id == corp_id && m.userid == userid))
}

/// Mirrors `member` (one write); an inactive member is dropped instead.
pub fn store(env: &mut dyn Env, member: &Member) -> Result<(), KvError> {
    if !member.active {
        return forget(env, &member.corp_id, &member.userid);
    }
    kv::put_json(env, &key(&member.corp_id, &member.userid), member)
}

/// Drops the mirrored record of a member who left or was deactivated (one delete).
pub fn forget(env: &mut dyn Env, corp_id: &str, userid: &str) -> Result<(), KvError> {
    env.kv_delete(&key(corp_id, userid))
}

/// Completes `identity` from the member's own-org record, the same way whether the record came
/// from the mirror or from a fresh `user/get`: name, unionid when the code did not carry one,
/// org email (else personal), mobile, avatar, departments, and the admin/boss flags.
pub fn fill_identity(identity: &mut Identity, member: &Member) {
    if !member.name.is_empty() {
        identity.name = member.name.clone();
    }
    if identity.unionid.is_empty() {
        identity.unionid = member.unionid.clone().unwrap_or_default();
    }
    identity.email = member.org_email.clone().or_else(|| member.email.clone());
    identity.mobile = member.mobile.clone();
    identity.avatar = member.avatar.clone();
    identity.dept_ids = member.dept_ids.clone();
    identity.is_admin = identity.is_admin || member.is_admin || member.is_boss;
    if member.is_boss {
        identity.admin_level = identity.admin_level.max(100);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Via;
    use crate::testing::FakeEnv;

    fn member(active: bool) -> Member {
        Member {
            corp_id: "dingcorp".into(),
            userid: "u1".into(),
            unionid: Some("un1".into()),
            name: "张三".into(),
            mobile: Some("13800000000".into()),
            email: Some("me@example.com".into()),
            org_email: Some("z@corp.example".into()),
            avatar: None,
            title: None,
            job_number: None,
            dept_ids: vec![1, 7],
            leader_dept_ids: vec![],
            is_admin: false,
            is_boss: true,
            active,
        }
    }

    fn identity() -> Identity {
        Identity {
            corp_id: "dingcorp".into(),
            userid: "u1".into(),
            unionid: String::new(),
            name: String::new(),
            mobile: None,
            email: None,
            avatar: None,
            dept_ids: vec![],
            is_admin: false,
            admin_level: 0,
            via: Via::InappMobile,
            requires_sms_binding: false,
            return_to: None,
        }
    }

    #[test]
    fn a_stored_member_is_loaded_and_an_inactive_one_is_dropped() {
        let mut env = FakeEnv::new();
        store(&mut env, &member(true)).unwrap();
        assert_eq!(
            load(&mut env, "dingcorp", "u1").unwrap(),
            Some(member(true))
        );
        assert_eq!(load(&mut env, "dingother", "u1").unwrap(), None);
        store(&mut env, &member(false)).unwrap();
        assert_eq!(load(&mut env, "dingcorp", "u1").unwrap(), None);
        assert!(!env.kv.contains_key(&key("dingcorp", "u1")));
    }

    #[test]
    fn a_record_under_the_wrong_key_is_not_trusted() {
        let mut env = FakeEnv::new();
        let m = member(true);
        kv::put_json(&mut env, &key("dingcorp", "u2"), &m).unwrap();
        assert_eq!(load(&mut env, "dingcorp", "u2").unwrap(), None);
        env.kv.insert(key("dingcorp", "u3"), b"not json".to_vec());
        assert_eq!(load(&mut env, "dingcorp", "u3").unwrap(), None);
    }

    #[test]
    fn the_identity_gets_the_org_record() {
        let mut id = identity();
        fill_identity(&mut id, &member(true));
        assert_eq!(id.name, "张三");
        assert_eq!(id.unionid, "un1");
        assert_eq!(id.email.as_deref(), Some("z@corp.example"));
        assert_eq!(id.dept_ids, vec![1, 7]);
        assert!(id.is_admin);
        assert_eq!(id.admin_level, 100, "the boss is level 100");
    }
}
