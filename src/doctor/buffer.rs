//! The buffer directory: writable, enough free space, and stores a salvage moved aside.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::Check;
use crate::config::BufferConfig;

/// Less free space than this under the buffer is a failure.
const MIN_FREE_BYTES: u64 = 64 << 20;

pub(super) fn buffer_checks(b: &BufferConfig) -> Vec<Check> {
    const WRITABLE: &str = "buffer directory (buffer.path)";
    const SPACE: &str = "buffer disk space";
    let dir = &b.path;
    // The directories this check creates, removed again afterwards: the gateway creates its
    // own at start, with its own user's rights.
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut p: Option<&Path> = Some(dir);
    while let Some(q) = p.filter(|q| !q.as_os_str().is_empty() && !q.exists()) {
        missing.push(q.to_path_buf());
        p = q.parent();
    }
    let mut out = Vec::new();
    let created = std::fs::create_dir_all(dir);
    let writable = created.and_then(|()| probe_write(dir));
    match writable {
        Err(e) => {
            out.push(Check::fail(
                WRITABLE,
                format!("{}: {}", dir.display(), write_advice(&e)),
            ));
        }
        Ok(()) => {
            let note = if missing.is_empty() {
                ""
            } else {
                " (it did not exist: created for the test and removed again; the gateway \
                 creates it at start)"
            };
            out.push(Check::pass(
                WRITABLE,
                format!("{}: write + fsync OK{note}", dir.display()),
            ));
            out.push(match fs2::available_space(dir) {
                Err(e) => Check::warn(SPACE, format!("cannot read the free space: {e}")),
                Ok(free) => space_verdict(SPACE, free, b.max_bytes),
            });
        }
    }
    for d in &missing {
        // Only empty directories go; anything else is left alone.
        let _ = std::fs::remove_dir(d);
    }
    out.extend(salvage_checks(dir));
    out
}

/// Damaged stores the gateway moved aside at start, and what their salvage saved and lost.
fn salvage_checks(dir: &Path) -> Vec<Check> {
    const WHAT: &str = "buffer store damage";
    crate::buffer::salvage::moved_aside(dir)
        .into_iter()
        .map(|(aside, report)| match report {
            Some(r) if r.lost > 0 => Check::fail(
                WHAT,
                format!(
                    "{}: damaged ({}); {} record(s) salvaged, {} acknowledged record(s) lost;                      check the disk, then remove the directory once it is no longer needed",
                    aside.display(),
                    r.reason,
                    r.salvaged,
                    r.lost
                ),
            ),
            Some(r) => Check::warn(
                WHAT,
                format!(
                    "{}: damaged ({}); all {} record(s) salvaged, none lost; check the disk,                      then remove the directory",
                    aside.display(),
                    r.reason,
                    r.salvaged
                ),
            ),
            None => Check::warn(
                WHAT,
                format!(
                    "{}: a damaged store moved aside without a salvage report;                      `prefront queue salvage {}` puts its intact records back",
                    aside.display(),
                    aside.display()
                ),
            ),
        })
        .collect()
}

/// Writes, syncs and removes a small file in `dir`.
fn probe_write(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".prefront-doctor-{}", std::process::id()));
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| {
            f.write_all(&[0u8; 4096])?;
            f.sync_all()
        });
    let removed = std::fs::remove_file(&probe);
    result.and(removed)
}

fn write_advice(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::PermissionDenied => format!(
            "{e}: the user the gateway runs as must be able to write there (chown -R that user); \
             run doctor as that user to test its rights"
        ),
        K::NotADirectory => {
            format!("{e}: a part of the path is a file, not a directory: fix buffer.path")
        }
        K::ReadOnlyFilesystem => format!("{e}: the file system is mounted read-only"),
        K::StorageFull => format!("{e}: the disk is full"),
        _ => format!("cannot write there: {e}"),
    }
}

fn space_verdict(what: &str, free: u64, max: u64) -> Check {
    let text = format!(
        "{} free, buffer.max_bytes is {}",
        human_bytes(free),
        human_bytes(max)
    );
    if free < MIN_FREE_BYTES {
        Check::fail(
            what,
            format!("{text}: under 64 MiB free, calls cannot be buffered; free disk space"),
        )
    } else if free < max {
        Check::warn(
            what,
            format!(
                "{text}: the disk would fill before the buffer's quota; free space or lower \
                 buffer.max_bytes"
            ),
        )
    } else {
        Check::pass(what, text)
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    /// A moved-aside store is reported with what its salvage saved and lost: a FAIL when records
    /// were lost, a WARN otherwise, and a WARN naming `queue salvage` when it has no report.
    #[test]
    fn moved_aside_stores_are_reported() {
        let dir =
            std::env::temp_dir().join(format!("prefront-doctor-aside-{}", std::process::id()));
        let buffer = dir.join("buffer");
        let report = |salvaged, lost| crate::buffer::salvage::Report {
            reason: "checksum mismatch".into(),
            salvaged,
            lost,
            ..Default::default()
        };
        for (name, r) in [
            ("buffer.corrupt-100", Some(report(6, 0))),
            ("buffer.corrupt-200", Some(report(7, 3))),
            ("buffer.corrupt-300", None),
        ] {
            let aside = dir.join(name);
            std::fs::create_dir_all(&aside).expect("mkdir");
            if let Some(r) = r {
                std::fs::write(
                    aside.join(crate::buffer::salvage::REPORT_FILE),
                    serde_json::to_vec(&r).expect("json"),
                )
                .expect("write");
            }
        }
        let checks = salvage_checks(&buffer);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(checks.len(), 3, "{checks:?}");
        // Newest first.
        assert!(
            checks[0].status == Status::Warn && checks[0].detail.contains("queue salvage"),
            "{checks:?}"
        );
        assert!(
            checks[1].status == Status::Fail
                && checks[1].detail.contains("3 acknowledged record(s) lost")
        );
        assert!(
            checks[2].status == Status::Warn
                && checks[2].detail.contains("all 6 record(s) salvaged")
        );
    }

    #[test]
    fn sizes_read_like_df() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1 << 30), "1.0 GiB");
        assert_eq!(human_bytes(3 * (1 << 20) / 2), "1.5 MiB");
    }
}
