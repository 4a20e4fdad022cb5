//! The set-up page's HTML: the sign-in form, the guide (each step with its status, values to
//! copy, settings, checks, the permissions table, the sync block), the page shell with its
//! Content-Security-Policy pinning the style and the one script by hash.

use super::session::Session;
use super::{Lang, PAGE_PATH, SYNC_PATH};
use crate::settings::Settings;
use crate::setup::{self, Guide, Status, Step, SyncView};
use crate::web::csp::Inline;
use crate::web::http::Response;
use crate::web::pages::json_block;
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

const STYLE: Inline = Inline::new("*{box-sizing:border-box}body{font-family:-apple-system,BlinkMacSystemFont,'PingFang SC','Noto Sans CJK SC','Microsoft YaHei',sans-serif;max-width:52rem;margin:0 auto;padding:1rem;color:#1f2329;line-height:1.6;font-size:16px}h1{font-size:1.4rem;margin:.5rem 0}h2{font-size:1.1rem;margin:0 0 .4rem}header{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;justify-content:space-between}nav a{margin-right:.6rem}form.inline{display:inline}.step{border:1px solid #dee0e3;border-left:6px solid #c9cdd4;border-radius:8px;padding:.8rem 1rem;margin:1rem 0}.step.done{border-left-color:#34c724}.step.check{border-left-color:#ff8800}.step.wrong{border-left-color:#f54a45;background:#fff6f6}.action{background:#f2f3f5;padding:.5rem .7rem;border-radius:6px}.wrong .action{background:#fde2e2}dl.values{margin:.5rem 0}dt{font-weight:600;margin-top:.5rem}dd{margin:0;display:flex;gap:.4rem;align-items:flex-start}code{background:#f2f3f5;padding:.1rem .3rem;border-radius:4px;word-break:break-all;font-size:.9rem}dd code{flex:1;padding:.4rem}button,input{font:inherit}button{padding:.45rem .9rem;border:1px solid #3370ff;border-radius:6px;background:#fff;color:#3370ff;cursor:pointer;min-height:2.5rem}button.primary{background:#3370ff;color:#fff}button:disabled{opacity:.6;cursor:default}button:focus-visible,a:focus-visible,input:focus-visible{outline:3px solid #ffb020;outline-offset:2px}input[type=password]{width:100%;padding:.6rem;border:1px solid #c9cdd4;border-radius:6px;margin:.4rem 0 .8rem}.error{color:#d83931;font-weight:600}ul.set,ul.checks{padding-left:1.2rem;margin:.4rem 0}table{border-collapse:collapse;width:100%;font-size:.9rem}td,th{border-bottom:1px solid #dee0e3;padding:.3rem;text-align:left;vertical-align:top}progress{width:100%;height:1.4rem}.muted{color:#646a73;font-size:.9rem}.summary{display:flex;flex-wrap:wrap;gap:.3rem 1rem;padding:0;list-style:none}@media (max-width:30rem){body{padding:.6rem}.step{padding:.6rem .7rem}td:nth-child(3),th:nth-child(3){display:none}}");

const SCRIPT: Inline = Inline::new(
    r#"(function(){var cfg=JSON.parse(document.getElementById('setup-config').textContent);var L=cfg.text;
document.querySelectorAll('button.copy').forEach(function(b){b.hidden=false;b.addEventListener('click',function(){var el=document.getElementById(b.getAttribute('data-copy'));var v=el.textContent;function ok(){b.textContent=L.copied;setTimeout(function(){b.textContent=L.copy;},1500);}function fallback(){var r=document.createRange();r.selectNodeContents(el);var s=window.getSelection();s.removeAllRanges();s.addRange(r);try{if(document.execCommand('copy'))ok();}catch(e){}}if(navigator.clipboard&&navigator.clipboard.writeText){navigator.clipboard.writeText(v).then(ok,fallback);}else{fallback();}});});
var form=document.getElementById('sync-form');if(!form)return;var bar=document.getElementById('sync-bar'),out=document.getElementById('sync-text'),btn=document.getElementById('sync-button');var cursor=cfg.sync.cursor||'',running=false,start=false;
function fill(s,v){return s.replace('{dd}',v.departments_done).replace('{dk}',v.departments_known).replace('{m}',v.members_seen).replace('{x}',v.deactivated).replace('{s}',v.eta_seconds);}
function show(v){bar.value=v.percent;bar.setAttribute('aria-valuenow',v.percent);bar.textContent=v.percent+'%';var s=fill(v.state==='complete'?L.done:L.progress,v);if(v.state!=='complete'&&v.eta_seconds!=null)s+=' · '+fill(L.eta,v);if(v.following&&v.state!=='complete')s+=' · '+L.following;out.textContent=s;}
function stop(label){running=false;btn.disabled=false;if(label)btn.textContent=label;}
function step(){var body=JSON.stringify({csrf:cfg.csrf,ack:cursor,start:start});start=false;fetch(form.action,{method:'POST',credentials:'same-origin',headers:{'content-type':'application/json','x-csrf-token':cfg.csrf},body:body}).then(function(r){return r.json().then(function(j){return{ok:r.ok,j:j};});}).then(function(a){if(!a.ok){var e=a.j&&a.j.error;out.textContent=e?(cfg.lang==='en'?e.message:e.message_zh):L.failed;stop();return;}var v=a.j;if(v.cursor)cursor=v.cursor;show(v);if(v.state==='complete'){stop(L.again);return;}setTimeout(step,Math.max(v.retry_after_ms||0,v.following?1000:0));},function(){out.textContent=L.failed;stop();});}
function run(first){if(running)return;running=true;start=first;btn.disabled=true;step();}
form.addEventListener('submit',function(ev){ev.preventDefault();run(true);});if(cfg.resume)run(false);})();"#,
);

fn shell(status: u16, lang: Lang, title: &str, body: &str, script: Option<&Inline>) -> Response {
    let script_src = script.map_or("'none'", Inline::csp_source);
    let csp = format!(
        "default-src 'none'; style-src {}; img-src data:; script-src {script_src}; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        STYLE.csp_source()
    );
    let script_html = script
        .map(|s| format!("<script>{}</script>", s.code))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title><style>{}</style></head><body>{body}{script_html}</body></html>",
        lang.pick("zh-CN", "en"),
        text(title),
        STYLE.code
    );
    Response::html(status, html).header("content-security-policy", &csp)
}

fn other_language(lang: Lang) -> String {
    match lang {
        Lang::Zh => {
            format!("<a href=\"{PAGE_PATH}?lang=en\" hreflang=\"en\" lang=\"en\">English</a>")
        }
        Lang::En => {
            format!("<a href=\"{PAGE_PATH}?lang=zh\" hreflang=\"zh-CN\" lang=\"zh-CN\">中文</a>")
        }
    }
}

pub(super) fn sign_in_page(status: u16, lang: Lang, message: Option<&str>) -> Response {
    let message = message
        .map(|m| {
            format!(
                "<p class=\"error\" role=\"alert\" id=\"message\">{}</p>",
                text(m)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<header><h1>{title}</h1><nav>{other}</nav></header><p>{intro}</p>{message}<form method=\"post\" action=\"{action}\"><label for=\"token\">{label}</label><input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus><button class=\"primary\" type=\"submit\">{submit}</button></form><p class=\"muted\">{note}</p>",
        title = lang.pick("钉钉集成设置", "DingTalk set-up"),
        other = other_language(lang),
        intro = lang.pick(
            "请输入平台令牌（插件设置中的 platform_token），查看钉钉应用配置的 11 个步骤及其检查结果。",
            "Enter the platform token (platform_token of the plugin settings) to see the 11 steps of the DingTalk app set-up and their checks."
        ),
        action = attr(&lang.page_url()),
        label = lang.pick("平台令牌", "Platform token"),
        submit = lang.pick("登录", "Sign in"),
        note = lang.pick(
            "登录后 30 分钟内有效；本页面不会显示任何密钥。",
            "The session lasts 30 minutes; this page never shows a secret."
        ),
    );
    shell(
        status,
        lang,
        lang.pick("钉钉集成设置", "DingTalk set-up"),
        &body,
        None,
    )
}

fn status_label(status: Status, lang: Lang) -> &'static str {
    match status {
        Status::Done => lang.pick("已完成", "done"),
        Status::Check => lang.pick("请核对", "to check"),
        Status::Wrong => lang.pick("有误", "wrong"),
    }
}

fn status_class(status: Status) -> &'static str {
    match status {
        Status::Done => "done",
        Status::Check => "check",
        Status::Wrong => "wrong",
    }
}

fn render_step(step: &Step, guide: &Guide, lang: Lang, csrf: &str) -> String {
    let n = step.number;
    let mut html = format!(
        "<section class=\"step {cls}\" id=\"step-{n}\" data-status=\"{cls}\" aria-labelledby=\"step-{n}-title\"><h2 id=\"step-{n}-title\"><span aria-hidden=\"true\">{sign}</span> {n}. {title} <span class=\"muted\">· {label}</span></h2><p class=\"found\">{found}</p>",
        cls = status_class(step.status),
        sign = step.status.sign(),
        title = text(lang.of_text(&step.title)),
        label = status_label(step.status, lang),
        found = text(lang.of_text(&step.found)),
    );
    if let Some(action) = &step.action {
        html.push_str(&format!(
            "<p class=\"action\"><strong>{}</strong>{}</p>",
            lang.pick("请操作：", "To do: "),
            text(lang.of_text(action))
        ));
    }
    if !step.values.is_empty() {
        html.push_str("<dl class=\"values\">");
        for (i, v) in step.values.iter().enumerate() {
            let id = format!("v{n}-{i}");
            html.push_str(&format!(
                "<dt>{}</dt><dd><code id=\"{id}\" class=\"copy-value\" data-field=\"{}\">{}</code><button type=\"button\" class=\"copy\" data-copy=\"{id}\" hidden>{}</button></dd>",
                text(v.field),
                attr(v.field),
                text(&v.value),
                lang.pick("复制", "Copy")
            ));
        }
        html.push_str("</dl>");
    }
    if !step.settings.is_empty() {
        html.push_str("<ul class=\"set\">");
        for s in &step.settings {
            html.push_str(&format!(
                "<li data-setting=\"{}\"><code>{}</code>: {}</li>",
                attr(s.key),
                text(s.key),
                if s.set {
                    lang.pick("已设置", "set")
                } else {
                    lang.pick("未设置", "not set")
                }
            ));
        }
        html.push_str("</ul>");
    }
    let checks: Vec<_> = guide
        .checks
        .iter()
        .filter(|c| step.checks.contains(&c.name))
        .collect();
    if !checks.is_empty() {
        html.push_str("<ul class=\"checks\">");
        for c in checks {
            html.push_str(&format!(
                "<li data-check=\"{}\" data-status=\"{}\">{} <code>{}</code> {}</li>",
                attr(c.name),
                status_class(c.status),
                c.status.sign(),
                text(c.name),
                text(lang.pick(&c.detail_zh, &c.detail))
            ));
        }
        html.push_str("</ul>");
    }
    if n == 6 {
        html.push_str(&format!(
            "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
            lang.pick("权限名称", "Permission"),
            lang.pick("权限代码", "Code"),
            lang.pick("用途", "Used for")
        ));
        for p in &guide.permissions {
            html.push_str(&format!(
                "<tr data-permission=\"{}\"><td>{}</td><td><a href=\"{}\" rel=\"noreferrer\"><code>{}</code></a></td><td>{}</td></tr>",
                attr(p.code),
                text(p.name),
                attr(p.source),
                text(p.code),
                text(p.purpose)
            ));
        }
        html.push_str(&format!(
            "</tbody></table><p class=\"muted\">{}</p>",
            lang.pick(
                "通讯录字段权限（可选）：企业员工手机号信息、邮箱等个人信息——如平台需要成员的手机号和邮箱，请在“权限管理 → 通讯录管理”中开通。",
                "Optional field permissions: 企业员工手机号信息 and 邮箱等个人信息 — enable them under 权限管理 → 通讯录管理 if the platform needs members' mobile and email."
            )
        ));
    }
    if n == 10 {
        html.push_str(&sync_block(&guide.sync, lang, csrf));
    }
    html.push_str("</section>");
    html
}

fn sync_block(sync: &SyncView, lang: Lang, csrf: &str) -> String {
    let status = match sync.state {
        "complete" => format!(
            "{} {} · {} {} · {} {}",
            lang.pick("成员", "members"),
            sync.members_seen,
            lang.pick("部门", "departments"),
            sync.departments_known,
            lang.pick("停用", "deactivated"),
            sync.deactivated
        ),
        "running" => format!(
            "{} {}/{} · {} {}",
            lang.pick("部门", "departments"),
            sync.departments_done,
            sync.departments_known,
            lang.pick("成员", "members"),
            sync.members_seen
        ),
        _ => lang.pick("尚未同步。", "Not synced yet.").to_string(),
    };
    let button = match sync.state {
        "complete" => lang.pick("重新同步", "Sync again"),
        "running" => lang.pick("继续同步", "Resume sync"),
        _ => lang.pick("安装钉钉初始化", "Install (first sync)"),
    };
    format!(
        "<form method=\"post\" action=\"{action}\" id=\"sync-form\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><progress id=\"sync-bar\" max=\"100\" value=\"{p}\" aria-label=\"{label}\" aria-valuenow=\"{p}\">{p}%</progress><p id=\"sync-text\" role=\"status\" aria-live=\"polite\">{status}</p><button class=\"primary\" type=\"submit\" id=\"sync-button\">{button}</button></form><p class=\"muted\">{note}</p>",
        action = attr(&format!("{SYNC_PATH}?lang={}", lang.code())),
        csrf = attr(csrf),
        p = sync.percent,
        label = lang.pick("同步进度", "Sync progress"),
        status = text(&status),
        button = text(button),
        note = lang.pick(
            "同步在浏览器中逐批推进；刷新页面或换一台电脑打开都会接着进行，两位管理员同时点击也只会运行一次同步。",
            "The sync advances batch by batch from the browser; a reload or another computer picks it up, and two admins pressing at once run one sync."
        ),
    )
}

pub(super) fn guide_page(
    guide: &Guide,
    settings: &Settings,
    session: &Session,
    lang: Lang,
    now: u64,
) -> Response {
    let wrong = guide
        .walk
        .iter()
        .filter(|s| s.status == Status::Wrong)
        .count();
    let check = guide
        .walk
        .iter()
        .filter(|s| s.status == Status::Check)
        .count();
    let done = guide.walk.len() - wrong - check;
    let summary = format!(
        "<ul class=\"summary\" id=\"summary\"><li>✅ {done} {}</li><li>⚠ {check} {}</li><li>❌ {wrong} {}</li></ul>",
        lang.pick("项已完成", "done"),
        lang.pick("项请核对", "to check"),
        lang.pick("项有误", "wrong"),
    );
    let steps: String = guide
        .walk
        .iter()
        .map(|s| render_step(s, guide, lang, &session.csrf))
        .collect();
    let body = format!(
        "<header><h1>{title}</h1><nav>{other} <form method=\"post\" action=\"{action}\" class=\"inline\"><input type=\"hidden\" name=\"action\" value=\"sign_out\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">{out}</button></form></nav></header><p>{intro} <code>{site}</code></p>{summary}<main>{steps}</main><p class=\"muted\">{foot}</p><script type=\"application/json\" id=\"setup-config\">{config}</script>",
        title = lang.pick("钉钉应用配置", "DingTalk app set-up"),
        other = other_language(lang),
        action = attr(&lang.page_url()),
        csrf = attr(&session.csrf),
        out = lang.pick("退出", "Sign out"),
        intro = lang.pick("按顺序完成以下步骤；各项检查在打开本页时实时进行。站点：", "Follow the steps in order; the checks ran live when this page was opened. Site:"),
        site = text(&settings.site_url),
        foot = lang.pick("刷新页面即可重新检查。", "Reload the page to check again."),
        config = json_block(&serde_json::json!({
            "lang": lang.code(),
            "csrf": session.csrf,
            "sync": guide.sync,
            // Continue a pass some page stepped within the last half minute (a reload, or
            // another admin's browser).
            "resume": guide.sync.state == "running"
                && now.saturating_sub(guide.sync.updated_ms) < 2 * setup::DRIVER_QUIET_MS,
            "text": {
                "copy": lang.pick("复制", "Copy"),
                "copied": lang.pick("已复制", "Copied"),
                "progress": lang.pick("部门 {dd}/{dk} · 成员 {m}", "departments {dd}/{dk} · members {m}"),
                "eta": lang.pick("预计还需 {s} 秒", "about {s} s left"),
                "following": lang.pick("另一位管理员正在同步，此处显示其进度", "another admin's page is running it; showing its progress"),
                "done": lang.pick("同步完成：成员 {m} · 部门 {dk} · 停用 {x}", "Sync complete: members {m} · departments {dk} · deactivated {x}"),
                "again": lang.pick("重新同步", "Sync again"),
                "failed": lang.pick("同步请求失败，请刷新页面后重试。", "The sync request failed; reload the page and try again."),
            },
        })),
    );
    shell(
        200,
        lang,
        lang.pick("钉钉应用配置", "DingTalk app set-up"),
        &body,
        Some(&SCRIPT),
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{body, call, set_id, sign_in, TOKEN};
    use super::*;
    use crate::settings::tests::sample_raw;
    use crate::testing::FakeEnv;
    use crate::web::http::Request;
    use crate::web::pages::csp_hash;
    use crate::web::router::{self, Mode};

    #[test]
    fn the_page_shows_every_step_no_secret_and_pins_its_script() {
        let mut env = FakeEnv::new();
        let id = sign_in(&mut env);
        let r = call(&mut env, "GET", PAGE_PATH, Some(&id), "");
        let html = body(&r);
        let mut at = 0;
        for n in 1..=12 {
            let found = html[at..]
                .find(&format!("id=\"step-{n}\""))
                .unwrap_or_else(|| panic!("step {n}"));
            at += found;
        }
        for secret in [
            "app-secret-value",
            "sso-secret-value",
            "tokenxxxx",
            "o1w0aum42yaptlz8",
            TOKEN,
        ] {
            assert!(!html.contains(secret), "{secret}");
        }
        assert!(
            html.contains("https://forms.example.com/dingding/dingding_auth_corp?corpId=$CORPID$")
        );
        assert!(html.contains("https://forms.example.com/index.php?dingding/dd_callback&amp;usertype=admin&amp;corpId=dingcorp123"));
        assert!(html.contains("qyapi_get_department_member"));
        let csp = r.get_header("content-security-policy").unwrap();
        assert!(csp.contains(&csp_hash(SCRIPT.code)) && csp.contains(&csp_hash(STYLE.code)));
        assert!(csp.contains("connect-src 'self'") && !csp.contains("unsafe"));
        assert!(html.contains(SCRIPT.code));
        // Every DingTalk call failed (no fake answers): credentials wrong, with the action.
        assert!(
            html.contains("id=\"step-4\" data-status=\"wrong\""),
            "{html}"
        );
        // English on request, by parameter or header.
        let id = set_id(&r);
        let r = call(&mut env, "GET", "/dingding/setup?lang=en", Some(&id), "");
        assert!(
            body(&r).contains("lang=\"en\"") && body(&r).contains("Fill in the app credentials")
        );
        let request = Request::new(
            "GET",
            PAGE_PATH,
            vec![("accept-language".into(), "en-GB,en;q=0.9".into())],
            vec![],
        );
        assert!(
            body(&router::handle(&mut env, &sample_raw(), &request, Mode::Http).response)
                .contains("Sign in")
        );
    }

    #[test]
    fn values_are_escaped() {
        let mut raw = sample_raw();
        raw.insert("corp_name".into(), "<b>甲</b>\"".into());
        let settings = Settings::parse(&raw).unwrap();
        let mut env = FakeEnv::new();
        let guide = setup::guide(&mut env, &settings);
        let session = Session {
            sid: "s".into(),
            csrf: "c\"<".into(),
            presented: None,
            new_id: None,
        };
        let html = body(&guide_page(&guide, &settings, &session, Lang::Zh, 0));
        assert!(!html.contains("<b>甲</b>") && html.contains("&lt;b&gt;甲&lt;/b&gt;"));
        assert!(!html.contains("value=\"c\"<\""));
    }
}
