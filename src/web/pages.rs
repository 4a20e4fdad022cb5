//! HTML pages for people. Every interpolated value goes through `html_escape` (text and
//! attributes) or through a JSON data block; inline script and style are pinned by CSP hashes.

use crate::failure::Failure;
use crate::model::CorpOption;
use crate::settings::{Issue, Settings};
use crate::web::csp::Inline;
use crate::web::http::Response;
#[cfg(test)]
use base64::Engine;
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
#[cfg(test)]
use sha2::{Digest, Sha256};

/// DingTalk's JSAPI from its CDN (docs/dingtalk-api.md §2.1).
pub const JSAPI_URL: &str = "https://g.alicdn.com/dingding/dingtalk-jsapi/3.1.0/dingtalk.open.js";

const STYLE: Inline = Inline::new("body{font-family:-apple-system,BlinkMacSystemFont,'PingFang SC','Microsoft YaHei',sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#1f2329;line-height:1.6}h1{font-size:1.3rem}p.en{color:#646a73}code{background:#f2f3f5;padding:0 .2rem}a.button,button{display:block;width:100%;margin:.5rem 0;padding:.7rem;border:1px solid #3370ff;border-radius:6px;background:#fff;color:#3370ff;font-size:1rem;text-align:center;text-decoration:none;cursor:pointer}li{margin:.3rem 0}");

/// The CSP source of `source` hashed at run time, to check the compile-time hashes against.
#[cfg(test)]
pub(crate) fn csp_hash(source: &str) -> String {
    let digest = Sha256::digest(source.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

fn page(status: u16, title: &str, body_html: &str, script: Option<(&Inline, &[&str])>) -> Response {
    let mut script_src = vec![];
    let mut scripts_html = String::new();
    if let Some((inline, external)) = script {
        for src in external {
            script_src.push(src.to_string());
            scripts_html.push_str(&format!("<script src=\"{}\"></script>", attr(src)));
        }
        script_src.push(inline.csp_source().to_string());
        scripts_html.push_str(&format!("<script>{}</script>", inline.code));
    }
    let csp = format!(
        "default-src 'none'; style-src {}; img-src https: data:; script-src {}; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        STYLE.csp_source(),
        if script_src.is_empty() { "'none'".to_string() } else { script_src.join(" ") }
    );
    let html = format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title><style>{}</style></head><body>{body_html}{scripts_html}</body></html>",
        text(title),
        STYLE.code
    );
    Response::html(status, html).header("content-security-policy", &csp)
}

/// A failure explained to a person, in Chinese and English.
pub fn failure_page(failure: &Failure) -> Response {
    let body = format!(
        "<h1>{}</h1><p>{}</p><p class=\"en\">{}</p><p class=\"en\"><small>{} · {}</small></p>",
        text(
            &failure
                .message_zh
                .split(['。', '，'])
                .next()
                .unwrap_or("出错了")
                .to_string()
        ),
        text(&failure.message_zh),
        text(&failure.message),
        failure.status,
        text(&failure.code)
    );
    page(failure.status, "钉钉登录 · DingTalk sign-in", &body, None)
}

/// The failure behind a configuration error.
pub fn config_failure(issues: &[Issue]) -> Failure {
    let fields: Vec<&str> = issues.iter().map(|i| i.field.as_str()).collect();
    Failure::new(
        503,
        "plugin_not_configured",
        format!(
            "The DingTalk plugin is not configured correctly; the platform admin must fix these settings: {}.",
            fields.join(", ")
        ),
        format!("钉钉插件配置有误，请平台管理员修正以下设置：{}。", fields.join("、")),
    )
}

/// The page shown when the settings are invalid: which keys to fix, never their values.
pub fn config_error_page(issues: &[Issue]) -> Response {
    let items: String = issues
        .iter()
        .map(|i| {
            format!(
                "<li><code>{}</code>: {}<br><span class=\"en\">{}</span></li>",
                text(&i.field),
                text(&i.message_zh),
                text(&i.message_en)
            )
        })
        .collect();
    let body = format!(
        "<h1>钉钉插件尚未配置完成</h1><p>请平台管理员在【站点配置】→【第三方配置】→【钉钉应用配置】中修正：</p><ul>{items}</ul><p class=\"en\">The DingTalk plugin is not configured correctly. The platform admin must fix the settings above.</p>"
    );
    page(503, "钉钉插件配置 · DingTalk plugin settings", &body, None)
}

/// JSON for a `<script type="application/json">` block: `<`, `>` and `&` escaped so the
/// block cannot be closed early.
pub(crate) fn json_block(value: &serde_json::Value) -> String {
    value
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

const INAPP_SCRIPT: Inline = Inline::new(
    r#"(function(){var cfg=JSON.parse(document.getElementById('dd-config').textContent);var st=document.getElementById('status');function show(m){st.textContent=m;}var done=false;if(cfg.retry){var s=null;try{s=window.sessionStorage;}catch(e){}var k='dd_inapp_retry';var last=0;try{last=s?Number(s.getItem(k)||0):0;}catch(e){}if(!s||Date.now()-last<60000){show(cfg.cookies);return;}try{s.setItem(k,String(Date.now()));}catch(e){show(cfg.cookies);return;}}function fail(e){if(done)return;done=true;var d=e&&(e.errorMessage||e.message||e.errorCode);show(cfg.failed+(d?' ('+d+')':''));}function go(code){if(done)return;done=true;var u=new URL(window.location.href);u.searchParams.set('code',code);window.location.replace(u.toString());}if(typeof dd==='undefined'||(dd.env&&dd.env.platform==='notInDingTalk')){show(cfg.outside);return;}var req={corpId:cfg.corpId,clientId:cfg.clientId,onSuccess:function(r){if(r&&r.code){go(r.code);}else{fail();}},onFail:fail};setTimeout(function(){if(!done){show(cfg.slow);}},10000);if(dd.error){dd.error(fail);}dd.ready(function(){if(typeof dd.requestAuthCode==='function'){dd.requestAuthCode(req);}else if(dd.runtime&&dd.runtime.permission&&dd.runtime.permission.requestAuthCode){dd.runtime.permission.requestAuthCode({corpId:cfg.corpId,onSuccess:req.onSuccess,onFail:fail});}else{show(cfg.outside);}});})();"#,
);

/// R1/R2 without a code: loads the JSAPI, asks for an auth code for `corp_id`, comes back to the
/// same URL with `code` set (the router adds the cookie that binds the exchange to this browser).
/// `retry`: a code came back without that cookie; the page asks once more, then explains that
/// cookies are needed instead of reloading forever.
pub fn inapp_page(corp_id: &str, client_id: &str, retry: bool) -> Response {
    let data = serde_json::json!({
        "corpId": corp_id,
        "clientId": client_id,
        "retry": retry,
        "cookies": "此登录需要本站的 Cookie：请允许本站使用 Cookie，并通过 https 地址从钉钉重新打开应用。This sign-in needs this site's cookies: allow cookies for it and reopen the app from DingTalk over https.",
        "outside": "请在钉钉客户端内打开此应用（工作台 → 应用）。Please open this app from the DingTalk workbench, inside the DingTalk app.",
        "failed": "钉钉免登失败，请关闭后重新打开应用。DingTalk sign-in failed; close and reopen the app.",
        "slow": "钉钉响应较慢，仍在等待…… DingTalk is slow to answer, still waiting…",
    });
    let body = format!(
        "<h1>正在通过钉钉登录……</h1><p id=\"status\" role=\"status\">Signing you in with DingTalk…</p><noscript><p>请启用 JavaScript。Please enable JavaScript.</p></noscript><script type=\"application/json\" id=\"dd-config\">{}</script>",
        json_block(&data)
    );
    page(
        200,
        "钉钉登录 · DingTalk sign-in",
        &body,
        Some((&INAPP_SCRIPT, &[JSAPI_URL])),
    )
}

/// The default hand-off landing, served when `platform_login_url` is left at its default.
pub fn login_complete_page(settings: &Settings) -> Response {
    let body = format!(
        "<h1>钉钉登录成功</h1><p>平台应在此地址用 <code>ticket</code> 参数调用 <code>POST /dingding/api/tickets/redeem</code> 换取身份信息并建立会话。</p><p class=\"en\">Signed in with DingTalk. The platform's page at this address redeems the <code>ticket</code> server-to-server with <code>POST /dingding/api/tickets/redeem</code> and opens a session. Configure <code>platform_login_url</code> to point at it.</p><p><a class=\"button\" href=\"{}\">返回 Back</a></p>",
        attr(&settings.site_url)
    );
    page(200, "钉钉登录 · DingTalk sign-in", &body, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let r = inapp_page("ding\"><script>alert(1)</script>", "</script><b>", false);
        let html = String::from_utf8(r.body).unwrap();
        assert!(!html.contains("<script>alert(1)"));
        assert!(!html.contains("</script><b>"));
        let r = failure_page(&Failure::new(400, "x<y", "<b>en</b>", "<i>中</i>"));
        let html = String::from_utf8(r.body).unwrap();
        assert!(!html.contains("<b>en</b>") && !html.contains("<i>中</i>"));
        assert!(html.contains("&lt;b&gt;en&lt;/b&gt;"));
    }

    #[test]
    fn csp_pins_the_inline_script() {
        let r = inapp_page("dingcorp", "appkey", true);
        let csp = r.get_header("content-security-policy").unwrap();
        assert!(csp.contains(&csp_hash(INAPP_SCRIPT.code)));
        assert!(csp.contains(JSAPI_URL));
        let html = String::from_utf8(r.body).unwrap();
        assert!(html.contains(INAPP_SCRIPT.code));
        assert!(html.contains("requestAuthCode"));
        assert!(html.contains("dd.runtime.permission.requestAuthCode"));
        assert!(html.contains("\"retry\":true") && html.contains("sessionStorage"));
    }
}

/// R5 in the commercial edition without `corpId`: the organisations this platform serves, each
/// a plain link to `/dingding/login?corpId=C` (keyboard-usable, no script). A QR login goes
/// through the picked corp's own app: an internal app signs in only its own corp's members.
pub fn corp_picker_page(options: &[CorpOption], return_to: Option<&str>) -> Response {
    let items: String = options
        .iter()
        .map(|o| {
            let mut pairs = vec![("corpId", o.corp_id.as_str())];
            if let Some(r) = return_to {
                pairs.push(("return_to", r));
            }
            let href = crate::login::handoff::with_query("/dingding/login", &pairs);
            let name = if o.corp_name.is_empty() {
                &o.corp_id
            } else {
                &o.corp_name
            };
            format!(
                "<li><a class=\"button\" href=\"{}\">{}</a></li>",
                attr(&href),
                text(name)
            )
        })
        .collect();
    let body = format!(
        "<h1>选择要登录的组织</h1><p>请选择您所在的组织，然后使用该组织的钉钉扫码登录。</p><p class=\"en\">Choose your organisation, then sign in with DingTalk through it.</p><nav aria-label=\"组织 Organisations\"><ul>{items}</ul></nav>"
    );
    page(200, "选择组织 · Choose your organisation", &body, None)
}

#[cfg(test)]
mod picker_tests {
    use super::*;

    #[test]
    fn the_picker_links_each_corp_and_escapes_names() {
        let r = corp_picker_page(
            &[
                CorpOption {
                    corp_id: "dingA&x".into(),
                    corp_name: "<甲公司>".into(),
                },
                CorpOption {
                    corp_id: "dingB".into(),
                    corp_name: String::new(),
                },
            ],
            Some("/forms/1?a=b"),
        );
        assert_eq!(r.status, 200);
        let html = String::from_utf8(r.body).unwrap();
        assert!(html.contains("&lt;甲公司&gt;") && !html.contains("<甲公司>"));
        assert!(html.contains(
            "href=\"/dingding/login?corpId=dingA%26x&amp;return_to=%2Fforms%2F1%3Fa%3Db\""
        ));
        assert!(
            html.contains(">dingB</a>"),
            "a corp without a name shows its id"
        );
        assert!(html.contains("选择要登录的组织") && html.contains("Choose your organisation"));
        assert!(!html.contains("<script"), "plain links, no script");
    }
}
