//! Contacts read APIs (doc §5), paged through the per-department member index.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::{body_object, get_i64, get_str, ApiError, ApiResult, Ctx};
use crate::control::{perms, ContactScope};
use crate::org::{Org, User, ROOT_DEPT};
use crate::state::State;

fn dept_not_found() -> ApiError {
    ApiError::Old(60003, "部门不存在".into())
}

fn out_of_scope() -> ApiError {
    ApiError::Old(50004, "企业部门不在授权范围".into())
}

/// The app's contact scope as `GET /auth/scopes` reports it.
pub(crate) fn contact_scope(st: &State, corp: usize) -> ContactScope {
    let c = &st.corps[corp];
    let mut fields: Vec<String> = [
        "userid",
        "unionid",
        "name",
        "avatar",
        "title",
        "job_number",
        "dept_id_list",
        "hired_date",
        "active",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if c.perms.contains(perms::FIELD_MOBILE) {
        fields.extend(["mobile".to_string(), "state_code".to_string()]);
    }
    if c.perms.contains(perms::FIELD_EMAIL) {
        fields.extend(["email".to_string(), "org_email".to_string()]);
    }
    ContactScope {
        authed_dept: c.scope.clone().unwrap_or_else(|| vec![ROOT_DEPT]),
        authed_user: c.authed_users.clone(),
        auth_user_field: fields,
    }
}

/// `GET /auth/scopes?access_token=`.
pub(super) fn auth_scopes(st: &mut State, ctx: &Ctx) -> ApiResult {
    let corp = ctx.corp()?;
    let s = contact_scope(st, corp);
    Ok(json!({
        "auth_user_field": s.auth_user_field,
        "auth_org_scopes": {"authed_dept": s.authed_dept, "authed_user": s.authed_user},
    }))
}

fn check_dept(st: &State, corp: usize, dept_id: i64) -> Result<(), ApiError> {
    let c = &st.corps[corp];
    if c.org.department(dept_id).is_none() {
        return Err(dept_not_found());
    }
    if let Some(scope) = &c.scope {
        if !scope.iter().any(|a| c.org.is_within(dept_id, *a)) {
            return Err(out_of_scope());
        }
    }
    Ok(())
}

fn required_dept(body: &Map<String, Value>) -> Result<i64, ApiError> {
    match get_i64(body, "dept_id")? {
        Some(d) if d >= 1 => Ok(d),
        _ => Err(ApiError::BadParam("dept_id".into())),
    }
}

fn check_language(body: &Map<String, Value>) -> Result<(), ApiError> {
    match get_str(body, "language")?.as_deref() {
        None | Some("zh_CN") | Some("en_US") => Ok(()),
        Some(_) => Err(ApiError::BadParam("language".into())),
    }
}

/// `POST /topapi/v2/department/listsub {dept_id?, language?}`.
pub(super) fn listsub(st: &mut State, ctx: &Ctx) -> ApiResult {
    let corp = ctx.corp()?;
    let body = body_object(ctx.req)?;
    check_language(&body)?;
    let dept_id = get_i64(&body, "dept_id")?.unwrap_or(ROOT_DEPT);
    check_dept(st, corp, dept_id)?;
    let org = &st.corps[corp].org;
    let list: Vec<Value> = org
        .sub_departments(dept_id)
        .iter()
        .filter_map(|id| org.department(*id))
        .map(|d| {
            json!({
                "dept_id": d.dept_id,
                "name": d.name,
                "parent_id": d.parent_id,
                "create_dept_group": d.create_dept_group,
                "auto_add_user": d.auto_add_user,
            })
        })
        .collect();
    Ok(json!({"result": list}))
}

/// `POST /topapi/v2/department/listsubid {dept_id}` (not limited by the scope, per the doc).
pub(super) fn listsubid(st: &mut State, ctx: &Ctx) -> ApiResult {
    let corp = ctx.corp()?;
    let body = body_object(ctx.req)?;
    let dept_id = required_dept(&body)?;
    let org = &st.corps[corp].org;
    if org.department(dept_id).is_none() {
        return Err(dept_not_found());
    }
    Ok(json!({"result": {"dept_id_list": org.sub_departments(dept_id)}}))
}

/// `POST /topapi/v2/department/get {dept_id, language?}`.
pub(super) fn department_get(st: &mut State, ctx: &Ctx) -> ApiResult {
    let corp = ctx.corp()?;
    let body = body_object(ctx.req)?;
    check_language(&body)?;
    let dept_id = required_dept(&body)?;
    check_dept(st, corp, dept_id)?;
    let org = &st.corps[corp].org;
    let d = org.department(dept_id).ok_or_else(dept_not_found)?;
    let managers: Vec<&str> = org
        .members(dept_id)
        .iter()
        .filter_map(|u| org.user(u))
        .filter(|u| u.leader_in.contains(&dept_id))
        .map(|u| u.userid.as_str())
        .collect();
    let mut result = json!({
        "dept_id": d.dept_id,
        "name": d.name,
        "source_identifier": "",
        "create_dept_group": d.create_dept_group,
        "auto_add_user": d.auto_add_user,
        "from_union_org": false,
        "tags": "",
        "order": d.order,
        "dept_group_chat_id": format!("chat{:08x}", d.dept_id),
        "group_contain_sub_dept": false,
        "org_dept_owner": managers.first().copied().unwrap_or(""),
        "dept_manager_userid_list": managers,
        "outer_dept": false,
        "outer_permit_depts": [],
        "outer_permit_users": [],
        "hide_dept": false,
        "user_permits": [],
        "dept_permits": [],
        "auto_approve_apply": false,
        "code": "",
        "member_count": org.members(dept_id).len(),
        "owning_member_count": org.members(dept_id).len(),
    });
    if d.parent_id != 0 {
        result["parent_id"] = json!(d.parent_id);
    }
    Ok(json!({"result": result}))
}

fn user_common(u: &User, perms_: &BTreeSet<String>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("userid".into(), json!(u.userid));
    m.insert("unionid".into(), json!(u.unionid));
    m.insert("name".into(), json!(u.name));
    m.insert("avatar".into(), json!(u.avatar));
    if perms_.contains(perms::FIELD_MOBILE) {
        m.insert("state_code".into(), json!(u.state_code));
        if let Some(mobile) = &u.mobile {
            m.insert("mobile".into(), json!(mobile));
        }
    }
    m.insert("hide_mobile".into(), json!(u.hide_mobile));
    m.insert("telephone".into(), json!(u.telephone));
    m.insert("job_number".into(), json!(u.job_number));
    m.insert("title".into(), json!(u.title));
    if perms_.contains(perms::FIELD_EMAIL) {
        if let Some(e) = &u.email {
            m.insert("email".into(), json!(e));
        }
        if let Some(e) = &u.org_email {
            m.insert("org_email".into(), json!(e));
        }
        m.insert("work_place".into(), json!(u.work_place));
        m.insert("remark".into(), json!(u.remark));
        m.insert("extension".into(), json!("{}"));
    }
    m.insert("dept_id_list".into(), json!(u.dept_ids));
    if let Some(h) = u.hired_date {
        m.insert("hired_date".into(), json!(h));
    }
    m.insert("active".into(), json!(u.active));
    m.insert("admin".into(), json!(u.is_sys()));
    m.insert("boss".into(), json!(u.boss));
    m.insert("exclusive_account".into(), json!(false));
    m
}

fn entry_key(u: Option<&User>) -> i64 {
    u.and_then(|u| u.hired_date).unwrap_or(0)
}

struct Page {
    dept_id: i64,
    cursor: i64,
    size: i64,
    order: String,
    contain_access_limit: bool,
}

fn page_params(
    body: &Map<String, Value>,
    strict_size_code: Option<(i64, i64)>,
) -> Result<Page, ApiError> {
    let dept_id = required_dept(body)?;
    let cursor = get_i64(body, "cursor")?;
    let size = get_i64(body, "size")?;
    let (bad_cursor, bad_size) = match strict_size_code {
        Some((c, s)) => (
            ApiError::Old(c, "不合法的偏移量".into()),
            ApiError::Old(s, "不合法的分页大小".into()),
        ),
        None => (
            ApiError::BadParam("cursor".into()),
            ApiError::BadParam("size".into()),
        ),
    };
    let cursor = match cursor {
        Some(c) if c >= 0 => c,
        _ => return Err(bad_cursor),
    };
    let size = match size {
        Some(s) if (1..=100).contains(&s) => s,
        _ => return Err(bad_size),
    };
    let order = get_str(body, "order_field")?.unwrap_or_else(|| "custom".into());
    if ![
        "entry_asc",
        "entry_desc",
        "modify_asc",
        "modify_desc",
        "custom",
    ]
    .contains(&order.as_str())
    {
        return Err(ApiError::BadParam("order_field".into()));
    }
    check_language(body)?;
    let contain_access_limit = super::get_bool(body, "contain_access_limit")?.unwrap_or(false);
    Ok(Page {
        dept_id,
        cursor,
        size,
        order,
        contain_access_limit,
    })
}

/// The member ids of one page: (ids, has_more, next_cursor). The cursor is an offset into the
/// department's member list as it is now; access-restricted members are dropped from the page
/// after slicing unless asked for, so a page can be short (even empty) with `has_more`.
fn page_ids(org: &Org, p: &Page) -> (Vec<String>, bool, i64) {
    let (mut ids, more, next) = page_ids_all(org, p);
    if !p.contain_access_limit {
        ids.retain(|u| org.user(u).is_some_and(|u| !u.access_limited));
    }
    (ids, more, next)
}

fn page_ids_all(org: &Org, p: &Page) -> (Vec<String>, bool, i64) {
    let all = org.members(p.dept_id);
    let start = (p.cursor as usize).min(all.len());
    let end = (start + p.size as usize).min(all.len());
    let ids: Vec<String> = match p.order.as_str() {
        "entry_asc" | "entry_desc" => {
            let mut sorted: Vec<&String> = all.iter().collect();
            sorted.sort_by_key(|u| (entry_key(org.user(u)), (*u).clone()));
            if p.order == "entry_desc" {
                sorted.reverse();
            }
            sorted[start..end].iter().map(|s| (*s).clone()).collect()
        }
        _ => all[start..end].to_vec(),
    };
    (ids, end < all.len(), end as i64)
}

/// `POST /topapi/v2/user/list {dept_id, cursor, size ≤ 100, order_field?, language?}`.
pub(super) fn user_list(st: &mut State, ctx: &Ctx) -> ApiResult {
    let corp = ctx.corp()?;
    let body = body_object(ctx.req)?;
    let p = page_params(&body, None)?;
    check_dept(st, corp, p.dept_id)?;
    let c = &st.corps[corp];
    let (ids, has_more, next) = page_ids(&c.org, &p);
    let list: Vec<Value> = ids
        .iter()
        .filter_map(|id| c.org.user(id))
        .map(|u| {
            let mut m = user_common(u, &c.perms);
            m.insert("leader".into(), json!(u.leader_in.contains(&p.dept_id)));
            m.insert("dept_order".into(), json!(0));
            Value::Object(m)
        })
        .collect();
    let mut result = json!({"has_more": has_more, "list": list});
    if has_more {
        result["next_cursor"] = json!(next);
    }
    Ok(json!({"result": result}))
}

/// `POST /topapi/user/listsimple {dept_id, cursor, size ≤ 100}`.
pub(super) fn listsimple(st: &mut State, ctx: &Ctx) -> ApiResult {
    let corp = ctx.corp()?;
    let body = body_object(ctx.req)?;
    let p = page_params(&body, Some((40068, 40069)))?;
    check_dept(st, corp, p.dept_id)?;
    let c = &st.corps[corp];
    let (ids, has_more, next) = page_ids(&c.org, &p);
    let list: Vec<Value> = ids
        .iter()
        .filter_map(|id| c.org.user(id))
        .map(|u| json!({"userid": u.userid, "name": u.name}))
        .collect();
    let mut result = json!({"has_more": has_more, "list": list});
    if has_more {
        result["next_cursor"] = json!(next);
    }
    Ok(json!({"result": result}))
}

/// `POST /topapi/user/listid {dept_id}` (not limited by the scope, per the doc).
pub(super) fn listid(st: &mut State, ctx: &Ctx) -> ApiResult {
    let corp = ctx.corp()?;
    let body = body_object(ctx.req)?;
    let dept_id = required_dept(&body)?;
    let org = &st.corps[corp].org;
    if org.department(dept_id).is_none() {
        return Err(dept_not_found());
    }
    Ok(json!({"result": {"userid_list": org.members(dept_id)}}))
}

/// `POST /topapi/v2/user/get {userid, language?}`.
pub(super) fn user_get(st: &mut State, ctx: &Ctx) -> ApiResult {
    let corp = ctx.corp()?;
    let body = body_object(ctx.req)?;
    check_language(&body)?;
    let userid = get_str(&body, "userid")?.unwrap_or_default();
    if userid.is_empty() {
        return Err(ApiError::BadParam("userid".into()));
    }
    let c = &st.corps[corp];
    let u = c
        .org
        .user(&userid)
        .ok_or_else(|| ApiError::Old(60121, "找不到该用户".into()))?;
    let authed = c.authed_users.contains(&u.userid);
    if let (Some(scope), false) = (&c.scope, authed) {
        let visible = u
            .dept_ids
            .iter()
            .any(|d| scope.iter().any(|a| c.org.is_within(*d, *a)));
        if !visible {
            return Err(out_of_scope());
        }
    }
    let mut m = user_common(u, &c.perms);
    if let Some(mgr) = &u.manager_userid {
        m.insert("manager_userid".into(), json!(mgr));
    }
    m.insert(
        "dept_order_list".into(),
        json!(u
            .dept_ids
            .iter()
            .map(|d| json!({"dept_id": d, "order": 0}))
            .collect::<Vec<_>>()),
    );
    m.insert(
        "leader_in_dept".into(),
        json!(u
            .dept_ids
            .iter()
            .map(|d| json!({"dept_id": d, "leader": u.leader_in.contains(d)}))
            .collect::<Vec<_>>()),
    );
    m.insert(
        "role_list".into(),
        json!(u
            .roles
            .iter()
            .map(|r| json!({"id": r.id, "name": r.name, "group_name": r.group_name}))
            .collect::<Vec<_>>()),
    );
    m.insert("real_authed".into(), json!(u.active));
    m.insert("senior".into(), json!(false));
    m.insert(
        "union_emp_ext".into(),
        json!({"userid": u.userid, "corp_id": c.creds.corp_id, "union_emp_map_list": []}),
    );
    Ok(json!({"result": Value::Object(m)}))
}
