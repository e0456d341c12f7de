//! `GET /status` on the admin listener: one self-contained HTML page for the hospital's IT staff
//! (Chinese and English side by side, no scripts, no external assets, refreshes every 5 s).
//!
//! `gather` reads a `StatusSnapshot` from the gateway's state and the process-wide counters —
//! the same sources `/metrics` reads — and `render` turns it into HTML without touching anything
//! else, so the page can be tested on a snapshot made by hand. Every number carries a
//! `data-metric` attribute naming the `/metrics` series it shows (and `data-value` with the raw
//! number), so a test or a script can read the page as well as a person can.
//!
//! The snapshot and `gather` live here; the HTML is `page.rs`; the machine's time zone and the
//! times people read are `zone.rs`.

mod actions;
mod metrics;
mod page;
mod view;
mod zone;

use std::time::Duration;

use crate::buffer::events::Totals as BufferTotals;
use crate::config::HisTarget;
use crate::listener::State;
use crate::telemetry::metrics::CallTotals;
use crate::telemetry::recent::RecentError;
use crate::upstream::link::{LinkState, Observed};

pub use metrics::render as render_metrics;
pub use page::{escape, human_bytes, human_duration, render};
pub use view::{gather_page, DeadLetterRow, Notice, PageView, Search, SearchRow};
pub use zone::local_time;
use zone::{local_zone, unix_s, Zone};

/// Everything the page shows, read at one moment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatusSnapshot {
    pub version: String,
    pub uptime: Duration,
    /// Unix milliseconds when the snapshot was taken.
    pub now_ms: u64,
    /// The local time zone's offset from UTC at `now_ms`, in seconds.
    pub utc_offset_s: i32,
    /// `host[:port]` of `cloud.base_url`.
    pub cloud_target: String,
    /// `None` only in a snapshot made by hand without a link.
    pub cloud_link: Option<LinkState>,
    /// The configured HIS targets with their link state (the `[his] url` default's first, then
    /// those of `[[his.route]]` by name).
    pub his_links: Vec<HisLinkRow>,
    /// Per route with calls waiting or dead letters; empty when the store did not answer.
    pub buffer_routes: Vec<BufferRouteRow>,
    /// Why the buffer store did not answer, if it did not.
    pub buffer_error: Option<String>,
    /// Why the buffer cannot write (disk full, I/O error), while it cannot.
    pub buffer_unwritable: Option<String>,
    /// A start-up salvage of a damaged store: salvaged, lost, where the old store went.
    pub buffer_salvage: Option<(u64, u64, String)>,
    pub buffer_used_bytes: u64,
    pub buffer_max_bytes: u64,
    pub buffer_totals: BufferTotals,
    /// Records a damaged store was salvaged into a new one at start, and those lost.
    pub buffer_salvaged: u64,
    pub buffer_lost: u64,
    pub calls: CallTotals,
    /// PACS images and report files streamed since start.
    pub streams: crate::pacs::StreamTotals,
    /// Newest first; failures only.
    pub errors: Vec<ErrorRow>,
    pub certificates: CertificateView,
    /// What only the page shows (search, dead letters, forms); empty for `/metrics`.
    pub page: PageView,
    /// This box's VRRP role (MASTER, BACKUP, FAULT) from `[admin] vrrp_state_file`, when set and
    /// the file exists.
    pub vrrp_role: Option<String>,
}

/// One HIS target (`host:port`) and what the calls through it have shown, as
/// `prefront_his_link_state{target=…}` (`{hospital=…,target=…}`) shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HisLinkRow {
    /// `host:port`: the metric's `target` label.
    pub target: String,
    /// The `[[hospital]]` whose routes these are (the metric's `hospital` label); `None` for
    /// `[his]` and `[[his.route]]`.
    pub hospital: Option<String>,
    /// The routes that call it: `None` for the `[his] url` default (or the hospital's `his`),
    /// else the interface name; each with its kind (`http` or `soap`).
    pub routes: Vec<(Option<String>, &'static str)>,
    pub link: Observed,
}

/// One buffer queue, as `prefront_buffer_*{route=…}` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferRouteRow {
    pub route: String,
    pub depth: u64,
    /// Age of the oldest waiting call in whole seconds; `None` when nothing waits.
    pub oldest_age_s: Option<u64>,
    pub dead: u64,
}

/// One recent failure with the local time zone's offset at its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorRow {
    pub error: RecentError,
    pub utc_offset_s: i32,
}

/// The certificate expiry rows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CertificateView {
    /// Not read (a snapshot made by hand): one row with "—".
    #[default]
    NotAvailable,
    /// One row per listener with a certificate (`tls_cert`); none: all speak plain HTTP.
    Listeners(Vec<CertRow>),
}

/// A listener's certificate expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRow {
    /// `cloud`, `his` or `files`: the `listener` label of `prefront_tls_cert_expiry_seconds`.
    pub listener: &'static str,
    /// `notAfter` of the certificate file's first certificate, in Unix seconds, or why it could
    /// not be read.
    pub not_after_s: Result<i64, String>,
    /// The local time zone's offset at `not_after_s`.
    pub utc_offset_s: i32,
}

/// Reads `tls_cert` of each listener that has one, as `/metrics` does for
/// `prefront_tls_cert_expiry_seconds`. Blocks (file reads).
fn certificates(state: &State, zone: &Zone) -> CertificateView {
    let c = &state.config;
    let rows = [
        ("cloud", Some(&c.cloud_listener)),
        ("his", Some(&c.his_listener)),
        ("files", c.files_listener.as_ref()),
    ]
    .into_iter()
    .filter_map(|(listener, l)| {
        let tls = l?.tls.as_ref()?;
        let not_after_s = crate::certinfo::cert_not_after(&tls.cert).map(|t| {
            match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
            }
        });
        Some(CertRow {
            listener,
            utc_offset_s: not_after_s.as_ref().map_or(0, |t| zone.offset_at(*t)),
            not_after_s,
        })
    })
    .collect();
    CertificateView::Listeners(rows)
}

/// Reads the snapshot. Blocks on the buffer store (disk): call it off the async runtime.
pub fn gather(state: &State) -> StatusSnapshot {
    let now_ms = crate::buffer::now_ms();
    let zone = local_zone();
    let (buffer_routes, buffer_used_bytes, buffer_error) = match state.outbox.store().stats() {
        Ok((routes, used)) => (
            routes
                .into_iter()
                .map(|s| BufferRouteRow {
                    // The same age `/metrics` computes: whole seconds since the oldest arrived.
                    oldest_age_s: s
                        .oldest_enqueued_at_ms
                        .map(|t| now_ms.saturating_sub(t) / 1000),
                    route: s.route,
                    depth: s.depth,
                    dead: s.dead,
                })
                .collect(),
            used,
            None,
        ),
        Err(e) => (Vec::new(), 0, Some(e.to_string())),
    };
    let health = state.outbox.store().health();
    let buffer_unwritable = (!health.writable).then(|| {
        health
            .reason
            .clone()
            .unwrap_or_else(|| "the buffer cannot write".into())
    });
    let buffer_salvage = health
        .moved_to
        .clone()
        .map(|to| (health.salvaged, health.lost, to));
    let his_links = crate::upstream::his::targets(&state.config.his)
        .into_iter()
        .map(|row| HisLinkRow {
            link: state.his.link(&row.target),
            hospital: row.hospital.map(str::to_string),
            routes: row
                .routes
                .into_iter()
                .map(|(name, r)| {
                    let kind = match r.target {
                        HisTarget::Http { .. } => "http",
                        HisTarget::Soap(_) => "soap",
                    };
                    (name, kind)
                })
                .collect(),
            target: row.target,
        })
        .collect();
    StatusSnapshot {
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime: crate::telemetry::metrics::uptime(),
        now_ms,
        utc_offset_s: zone.offset_at(unix_s(now_ms)),
        cloud_target: host_of(state.config.cloud.base_url.as_str()),
        cloud_link: Some(state.cloud.link.state()),
        his_links,
        buffer_routes,
        buffer_error,
        buffer_unwritable,
        buffer_salvage,
        buffer_used_bytes,
        buffer_max_bytes: state.config.buffer.max_bytes,
        buffer_totals: crate::buffer::events::totals(),
        calls: crate::telemetry::metrics::call_totals(),
        buffer_salvaged: health.salvaged,
        buffer_lost: health.lost,
        streams: crate::pacs::totals(),
        errors: crate::telemetry::recent::snapshot()
            .into_iter()
            .map(|e| ErrorRow {
                utc_offset_s: zone.offset_at(unix_s(e.at_ms)),
                error: e,
            })
            .collect(),
        certificates: certificates(state, zone),
        page: PageView::default(),
        vrrp_role: state
            .config
            .admin
            .as_ref()
            .and_then(|a| a.vrrp_state_file.as_deref())
            .and_then(read_vrrp_role),
    }
}

/// The role keepalived's notify hook wrote: the first line of at most 64 bytes, printable ASCII
/// only; `None` when the file does not exist or cannot be read.
fn read_vrrp_role(path: &std::path::Path) -> Option<String> {
    use std::io::Read;
    let mut buf = Vec::with_capacity(64);
    std::fs::File::open(path)
        .ok()?
        .take(64)
        .read_to_end(&mut buf)
        .ok()?;
    let line = buf.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let role: String = line
        .iter()
        .filter(|b| b.is_ascii_graphic())
        .map(|&b| b as char)
        .collect();
    Some(if role.is_empty() {
        "?".to_string()
    } else {
        role
    })
}

/// `host[:port]` of a URL (a template with `{name}` in its path is fine); `?` if none.
fn host_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => "?".to_string(),
        },
        Err(_) => "?".to_string(),
    }
}

#[cfg(test)]
mod vrrp_tests {
    use super::read_vrrp_role;

    #[test]
    fn the_role_file_is_read_bounded_and_missing_means_none() {
        let dir = std::env::temp_dir().join(format!("prefront-vrrp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("vrrp-state");
        assert_eq!(read_vrrp_role(&p), None);
        std::fs::write(&p, "BACKUP\n").unwrap();
        assert_eq!(read_vrrp_role(&p).as_deref(), Some("BACKUP"));
        std::fs::write(&p, format!("MASTER{}\nmore", "x".repeat(100))).unwrap();
        assert_eq!(read_vrrp_role(&p).unwrap().len(), 64);
        std::fs::write(&p, "<b>\n").unwrap();
        assert_eq!(read_vrrp_role(&p).as_deref(), Some("<b>"));
        std::fs::write(&p, "").unwrap();
        assert_eq!(read_vrrp_role(&p).as_deref(), Some("?"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
