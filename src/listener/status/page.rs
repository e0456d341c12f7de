//! The `/status` page's HTML: a pure function of a `StatusSnapshot`, so it can be tested on a
//! snapshot made by hand.

use std::fmt::Write as _;

use super::actions::{dead_letter_section, notice, search_section};
use super::zone::{local_time, offset_text, unix_s};
use super::{CertRow, CertificateView, HisLinkRow, StatusSnapshot};
use crate::buffer::forwarder::CLOUD_ROUTE_PREFIX;
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

pub(super) fn direction_label(d: &str) -> String {
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
    let name = |n: &Option<String>| match (n, &r.hospital) {
        (Some(n), _) => n.clone(),
        (None, None) => "默认 Default ([his] url)".to_string(),
        (None, Some(h)) => format!("默认 Default (hospital {h} his)"),
    };
    // A `[[hospital]]`'s own routes: the hospital in the row and in its attributes.
    let (hospital_attr, hospital_cell) = match &r.hospital {
        Some(h) => (
            format!(r#" data-hospital="{}""#, escape(h)),
            format!(
                r#" <span class="hospital">医院 Hospital <b class="mono">{}</b></span>"#,
                escape(h)
            ),
        ),
        None => (String::new(), String::new()),
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
        r#"<tr class="his-link"{hospital_attr} data-target="{target}"><td>HIS{hospital_cell} <span class="muted">{kinds}</span><div class="mono routes" title="{title}">{names}</div></td><td class="mono">{target}</td><td data-metric="prefront_his_link_state"{hospital_attr} data-target="{target}" data-value="{state}"><span class="state {state}">{label}</span>{detail}</td></tr>"#,
        target = escape(&r.target),
        kinds = kinds.join(", "),
        title = escape(&all.join(", ")),
        names = shown.join(", "),
        label = his_link_label(link.state),
    );
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
{vrrp}{paused}</header>
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
        vrrp = match &s.vrrp_role {
            Some(r) => format!(
                "<span class=\"meta\">双机热备角色 VRRP role <b id=\"vrrp-role\">{}</b></span>\n",
                escape(r)
            ),
            None => String::new(),
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
#[path = "page_tests.rs"]
mod tests;
