//! `[buffer]`: where and for how long calls wait while the cloud is unreachable.

use std::time::Duration;

use super::values::*;
use super::{Checker, Step};
use crate::config::raw;
use crate::config::*;

pub(super) fn buffer(c: &mut Checker<'_>, rb: raw::RawBuffer) -> BufferConfig {
    BufferConfig {
        path: c.resolve(rb.path.as_deref().unwrap_or("data/buffer")),
        max_bytes: size(
            c,
            &[Step::Key("buffer"), Step::Key("max_bytes")],
            rb.max_bytes.as_deref(),
            1 << 30,
        ),
        ttl: duration(
            c,
            &[Step::Key("buffer"), Step::Key("ttl")],
            rb.ttl.as_deref(),
            Duration::from_secs(7 * 86400),
        ),
        max_attempts: match rb.max_attempts {
            Some(0) => {
                c.problem(
                    &[Step::Key("buffer"), Step::Key("max_attempts")],
                    "must be at least 1",
                );
                1
            }
            Some(n) => n,
            None => 1000,
        },
        result_ttl: duration(
            c,
            &[Step::Key("buffer"), Step::Key("result_ttl")],
            rb.result_ttl.as_deref(),
            Duration::from_secs(86400),
        ),
        dead_ttl: duration(
            c,
            &[Step::Key("buffer"), Step::Key("dead_ttl")],
            rb.dead_ttl.as_deref(),
            Duration::from_secs(30 * 86400),
        ),
        retry_min: duration(
            c,
            &[Step::Key("buffer"), Step::Key("retry_min")],
            rb.retry_min.as_deref(),
            Duration::from_secs(1),
        ),
        retry_max: duration(
            c,
            &[Step::Key("buffer"), Step::Key("retry_max")],
            rb.retry_max.as_deref(),
            Duration::from_secs(300),
        ),
    }
}

/// `[trail]`: the message trail's place and bounds.
pub(super) fn trail(
    c: &mut Checker<'_>,
    rt: raw::RawTrail,
    buffer_path: &std::path::Path,
) -> TrailConfig {
    let path = match rt.path.as_deref() {
        Some(p) => c.resolve(p),
        None => buffer_path
            .parent()
            .map_or_else(|| std::path::PathBuf::from("trail"), |p| p.join("trail")),
    };
    TrailConfig {
        enabled: rt.enabled.unwrap_or(true),
        path,
        max_age: duration(
            c,
            &[Step::Key("trail"), Step::Key("max_age")],
            rt.max_age.as_deref(),
            Duration::from_secs(30 * 86400),
        ),
        max_bytes: size(
            c,
            &[Step::Key("trail"), Step::Key("max_bytes")],
            rt.max_bytes.as_deref(),
            256 << 20,
        ),
    }
}
