//! `prefront doctor`: checks an installation in one command — the configuration, certificates,
//! listen ports, the cloud (DNS, TLS, clock), every HIS route, the buffer directory and the PACS —
//! and says for each what is wrong and how to fix it.
//!
//! Every check is bounded by `CHECK_TIMEOUT`; independent checks run at the same time. Nothing
//! here opens the buffer store (a running gateway holds its lock) or prints key material.
//!
//! This file holds the report and runs the checks; each concern has its file (`certs`, `ports`,
//! `cloud`, `his`, `buffer`, `pacs`), and `net` is what the network checks share: names are
//! resolved by the gateway's own system resolver (`upstream::dns`), never a public one.

mod buffer;
mod certs;
mod cloud;
mod his;
mod net;
mod pacs;
mod ports;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, ConfigError, Loaded};
use buffer::buffer_checks;
use certs::cert_checks;
use cloud::cloud_checks;
use his::his_checks;
use pacs::pacs_checks;
use ports::port_checks;

/// The longest any one check waits on the network.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    /// The line's first column: English for scripts and `grep`, Chinese for the reader.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS 通过",
            Status::Warn => "WARN 注意",
            Status::Fail => "FAIL 失败",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub status: Status,
    /// What was checked, e.g. `port his_listener.listen`.
    pub what: String,
    /// What was found and, when it is not a pass, how to fix it.
    pub detail: String,
}

impl Check {
    fn new(status: Status, what: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            status,
            what: what.into(),
            detail: detail.into(),
        }
    }

    fn pass(what: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(Status::Pass, what, detail)
    }

    fn warn(what: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(Status::Warn, what, detail)
    }

    fn fail(what: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(Status::Fail, what, detail)
    }
}

/// Every check's line, in a fixed order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub lines: Vec<Check>,
}

impl Report {
    /// Whether any check failed (the command then exits 1).
    pub fn failed(&self) -> bool {
        self.lines.iter().any(|c| c.status == Status::Fail)
    }

    pub fn count(&self, status: Status) -> usize {
        self.lines.iter().filter(|c| c.status == status).count()
    }
}

/// Widest `what` column; longer labels push their line's detail to the right.
const WHAT_WIDTH: usize = 44;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .lines
            .iter()
            .map(|c| c.what.chars().count())
            .max()
            .unwrap_or(0)
            .min(WHAT_WIDTH);
        for c in &self.lines {
            let detail: String = c
                .detail
                .chars()
                .map(|ch| if ch.is_control() { ' ' } else { ch })
                .collect();
            writeln!(f, "{}  {:<width$}  — {detail}", c.status.label(), c.what)?;
        }
        writeln!(
            f,
            "doctor: {} passed, {} warnings, {} failed",
            self.count(Status::Pass),
            self.count(Status::Warn),
            self.count(Status::Fail)
        )
    }
}

/// Checks the installation described by the configuration file at `config_path`.
pub async fn run(config_path: &Path) -> Report {
    run_loaded(
        &config_path.display().to_string(),
        Config::from_file(config_path),
    )
    .await
}

/// `run` for the `prefront` command: a configuration already looked up the way `check` does it
/// (`source` names it in the report), on a runtime of its own.
pub fn run_blocking(source: &str, loaded: Result<Loaded, ConfigError>) -> Report {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return Report {
                lines: vec![Check::fail(
                    "doctor",
                    format!("cannot start the async runtime: {e}"),
                )],
            }
        }
    };
    let report = runtime.block_on(run_loaded(source, loaded));
    // A name lookup stuck in the system resolver must not hold the command up.
    runtime.shutdown_timeout(Duration::from_millis(200));
    report
}

/// Checks the installation a loaded (or refused) configuration describes.
pub async fn run_loaded(source: &str, loaded: Result<Loaded, ConfigError>) -> Report {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut lines = Vec::new();
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            lines.push(Check::fail(
                "config",
                format!(
                    "{source}: {} problem(s); fix them first (nothing else was checked)",
                    e.problems.len()
                ),
            ));
            for p in &e.problems {
                lines.push(Check::fail("config", p.to_string()));
            }
            for w in &e.warnings {
                lines.push(Check::warn("config", w.to_string()));
            }
            return Report { lines };
        }
    };
    lines.push(Check::pass("config", format!("{source}: valid")));
    for w in &loaded.warnings {
        lines.push(Check::warn("config", w.to_string()));
    }
    let config = Arc::new(loaded.config);

    let blocking = |f: fn(&Config) -> Vec<Check>| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || f(&config))
    };
    let certs = blocking(cert_checks);
    let ports = blocking(port_checks);
    let buffer = blocking(|c| buffer_checks(&c.buffer));
    let startup = blocking(startup_check);
    let cloud = {
        let config = config.clone();
        tokio::spawn(async move { cloud_checks(&config.cloud).await })
    };
    let his = {
        let config = config.clone();
        tokio::spawn(async move { his_checks(&config).await })
    };
    let pacs = {
        let config = config.clone();
        tokio::spawn(async move { pacs_checks(&config).await })
    };
    let groups = [
        ("certificates", certs.await),
        ("ports", ports.await),
        ("cloud", cloud.await),
        ("HIS", his.await),
        ("buffer", buffer.await),
        ("PACS", pacs.await),
    ];
    for (name, group) in groups {
        match group {
            Ok(checks) => lines.extend(checks),
            Err(e) => lines.push(Check::fail(name, format!("the check itself failed: {e}"))),
        }
    }
    // Whatever `prefront check` refuses must not pass here; most of it has a line of its own
    // already (certificates, trust roots), so its error is added only when nothing failed.
    match startup.await {
        Ok(extra) => {
            if !lines.iter().any(|c| c.status == Status::Fail) {
                lines.extend(extra);
            }
        }
        Err(e) => lines.push(Check::fail(
            "start-up check",
            format!("the check itself failed: {e}"),
        )),
    }
    Report { lines }
}

/// What a start would refuse (the same as `prefront check`), as a line only when it fails.
fn startup_check(config: &Config) -> Vec<Check> {
    match crate::preflight(config) {
        Ok(()) => Vec::new(),
        Err(e) => vec![Check::fail(
            "start-up check",
            format!("{e} (the gateway would not start; `prefront check` says the same)"),
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_are_aligned_and_summarised() {
        let r = Report {
            lines: vec![
                Check::pass("a", "fine"),
                Check::fail("longer what", "broken\nhere"),
            ],
        };
        let text = r.to_string();
        assert!(text.contains("PASS 通过  a            — fine\n"), "{text}");
        assert!(
            text.contains("FAIL 失败  longer what  — broken here\n"),
            "{text}"
        );
        assert!(
            text.ends_with("doctor: 1 passed, 0 warnings, 1 failed\n"),
            "{text}"
        );
        assert!(r.failed());
    }
}
