//! Tokens, in-app login, QR login and admin SSO over real HTTP.

mod common;

use common::*;
use dingtalk_sim::{perms, CorpSpec, OrgSpec, Sim};
use serde_json::json;

#[test]
fn old_and_new_token_endpoints_share_one_reused_token() {
    let sim = Sim::demo().unwrap();
    let c = sim.credentials(DEMO).unwrap();
    let t1 = old_token(&sim, DEMO);
    let t2 = old_token(&sim, DEMO);
    assert_eq!(
        t1, t2,
        "asking again inside validity returns the same token"
    );
    let (s, v) = post(
        &format!("{}/v1.0/oauth2/accessToken", sim.base_url()),
        &json!({"appKey": c.app_key, "appSecret": c.app_secret}),
    );
    assert_eq!(s, 200);
    assert_eq!(v["accessToken"], t1.as_str());
    assert_eq!(v["expireIn"], 7200);

    // Wrong credentials.
    let (s, v) = get(&format!(
        "{}/gettoken?appkey={}&appsecret=nope",
        sim.base_url(),
        c.app_key
    ));
    assert_eq!((s, v["errcode"].as_i64()), (200, Some(40089)));
    let (s, v) = post(
        &format!("{}/v1.0/oauth2/accessToken", sim.base_url()),
        &json!({"appKey": c.app_key, "appSecret": "nope"}),
    );
    assert_eq!(s, 400);
    assert_eq!(v["code"], "invalidClientIdOrSecret");
    assert!(v["requestid"].is_string());
    // Form body is refused by the new API.
    let (s, t) = raw(
        "POST",
        &format!("{}/v1.0/oauth2/accessToken", sim.base_url()),
        Some("appKey=a&appSecret=b"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
    );
    assert_eq!(s, 400);
    assert_eq!(json_of(&t)["code"], "missingParameter");
    // Missing field.
    let (s, v) = post(
        &format!("{}/v1.0/oauth2/accessToken", sim.base_url()),
        &json!({"appKey": "x"}),
    );
    assert_eq!((s, v["code"].as_str()), (400, Some("missingParameter")));
}

#[test]
fn tokens_expire_with_the_simulated_clock_and_can_be_revoked() {
    let sim = Sim::demo().unwrap();
    let t = old_token(&sim, DEMO);
    let body = json!({"userid": "zhangsan"});
    assert_eq!(oapi(&sim, "/topapi/v2/user/get", &t, &body)["errcode"], 0);
    sim.advance_clock(7201);
    assert_eq!(
        oapi(&sim, "/topapi/v2/user/get", &t, &body)["errcode"],
        42001
    );
    let (s, v) = call_new(
        "POST",
        &format!(
            "{}/v1.0/todo/users/demoUnionZhangsan01iE/tasks",
            sim.base_url()
        ),
        &t,
        Some(&json!({"subject": "x"})),
    );
    assert_eq!(
        (s, v["code"].as_str()),
        (400, Some("InvalidAuthentication"))
    );
    let t2 = old_token(&sim, DEMO);
    assert_ne!(t, t2, "after expiry a new token is issued");
    assert_eq!(oapi(&sim, "/topapi/v2/user/get", &t2, &body)["errcode"], 0);

    sim.expire_all_tokens();
    assert_eq!(
        oapi(&sim, "/topapi/v2/user/get", &t2, &body)["errcode"],
        40014
    );
    sim.set_token_errors_as_88(true);
    let v = oapi(&sim, "/topapi/v2/user/get", &t2, &body);
    assert_eq!(v["errcode"], 88);
    assert_eq!(v["sub_code"], "40014");
    assert!(v["errmsg"].as_str().unwrap().contains("subcode=40014"));
    // No token at all.
    let (_, v) = post(&format!("{}/topapi/v2/user/get", sim.base_url()), &body);
    assert_eq!(v["sub_code"], "41001");

    // TTL is configurable; renewal inside validity extends it.
    sim.set_token_errors_as_88(false);
    sim.set_token_ttl(100);
    let t3 = old_token(&sim, DEMO);
    sim.advance_clock(60);
    assert_eq!(old_token(&sim, DEMO), t3);
    sim.advance_clock(60);
    assert_eq!(
        oapi(&sim, "/topapi/v2/user/get", &t3, &body)["errcode"],
        0,
        "renewed at +60 s"
    );
    sim.advance_clock(101);
    assert_eq!(
        oapi(&sim, "/topapi/v2/user/get", &t3, &body)["errcode"],
        42001
    );
}

#[test]
fn inapp_codes_are_single_use_expire_and_belong_to_one_corp() {
    let sim = Sim::start(vec![
        CorpSpec::demo(),
        CorpSpec::generated("dingother", &OrgSpec::sized(3, 5)),
    ])
    .unwrap();
    let t = old_token(&sim, DEMO);
    let code = sim.mint_inapp_code(DEMO, "zhangsan");
    let v = oapi(
        &sim,
        "/topapi/v2/user/getuserinfo",
        &t,
        &json!({"code": code}),
    );
    assert_eq!(v["errcode"], 0, "{v}");
    let r = &v["result"];
    assert_eq!(r["userid"], "zhangsan");
    assert_eq!(r["unionid"], "demoUnionZhangsan01iE");
    assert_eq!(r["name"], "张三");
    assert_eq!(r["sys"], true);
    assert_eq!(r["sys_level"], 1);
    assert!(r["device_id"].is_string() && r["associated_unionid"].is_string());
    // Second use.
    let v = oapi(
        &sim,
        "/topapi/v2/user/getuserinfo",
        &t,
        &json!({"code": code}),
    );
    assert_eq!(v["errcode"], 40078);
    // Expiry after 5 minutes.
    let code = sim.mint_inapp_code(DEMO, "wangwu");
    sim.advance_clock(301);
    let v = oapi(
        &sim,
        "/topapi/v2/user/getuserinfo",
        &t,
        &json!({"code": code}),
    );
    assert_eq!(v["errcode"], 40078);
    // A code of another corp.
    let other = sim.mint_inapp_code("dingother", "user00001");
    let v = oapi(
        &sim,
        "/topapi/v2/user/getuserinfo",
        &t,
        &json!({"code": other}),
    );
    assert_eq!(v["errcode"], 40078);
    // Non-admin.
    let code = sim.mint_inapp_code(DEMO, "wangwu");
    let v = oapi(
        &sim,
        "/topapi/v2/user/getuserinfo",
        &t,
        &json!({"code": code}),
    );
    assert_eq!(
        (
            v["result"]["sys"].as_bool(),
            v["result"]["sys_level"].as_i64()
        ),
        (Some(false), Some(0))
    );
    // Bad bodies.
    assert_eq!(
        oapi(&sim, "/topapi/v2/user/getuserinfo", &t, &json!({}))["errcode"],
        40035
    );
    let (_, txt) = raw(
        "POST",
        &format!(
            "{}/topapi/v2/user/getuserinfo?access_token={t}",
            sim.base_url()
        ),
        Some("{not json"),
        &[("Content-Type", "application/json")],
    );
    assert_eq!(json_of(&txt)["errcode"], 40035);
}

fn scan_links(html: &str) -> Vec<(String, String)> {
    // (data-unionid, href) of each "scan as" link.
    let mut out = Vec::new();
    for line in html.lines().filter(|l| l.contains("class=\"scan\"")) {
        let grab = |key: &str| {
            let i = line.find(key).unwrap() + key.len();
            let j = line[i..].find('"').unwrap();
            line[i..i + j].replace("&amp;", "&")
        };
        out.push((grab("data-unionid=\""), grab("href=\"")));
    }
    out
}

fn query_of(location: &str) -> Vec<(String, String)> {
    let u = url::Url::parse(location).unwrap();
    u.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn location(url: &str) -> (u16, String) {
    let r = agent().get(url).call().unwrap();
    (r.status(), r.header("Location").unwrap_or("").to_string())
}

#[test]
fn qr_login_page_code_exchange_profile_and_unionid_lookup() {
    let sim = Sim::demo().unwrap();
    let c = sim.credentials(DEMO).unwrap();
    let base = sim.base_url();
    let redirect = "https://forms.example.com/dingding/dd_or_code_corp_list?x=1";
    let page_url = format!(
        "{base}/oauth2/auth?redirect_uri={}&response_type=code&client_id={}&scope=openid&state=st%26ate&prompt=consent",
        urlencode(redirect),
        c.app_key
    );
    let (s, html) = raw("GET", &page_url, None, &[]);
    assert_eq!(s, 200);
    assert!(html.contains("scan as 张三"));
    let links = scan_links(&html);
    assert_eq!(links.len(), 6);
    let (_, href) = links
        .iter()
        .find(|(u, _)| u == "demoUnionZhaoliu0001iE")
        .unwrap();
    let (s, loc) = location(&format!("{base}{href}"));
    assert_eq!(s, 302);
    assert!(loc.starts_with("https://forms.example.com/dingding/dd_or_code_corp_list?x=1&"));
    let q = query_of(&loc);
    let get_q = |k: &str| q.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
    let code = get_q("authCode").unwrap();
    assert_eq!(get_q("code").as_deref(), Some(code.as_str()));
    assert_eq!(get_q("state").as_deref(), Some("st&ate"));

    let (s, v) = post(
        &format!("{base}/v1.0/oauth2/userAccessToken"),
        &json!({"clientId": c.app_key, "clientSecret": c.app_secret, "code": code, "grantType": "authorization_code"}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["corpId"], DEMO);
    assert!(v["refreshToken"].is_string());
    assert_eq!(v["expireIn"], 7200);
    let user_token = v["accessToken"].as_str().unwrap().to_string();
    // Single use.
    let (s, v) = post(
        &format!("{base}/v1.0/oauth2/userAccessToken"),
        &json!({"clientId": c.app_key, "clientSecret": c.app_secret, "code": code, "grantType": "authorization_code"}),
    );
    assert_eq!((s, v["code"].as_str()), (400, Some("invalidCode")));

    let (s, me) = get_new(&format!("{base}/v1.0/contact/users/me"), &user_token);
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["unionId"], "demoUnionZhaoliu0001iE");
    assert_eq!(me["nick"], "赵六");
    assert_eq!(me["mobile"], "13800000004");
    // The personal e-mail is not the org record (赵六's account e-mail is 李四's org e-mail).
    assert_eq!(me["email"], "lisi@demo.example.com");
    assert!(me["openId"].is_string() && me["avatarUrl"].is_string() && me["stateCode"].is_string());
    // An app token is not a user token, and the user token is not an app token.
    let app = old_token(&sim, DEMO);
    let (s, v) = get_new(&format!("{base}/v1.0/contact/users/me"), &app);
    assert_eq!(
        (s, v["code"].as_str()),
        (400, Some("InvalidAuthentication"))
    );
    let v = oapi(
        &sim,
        "/topapi/user/getbyunionid",
        &user_token,
        &json!({"unionid": "demoUnionZhaoliu0001iE"}),
    );
    assert_eq!(v["errcode"], 40014);

    let v = oapi(
        &sim,
        "/topapi/user/getbyunionid",
        &app,
        &json!({"unionid": me["unionId"]}),
    );
    assert_eq!(v["result"], json!({"contact_type": 0, "userid": "zhaoliu"}));
    let v = oapi(
        &sim,
        "/topapi/user/getbyunionid",
        &app,
        &json!({"unionid": "nobody"}),
    );
    assert_eq!(v["errcode"], 60121);

    // Without the mobile permission the profile has no mobile; without Contact.User.Read: 403.
    sim.revoke(DEMO, perms::CONTACT_USER_MOBILE).unwrap();
    let (_, me) = get_new(&format!("{base}/v1.0/contact/users/me"), &user_token);
    assert!(me.get("mobile").is_none());
    sim.revoke(DEMO, perms::CONTACT_USER_READ).unwrap();
    let (s, v) = get_new(&format!("{base}/v1.0/contact/users/me"), &user_token);
    assert_eq!(s, 403);
    assert_eq!(
        v["code"],
        "Forbidden.AccessDenied.AccessTokenPermissionDenied"
    );
    assert!(v["message"].as_str().unwrap().contains("Contact.User.Read"));
    assert_eq!(
        v["accessdenieddetail"]["requiredScopes"],
        json!(["Contact.User.Read"])
    );

    // Refresh token grant.
    let code = sim.mint_oauth_code("demoUnionWangwu00001iE");
    let (_, v) = post(
        &format!("{base}/v1.0/oauth2/userAccessToken"),
        &json!({"clientId": c.app_key, "clientSecret": c.app_secret, "code": code, "grantType": "authorization_code"}),
    );
    let (s, v2) = post(
        &format!("{base}/v1.0/oauth2/userAccessToken"),
        &json!({"clientId": c.app_key, "clientSecret": c.app_secret, "refreshToken": v["refreshToken"], "grantType": "refresh_token"}),
    );
    assert_eq!(s, 200, "{v2}");
    assert_ne!(v2["accessToken"], v["accessToken"]);
}

#[test]
fn qr_login_cancel_and_invalid_requests() {
    let sim = Sim::demo().unwrap();
    let c = sim.credentials(DEMO).unwrap();
    let base = sim.base_url();
    let ok = format!(
        "{base}/oauth2/auth?redirect_uri={}&response_type=code&client_id={}&state=S1",
        urlencode("http://127.0.0.1:9/cb"),
        c.app_key
    );
    let (_, html) = raw("GET", &ok, None, &[]);
    let i = html.find("id=\"cancel\" href=\"").unwrap() + "id=\"cancel\" href=\"".len();
    let href = html[i..i + html[i..].find('"').unwrap()].replace("&amp;", "&");
    let (s, loc) = location(&format!("{base}{href}"));
    assert_eq!(s, 302);
    assert_eq!(loc, "http://127.0.0.1:9/cb?error=access_denied&state=S1");

    let bad_client = ok.replace(&c.app_key, "dingunknown");
    let (s, html) = raw("GET", &bad_client, None, &[]);
    assert_eq!(s, 400);
    assert!(html.contains("client_id"));
    let bad_type = ok.replace("response_type=code", "response_type=token");
    let (s, html) = raw("GET", &bad_type, None, &[]);
    assert_eq!(s, 400);
    assert!(html.contains("response_type"));
    let no_redirect = format!(
        "{base}/oauth2/auth?response_type=code&client_id={}",
        c.app_key
    );
    assert_eq!(raw("GET", &no_redirect, None, &[]).0, 400);
    // Wrong client secret at the exchange.
    let code = sim.mint_oauth_code("demoUnionLisi0000001iE");
    let (s, v) = post(
        &format!("{base}/v1.0/oauth2/userAccessToken"),
        &json!({"clientId": c.app_key, "clientSecret": "x", "code": code, "grantType": "authorization_code"}),
    );
    assert_eq!(
        (s, v["code"].as_str()),
        (400, Some("invalidClientIdOrSecret"))
    );
}

#[test]
fn admin_sso_new_and_old_forms() {
    let sim = Sim::demo().unwrap();
    let c = sim.credentials(DEMO).unwrap();
    let base = sim.base_url();
    let (s, v) = post(
        &format!("{base}/v1.0/oauth2/ssoAccessToken"),
        &json!({"corpid": DEMO, "ssoSecret": "wrong"}),
    );
    assert_eq!(
        (s, v["code"].as_str()),
        (400, Some("invalidClientIdOrSecret"))
    );
    let (s, v) = post(
        &format!("{base}/v1.0/oauth2/ssoAccessToken"),
        &json!({"corpid": DEMO, "ssoSecret": c.sso_secret}),
    );
    assert_eq!(s, 200);
    let sso = v["accessToken"].as_str().unwrap().to_string();
    let code = sim.mint_sso_code(DEMO, "lisi");
    let url = format!("{base}/v1.0/oauth2/ssoUserInfo?code={code}");
    let (s, v) = get_new(&url, &sso);
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!({"corpId": DEMO, "corpName": "演示科技有限公司", "userId": "lisi", "userName": "李四",
               "email": "lisi@demo.example.com", "avatar": v["avatar"], "isAdmin": true})
    );
    let (s, v) = get_new(&url, &sso);
    assert_eq!((s, v["code"].as_str()), (400, Some("invalidCode")));
    // An app token is not an SSO token.
    let app = old_token(&sim, DEMO);
    let code = sim.mint_sso_code(DEMO, "wangwu");
    let (s, v) = get_new(&format!("{base}/v1.0/oauth2/ssoUserInfo?code={code}"), &app);
    assert_eq!((s, v["code"].as_str()), (400, Some("invalidToken")));
    let (s, v) = get_new(&format!("{base}/v1.0/oauth2/ssoUserInfo?code={code}"), &sso);
    assert_eq!((s, v["isAdmin"].as_bool()), (200, Some(false)));

    // Old forms.
    let (_, v) = get(&format!(
        "{base}/sso/gettoken?corpid={DEMO}&corpsecret={}",
        c.sso_secret
    ));
    assert_eq!(v["errcode"], 0);
    let old = v["access_token"].as_str().unwrap().to_string();
    assert_eq!(old, sso, "same SSO token while valid");
    let (_, v) = get(&format!(
        "{base}/sso/gettoken?corpid={DEMO}&corpsecret=nope"
    ));
    assert_eq!(v["errcode"], 40089);
    let code = sim.mint_sso_code(DEMO, "zhangsan");
    let (_, v) = get(&format!(
        "{base}/sso/getuserinfo?access_token={old}&code={code}"
    ));
    assert_eq!(v["errcode"], 0, "{v}");
    assert_eq!(v["user_info"]["userid"], "zhangsan");
    assert_eq!(v["is_sys"], true);
    assert_eq!(v["corp_info"]["corpid"], DEMO);
    let (_, v) = get(&format!(
        "{base}/sso/getuserinfo?access_token={old}&code={code}"
    ));
    assert_eq!(v["errcode"], 40078);
    // Permission.
    sim.revoke(DEMO, perms::QYAPI_GET_OMP_SSO_USERINFO).unwrap();
    let code = sim.mint_sso_code(DEMO, "zhangsan");
    let (s, v) = get_new(&format!("{base}/v1.0/oauth2/ssoUserInfo?code={code}"), &sso);
    assert_eq!(
        (s, v["code"].as_str()),
        (
            403,
            Some("Forbidden.AccessDenied.AccessTokenPermissionDenied")
        )
    );
}

#[test]
fn unknown_paths_answer_in_the_family_shape() {
    let sim = Sim::demo().unwrap();
    let (s, v) = get(&format!("{}/v1.0/nope", sim.base_url()));
    assert_eq!(
        (s, v["code"].as_str()),
        (404, Some("InvalidAction.NotFound"))
    );
    let (s, v) = get(&format!("{}/topapi/nope", sim.base_url()));
    assert_eq!((s, v["errcode"].as_i64()), (404, Some(404)));
    // Wrong method on a known path.
    let (s, _) = get(&format!("{}/v1.0/oauth2/accessToken", sim.base_url()));
    assert_eq!(s, 404);
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
