//! Logging: `tracing` set up once by the binary, and the masking every log line goes through.

pub mod limits;
pub mod metrics;
pub mod recent;
pub mod redact;

/// Keeps the log writer thread running; dropping it writes out what is still queued. Hold it
/// until the process is about to exit.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(#[allow(dead_code)] Option<tracing_appender::non_blocking::WorkerGuard>);

/// Sets up the process's log output: `RUST_LOG` wins over the configured level.
///
/// Lines are formatted on the thread that logs them and written by one writer thread through a
/// buffer that is flushed whenever no further line is waiting: under load many lines go out in
/// one `write(2)`, off the request path; when quiet, each line is written at once. The queue is
/// not lossy: a burst larger than it slows the loggers down rather than dropping lines.
pub fn init(level: &str) -> LogGuard {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = writer(std::io::stderr());
    let set = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(writer)
        .try_init();
    LogGuard(set.is_ok().then_some(guard))
}

/// Like `init`, but every line is appended to `file` (no colours): for the Windows service,
/// which has no console.
pub fn init_file(level: &str, file: std::fs::File) -> LogGuard {
    let (writer, guard) = writer(file);
    let set = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_target(false)
        .with_ansi(false)
        .with_writer(writer)
        .try_init();
    LogGuard(set.is_ok().then_some(guard))
}

fn writer<W: std::io::Write + Send + 'static>(
    out: W,
) -> (
    tracing_appender::non_blocking::NonBlocking,
    tracing_appender::non_blocking::WorkerGuard,
) {
    tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(4096)
        .lossy(false)
        .thread_name("prefront-log")
        .finish(std::io::BufWriter::with_capacity(64 * 1024, out))
}

fn filter(level: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}
