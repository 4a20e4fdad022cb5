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

/// `POST topapi/v2/user/list` {dept_id, cursor, size, contain_access_limit: true}: one page of
/// `dept_id`'s direct members, as members of the client's corp (each also in `dept_id`, leading
/// it when the item says so). Access-restricted members (数据访问受限) are asked for too
/// (docs/dingtalk-api.md §13.2). A 200 whose `result.list` is not an array is
/// `ApiError::Parse("result.list")`, never an empty department (§13.4).
pub fn user_list(
    client: &mut Client<'_>,
    dept_id: i64,
    cursor: u64,
    size: u32,
) -> Result<UserPage, ApiError> {
    let body =
        json!({"dept_id": dept_id, "cursor": cursor, "size": size, "contain_access_limit": true});
    let v = client.oapi_post("/topapi/v2/user/list", &body)?;
    let corp = client.app().corp_id.clone();
    let r = result_of(&v);
    let Some(Value::Array(items)) = r.get("list") else {
        return Err(ApiError::Parse("result.list"));
    };
    let members = items
        .iter()
        .filter_map(|item| member_from_list_item(&corp, item, dept_id))
        .collect();
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
/// DingTalk lists them (unfiltered; items without `dept_id` dropped; `order` when sent). Errors:
/// `NotFound` for a deleted department, `OutOfScope` outside the contact scope, and
/// `ApiError::Parse("result")` for a 200 whose `result` is not an array (never "no children").
pub fn department_listsub(
    client: &mut Client<'_>,
    dept_id: i64,
) -> Result<Vec<Department>, ApiError> {
    let v = client.oapi_post(
        "/topapi/v2/department/listsub",
        &json!({"dept_id": dept_id}),
    )?;
    let corp = client.app().corp_id.clone();
    let Some(Value::Array(items)) = v.get("result") else {
        return Err(ApiError::Parse("result"));
    };
    Ok(items
        .iter()
        .filter_map(|item| department_from_json(&corp, item))
        .collect())
}

/// The app's contact scope (通讯录权限范围), per `GET /auth/scopes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuthScopes {
    /// `auth_org_scopes.authed_dept`: departments whose subtrees the app may read (`[1]`: the
    /// whole organisation).
    pub authed_dept: Vec<i64>,
    /// `auth_org_scopes.authed_user`: members the app may read one by one, outside those
    /// departments.
    pub authed_user: Vec<String>,
}

impl AuthScopes {
    /// Whether the whole organisation is visible (the root department is authorised).
    pub fn whole_org(&self) -> bool {
        self.authed_dept.contains(&super::records::ROOT_DEPT)
    }
}

/// `GET auth/scopes`: the app's contact scope (docs/dingtalk-api.md §13.3). Department ids are
/// de-duplicated (malformed ones dropped), userids kept when usable. An answer without
/// `auth_org_scopes` is `ApiError::Parse("auth_org_scopes")`.
pub fn auth_scopes(client: &mut Client<'_>) -> Result<AuthScopes, ApiError> {
    let v = client.oapi_get("/auth/scopes")?;
    let scopes = v
        .get("auth_org_scopes")
        .filter(|s| s.is_object())
        .ok_or(ApiError::Parse("auth_org_scopes"))?;
    let mut authed_user: Vec<String> = Vec::new();
    if let Some(Value::Array(items)) = scopes.get("authed_user") {
        for id in items.iter().filter_map(as_text) {
            if super::records::valid_userid(&id) && !authed_user.contains(&id) {
                authed_user.push(id);
            }
        }
    }
    Ok(AuthScopes {
        authed_dept: super::records::dept_ids(scopes.get("authed_dept"))
            .into_iter()
            .filter(|d| *d >= 1)
            .collect(),
        authed_user,
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

    #[test]
    fn auth_scopes_reads_the_visible_part_of_the_org() {
        let s = sample();
        let ep = Endpoints::from_settings(&s);
        let mut env = FakeEnv::new();
        env.answer(
            "/auth/scopes",
            json!({"errcode": 0, "errmsg": "ok", "auth_user_field": ["name"],
                "auth_org_scopes": {"authed_dept": [3, "7", 3, -1, "x"], "authed_user": ["u1", "", "u1", "a b"]}}),
        );
        let mut client = Client::new(&mut env, &ep, &s.corp);
        let scopes = auth_scopes(&mut client).unwrap();
        assert_eq!(
            scopes,
            AuthScopes {
                authed_dept: vec![3, 7],
                authed_user: vec!["u1".into()]
            }
        );
        assert!(!scopes.whole_org());
        assert_eq!(env.requests.last().unwrap().method, "GET");
        env.answer("/auth/scopes", json!({"errcode": 0}));
        let mut client = Client::new(&mut env, &ep, &s.corp);
        assert_eq!(
            auth_scopes(&mut client).unwrap_err(),
            ApiError::Parse("auth_org_scopes")
        );
    }

    #[test]
    fn answers_without_data_are_errors_and_restricted_members_are_asked_for() {
        let s = sample();
        let ep = Endpoints::from_settings(&s);
        let mut env = FakeEnv::new();
        env.answer(
            "/topapi/v2/user/list",
            json!({"errcode": 0, "result": {"has_more": false}}),
        );
        env.answer("/topapi/v2/department/listsub", json!({"errcode": 0}));
        let mut client = Client::new(&mut env, &ep, &s.corp);
        assert_eq!(
            user_list(&mut client, 2, 0, 100).unwrap_err(),
            ApiError::Parse("result.list")
        );
        assert_eq!(
            department_listsub(&mut client, 2).unwrap_err(),
            ApiError::Parse("result")
        );
        let listed = env
            .requests
            .iter()
            .find(|r| crate::testing::path_of(r) == "/topapi/v2/user/list")
            .unwrap();
        assert_eq!(
            crate::testing::body_of(listed)["contain_access_limit"],
            json!(true)
        );
        env.answer(
            "/topapi/v2/user/list",
            json!({"errcode": 0, "result": {"has_more": false, "list": []}}),
        );
        let mut client = Client::new(&mut env, &ep, &s.corp);
        assert!(user_list(&mut client, 2, 0, 100)
            .unwrap()
            .members
            .is_empty());
    }
}
