//! The directory of one corp: departments (root id 1) and members, indexed for fast paging.

use std::collections::{BTreeMap, HashMap};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Id of the root department, as in DingTalk.
pub const ROOT_DEPT: i64 = 1;

/// One department.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Department {
    /// `dept_id`.
    pub dept_id: i64,
    /// `name`.
    pub name: String,
    /// `parent_id` (0 for the root).
    pub parent_id: i64,
    /// `order` among siblings.
    pub order: i64,
    /// `create_dept_group`.
    pub create_dept_group: bool,
    /// `auto_add_user`.
    pub auto_add_user: bool,
}

/// A role of a member (`role_list` of `v2/user/get`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// `id`.
    pub id: i64,
    /// `name`.
    pub name: String,
    /// `group_name`.
    pub group_name: String,
}

/// One member of a corp, with the org record and the person's own account data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// `userid` (fixed inside the corp).
    pub userid: String,
    /// `unionid` (the person across corps of one developer account).
    pub unionid: String,
    /// `name` in the org.
    pub name: String,
    /// Org mobile (`mobile`); `None` = not recorded.
    pub mobile: Option<String>,
    /// `state_code` (country code).
    pub state_code: String,
    /// Org `email`; `None` = not recorded.
    pub email: Option<String>,
    /// `org_email` (enterprise mailbox).
    pub org_email: Option<String>,
    /// `avatar`.
    pub avatar: String,
    /// `title`.
    pub title: String,
    /// `job_number`.
    pub job_number: String,
    /// `telephone`.
    pub telephone: String,
    /// `work_place`.
    pub work_place: String,
    /// `remark`.
    pub remark: String,
    /// `dept_id_list`, in order; never empty.
    pub dept_ids: Vec<i64>,
    /// Departments in which this member is a leader (`leader_in_dept`).
    pub leader_in: Vec<i64>,
    /// 0 = not admin, 1 = main admin, 2 = sub-admin.
    pub admin_level: u8,
    /// `boss`.
    pub boss: bool,
    /// `active` (has activated DingTalk).
    pub active: bool,
    /// `hide_mobile`.
    pub hide_mobile: bool,
    /// `hired_date` (ms).
    pub hired_date: Option<i64>,
    /// `manager_userid`.
    pub manager_userid: Option<String>,
    /// `role_list`.
    pub roles: Vec<Role>,
    /// Personal account: nickname returned by `/v1.0/contact/users/me` (`nick`).
    pub nick: String,
    /// Personal account mobile (`/v1.0/contact/users/me` `mobile`); everyone has one.
    pub account_mobile: String,
    /// Personal account e-mail (`/v1.0/contact/users/me` `email`): NOT the org record.
    pub account_email: Option<String>,
    /// 数据访问受限: left out of `v2/user/list` / `listsimple` unless the body has
    /// `contain_access_limit: true` (`v2/user/get` still returns the member).
    pub access_limited: bool,
}

impl User {
    /// A minimal active member with the given ids, name and departments.
    pub fn new(userid: &str, unionid: &str, name: &str, dept_ids: &[i64]) -> User {
        User {
            userid: userid.to_string(),
            unionid: unionid.to_string(),
            name: name.to_string(),
            mobile: None,
            state_code: "86".to_string(),
            email: None,
            org_email: None,
            avatar: format!("https://static.dingtalk.example/avatar/{userid}.png"),
            title: String::new(),
            job_number: String::new(),
            telephone: String::new(),
            work_place: String::new(),
            remark: String::new(),
            dept_ids: dept_ids.to_vec(),
            leader_in: Vec::new(),
            admin_level: 0,
            boss: false,
            active: true,
            hide_mobile: false,
            hired_date: None,
            manager_userid: None,
            roles: Vec::new(),
            nick: name.to_string(),
            account_mobile: format!("1990000{:04}", fnv(userid) % 10_000),
            account_email: None,
            access_limited: false,
        }
    }

    /// Sets the org mobile (also the account mobile).
    pub fn with_mobile(mut self, mobile: &str) -> User {
        self.mobile = Some(mobile.to_string());
        self.account_mobile = mobile.to_string();
        self
    }

    /// Sets the org e-mail.
    pub fn with_email(mut self, email: &str) -> User {
        self.email = Some(email.to_string());
        self
    }

    /// Sets the personal account e-mail returned by `/v1.0/contact/users/me`.
    pub fn with_account_email(mut self, email: &str) -> User {
        self.account_email = Some(email.to_string());
        self
    }

    /// Sets the admin level (1 main, 2 sub).
    pub fn with_admin(mut self, level: u8) -> User {
        self.admin_level = level;
        self
    }

    /// Marks the member as the boss.
    pub fn with_boss(mut self) -> User {
        self.boss = true;
        self
    }

    /// Makes the member a leader of `dept_id`.
    pub fn with_leader_in(mut self, dept_id: i64) -> User {
        if !self.leader_in.contains(&dept_id) {
            self.leader_in.push(dept_id);
        }
        self
    }

    /// Marks the member as access-restricted (数据访问受限).
    pub fn with_access_limited(mut self, limited: bool) -> User {
        self.access_limited = limited;
        self
    }

    /// Sets `active`.
    pub fn with_active(mut self, active: bool) -> User {
        self.active = active;
        self
    }

    /// `sys` of `v2/user/getuserinfo`.
    pub fn is_sys(&self) -> bool {
        self.admin_level > 0
    }

    /// `sys_level`: 1 main admin, 2 sub-admin, 100 boss, 0 other.
    pub fn sys_level(&self) -> i64 {
        match self.admin_level {
            1 => 1,
            2 => 2,
            _ if self.boss => 100,
            _ => 0,
        }
    }
}

/// Why a directory change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgError {
    /// No such department.
    NoSuchDepartment(i64),
    /// No such (current) member.
    NoSuchUser(String),
    /// The userid or unionid is already taken.
    Duplicate(String),
    /// The department still has members or sub-departments (or is the root).
    DepartmentNotEmpty(i64),
    /// A member must stay in at least one department.
    NoDepartment,
}

impl std::fmt::Display for OrgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OrgError::NoSuchDepartment(d) => write!(f, "no such department {d}"),
            OrgError::NoSuchUser(u) => write!(f, "no such user {u}"),
            OrgError::Duplicate(u) => write!(f, "duplicate id {u}"),
            OrgError::DepartmentNotEmpty(d) => {
                write!(f, "department {d} is not empty or is the root")
            }
            OrgError::NoDepartment => write!(f, "a member needs at least one department"),
        }
    }
}

impl std::error::Error for OrgError {}

/// Parameters of a generated org.
#[derive(Debug, Clone)]
pub struct OrgSpec {
    /// Number of departments, root included (≥ 1).
    pub departments: usize,
    /// Number of members.
    pub users: usize,
    /// Maximum depth below the root (root = depth 0).
    pub max_depth: usize,
    /// RNG seed: the same spec gives the same org.
    pub seed: u64,
    /// Share of members who belong to 2–3 departments.
    pub multi_dept_ratio: f64,
    /// Share of members without an org mobile.
    pub no_mobile_ratio: f64,
    /// Share of members without an org e-mail.
    pub no_email_ratio: f64,
    /// Share of members not yet active.
    pub inactive_ratio: f64,
    /// Number of sub-admins (the first member is boss and main admin).
    pub sub_admins: usize,
    /// Share of departments that have a leader.
    pub leader_ratio: f64,
    /// Domain of org e-mails.
    pub email_domain: String,
    /// Share of members who are access-restricted (数据访问受限); default 0. Member 1 never is.
    pub access_limited_ratio: f64,
    /// Whether the boss (member 1) is also the main admin (default `true`: `sys_level` 1). When
    /// `false` the boss is not an admin (`sys_level` 100) and member 2 is the main admin.
    pub boss_is_main_admin: bool,
}

impl Default for OrgSpec {
    fn default() -> Self {
        OrgSpec {
            departments: 12,
            users: 60,
            max_depth: 3,
            seed: 42,
            multi_dept_ratio: 0.1,
            no_mobile_ratio: 0.1,
            no_email_ratio: 0.2,
            inactive_ratio: 0.05,
            sub_admins: 2,
            leader_ratio: 0.9,
            email_domain: "corp.example.com".to_string(),
            access_limited_ratio: 0.0,
            boss_is_main_admin: true,
        }
    }
}

impl OrgSpec {
    /// A spec with `departments` departments and `users` members, other values default.
    pub fn sized(departments: usize, users: usize) -> OrgSpec {
        OrgSpec {
            departments,
            users,
            ..OrgSpec::default()
        }
    }
}

/// The directory of one corp.
#[derive(Debug, Clone, Default)]
pub struct Org {
    depts: BTreeMap<i64, Department>,
    children: HashMap<i64, Vec<i64>>,
    users: HashMap<String, User>,
    by_union: HashMap<String, String>,
    members: HashMap<i64, Vec<String>>,
    departed: HashMap<String, User>,
    next_dept_id: i64,
}

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "高", "林", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾",
    "肖", "田", "董", "袁", "潘", "于", "蒋", "蔡", "欧阳", "司马",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀英", "霞", "平", "刚", "桂英", "华", "建", "国", "文", "辉", "玲", "鹏", "宇", "浩",
    "欣", "怡", "子轩", "梓涵", "一诺", "思远", "嘉怡", "雨桐", "晨", "婷", "雪", "琳", "博", "凯",
    "佳",
];
const DEPT_NAMES: &[&str] = &[
    "研发部",
    "市场部",
    "销售部",
    "财务部",
    "人事部",
    "法务部",
    "运营部",
    "客服部",
    "产品部",
    "设计部",
    "测试部",
    "行政部",
    "采购部",
    "质量部",
    "战略部",
    "数据部",
];
const TITLES: &[&str] = &[
    "工程师",
    "高级工程师",
    "经理",
    "专员",
    "主管",
    "总监",
    "助理",
    "顾问",
    "",
];

/// A probability usable by `gen_bool` (NaN and out-of-range values are clamped).
fn prob(p: f64) -> f64 {
    if p.is_nan() {
        0.0
    } else {
        p.clamp(0.0, 1.0)
    }
}

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// A unionid from the generator's RNG, salted with the org (so two corps generated from the same
/// seed do not share unionids: a unionid is per developer account, and each corp's internal app
/// belongs to its own account).
fn union_id(rng: &mut StdRng, salt: u64) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    // Same draws from `rng` as before the salt existed, so the rest of the org is unchanged.
    let mut raw = String::with_capacity(23);
    for _ in 0..23 {
        raw.push(CHARS[rng.gen_range(0..CHARS.len())] as char);
    }
    let mut salted = StdRng::seed_from_u64(fnv(&raw) ^ salt);
    let mut s = String::with_capacity(27);
    for _ in 0..23 {
        s.push(CHARS[salted.gen_range(0..CHARS.len())] as char);
    }
    s.push_str("iEiE");
    s
}

impl Org {
    /// An empty org with only the root department.
    pub fn new(root_name: &str) -> Org {
        let mut org = Org {
            next_dept_id: 100,
            ..Org::default()
        };
        org.depts.insert(
            ROOT_DEPT,
            Department {
                dept_id: ROOT_DEPT,
                name: root_name.to_string(),
                parent_id: 0,
                order: 0,
                create_dept_group: true,
                auto_add_user: true,
            },
        );
        org.members.insert(ROOT_DEPT, Vec::new());
        org.children.insert(ROOT_DEPT, Vec::new());
        org
    }

    /// A generated org (deterministic for a given spec; 10,000 members in well under a second).
    pub fn generate(root_name: &str, spec: &OrgSpec) -> Org {
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let mut org = Org::new(root_name);
        let mut depth: HashMap<i64, usize> = HashMap::new();
        depth.insert(ROOT_DEPT, 0);
        let mut parents: Vec<i64> = vec![ROOT_DEPT];
        let mut all: Vec<i64> = vec![ROOT_DEPT];
        for i in 1..spec.departments.max(1) {
            let parent = parents[rng.gen_range(0..parents.len())];
            let d = depth[&parent] + 1;
            let base = DEPT_NAMES[rng.gen_range(0..DEPT_NAMES.len())];
            let name = if d == 1 {
                format!("{base}{i}")
            } else {
                format!("{base}{i}组")
            };
            let id = org.next_dept_id + rng.gen_range(1..50);
            org.next_dept_id = id;
            org.insert_dept(id, &name, parent);
            depth.insert(id, d);
            if d < spec.max_depth.max(1) {
                parents.push(id);
            }
            all.push(id);
        }
        let domain = &spec.email_domain;
        let salt = fnv(root_name);
        // A separate stream, so the other generated values do not depend on the new options.
        let mut extra_rng = StdRng::seed_from_u64(spec.seed ^ 0xACCE55);
        for i in 0..spec.users {
            let userid = format!("user{:05}", i + 1);
            let mut unionid = union_id(&mut rng, salt);
            while org.by_union.contains_key(&unionid) {
                unionid = union_id(&mut rng, salt);
            }
            let name = format!(
                "{}{}",
                SURNAMES[rng.gen_range(0..SURNAMES.len())],
                GIVEN[rng.gen_range(0..GIVEN.len())]
            );
            let primary = if i == 0 {
                ROOT_DEPT
            } else {
                all[rng.gen_range(0..all.len())]
            };
            let mut dept_ids = vec![primary];
            if rng.gen_bool(prob(spec.multi_dept_ratio)) && all.len() > 1 {
                let extra = rng.gen_range(1..=2);
                for _ in 0..extra {
                    let d = all[rng.gen_range(0..all.len())];
                    if !dept_ids.contains(&d) {
                        dept_ids.push(d);
                    }
                }
            }
            let mut u = User::new(&userid, &unionid, &name, &dept_ids);
            let mobile = format!(
                "13{}{:08}",
                rng.gen_range(0..10),
                rng.gen_range(0..100_000_000u32)
            );
            u.account_mobile = mobile.clone();
            if i == 0 || !rng.gen_bool(prob(spec.no_mobile_ratio)) {
                u.mobile = Some(mobile);
            }
            if i == 0 || !rng.gen_bool(prob(spec.no_email_ratio)) {
                u.email = Some(format!("{userid}@{domain}"));
            }
            if rng.gen_bool(0.3) {
                u.org_email = Some(format!("{userid}@mail.{domain}"));
            }
            u.account_email = Some(format!("{userid}.personal@mail.example.net"));
            u.title = TITLES[rng.gen_range(0..TITLES.len())].to_string();
            u.job_number = format!("{:05}", i + 1);
            u.hired_date = Some(1_500_000_000_000 + rng.gen_range(0..250_000_000_000i64));
            u.active = i == 0 || !rng.gen_bool(prob(spec.inactive_ratio));
            let first_sub = if spec.boss_is_main_admin { 1 } else { 2 };
            if i == 0 {
                u.boss = true;
                u.admin_level = if spec.boss_is_main_admin { 1 } else { 0 };
                u.title = "总经理".to_string();
            } else if i == 1 && !spec.boss_is_main_admin {
                u.admin_level = 1;
            } else if i >= first_sub && i < first_sub + spec.sub_admins {
                u.admin_level = 2;
            }
            u.access_limited = i > 0 && extra_rng.gen_bool(prob(spec.access_limited_ratio));
            // Cannot fail: ids are fresh and departments exist.
            let _ = org.add_user(u);
        }
        // Leaders: the first member of most departments.
        for &d in &all {
            if !rng.gen_bool(prob(spec.leader_ratio)) {
                continue;
            }
            if let Some(first) = org.members.get(&d).and_then(|m| m.first()).cloned() {
                if let Some(u) = org.users.get_mut(&first) {
                    u.leader_in.push(d);
                    if !u.roles.iter().any(|r| r.id == 1) {
                        u.roles.push(Role {
                            id: 1,
                            name: "负责人".to_string(),
                            group_name: "职务".to_string(),
                        });
                    }
                }
            }
        }
        org.recompute_managers();
        org
    }

    /// The fixed demo org: 3 departments and 6 members (see [`crate::CorpSpec::demo`]).
    pub fn demo() -> Org {
        let mut org = Org::new("演示科技有限公司");
        org.insert_dept(2, "研发部", ROOT_DEPT);
        org.insert_dept(3, "市场部", ROOT_DEPT);
        org.next_dept_id = 100;
        let users = vec![
            User::new("zhangsan", "demoUnionZhangsan01iE", "张三", &[1])
                .with_mobile("13800000001")
                .with_email("zhangsan@demo.example.com")
                .with_account_email("zhangsan.home@mail.example.net")
                .with_admin(1)
                .with_boss()
                .with_leader_in(1),
            User::new("lisi", "demoUnionLisi0000001iE", "李四", &[2])
                .with_mobile("13800000002")
                .with_email("lisi@demo.example.com")
                .with_account_email("lisi.home@mail.example.net")
                .with_admin(2)
                .with_leader_in(2),
            User::new("wangwu", "demoUnionWangwu00001iE", "王五", &[2])
                .with_mobile("13800000003")
                .with_email("wangwu@demo.example.com")
                .with_account_email("wangwu.home@mail.example.net"),
            User::new("zhaoliu", "demoUnionZhaoliu0001iE", "赵六", &[3, 2])
                .with_mobile("13800000004")
                .with_email("zhaoliu@demo.example.com")
                .with_account_email("lisi@demo.example.com")
                .with_leader_in(3),
            User::new("qianqi", "demoUnionQianqi00001iE", "钱七", &[3])
                .with_email("qianqi@demo.example.com")
                .with_account_email("qianqi.home@mail.example.net"),
            User::new("sunba", "demoUnionSunba000001iE", "孙八", &[2])
                .with_mobile("13800000006")
                .with_active(false),
        ];
        for (i, mut u) in users.into_iter().enumerate() {
            u.job_number = format!("D{:03}", i + 1);
            u.hired_date = Some(1_600_000_000_000 + i as i64 * 86_400_000);
            u.title = [
                "CEO",
                "研发经理",
                "工程师",
                "市场经理",
                "市场专员",
                "实习生",
            ][i]
                .to_string();
            let _ = org.add_user(u);
        }
        org.recompute_managers();
        org
    }

    fn insert_dept(&mut self, id: i64, name: &str, parent: i64) {
        let order = self.children.get(&parent).map(|c| c.len()).unwrap_or(0) as i64;
        self.depts.insert(
            id,
            Department {
                dept_id: id,
                name: name.to_string(),
                parent_id: parent,
                order,
                create_dept_group: true,
                auto_add_user: true,
            },
        );
        self.children.entry(parent).or_default().push(id);
        self.children.entry(id).or_default();
        self.members.entry(id).or_default();
    }

    /// Sets `manager_userid` of every member to the leader of their first department (if another person).
    pub fn recompute_managers(&mut self) {
        let mut leader_of: HashMap<i64, String> = HashMap::new();
        for u in self.users.values() {
            for d in &u.leader_in {
                leader_of
                    .entry(*d)
                    .and_modify(|cur| {
                        if u.userid < *cur {
                            *cur = u.userid.clone()
                        }
                    })
                    .or_insert_with(|| u.userid.clone());
            }
        }
        for u in self.users.values_mut() {
            u.manager_userid = u
                .dept_ids
                .first()
                .and_then(|d| leader_of.get(d))
                .filter(|l| **l != u.userid)
                .cloned();
        }
    }

    /// A department by id.
    pub fn department(&self, dept_id: i64) -> Option<&Department> {
        self.depts.get(&dept_id)
    }

    /// All departments, by id.
    pub fn departments(&self) -> impl Iterator<Item = &Department> {
        self.depts.values()
    }

    /// Number of departments (root included).
    pub fn department_count(&self) -> usize {
        self.depts.len()
    }

    /// Direct sub-department ids of `dept_id`, in order.
    pub fn sub_departments(&self, dept_id: i64) -> &[i64] {
        self.children
            .get(&dept_id)
            .map(|v| v.as_slice())
            .unwrap_or(&[])
    }

    /// A current member by userid.
    pub fn user(&self, userid: &str) -> Option<&User> {
        self.users.get(userid)
    }

    /// A current member by unionid.
    pub fn user_by_unionid(&self, unionid: &str) -> Option<&User> {
        self.by_union.get(unionid).and_then(|u| self.users.get(u))
    }

    /// All current members (no order).
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// Number of current members.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Userids of the direct members of `dept_id`, in directory order.
    pub fn members(&self, dept_id: i64) -> &[String] {
        self.members
            .get(&dept_id)
            .map(|v| v.as_slice())
            .unwrap_or(&[])
    }

    /// A member who left (can be rehired).
    pub fn departed_user(&self, userid: &str) -> Option<&User> {
        self.departed.get(userid)
    }

    /// Members who left (can be rehired).
    pub fn departed_users(&self) -> impl Iterator<Item = &User> {
        self.departed.values()
    }

    /// Whether `dept_id` is `ancestor` or below it.
    pub fn is_within(&self, dept_id: i64, ancestor: i64) -> bool {
        let mut cur = dept_id;
        for _ in 0..10_000 {
            if cur == ancestor {
                return true;
            }
            match self.depts.get(&cur) {
                Some(d) if d.parent_id != 0 => cur = d.parent_id,
                _ => return false,
            }
        }
        false
    }

    /// Adds a department under `parent` with a fresh id; returns the id.
    pub fn add_department(&mut self, name: &str, parent: i64) -> Result<i64, OrgError> {
        if !self.depts.contains_key(&parent) {
            return Err(OrgError::NoSuchDepartment(parent));
        }
        let mut id = self.next_dept_id.max(100) + 1;
        while self.depts.contains_key(&id) {
            id += 1;
        }
        self.next_dept_id = id;
        self.insert_dept(id, name, parent);
        Ok(id)
    }

    /// Adds a department with a chosen id.
    pub fn add_department_with_id(
        &mut self,
        dept_id: i64,
        name: &str,
        parent: i64,
    ) -> Result<(), OrgError> {
        if !self.depts.contains_key(&parent) {
            return Err(OrgError::NoSuchDepartment(parent));
        }
        if self.depts.contains_key(&dept_id) || dept_id <= 0 {
            return Err(OrgError::Duplicate(dept_id.to_string()));
        }
        self.insert_dept(dept_id, name, parent);
        Ok(())
    }

    /// Renames a department.
    pub fn rename_department(&mut self, dept_id: i64, name: &str) -> Result<(), OrgError> {
        let d = self
            .depts
            .get_mut(&dept_id)
            .ok_or(OrgError::NoSuchDepartment(dept_id))?;
        d.name = name.to_string();
        Ok(())
    }

    /// Removes an empty, non-root department.
    pub fn remove_department(&mut self, dept_id: i64) -> Result<Department, OrgError> {
        if !self.depts.contains_key(&dept_id) {
            return Err(OrgError::NoSuchDepartment(dept_id));
        }
        if dept_id == ROOT_DEPT
            || !self.members(dept_id).is_empty()
            || !self.sub_departments(dept_id).is_empty()
        {
            return Err(OrgError::DepartmentNotEmpty(dept_id));
        }
        let d = self
            .depts
            .remove(&dept_id)
            .ok_or(OrgError::NoSuchDepartment(dept_id))?;
        self.members.remove(&dept_id);
        self.children.remove(&dept_id);
        if let Some(c) = self.children.get_mut(&d.parent_id) {
            c.retain(|x| *x != dept_id);
        }
        Ok(d)
    }

    /// Adds a member (ids must be new, departments must exist).
    pub fn add_user(&mut self, mut user: User) -> Result<(), OrgError> {
        if user.dept_ids.is_empty() {
            return Err(OrgError::NoDepartment);
        }
        if self.users.contains_key(&user.userid) {
            return Err(OrgError::Duplicate(user.userid));
        }
        if self.by_union.contains_key(&user.unionid) {
            return Err(OrgError::Duplicate(user.unionid));
        }
        for d in &user.dept_ids {
            if !self.depts.contains_key(d) {
                return Err(OrgError::NoSuchDepartment(*d));
            }
        }
        user.dept_ids.dedup();
        for d in &user.dept_ids {
            self.members
                .entry(*d)
                .or_default()
                .push(user.userid.clone());
        }
        self.departed.remove(&user.userid);
        self.by_union
            .insert(user.unionid.clone(), user.userid.clone());
        self.users.insert(user.userid.clone(), user);
        Ok(())
    }

    /// Removes a member (they "leave the org"); they can be rehired later.
    pub fn remove_user(&mut self, userid: &str) -> Result<User, OrgError> {
        let u = self
            .users
            .remove(userid)
            .ok_or_else(|| OrgError::NoSuchUser(userid.to_string()))?;
        for d in &u.dept_ids {
            if let Some(m) = self.members.get_mut(d) {
                m.retain(|x| x != userid);
            }
        }
        self.by_union.remove(&u.unionid);
        self.departed.insert(u.userid.clone(), u.clone());
        Ok(u)
    }

    /// Brings back a member who left, with the same userid and unionid, into `dept_ids`
    /// (their former departments when empty).
    pub fn rehire_user(&mut self, userid: &str, dept_ids: &[i64]) -> Result<User, OrgError> {
        let mut u = self
            .departed
            .get(userid)
            .cloned()
            .ok_or_else(|| OrgError::NoSuchUser(userid.to_string()))?;
        if !dept_ids.is_empty() {
            u.dept_ids = dept_ids.to_vec();
        }
        u.dept_ids.retain(|d| self.depts.contains_key(d));
        if u.dept_ids.is_empty() {
            u.dept_ids = vec![ROOT_DEPT];
        }
        u.leader_in.retain(|d| u.dept_ids.contains(d));
        self.add_user(u.clone())?;
        Ok(u)
    }

    /// Changes a member's record in place (department changes go through [`Org::set_departments`]).
    pub fn modify_user(
        &mut self,
        userid: &str,
        f: impl FnOnce(&mut User),
    ) -> Result<User, OrgError> {
        let u = self
            .users
            .get_mut(userid)
            .ok_or_else(|| OrgError::NoSuchUser(userid.to_string()))?;
        let (uid, union, depts) = (u.userid.clone(), u.unionid.clone(), u.dept_ids.clone());
        f(u);
        // Ids and departments are index keys: keep them.
        u.userid = uid;
        u.dept_ids = depts;
        if u.unionid != union {
            if self.by_union.contains_key(&u.unionid) {
                u.unionid = union;
            } else {
                self.by_union.remove(&union);
                self.by_union.insert(u.unionid.clone(), u.userid.clone());
            }
        }
        Ok(u.clone())
    }

    /// Replaces a member's departments.
    pub fn set_departments(&mut self, userid: &str, dept_ids: &[i64]) -> Result<User, OrgError> {
        if dept_ids.is_empty() {
            return Err(OrgError::NoDepartment);
        }
        for d in dept_ids {
            if !self.depts.contains_key(d) {
                return Err(OrgError::NoSuchDepartment(*d));
            }
        }
        let u = self
            .users
            .get_mut(userid)
            .ok_or_else(|| OrgError::NoSuchUser(userid.to_string()))?;
        let old = std::mem::take(&mut u.dept_ids);
        let mut new = dept_ids.to_vec();
        new.dedup();
        u.dept_ids = new.clone();
        u.leader_in.retain(|d| new.contains(d));
        let u = u.clone();
        for d in &old {
            if !new.contains(d) {
                if let Some(m) = self.members.get_mut(d) {
                    m.retain(|x| x != userid);
                }
            }
        }
        for d in &new {
            if !old.contains(d) {
                self.members.entry(*d).or_default().push(userid.to_string());
            }
        }
        Ok(u)
    }

    /// Moves a member from one department to another.
    pub fn move_user(&mut self, userid: &str, from: i64, to: i64) -> Result<User, OrgError> {
        let u = self
            .users
            .get(userid)
            .ok_or_else(|| OrgError::NoSuchUser(userid.to_string()))?;
        if !u.dept_ids.contains(&from) {
            return Err(OrgError::NoSuchDepartment(from));
        }
        let mut new: Vec<i64> = u
            .dept_ids
            .iter()
            .map(|d| if *d == from { to } else { *d })
            .collect();
        new.dedup();
        let mut seen = Vec::new();
        new.retain(|d| {
            if seen.contains(d) {
                false
            } else {
                seen.push(*d);
                true
            }
        });
        self.set_departments(userid, &new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_large_org_quickly_and_consistently() {
        let t = std::time::Instant::now();
        let spec = OrgSpec {
            departments: 600,
            users: 12_000,
            max_depth: 5,
            ..OrgSpec::default()
        };
        let org = Org::generate("大公司", &spec);
        // < 1 s is the goal for an optimised build; unoptimised test builds get some slack.
        let bound = if cfg!(debug_assertions) { 3.0 } else { 1.0 };
        assert!(t.elapsed().as_secs_f64() < bound, "took {:?}", t.elapsed());
        assert_eq!(org.department_count(), 600);
        assert_eq!(org.user_count(), 12_000);
        // Index consistency: every member appears in each of their departments exactly once.
        let mut total = 0;
        for d in org.departments() {
            for uid in org.members(d.dept_id) {
                assert!(org.user(uid).unwrap().dept_ids.contains(&d.dept_id));
                total += 1;
            }
        }
        let expected: usize = org.users().map(|u| u.dept_ids.len()).sum();
        assert_eq!(total, expected);
        assert!(expected > 12_000, "some members are in several departments");
        assert!(org.users().any(|u| u.mobile.is_none()));
        assert!(org.users().any(|u| u.email.is_none()));
        assert!(org.users().any(|u| !u.active));
        assert!(org.users().any(|u| u.boss && u.admin_level == 1));
        assert!(org.users().filter(|u| u.admin_level == 2).count() >= 1);
        assert!(org.users().any(|u| !u.leader_in.is_empty()));
        // Depth bound.
        for d in org.departments() {
            let mut depth = 0;
            let mut cur = d.dept_id;
            while cur != ROOT_DEPT {
                cur = org.department(cur).unwrap().parent_id;
                depth += 1;
            }
            assert!(depth <= 5);
        }
        // Deterministic.
        let again = Org::generate("大公司", &spec);
        assert_eq!(
            org.user("user00042").unwrap(),
            again.user("user00042").unwrap()
        );
    }

    #[test]
    fn mutations_keep_indexes() {
        let mut org = Org::demo();
        assert_eq!(org.department_count(), 3);
        assert_eq!(org.user_count(), 6);
        let d = org.add_department("新部门", 2).unwrap();
        org.move_user("wangwu", 2, d).unwrap();
        assert_eq!(org.members(d), ["wangwu".to_string()]);
        assert!(!org.members(2).contains(&"wangwu".to_string()));
        assert_eq!(
            org.remove_department(d),
            Err(OrgError::DepartmentNotEmpty(d))
        );
        let u = org.remove_user("wangwu").unwrap();
        assert!(org.user_by_unionid(&u.unionid).is_none());
        org.remove_department(d).unwrap();
        let back = org.rehire_user("wangwu", &[]).unwrap();
        // Former department is gone: falls back to the root.
        assert_eq!(back.dept_ids, vec![ROOT_DEPT]);
        assert_eq!(org.user_by_unionid(&u.unionid).unwrap().userid, "wangwu");
        assert!(org.add_user(User::new("lisi", "x", "x", &[1])).is_err());
        assert!(org.is_within(3, 1));
        assert!(!org.is_within(3, 2));
    }
}
