//! Contacts endpoints (old API family, app token): users and departments of the client's corp.
//! Each function is one call with one parser into a typed record (see [`super::records`]).

use super::error::{ApiError, Problem};
use super::records::{
    as_bool, as_i64, as_text, department_from_json, dept_managers, member_from_list_item,
    UserRecord,
};
use super::Client;
use crate::model::{Department, Member};
use serde_json::{json, Value};

/// The `result` object of an old-API answer (`Null` when absent).
fn result_of(v: &Value) -> &Value {
    v.get("result").unwrap_or(&Value::Null)
}

/// Who signed in with an in-app code, per `topapi/v2/user/getuserinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeUser {
    /// userid in the client's corp.
    pub userid: String,
    /// unionid, when sent.
    pub unionid: Option<String>,
    /// Name, when sent.
    pub name: Option<String>,
    /// `sys`: whether DingTalk calls the person an admin.
    pub sys: bool,
    /// `sys_level`: 1 main admin, 2 sub-admin, 100 boss, 0 other.
    pub sys_level: u32,
}

/// `POST topapi/v2/user/getuserinfo` {code}: the person behind an in-app (JSAPI) sign-in code.
/// A `result` without `userid` is `ApiError::Parse("result.userid")`.
pub fn user_info_by_code(client: &mut Client<'_>, code: &str) -> Result<CodeUser, ApiError> {
    let v = client.oapi_post("/topapi/v2/user/getuserinfo", &json!({"code": code}))?;
    let r = result_of(&v);
    Ok(CodeUser {
        userid: r
            .get("userid")
            .and_then(as_text)
            .ok_or(ApiError::Parse("result.userid"))?,
        unionid: r.get("unionid").and_then(as_text),
        name: r.get("name").and_then(as_text),
        sys: r.get("sys").and_then(as_bool).unwrap_or(false),
        sys_level: r
            .get("sys_level")
            .and_then(as_i64)
            .and_then(|l| u32::try_from(l).ok())
            .unwrap_or(0),
    })
}

/// `POST topapi/v2/user/get` {userid}: the member's full record. An answer without `result`
/// gives an empty record (callers decide whether that is usable). Errors: `NotFound` /
/// `NotMember` for an unknown userid, `MissingPermission` without `qyapi_get_member`.
pub fn user_get(client: &mut Client<'_>, userid: &str) -> Result<UserRecord, ApiError> {
    let v = client.oapi_post("/topapi/v2/user/get", &json!({"userid": userid}))?;
    Ok(UserRecord::from_json(result_of(&v)))
}

/// `POST topapi/user/getbyunionid` {unionid}: the person's userid in the client's corp, or
/// `None` when they are not a member (60121) or only an external contact (`contact_type` 1).
pub fn userid_by_unionid(
    client: &mut Client<'_>,
    unionid: &str,
) -> Result<Option<String>, ApiError> {
    let v = match client.oapi_post("/topapi/user/getbyunionid", &json!({"unionid": unionid})) {
        Ok(v) => v,
        Err(e) if e.problem() == Problem::NotMember => return Ok(None),
        Err(e) => return Err(e),
    };
    let r = result_of(&v);
    if r.get("contact_type").and_then(as_i64) == Some(1) {
        return Ok(None);
    }
    Ok(r.get("userid").and_then(as_text))
}

/// One page of a department's members, per `topapi/v2/user/list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPage {
    /// The usable members of the page (items without a valid userid are dropped).
    pub members: Vec<Member>,
    /// More pages follow.
    pub has_more: bool,
    /// The cursor of the next page, when sent and non-negative.
    pub next_cursor: Option<u64>,
}

/// `POST topapi/v2/user/list` {dept_id, cursor, size}: one page of `dept_id`'s direct members,
/// as members of the client's corp (each also in `dept_id`, leading it when the item says so).
pub fn user_list(
    client: &mut Client<'_>,
    dept_id: i64,
    cursor: u64,
    size: u32,
) -> Result<UserPage, ApiError> {
    let body = json!({"dept_id": dept_id, "cursor": cursor, "size": size});
    let v = client.oapi_post("/topapi/v2/user/list", &body)?;
    let corp = client.app().corp_id.clone();
    let r = result_of(&v);
    let members = match r.get("list") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| member_from_list_item(&corp, item, dept_id))
            .collect(),
        _ => Vec::new(),
    };
    Ok(UserPage {
        members,
        has_more: r.get("has_more").and_then(as_bool).unwrap_or(false),
        next_cursor: r
            .get("next_cursor")
            .and_then(as_i64)
            .and_then(|n| u64::try_from(n).ok()),
    })
}

/// A department's details, per `topapi/v2/department/get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepartmentDetail {
    /// The department, `None` when the answer has no usable `dept_id`.
    pub department: Option<Department>,
    /// Its managers' userids (`dept_manager_userid_list`).
    pub managers: Vec<String>,
}

/// `POST topapi/v2/department/get` {dept_id}: one department of the client's corp. Errors:
/// `NotFound` for a deleted department.
pub fn department_get(client: &mut Client<'_>, dept_id: i64) -> Result<DepartmentDetail, ApiError> {
    let v = client.oapi_post("/topapi/v2/department/get", &json!({"dept_id": dept_id}))?;
    let corp = client.app().corp_id.clone();
    let r = result_of(&v);
    Ok(DepartmentDetail {
        department: department_from_json(&corp, r),
        managers: dept_managers(r),
    })
}

/// `POST topapi/v2/department/listsub` {dept_id}: the direct sub-departments of `dept_id` as
/// DingTalk lists them (unfiltered; items without `dept_id` dropped). Errors: `NotFound` for a
/// deleted department.
pub fn department_listsub(
    client: &mut Client<'_>,
    dept_id: i64,
) -> Result<Vec<Department>, ApiError> {
    let v = client.oapi_post(
        "/topapi/v2/department/listsub",
        &json!({"dept_id": dept_id}),
    )?;
    let corp = client.app().corp_id.clone();
    Ok(match v.get("result") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| department_from_json(&corp, item))
            .collect(),
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dingtalk::Endpoints;
    use crate::settings::tests::sample;
    use crate::testing::FakeEnv;

    #[test]
    fn code_user_and_unionid_lookup() {
        let s = sample();
        let ep = Endpoints::from_settings(&s);
        let mut env = FakeEnv::new();
        env.answer(
            "/topapi/v2/user/getuserinfo",
            json!({"errcode": 0, "result": {"userid": "u1", "name": "张三", "sys": "true", "sys_level": "2"}}),
        );
        env.answer_seq(
            "/topapi/user/getbyunionid",
            vec![
                (
                    200,
                    json!({"errcode": 0, "result": {"userid": "u1", "contact_type": 0}}),
                ),
                (
                    200,
                    json!({"errcode": 0, "result": {"userid": "x1", "contact_type": 1}}),
                ),
                (200, json!({"errcode": 60121, "errmsg": "找不到该用户"})),
            ],
        );
        let mut client = Client::new(&mut env, &ep, &s.corp);
        let who = user_info_by_code(&mut client, "c").unwrap();
        assert_eq!(
            who,
            CodeUser {
                userid: "u1".into(),
                unionid: None,
                name: Some("张三".into()),
                sys: true,
                sys_level: 2
            }
        );
        assert_eq!(
            userid_by_unionid(&mut client, "un").unwrap().as_deref(),
            Some("u1")
        );
        assert_eq!(
            userid_by_unionid(&mut client, "un").unwrap(),
            None,
            "external contact"
        );
        assert_eq!(
            userid_by_unionid(&mut client, "un").unwrap(),
            None,
            "not a member"
        );
    }

    #[test]
    fn user_get_keeps_both_emails_and_tolerates_no_result() {
        let s = sample();
        let ep = Endpoints::from_settings(&s);
        let mut env = FakeEnv::new();
        env.answer(
            "/topapi/v2/user/get",
            json!({"errcode": 0, "result": {"userid": "u1", "email": "p@x", "org_email": "o@corp", "admin": 1}}),
        );
        let mut client = Client::new(&mut env, &ep, &s.corp);
        let user = user_get(&mut client, "u1").unwrap();
        assert_eq!(user.org_email.as_deref(), Some("o@corp"));
        assert_eq!(user.admin, Some(true));
        assert_eq!(user.to_member("c").unwrap().email.as_deref(), Some("p@x"));
        env.answer("/topapi/v2/user/get", json!({"errcode": 0}));
        let mut client = Client::new(&mut env, &ep, &s.corp);
        assert_eq!(user_get(&mut client, "u1").unwrap(), UserRecord::default());
    }
}
