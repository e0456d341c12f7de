//! The operator's part of `/status`: what the last button did, the trail search and the dead
//! letters with their retry and drop buttons (HTML forms posting to the admin API).

use std::fmt::Write as _;

use super::page::{direction_label, escape, human_duration};
use super::view::{DEAD_PER_ROUTE, MAX_Q};
use super::zone::local_time;
use super::{DeadLetterRow, Notice, StatusSnapshot};
use crate::buffer::forwarder::CLOUD_ROUTE_PREFIX;
use crate::trail::query::Entry;

/// What the last button did: green when something changed, red when nothing did.
pub(super) fn notice(o: &mut String, n: Notice) {
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
pub(super) fn history(e: &Entry) -> String {
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
pub(super) fn search_section(o: &mut String, s: &StatusSnapshot) {
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
pub(super) fn dead_letter_section(o: &mut String, s: &StatusSnapshot) {
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
