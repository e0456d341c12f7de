//! The `/status` page's HTML: a pure function of a `StatusSnapshot`, so it can be tested on a
//! snapshot made by hand.

use std::fmt::Write as _;

use super::view::{DEAD_PER_ROUTE, MAX_Q};
use super::zone::{local_time, offset_text, unix_s};
use super::{CertRow, CertificateView, DeadLetterRow, HisLinkRow, Notice, StatusSnapshot};
use crate::buffer::forwarder::CLOUD_ROUTE_PREFIX;
use crate::trail::query::Entry;
use crate::upstream::link::{LinkState, Seen};

/// Escapes text for HTML element content and double- or single-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A duration for people: `45 s`, `3 min 12 s`, `5 h 3 min`, `2 d 4 h`.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min {s} s")
    } else {
        format!("{s} s")
    }
}

/// A byte count for people, in binary units: `512 B`, `1.5 KiB`, `1.0 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

const STYLE: &str = r#"
* { box-sizing: border-box; }
body { margin: 0; padding: 16px 24px; background: #f3f5f7; color: #1d2733;
  font: 14px/1.45 system-ui, "Microsoft YaHei", "PingFang SC", "Noto Sans CJK SC",
  "WenQuanYi Micro Hei", "Segoe UI", Arial, sans-serif; }
header { display: flex; align-items: baseline; gap: 24px; flex-wrap: wrap; margin-bottom: 12px; }
h1 { font-size: 22px; margin: 0; }
header .meta { color: #52606d; }
header .meta b { color: #1d2733; font-weight: 600; }
main { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; max-width: 1240px; }
section { background: #fff; border: 1px solid #d9e0e6; border-radius: 6px; padding: 10px 14px; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 16px; margin: 0 0 8px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #edf0f3; vertical-align: top; }
th { color: #52606d; font-weight: 600; font-size: 13px; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.mono, .mono { font-family: ui-monospace, Consolas, "DejaVu Sans Mono", monospace; font-size: 13px; }
.state { display: inline-block; white-space: nowrap; padding: 1px 10px; border-radius: 10px; font-weight: 600; color: #fff; }
.state.up { background: #1e8e3e; }
.state.down { background: #c5221f; }
.state.probing { background: #e37400; }
.state.unknown { background: #9aa5b1; }
.muted { color: #7b8794; }
.routes { font-size: 12px; color: #52606d; }
.warn { color: #c5221f; font-weight: 600; }
.soon { color: #b06000; font-weight: 600; }
.bar { height: 10px; background: #edf0f3; border-radius: 5px; overflow: hidden; margin-top: 4px; }
.bar span { display: block; height: 100%; background: #1e8e3e; }
.bar span.high { background: #e37400; }
.bar span.full { background: #c5221f; }
.placeholder { color: #7b8794; font-style: italic; }
footer { margin-top: 10px; color: #7b8794; font-size: 12px; }
header form { display: inline; }
.notice { max-width: 1240px; margin: 0 0 12px; padding: 8px 14px; border-radius: 6px; border: 1px solid; }
.notice.ok { background: #e6f4ea; border-color: #1e8e3e; color: #0d652d; }
.notice.warn { background: #fce8e6; border-color: #c5221f; }
input, button { font: inherit; }
input[type=search], input[type=password] { padding: 3px 6px; border: 1px solid #b8c2cc; border-radius: 4px; }
button { padding: 2px 10px; border: 1px solid #b8c2cc; border-radius: 4px; background: #fff; cursor: pointer; }
button.danger { color: #c5221f; border-color: #e8a29f; }
td.actions { white-space: nowrap; }
td.history { font-size: 13px; }
"#;

fn link_label(s: Option<LinkState>) -> (&'static str, &'static str) {
    match s {
        Some(LinkState::Up) => ("up", "正常 Up"),
        Some(LinkState::Down) => ("down", "断开 Down"),
        Some(LinkState::Probing) => ("probing", "探测中 Probing"),
        None => ("unknown", "未知 Unknown"),
    }
}

fn direction_label(d: &str) -> String {
    match d {
        "his_to_cloud" => "HIS → 云平台 cloud".to_string(),
        "cloud_to_his" => "云平台 cloud → HIS".to_string(),
        "cloud_to_pacs" => "云平台 cloud → PACS".to_string(),
        other => escape(other),
    }
}

/// A number cell: `data-metric` names the `/metrics` series, `extra` adds attributes
/// (already escaped), `text` is what people read (already escaped).
fn metric_cell(out: &mut String, metric: &str, extra: &str, value: &str, text: &str) {
    let _ = write!(
        out,
        r#"<td class="n" data-metric="{}"{extra} data-value="{}">{text}</td>"#,
        escape(metric),
        escape(value),
    );
}

/// One certificate's row: the expiry date and the days left (amber under 30, red when expired
/// or unreadable).
fn cert_row(o: &mut String, r: &CertRow, now_ms: u64) {
    let listener = r.listener;
    let _ = write!(
        o,
        r#"<tr id="cert-{listener}"><th>证书到期 Certificate expiry <span class="muted">{listener}_listener</span></th>"#
    );
    match &r.not_after_s {
        Ok(t) => {
            let secs_left = t.saturating_sub(unix_s(now_ms));
            let days = secs_left.div_euclid(86_400);
            let (date, iso) = local_time(
                u64::try_from(t.saturating_mul(1000)).unwrap_or(0),
                r.utc_offset_s,
            );
            let (class, text) = if secs_left <= 0 {
                (" warn", format!("已过期 expired {} 天 days ago", -days))
            } else if days < 30 {
                (" soon", format!("剩 {days} 天 {days} days left"))
            } else {
                ("", format!("剩 {days} 天 {days} days left"))
            };
            let _ = writeln!(
                o,
                r#"<td class="n{class}" data-metric="prefront_tls_cert_expiry_seconds" data-listener="{listener}" data-value="{secs_left}" data-days-left="{days}" data-not-after="{iso}"><time datetime="{iso}">{date}</time> · {text}</td></tr>"#,
                date = &date[..10],
            );
        }
        Err(e) => {
            let _ = writeln!(
                o,
                r#"<td class="n warn" data-listener="{listener}" title="{}">无法读取 cannot read</td></tr>"#,
                escape(e)
            );
        }
    }
}

/// How many route names a HIS target's row spells out; the rest are counted (all are in its
/// `title`).
const NAMES_SHOWN: usize = 3;

fn his_link_label(state: Seen) -> &'static str {
    match state {
        Seen::Up => "正常 Up",
        Seen::Down => "断开 Down",
        Seen::Unknown => "未调用 Never called",
    }
}

/// One HIS target: the routes that call it, its `host:port`, and its link as calls saw it
/// (since when; the last link failure's kind).
fn his_link_row(o: &mut String, r: &HisLinkRow, utc_offset_s: i32) {
    let name = |n: &Option<String>| match n {
        Some(n) => n.clone(),
        None => "默认 Default ([his] url)".to_string(),
    };
    let all: Vec<String> = r.routes.iter().map(|(n, _)| name(n)).collect();
    let mut shown: Vec<String> = all.iter().take(NAMES_SHOWN).map(|n| escape(n)).collect();
    if all.len() > NAMES_SHOWN {
        shown.push(format!("+{} 个 more", all.len() - NAMES_SHOWN));
    }
    let mut kinds: Vec<&str> = r.routes.iter().map(|(_, k)| *k).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let link = &r.link;
    let state = link.state.as_str();
    let when = |ms: u64| {
        let (t, iso) = local_time(ms, utc_offset_s);
        format!(r#"<time datetime="{iso}">{t}</time>"#)
    };
    let mut detail = String::new();
    if link.state != Seen::Unknown {
        let _ = write!(
            detail,
            r#" <span class="muted">自 since {}</span>"#,
            when(link.since_ms)
        );
    }
    if let Some(e) = link.last_error {
        let label = if link.state == Seen::Down {
            "错误 error"
        } else {
            "上次错误 last error"
        };
        let _ = write!(
            detail,
            r#"<div class="muted">{label} <span class="mono" data-last-error="{kind}">{kind}</span> {}</div>"#,
            when(link.last_error_ms),
            kind = e.as_str(),
        );
    }
    let _ = writeln!(
        o,
        r#"<tr class="his-link" data-target="{target}"><td>HIS <span class="muted">{kinds}</span><div class="mono routes" title="{title}">{names}</div></td><td class="mono">{target}</td><td data-metric="prefront_his_link_state" data-target="{target}" data-value="{state}"><span class="state {state}">{label}</span>{detail}</td></tr>"#,
        target = escape(&r.target),
        kinds = kinds.join(", "),
        title = escape(&all.join(", ")),
        names = shown.join(", "),
        label = his_link_label(link.state),
    );
}

/// What the last button did: green when something changed, red when nothing did.
fn notice(o: &mut String, n: Notice) {
    let text = match n {
        Notice::Retried(id) => format!("已重试 Retried: 消息 message {id} 已回到队列 is back in its queue"),
        Notice::Dropped(id) => format!("已删除 Dropped: 消息 message {id}"),
        Notice::NotFound(id) => format!("未找到 Not found: 消息 message {id} 已不在缓冲中 is no longer in the buffer; nothing was changed"),
        Notice::NotDead(id) => format!("未重试 Not retried: 消息 message {id} 在队列中等待，不是死信 is queued, not dead; nothing was changed"),
        Notice::Failed(id) => format!("失败 Failed: 缓冲未能处理消息 the buffer could not change message {id} (see the log); nothing was changed"),
        Notice::WrongToken => "令牌错误 Wrong token: 与 [admin] token_file 不符 it is not the one in [admin] token_file; nothing was changed".to_string(),
    };
    let _ = writeln!(
        o,
        r#"<p id="notice" class="notice {class}" data-notice="{param}">{text}</p>"#,
        class = if n.is_success() { "ok" } else { "warn" },
        param = n.param(),
    );
}

/// A trail entry's history for people: `received → queued → retry ×3 → delivered (10001)`.
fn history(e: &Entry) -> String {
    let mut parts: Vec<(String, &str, usize)> = Vec::new();
    for step in &e.history {
        let shown = match (step.event.as_str(), &step.detail) {
            ("delivered", Some(code)) => format!("delivered ({code})"),
            (event, _) => event.to_string(),
        };
        match parts.last_mut() {
            Some((last, _, n)) if *last == shown => *n += 1,
            _ => parts.push((shown, &step.time, 1)),
        }
    }
    parts
        .into_iter()
        .map(|(shown, time, n)| {
            let times = if n > 1 {
                format!(" ×{n}")
            } else {
                String::new()
            };
            format!(
                r#"<span title="{}">{}{times}</span>"#,
                escape(time),
                escape(&shown)
            )
        })
        .collect::<Vec<_>>()
        .join(" → ")
}

/// The search box over the message trail, and what it found.
fn search_section(o: &mut String, s: &StatusSnapshot) {
    let q = s.page.search.as_ref().map_or("", |x| x.q.as_str());
    let _ = write!(
        o,
        r#"<section id="search" class="wide">
<h2>查找消息 Find a message <span class="muted">(按请求编号或业务号 by request id or business key, e.g. refundNo=RF-1; 最新在前 newest first)</span></h2>
<form method="get" action="/status" id="search-form"><input type="search" name="q" id="q" value="{q}" maxlength="{max}" size="48" placeholder="请求编号 request id / refundNo=RF-1" aria-label="请求编号或业务号 request id or business key"> <button type="submit" id="search-button">查找 Search</button></form>
"#,
        q = escape(q),
        max = MAX_Q,
    );
    let Some(search) = &s.page.search else {
        o.push_str("</section>\n");
        return;
    };
    if let Some(p) = &search.problem {
        let _ = writeln!(
            o,
            r#"<p class="warn" id="search-problem">{}</p>"#,
            escape(p)
        );
        o.push_str("</section>\n");
        return;
    }
    match search.by {
        None => {
            let _ = writeln!(
                o,
                r#"<p class="muted" id="search-none">未找到 Nothing in the trail for “{}” (neither a request id nor a business key; the trail keeps [trail] max_age)</p>"#,
                escape(&search.q)
            );
        }
        Some(by) => {
            let label = if by == "key" {
                "按业务号 by business key"
            } else {
                "按请求编号 by request id"
            };
            let _ = write!(
                o,
                r#"<p class="muted" id="search-found" data-by="{by}">{n} 条 entries {label}</p>
<table id="search-results">
<tr><th>时间 Time</th><th>请求编号 Request id</th><th>方向 Direction</th><th>接口 Route</th><th>状态 State</th><th>业务号 Key</th><th>经过 History</th></tr>
"#,
                n = search.entries.len(),
            );
            for r in &search.entries {
                let e = &r.entry;
                let (t, iso) = local_time(r.at_ms, r.utc_offset_s);
                let _ = writeln!(
                    o,
                    r#"<tr class="trail-entry" data-request-id="{rid}" data-outcome="{outcome}" data-id="{id}"><td class="mono"><time datetime="{iso}">{t}</time></td><td class="mono">{rid}</td><td>{dir}</td><td class="mono">{route}</td><td class="mono">{outcome}</td><td class="mono">{key}</td><td class="history">{history}</td></tr>"#,
                    rid = escape(&e.request_id),
                    outcome = escape(&e.outcome),
                    id = e.id.map_or(String::new(), |i| i.to_string()),
                    dir = direction_label(&e.direction),
                    route = escape(&e.route),
                    key = escape(e.key.as_deref().unwrap_or("")),
                    history = history(e),
                );
            }
            o.push_str("</table>\n");
        }
    }
    o.push_str("</section>\n");
}

/// The dead letters with their retry and drop buttons: one form around the table, so the token
/// is typed once; each button posts it to its own message's call (`formaction`).
fn dead_letter_section(o: &mut String, s: &StatusSnapshot) {
    let p = &s.page;
    let dead_total: u64 = s.buffer_routes.iter().map(|r| r.dead).sum();
    if p.dead_letters.is_empty() && p.dead_letters_error.is_none() && dead_total == 0 {
        return;
    }
    let _ = write!(
        o,
        r#"<section id="dead-letters" class="wide">
<h2>死信 Dead letters <span class="muted">(未能送达，等待处理 not delivered, waiting for an operator; 每个接口最多显示 {DEAD_PER_ROUTE} 条 at most {DEAD_PER_ROUTE} per route)</span></h2>
"#
    );
    if let Some(e) = &p.dead_letters_error {
        let _ = writeln!(
            o,
            r#"<p class="warn" id="dead-letters-error">死信无法读取 The dead letters cannot be read: {}</p>"#,
            escape(e)
        );
    }
    let enabled = p.form_key.is_some();
    if let Some(key) = &p.form_key {
        // The first submit button is the form's default: disabled, so Enter in the token field
        // submits nothing.
        let _ = writeln!(
            o,
            r#"<form method="post" id="dead-form"><input type="hidden" name="form_key" value="{}"><button type="submit" disabled hidden aria-hidden="true"></button>"#,
            escape(key)
        );
        if p.token_required {
            o.push_str(
                r#"<p><label>管理令牌 Admin token <input type="password" name="token" id="token" required autocomplete="off" size="40"></label> <span class="muted">重试或删除需要 needed to retry or drop ([admin] token_file)</span></p>
"#,
            );
        }
    } else {
        o.push_str(
            r#"<p class="warn">按钮不可用 The buttons are off: this process has no form key (its random source failed); use `prefront queue retry|drop`</p>
"#,
        );
    }
    o.push_str(
        r#"<table id="dead-letter-list">
<tr><th>接口 Route</th><th class="n">编号 Id</th><th>请求编号 Request id</th><th class="n">已等待 Age</th><th class="n">尝试 Attempts</th><th>原因 Reason</th><th></th></tr>
"#,
    );
    let disabled = if enabled { "" } else { " disabled" };
    for r in &s.buffer_routes {
        let rows: Vec<&DeadLetterRow> = p
            .dead_letters
            .iter()
            .filter(|d| d.route == r.route)
            .collect();
        let shown_route = escape(r.route.strip_prefix(CLOUD_ROUTE_PREFIX).unwrap_or(&r.route));
        for d in &rows {
            let _ = writeln!(
                o,
                r#"<tr class="dead-letter" data-id="{id}" data-route="{route}" data-request-id="{rid}"><td class="mono">{shown_route}</td><td class="n mono">{id}</td><td class="mono">{rid}</td><td class="n">{age}</td><td class="n">{attempts}</td><td>{reason}</td><td class="actions"><button type="submit" formaction="/api/queue/messages/{id}/retry" id="retry-{id}"{disabled}>重试 Retry</button> <button type="submit" formaction="/api/queue/messages/{id}/drop" id="drop-{id}" class="danger"{disabled}>删除 Drop</button></td></tr>"#,
                id = d.id,
                route = escape(&d.route),
                rid = escape(&d.request_id),
                age = human_duration(d.age_s),
                attempts = d.attempts,
                reason = escape(&d.reason),
            );
        }
        let more = r.dead.saturating_sub(rows.len() as u64);
        if more > 0 && p.dead_letters_error.is_none() {
            let _ = writeln!(
                o,
                r#"<tr class="muted"><td class="mono">{shown_route}</td><td colspan="6">还有 {more} 条 {more} more: prefront queue list --dead --route {}</td></tr>"#,
                escape(&r.route)
            );
        }
    }
    o.push_str("</table>\n");
    if enabled {
        o.push_str("</form>\n");
    }
    o.push_str("</section>\n");
}

/// The page. Pure: everything comes from `s`.
pub fn render(s: &StatusSnapshot) -> String {
    let mut o = String::with_capacity(16 * 1024);
    let refreshes = s.page.refreshes();
    let (now, now_iso) = local_time(s.now_ms, s.utc_offset_s);
    let _ = write!(
        o,
        r#"<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
{refresh}<meta name="viewport" content="width=device-width, initial-scale=1">
<title>prefront 前置机状态 Status</title>
<style>{STYLE}</style>
</head>
<body>
<header>
<h1>prefront 前置机状态 Gateway status</h1>
<span class="meta">版本 Version <b id="version" data-metric="prefront_build_info" data-value="{v}">{v}</b></span>
<span class="meta">运行时间 Uptime <b id="uptime" data-metric="prefront_uptime_seconds" data-value="{up}">{up_h}</b></span>
<span class="meta">更新于 Updated <time id="now" datetime="{now_iso}">{now}</time></span>
{paused}</header>
"#,
        refresh = if refreshes {
            "<meta http-equiv=\"refresh\" content=\"5\">\n"
        } else {
            ""
        },
        paused = if refreshes {
            ""
        } else {
            r#"<form method="get" action="/status" class="meta" id="refresh-paused">自动刷新已暂停 Auto-refresh paused <button type="submit">刷新 Refresh</button></form>
"#
        },
        v = escape(&s.version),
        up = s.uptime.as_secs(),
        up_h = human_duration(s.uptime.as_secs()),
    );

    if let Some(n) = s.page.notice {
        notice(&mut o, n);
    }
    o.push_str("<main>\n");
    search_section(&mut o, s);

    // Links.
    let (class, label) = link_label(s.cloud_link);
    let _ = write!(
        o,
        r#"<section id="links">
<h2>连接 Links</h2>
<table>
<tr><th>连接 Link</th><th>目标 Target</th><th>状态 State</th></tr>
<tr><td>云平台连接 Cloud link</td><td class="mono">{target}</td><td id="cloud-link" data-metric="prefront_cloud_link_state" data-value="{class}"><span class="state {class}">{label}</span></td></tr>
"#,
        target = escape(&s.cloud_target),
    );
    if s.his_links.is_empty() {
        o.push_str(
            r#"<tr><td colspan="3" class="muted">未配置 HIS 路由 No HIS route configured</td></tr>
"#,
        );
    }
    for r in &s.his_links {
        his_link_row(&mut o, r, s.utc_offset_s);
    }
    o.push_str("</table>\n</section>\n");

    // Totals, version, certificates.
    o.push_str(
        r#"<section id="totals">
<h2>累计（自启动）Totals since start</h2>
<table>
"#,
    );
    let rows: [(&str, &str, &str, u64, bool); 8] = [
        (
            "调用成功 Calls ok",
            "prefront_calls_total",
            r#" id="calls-ok" data-class="ok""#,
            s.calls.ok,
            false,
        ),
        (
            "已缓冲待发 Calls queued",
            "prefront_calls_total",
            r#" id="calls-queued" data-class="queued""#,
            s.calls.queued,
            false,
        ),
        (
            "调用失败 Calls failed",
            "prefront_calls_total",
            r#" id="calls-failed" data-class="failed""#,
            s.calls.failed,
            false,
        ),
        (
            "缓冲已投递 Buffer delivered",
            "prefront_buffer_delivered_total",
            r#" id="buffer-delivered""#,
            s.buffer_totals.delivered,
            false,
        ),
        (
            "转入死信 Buffer dead-lettered",
            "prefront_buffer_dead_lettered_total",
            r#" id="buffer-dead-lettered""#,
            s.buffer_totals.dead_lettered,
            false,
        ),
        (
            "投递重试 Delivery retries",
            "prefront_buffer_retries_total",
            r#" id="buffer-retries""#,
            s.buffer_totals.retried,
            false,
        ),
        (
            "缓冲拒收 Not accepted (buffer full/error)",
            "prefront_buffer_not_accepted_total",
            r#" id="buffer-not-accepted""#,
            s.buffer_totals.not_accepted,
            false,
        ),
        (
            "已传输 Bytes streamed (PACS/files)",
            "prefront_streamed_bytes_total",
            r#" id="streamed-bytes""#,
            s.streams.bytes,
            true,
        ),
    ];
    for (label, metric, extra, v, bytes) in rows {
        let _ = write!(o, "<tr><th>{label}</th>");
        let text = if bytes { human_bytes(v) } else { v.to_string() };
        metric_cell(&mut o, metric, extra, &v.to_string(), &text);
        o.push_str("</tr>\n");
    }
    match &s.certificates {
        CertificateView::NotAvailable => o.push_str(
            r#"<tr id="cert-expiry"><th>证书到期 Certificate expiry</th><td class="n placeholder">—</td></tr>
"#,
        ),
        CertificateView::Listeners(rows) if rows.is_empty() => o.push_str(
            r#"<tr id="cert-expiry"><th>证书到期 Certificate expiry</th><td class="n muted" title="两个监听都未配置 tls_cert Neither listener has a tls_cert (plain HTTP)">— 无证书 none</td></tr>
"#,
        ),
        CertificateView::Listeners(rows) => {
            for r in rows {
                cert_row(&mut o, r, s.now_ms);
            }
        }
    }
    o.push_str("</table>\n</section>\n");

    // Buffer.
    let pct = if s.buffer_max_bytes == 0 {
        0.0
    } else {
        s.buffer_used_bytes as f64 * 100.0 / s.buffer_max_bytes as f64
    };
    let bar_class = if pct >= 90.0 {
        "full"
    } else if pct >= 70.0 {
        "high"
    } else {
        "ok"
    };
    let _ = write!(
        o,
        r#"<section id="buffer" class="wide">
<h2>缓冲队列 Buffer <span class="muted">(云平台断开时暂存的调用 calls kept while the cloud is unreachable)</span></h2>
<table>
<tr><th>已用空间 Space used</th>"#
    );
    metric_cell(
        &mut o,
        "prefront_buffer_used_bytes",
        r#" id="buffer-used""#,
        &s.buffer_used_bytes.to_string(),
        &human_bytes(s.buffer_used_bytes),
    );
    o.push_str("<th>上限 Limit (buffer.max_bytes)</th>");
    metric_cell(
        &mut o,
        "prefront_buffer_max_bytes",
        r#" id="buffer-max""#,
        &s.buffer_max_bytes.to_string(),
        &human_bytes(s.buffer_max_bytes),
    );
    let _ = write!(
        o,
        r#"<td style="width:40%"><span class="muted">{pct:.1} %</span><div class="bar"><span class="{bar_class}" style="width:{w:.1}%"></span></div></td></tr>
</table>
"#,
        w = pct.min(100.0),
    );
    if let Some(e) = &s.buffer_unwritable {
        let _ = writeln!(
            o,
            r#"<p class="warn" id="buffer-unwritable">缓冲无法写入，缓冲调用被拒收 The buffer cannot write; buffered calls are refused (10003) until it recovers by itself. Check the disk (space, errors): {}</p>"#,
            escape(e)
        );
    }
    if let Some((salvaged, lost, to)) = &s.buffer_salvage {
        let _ = writeln!(
            o,
            r#"<p class="warn" id="buffer-salvage">缓冲存储损坏，已抢救 The buffer store was damaged at start: {salvaged} record(s) salvaged, {lost} lost; the old store is kept at {}</p>"#,
            escape(to)
        );
    }
    if let Some(e) = &s.buffer_error {
        let _ = writeln!(
            o,
            r#"<p class="warn" id="buffer-error">缓冲存储无法读取 The buffer store cannot be read: {}</p>"#,
            escape(e)
        );
    }
    o.push_str(
        r#"<table id="buffer-routes">
<tr><th>接口 Route</th><th class="n">等待 Waiting</th><th class="n">最早等待 Oldest waiting</th><th class="n">死信 Dead letters</th></tr>
"#,
    );
    if s.buffer_routes.is_empty() && s.buffer_error.is_none() {
        o.push_str(
            r#"<tr><td colspan="4" class="muted" id="buffer-empty">缓冲为空 Nothing waiting</td></tr>
"#,
        );
    }
    for r in &s.buffer_routes {
        // `data-route` is the series' label; people read the path and where it goes.
        let attr = format!(r#" data-route="{}""#, escape(&r.route));
        let shown = match r.route.strip_prefix(CLOUD_ROUTE_PREFIX) {
            Some(path) => format!(
                r#"{} <span class="muted">→ 云平台 cloud</span>"#,
                escape(path)
            ),
            None => escape(&r.route),
        };
        let _ = write!(o, r#"<tr><td class="mono">{shown}</td>"#);
        metric_cell(
            &mut o,
            "prefront_buffer_depth",
            &attr,
            &r.depth.to_string(),
            &r.depth.to_string(),
        );
        let age = r.oldest_age_s.unwrap_or(0);
        metric_cell(
            &mut o,
            "prefront_buffer_oldest_age_seconds",
            &attr,
            &age.to_string(),
            &r.oldest_age_s.map_or("—".to_string(), human_duration),
        );
        let dead_text = if r.dead > 0 {
            format!(r#"<span class="warn">{}</span>"#, r.dead)
        } else {
            "0".to_string()
        };
        metric_cell(
            &mut o,
            "prefront_buffer_dead_letters",
            &attr,
            &r.dead.to_string(),
            &dead_text,
        );
        o.push_str("</tr>\n");
    }
    o.push_str("</table>\n</section>\n");

    dead_letter_section(&mut o, s);

    // Recent errors.
    let _ = write!(
        o,
        r#"<section id="errors" class="wide">
<h2>最近错误 Recent errors <span class="muted">(最近 {keep} 条，最新在前 last {keep}, newest first; 不含患者信息 no patient data)</span></h2>
<table>
<tr><th>时间 Time</th><th>方向 Direction</th><th>接口 Route</th><th>结果 Outcome</th><th class="n">HTTP</th><th>请求编号 Request id</th></tr>
"#,
        keep = crate::telemetry::recent::KEEP,
    );
    if s.errors.is_empty() {
        o.push_str(
            r#"<tr><td colspan="6" class="muted" id="errors-empty">无 None</td></tr>
"#,
        );
    }
    for r in &s.errors {
        let e = &r.error;
        let (t, iso) = local_time(e.at_ms, r.utc_offset_s);
        let _ = writeln!(
            o,
            r#"<tr class="error" data-direction="{dir}" data-route="{route}" data-outcome="{outcome}" data-status="{status}" data-request-id="{rid}"><td class="mono"><time datetime="{iso}">{t}</time></td><td title="{dir}">{dir_label}</td><td class="mono">{route}</td><td class="mono">{outcome}</td><td class="n">{status}</td><td class="mono">{rid}</td></tr>"#,
            dir = escape(&e.direction),
            dir_label = direction_label(&e.direction),
            route = escape(&e.route),
            outcome = escape(&e.outcome),
            status = e.status,
            rid = escape(&e.request_id),
        );
    }
    o.push_str("</table>\n</section>\n</main>\n");
    let _ = write!(
        o,
        r#"<footer>{} · 时区 Time zone UTC{} · 数字与 /metrics 同源 The numbers are the ones /metrics exposes</footer>
</body>
</html>
"#,
        if refreshes {
            "每 5 秒自动刷新 Refreshes every 5 s"
        } else {
            "此视图不自动刷新 This view does not refresh itself"
        },
        offset_text(s.utc_offset_s)
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::status::{
        BufferRouteRow, DeadLetterRow, ErrorRow, HisLinkRow, PageView, Search, SearchRow,
    };
    use crate::outcome::Outcome;
    use crate::telemetry::metrics::CallTotals;
    use crate::telemetry::recent::RecentError;
    use crate::upstream::link::Observed;

    fn err(route: &str, outcome: &str) -> ErrorRow {
        ErrorRow {
            error: RecentError {
                at_ms: 1_740_809_592_000, // 2025-03-01 06:13:12 UTC
                direction: "his_to_cloud".into(),
                route: route.into(),
                outcome: outcome.into(),
                status: 200,
                request_id: "pf-1".into(),
            },
            utc_offset_s: 8 * 3600,
        }
    }

    #[test]
    fn an_empty_state_renders_a_whole_page() {
        let html = render(&StatusSnapshot::default());
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.trim_end().ends_with("</html>"));
        assert!(html.contains(r#"<meta http-equiv="refresh" content="5">"#));
        assert!(html.contains(r#"id="buffer-empty""#), "{html}");
        assert!(html.contains(r#"id="errors-empty""#));
        assert!(html.contains("No HIS route configured"));
        assert!(
            html.contains(r#"data-value="unknown""#),
            "no link state given"
        );
        assert!(html.contains("证书到期 Certificate expiry"));
        // Self-contained: no scripts, no external resources.
        for banned in ["<script", "src=", "href=", "@import", "url("] {
            assert!(!html.contains(banned), "{banned}");
        }
    }

    /// A disk that fails and a store salvaged at start are shown in red, with the reason and
    /// the figures; a healthy buffer shows neither.
    #[test]
    fn a_failing_disk_and_a_salvage_are_shown() {
        let healthy = render(&StatusSnapshot::default());
        assert!(!healthy.contains(r#"id="buffer-unwritable""#));
        assert!(!healthy.contains(r#"id="buffer-salvage""#));
        let s = StatusSnapshot {
            buffer_unwritable: Some("the buffer cannot write: No space left on device".into()),
            buffer_salvage: Some((10, 3, "/var/lib/prefront/buffer.corrupt-1".into())),
            ..StatusSnapshot::default()
        };
        let html = render(&s);
        assert!(
            html.contains(r#"<p class="warn" id="buffer-unwritable">"#)
                && html.contains("No space left on device"),
            "{html}"
        );
        assert!(
            html.contains(r#"<p class="warn" id="buffer-salvage">"#)
                && html.contains("10 record(s) salvaged, 3 lost")
                && html.contains("buffer.corrupt-1"),
            "{html}"
        );
    }

    #[test]
    fn values_from_config_and_calls_are_escaped() {
        let evil = r#"<script>alert("x")</script>&'"#;
        let s = StatusSnapshot {
            cloud_target: evil.into(),
            his_links: vec![HisLinkRow {
                target: evil.into(),
                routes: vec![(Some(evil.into()), "http")],
                link: Observed::default(),
            }],
            buffer_routes: vec![BufferRouteRow {
                route: evil.into(),
                depth: 1,
                oldest_age_s: Some(1),
                dead: 0,
            }],
            buffer_error: Some(evil.into()),
            buffer_unwritable: Some(evil.into()),
            buffer_salvage: Some((1, 2, evil.into())),
            errors: vec![ErrorRow {
                error: RecentError {
                    direction: evil.into(),
                    request_id: evil.into(),
                    ..err(evil, evil).error
                },
                utc_offset_s: 0,
            }],
            version: evil.into(),
            ..StatusSnapshot::default()
        };
        let html = render(&s);
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains(r#""x""#));
        assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"));
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }

    #[test]
    fn numbers_carry_their_metric_names() {
        let s = StatusSnapshot {
            cloud_link: Some(LinkState::Down),
            buffer_routes: vec![BufferRouteRow {
                route: "cloud:prefront/sendTipMessage/payment".into(),
                depth: 2,
                oldest_age_s: Some(192),
                dead: 3,
            }],
            buffer_used_bytes: 1536,
            buffer_max_bytes: 1 << 30,
            calls: CallTotals {
                ok: 7,
                queued: 2,
                failed: 1,
            },
            errors: vec![err("unknown", "unknown-path")],
            ..StatusSnapshot::default()
        };
        let html = render(&s);
        for cell in [
            r#"<td class="mono">prefront/sendTipMessage/payment <span class="muted">→ 云平台 cloud</span></td>"#,
            r#"data-metric="prefront_buffer_depth" data-route="cloud:prefront/sendTipMessage/payment" data-value="2">2<"#,
            r#"data-metric="prefront_buffer_oldest_age_seconds" data-route="cloud:prefront/sendTipMessage/payment" data-value="192">3 min 12 s<"#,
            r#"data-metric="prefront_buffer_dead_letters" data-route="cloud:prefront/sendTipMessage/payment" data-value="3">"#,
            r#"data-metric="prefront_buffer_used_bytes" id="buffer-used" data-value="1536">1.5 KiB<"#,
            r#"data-metric="prefront_buffer_max_bytes" id="buffer-max" data-value="1073741824">1.0 GiB<"#,
            r#"id="calls-ok" data-class="ok" data-value="7">7<"#,
            r#"id="calls-failed" data-class="failed" data-value="1">1<"#,
            r#"data-metric="prefront_cloud_link_state" data-value="down"><span class="state down">断开 Down<"#,
            r#"data-outcome="unknown-path""#,
            r#"<time datetime="2025-03-01T14:13:12+08:00">2025-03-01 14:13:12</time>"#,
        ] {
            assert!(html.contains(cell), "{cell}\n{html}");
        }
    }

    #[test]
    fn his_targets_show_their_link_as_calls_saw_it() {
        let at = 1_740_809_592_000; // 2025-03-01 06:13:12 UTC
        let s = StatusSnapshot {
            utc_offset_s: 8 * 3600,
            his_links: vec![
                HisLinkRow {
                    target: "10.1.1.10:8080".into(),
                    routes: vec![
                        (None, "http"),
                        (Some("hospital.interface.a".into()), "http"),
                        (Some("hospital.interface.b".into()), "soap"),
                        (Some("hospital.interface.c".into()), "http"),
                    ],
                    link: Observed {
                        state: Seen::Down,
                        since_ms: at,
                        last_error: Some(Outcome::UpstreamConnect),
                        last_error_ms: at,
                    },
                },
                HisLinkRow {
                    target: "10.1.1.11:80".into(),
                    routes: vec![(Some("hospital.interface.d".into()), "soap")],
                    link: Observed::default(),
                },
            ],
            ..StatusSnapshot::default()
        };
        let html = render(&s);
        for want in [
            r#"<tr class="his-link" data-target="10.1.1.10:8080"><td>HIS <span class="muted">http, soap</span>"#,
            r#"title="默认 Default ([his] url), hospital.interface.a, hospital.interface.b, hospital.interface.c">默认 Default ([his] url), hospital.interface.a, hospital.interface.b, +1 个 more</div>"#,
            r#"data-metric="prefront_his_link_state" data-target="10.1.1.10:8080" data-value="down"><span class="state down">断开 Down</span> <span class="muted">自 since <time datetime="2025-03-01T14:13:12+08:00">2025-03-01 14:13:12</time></span><div class="muted">错误 error <span class="mono" data-last-error="upstream-connect">upstream-connect</span>"#,
            r#"data-target="10.1.1.11:80" data-value="unknown"><span class="state unknown">未调用 Never called</span></td>"#,
        ] {
            assert!(html.contains(want), "{want}\n{html}");
        }
    }

    fn entry(rid: &str, events: &[(&str, Option<&str>)]) -> Entry {
        Entry {
            time: "2025-03-01T06:13:12Z".into(),
            request_id: rid.into(),
            direction: "his_to_cloud".into(),
            route: "prefront/sendTipMessage/phyReport".into(),
            peer: "127.0.0.1".into(),
            outcome: "delivered".into(),
            status: 200,
            latency_ms: 1.0,
            key: Some("refundNo=RF-1".into()),
            message_id: None,
            id: Some(7),
            attempts: Some(4),
            delivered_at: None,
            answer_code: Some("10001".into()),
            history: events
                .iter()
                .map(|(e, d)| crate::trail::query::Step {
                    time: "2025-03-01T06:13:12Z".into(),
                    event: (*e).into(),
                    detail: d.map(str::to_string),
                })
                .collect(),
        }
    }

    fn dead(id: u64, route: &str) -> DeadLetterRow {
        DeadLetterRow {
            route: route.into(),
            id,
            request_id: format!("pf-{id}"),
            age_s: 192,
            attempts: 3,
            reason: "cloud answered HTTP 400".into(),
        }
    }

    #[test]
    fn a_search_shows_each_call_with_its_history() {
        let e = entry(
            "pf-<1>",
            &[
                ("received", None),
                ("queued", None),
                ("retry", Some("upstream-connect")),
                ("retry", Some("upstream-connect")),
                ("retry", Some("upstream-connect")),
                ("delivered", Some("10001")),
            ],
        );
        let html = render(&StatusSnapshot {
            page: PageView {
                search: Some(Search {
                    q: "pf-<1>".into(),
                    by: Some("request_id"),
                    entries: vec![SearchRow {
                        entry: e,
                        at_ms: 1_740_809_592_000,
                        utc_offset_s: 8 * 3600,
                    }],
                    problem: None,
                }),
                ..PageView::default()
            },
            ..StatusSnapshot::default()
        });
        for want in [
            r#"<form method="get" action="/status" id="search-form"><input type="search" name="q" id="q" value="pf-&lt;1&gt;""#,
            r#"<p class="muted" id="search-found" data-by="request_id">1 条 entries 按请求编号 by request id</p>"#,
            r#"<tr class="trail-entry" data-request-id="pf-&lt;1&gt;" data-outcome="delivered" data-id="7"><td class="mono"><time datetime="2025-03-01T14:13:12+08:00">2025-03-01 14:13:12</time></td>"#,
            r#">received</span> → <span title="2025-03-01T06:13:12Z">queued</span> → <span title="2025-03-01T06:13:12Z">retry ×3</span> → <span title="2025-03-01T06:13:12Z">delivered (10001)</span></td>"#,
            r#"id="refresh-paused""#,
            "此视图不自动刷新 This view does not refresh itself",
        ] {
            assert!(html.contains(want), "{want}\n{html}");
        }
        assert!(
            !html.contains("http-equiv=\"refresh\""),
            "search results stay put"
        );
        let none = render(&StatusSnapshot {
            page: PageView {
                search: Some(Search {
                    q: "nothing".into(),
                    ..Search::default()
                }),
                ..PageView::default()
            },
            ..StatusSnapshot::default()
        });
        assert!(none.contains(r#"id="search-none""#), "{none}");
    }

    #[test]
    fn dead_letters_have_retry_and_drop_buttons_with_the_form_key() {
        let route = "cloud:prefront/sendTipMessage/payment";
        let base = StatusSnapshot {
            buffer_routes: vec![BufferRouteRow {
                route: route.into(),
                depth: 0,
                oldest_age_s: None,
                dead: 25,
            }],
            page: PageView {
                dead_letters: vec![dead(3, route), dead(9, route)],
                form_key: Some("k3y".into()),
                ..PageView::default()
            },
            ..StatusSnapshot::default()
        };
        let html = render(&base);
        for want in [
            r#"<form method="post" id="dead-form"><input type="hidden" name="form_key" value="k3y"><button type="submit" disabled hidden aria-hidden="true"></button>"#,
            r#"<tr class="dead-letter" data-id="3" data-route="cloud:prefront/sendTipMessage/payment" data-request-id="pf-3"><td class="mono">prefront/sendTipMessage/payment</td><td class="n mono">3</td><td class="mono">pf-3</td><td class="n">3 min 12 s</td><td class="n">3</td><td>cloud answered HTTP 400</td>"#,
            r#"<button type="submit" formaction="/api/queue/messages/9/retry" id="retry-9">重试 Retry</button> <button type="submit" formaction="/api/queue/messages/9/drop" id="drop-9" class="danger">删除 Drop</button>"#,
            "还有 23 条 23 more",
        ] {
            assert!(html.contains(want), "{want}\n{html}");
        }
        assert!(!html.contains(r#"name="token""#), "no token configured");
        assert!(
            html.contains(r#"<meta http-equiv="refresh" content="5">"#),
            "a click needs no typing: the page keeps refreshing"
        );

        let with_token = render(&StatusSnapshot {
            page: PageView {
                token_required: true,
                notice: Some(Notice::Retried(3)),
                ..base.page.clone()
            },
            ..base.clone()
        });
        assert!(with_token.contains(r#"<input type="password" name="token" id="token" required"#));
        assert!(with_token.contains(r#"<p id="notice" class="notice ok" data-notice="retried-3">已重试 Retried: 消息 message 3"#));
        assert!(
            !with_token.contains("http-equiv=\"refresh\""),
            "the token is being typed"
        );

        let no_key = render(&StatusSnapshot {
            page: PageView {
                form_key: None,
                ..base.page.clone()
            },
            ..base
        });
        assert!(no_key.contains(r#"id="retry-3" disabled>"#), "{no_key}");
        assert!(!no_key.contains("<form method=\"post\""));
    }

    #[test]
    fn certificates_show_their_expiry_and_days_left() {
        let now_ms = 1_740_809_592_000; // 2025-03-01 06:13:12 UTC
        let now_s = 1_740_809_592;
        let row = |listener, not_after_s| CertRow {
            listener,
            not_after_s,
            utc_offset_s: 8 * 3600,
        };
        let html = render(&StatusSnapshot {
            now_ms,
            certificates: CertificateView::Listeners(vec![
                row("cloud", Ok(now_s + 89 * 86_400 + 60)),
                row("his", Ok(now_s + 10 * 86_400 + 60)),
            ]),
            ..StatusSnapshot::default()
        });
        assert!(
            html.contains(r#"<td class="n" data-metric="prefront_tls_cert_expiry_seconds" data-listener="cloud" data-value="7689660" data-days-left="89" data-not-after="2025-05-29T14:14:12+08:00"><time datetime="2025-05-29T14:14:12+08:00">2025-05-29</time> · 剩 89 天 89 days left</td>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<td class="n soon" data-metric="prefront_tls_cert_expiry_seconds" data-listener="his" data-value="864060" data-days-left="10""#)
        );
        let html = render(&StatusSnapshot {
            now_ms,
            certificates: CertificateView::Listeners(vec![
                row("cloud", Ok(now_s - 3 * 86_400)),
                row("his", Err("<cert.pem>: no PEM certificate".into())),
            ]),
            ..StatusSnapshot::default()
        });
        assert!(html.contains("已过期 expired 3 天 days ago"), "{html}");
        assert!(
            html.contains(r#"title="&lt;cert.pem&gt;: no PEM certificate">无法读取 cannot read"#)
        );
        let html = render(&StatusSnapshot {
            certificates: CertificateView::Listeners(Vec::new()),
            ..StatusSnapshot::default()
        });
        assert!(html.contains("— 无证书 none"));
    }

    #[test]
    fn durations_bytes_and_times_read_like_people_write_them() {
        assert_eq!(human_duration(0), "0 s");
        assert_eq!(human_duration(45), "45 s");
        assert_eq!(human_duration(192), "3 min 12 s");
        assert_eq!(human_duration(3600 * 5 + 180 + 9), "5 h 3 min");
        assert_eq!(human_duration(86_400 * 2 + 3600 * 4 + 5), "2 d 4 h");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1 << 30), "1.0 GiB");
        assert_eq!(
            local_time(0, 0),
            (
                "1970-01-01 00:00:00".to_string(),
                "1970-01-01T00:00:00+00:00".to_string()
            )
        );
        assert_eq!(
            local_time(1_709_164_800_000, 8 * 3600).0,
            "2024-02-29 08:00:00",
            "a leap day"
        );
        assert_eq!(
            local_time(1_740_809_592_000, -(3 * 3600 + 1800)).1,
            "2025-03-01T02:43:12-03:30"
        );
    }
}
