//! The browser pages: `login.dingtalk.com/oauth2/auth` (the "scan" page) and a small index.

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use url::Url;

use super::{Reply, Req};
use crate::state::{CodeRec, State, CODE_TTL_MS};

/// Members listed per corp on the scan page.
const PAGE_LIMIT: usize = 200;

pub(super) fn route_of(method: &str, path: &str) -> Option<&'static str> {
    if method != "GET" {
        return None;
    }
    match path {
        "/oauth2/auth" => Some("/oauth2/auth"),
        "/oauth2/auth/confirm" => Some("/oauth2/auth/confirm"),
        "/" => Some("/"),
        _ => None,
    }
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>body{{font-family:sans-serif;max-width:720px;margin:2em auto}}a.scan{{display:block;margin:.3em 0}}\
         .err{{color:#b00}}</style></head><body>\n{}\n</body></html>\n",
        text(title),
        body
    )
}

fn error_page(msg: &str) -> Reply {
    Reply::Html(
        400,
        page(
            "钉钉登录 - 错误",
            &format!(
                "<h1>无法登录</h1><p class=\"err\" id=\"error\">{}</p>",
                text(msg)
            ),
        ),
    )
}

/// What the page shows when the person who scanned is not a member of the app's corp: internal
/// apps do not log in other orgs' members (doc §11b). No code is issued.
fn refusal_page(corp_name: &str) -> Reply {
    Reply::Html(
        403,
        page(
            "钉钉登录 - 无法登录",
            &format!(
                "<h1>无法登录</h1><p class=\"err\" id=\"error\" data-error=\"not_org_member\">只有组织内的用户可以登录此应用（{}）。企业内部应用不支持跨组织授权登录。</p>",
                text(corp_name)
            ),
        ),
    )
}

struct AuthParams {
    client: usize,
    redirect: Url,
    state: Option<String>,
}

fn validate(st: &State, req: &Req) -> Result<AuthParams, String> {
    let client_id = req.q("client_id").unwrap_or("");
    let client = *st
        .app_index
        .get(client_id)
        .ok_or_else(|| format!("client_id 无效: 应用不存在 ({client_id})"))?;
    let redirect = req.q("redirect_uri").unwrap_or("");
    let redirect = Url::parse(redirect)
        .map_err(|_| "redirect_uri 无效: 需要完整的 http(s) 地址".to_string())?;
    if redirect.scheme() != "http" && redirect.scheme() != "https" {
        return Err("redirect_uri 无效: 需要完整的 http(s) 地址".into());
    }
    Ok(AuthParams {
        client,
        redirect,
        state: req.q("state").map(|s| s.to_string()),
    })
}

fn confirm_link(st: &State, p: &AuthParams, extra: &[(&str, &str)]) -> String {
    let mut u = Url::parse("http://sim.invalid/oauth2/auth/confirm").expect("static URL");
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("client_id", &st.corps[p.client].creds.app_key);
        q.append_pair("redirect_uri", p.redirect.as_str());
        if let Some(s) = &p.state {
            q.append_pair("state", s);
        }
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    format!("{}?{}", u.path(), u.query().unwrap_or(""))
}

pub(super) fn handle(st: &mut State, req: &Req, route: &str) -> (Reply, Option<usize>) {
    match route {
        "/oauth2/auth" => auth_page(st, req),
        "/oauth2/auth/confirm" => confirm(st, req),
        _ => (index(st), None),
    }
}

fn auth_page(st: &mut State, req: &Req) -> (Reply, Option<usize>) {
    let p = match validate(st, req) {
        Ok(p) => p,
        Err(e) => return (error_page(&e), None),
    };
    if req.q("response_type") != Some("code") {
        return (error_page("response_type 必须为 code"), Some(p.client));
    }
    let mut order: Vec<usize> = vec![p.client];
    if let Some(pre) = req.q("corpId").and_then(|c| st.corp_index.get(c)) {
        order.retain(|x| x != pre);
        order.insert(0, *pre);
    }
    for i in 0..st.corps.len() {
        if !order.contains(&i) {
            order.push(i);
        }
    }
    let mut body = String::new();
    body.push_str("<h1>钉钉扫码登录（模拟）</h1>\n");
    body.push_str(&format!(
        "<p>应用 <code id=\"client\">{}</code> 请求登录。选择扫码的成员：</p>\n",
        text(&st.corps[p.client].creds.app_key)
    ));
    for ci in order {
        let c = &st.corps[ci];
        let own = if ci == p.client {
            ""
        } else {
            "（其他组织：不能登录此应用）"
        };
        body.push_str(&format!(
            "<h2 data-corp=\"{}\">{}{}</h2>\n",
            attr(&c.creds.corp_id),
            text(&c.creds.corp_name),
            own
        ));
        let mut users: Vec<_> = c.org.users().collect();
        users.sort_by(|a, b| a.userid.cmp(&b.userid));
        for u in users.iter().take(PAGE_LIMIT) {
            let href = confirm_link(
                st,
                &p,
                &[("corp_id", &c.creds.corp_id), ("unionid", &u.unionid)],
            );
            body.push_str(&format!(
                "<a class=\"scan\" data-corp=\"{}\" data-userid=\"{}\" data-unionid=\"{}\" href=\"{}\">scan as {}</a>\n",
                attr(&c.creds.corp_id),
                attr(&u.userid),
                attr(&u.unionid),
                attr(&href),
                text(&u.name)
            ));
        }
        if users.len() > PAGE_LIMIT {
            body.push_str(&format!(
                "<p>…… 另有 {} 名成员未列出</p>\n",
                users.len() - PAGE_LIMIT
            ));
        }
    }
    let cancel = confirm_link(st, &p, &[("error", "access_denied")]);
    body.push_str(&format!(
        "<p><a id=\"cancel\" href=\"{}\">cancel</a></p>\n",
        attr(&cancel)
    ));
    (Reply::Html(200, page("钉钉登录", &body)), Some(p.client))
}

fn confirm(st: &mut State, req: &Req) -> (Reply, Option<usize>) {
    let p = match validate(st, req) {
        Ok(p) => p,
        Err(e) => return (error_page(&e), None),
    };
    let mut target = p.redirect.clone();
    if let Some(err) = req.q("error") {
        {
            let mut q = target.query_pairs_mut();
            q.append_pair("error", err);
            if let Some(s) = &p.state {
                q.append_pair("state", s);
            }
        }
        return (Reply::Redirect(target.to_string()), Some(p.client));
    }
    let unionid = req.q("unionid").unwrap_or("");
    let corp = match req.q("corp_id") {
        Some(c) => st.corp_index.get(c).copied(),
        None => Some(p.client),
    };
    let member = corp.is_some_and(|c| st.corps[c].org.user_by_unionid(unionid).is_some());
    if !member && st.corps_of_unionid(unionid).is_empty() {
        return (error_page("成员不存在"), Some(p.client));
    }
    // Only members of the app's own corp get a code.
    if corp != Some(p.client) || !member {
        let name = st.corps[p.client].creds.corp_name.clone();
        return (refusal_page(&name), Some(p.client));
    }
    let code = st.new_code();
    let expires_at = st.now_ms() + CODE_TTL_MS;
    st.oauth_codes.insert(
        code.clone(),
        CodeRec {
            corp,
            subject: unionid.to_string(),
            client: Some(p.client),
            expires_at,
        },
    );
    {
        let mut q = target.query_pairs_mut();
        q.append_pair("authCode", &code);
        q.append_pair("code", &code);
        if let Some(s) = &p.state {
            q.append_pair("state", s);
        }
    }
    (Reply::Redirect(target.to_string()), Some(p.client))
}

fn index(st: &State) -> Reply {
    let mut body = String::from("<h1>DingTalk simulator</h1>\n<ul>\n");
    for c in &st.corps {
        body.push_str(&format!(
            "<li>{} — corpId <code>{}</code>, appKey <code>{}</code>, agentId {}, {} departments, {} members</li>\n",
            text(&c.creds.corp_name),
            text(&c.creds.corp_id),
            text(&c.creds.app_key),
            c.creds.agent_id,
            c.org.department_count(),
            c.org.user_count()
        ));
    }
    body.push_str("</ul>\n");
    Reply::Html(200, page("DingTalk simulator", &body))
}
