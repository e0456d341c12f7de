//! Logging: `tracing` set up once by the binary, and the masking every log line goes through.

pub mod limits;
pub mod logbuf;
pub mod metrics;
pub mod recent;
pub mod redact;

/// Keeps the log writer thread running; dropping it writes out what is still waiting. Hold it
/// until the process is about to exit.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(#[allow(dead_code)] Option<logbuf::Flusher>);

/// Sets up the process's log output: `RUST_LOG` wins over the configured level.
///
/// Lines are formatted on the thread that logs them and written by one writer thread, many per
/// `write(2)`, within 100 ms (see `logbuf`).
pub fn init(level: &str) -> LogGuard {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    install(level, ansi, std::io::stderr())
}

/// Like `init`, but every line is appended to `file` (no colours): for the Windows service,
/// which has no console.
pub fn init_file(level: &str, file: std::fs::File) -> LogGuard {
    install(level, false, file)
}

fn install<W: std::io::Write + Send + 'static>(level: &str, ansi: bool, out: W) -> LogGuard {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_target(false)
        .with_ansi(ansi);
    match logbuf::start(out) {
        Ok((buffer, flusher)) => {
            let set = builder.with_writer(buffer).try_init();
            LogGuard(set.is_ok().then_some(flusher))
        }
        // No thread for the writer: every line is written where it is logged.
        Err(_) => {
            let _ = builder.with_writer(std::io::stderr).try_init();
            LogGuard(None)
        }
    }
}

fn filter(level: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}
