//! The `prefront` command: parses arguments, loads the configuration, and runs the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use prefront::config::{self, Config, ConfigError, Loaded};
use prefront::sd_notify;

#[cfg(any(windows, test))]
mod winservice;

/// Exit code for a configuration that cannot be used (BSD's EX_USAGE, as linkerd uses).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "prefront",
    version,
    about = "Hospital DMZ gateway (前置机) between the HIS and the WeChat cloud platform"
)]
struct Cli {
    /// Configuration file [default: /etc/prefront/prefront.toml (Windows: %ProgramData%\Prefront\prefront.toml) if it exists, else the built-in example]
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default)
    Run,
    /// Validate a configuration file and print every problem with its key and line
    Check,
    /// Try it out: the gateway with a simulated HIS, cloud and PACS on loopback, and curl
    /// commands to paste (no configuration, nothing leaves the machine)
    Demo {
        /// Use any free ports instead of 8080/8443/9090
        #[arg(long)]
        any_ports: bool,
    },
    /// Check this installation: config, certificates, ports, DNS, the cloud, the HIS routes,
    /// the buffer directory, the PACS; one line per check, exit 1 on any FAIL
    Doctor,
    /// Look into the buffer and fix what is stuck (stop the gateway first: it holds the store)
    Queue {
        #[command(subcommand)]
        action: QueueAction,
    },
    /// Print the published WSDL (prefrontWebService), its address taken from
    /// his_listener.public_url when the configuration sets it
    Wsdl {
        /// Print the WSDL generated from the catalogue instead (to update wsdl/ deliberately)
        #[arg(long)]
        generate: bool,
    },
    /// The Windows service: install, uninstall, or run under the service manager
    #[cfg(windows)]
    Service {
        #[command(subcommand)]
        action: winservice::Action,
    },
}

#[derive(Subcommand)]
enum QueueAction {
    /// Depth and oldest age per route, dead letters, disk use
    Stats,
    /// Queued records (or dead letters with --dead), oldest first
    List {
        #[arg(long)]
        dead: bool,
        /// Only this route, e.g. cloud:prefront/sendTipMessage/payment
        #[arg(long)]
        route: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One record with its payload (patient data masked unless --unmasked)
    Show {
        id: u64,
        #[arg(long)]
        unmasked: bool,
    },
    /// Queue a dead letter again (or every one with --all-dead)
    Retry {
        #[arg(required_unless_present = "all_dead")]
        id: Option<u64>,
        #[arg(long, conflicts_with = "id")]
        all_dead: bool,
    },
    /// Delete a record, queued or dead, for good
    Drop { id: u64 },
    /// Put every intact record of an old or moved-aside store (read as bytes, even if it cannot
    /// be opened) into the buffer, in order; says how many were salvaged and lost
    Salvage { path: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => check(cli.config.as_deref()),
        Command::Doctor => doctor(cli.config.as_deref()),
        Command::Run => run(cli.config.as_deref()),
        Command::Demo { any_ports } => demo(!any_ports),
        Command::Wsdl { generate } => wsdl(cli.config.as_deref(), generate),
        Command::Queue { action } => queue(cli.config.as_deref(), action),
        #[cfg(windows)]
        Command::Service { action } => winservice::command(action, cli.config.as_deref()),
    }
}

/// Loads the configuration the command line names, or the installed one, or the built-in example.
fn load(explicit: Option<&Path>) -> (String, Result<Loaded, ConfigError>) {
    if let Some(p) = explicit {
        return (p.display().to_string(), Config::from_file(p));
    }
    #[cfg(not(windows))]
    let installed = PathBuf::from(config::INSTALLED_PATH);
    #[cfg(windows)]
    let installed = winservice::config_path();
    if installed.exists() {
        return (
            installed.display().to_string(),
            Config::from_file(&installed),
        );
    }
    // The example's relative paths are written relative to config/.
    (
        "built-in example (config/prefront.toml)".to_string(),
        Config::from_toml(config::EXAMPLE, Path::new("config")),
    )
}

fn print_problems(label: &str, list: &[config::Problem]) {
    for p in list {
        eprintln!("  {label}: {p}");
    }
}

fn check(explicit: Option<&Path>) -> ExitCode {
    let (source, loaded) = load(explicit);
    match loaded {
        Ok(l) => {
            print_problems("warning", &l.warnings);
            if let Err(e) = prefront::preflight(&l.config) {
                eprintln!("{source}: cannot start: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
            println!("{source}: OK ({} warning(s))", l.warnings.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{source}: {} problem(s)", e.problems.len());
            print_problems("error", &e.problems);
            print_problems("warning", &e.warnings);
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// `prefront doctor`: one line per check and a summary; exit 1 if any check failed.
fn doctor(explicit: Option<&Path>) -> ExitCode {
    let (source, loaded) = load(explicit);
    let report = prefront::doctor::run_blocking(&source, loaded);
    print!("{report}");
    if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn queue(explicit: Option<&Path>, action: QueueAction) -> ExitCode {
    use prefront::buffer::{operator, sled_store::SledOutbox};
    let (source, loaded) = load(explicit);
    let config = match loaded {
        Ok(l) => l.config,
        Err(e) => {
            eprintln!("{source}: {} problem(s)", e.problems.len());
            print_problems("error", &e.problems);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let b = &config.buffer;
    if !b.path.exists() && !matches!(action, QueueAction::Salvage { .. }) {
        println!(
            "no buffer at {} (nothing was ever queued)",
            b.path.display()
        );
        return ExitCode::SUCCESS;
    }
    // Checked as the gateway checks it at start: sled's own recovery would overwrite the bytes
    // a salvage of a damaged store needs.
    let outbox = match SledOutbox::open_checked(&b.path, b.max_bytes, b.result_ttl) {
        Ok(o) => {
            if let Some(r) = o.salvage_report() {
                eprintln!(
                    "the buffer was damaged ({}): moved to {}; {} record(s) salvaged into a new store, {} lost",
                    r.reason, r.moved_to, r.salvaged, r.lost
                );
            }
            o
        }
        Err(e) => {
            eprintln!("cannot open the buffer at {}: {e}", b.path.display());
            eprintln!("if the gateway is running, stop it first (systemctl stop prefront), then run this again");
            return ExitCode::FAILURE;
        }
    };
    let result = match action {
        QueueAction::Stats => {
            operator::queue(&outbox, b.max_bytes).map(|q| operator::render_queue(&q))
        }
        QueueAction::List { dead, route, limit } => {
            operator::messages(&outbox, dead, route.as_deref(), None, limit)
                .map(|v| operator::render_messages(&v, dead))
        }
        QueueAction::Show { id, unmasked } => operator::message(&outbox, id).and_then(|m| {
            let body = if unmasked {
                Some(operator::unmasked_body(&outbox, id)?)
            } else {
                None
            };
            Ok(operator::render_message(&m, body.as_deref()))
        }),
        QueueAction::Retry { id, all_dead } => match (id, all_dead) {
            (Some(id), false) => operator::retry(&outbox, id).map(|c| operator::render_changed(&c)),
            _ => operator::retry_dead(&outbox, None).map(|(r, _)| operator::render_retried(&r)),
        },
        QueueAction::Drop { id } => {
            operator::drop_message(&outbox, id).map(|c| operator::render_changed(&c))
        }
        QueueAction::Salvage { path } => {
            if path == b.path {
                eprintln!(
                    "{} is the buffer itself: name an old or moved-aside store (buffer.corrupt-*)",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
            outbox.salvage_from(&path, None, true).map(|r| {
                format!(
                    "{}: {} record(s) salvaged into {}, {} acknowledged record(s) lost\n",
                    path.display(),
                    r.salvaged,
                    b.path.display(),
                    r.lost
                )
            })
        }
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn wsdl(explicit: Option<&Path>, generate: bool) -> ExitCode {
    use prefront::soap::wsdl;
    if generate {
        print!("{}", wsdl::generate());
        return ExitCode::SUCCESS;
    }
    let public = match load(explicit) {
        (_, Ok(l)) => l.config.his_listener.public_url.clone(),
        (source, Err(e)) => {
            eprintln!(
                "{source}: {} problem(s); printing the WSDL with its placeholder address",
                e.problems.len()
            );
            None
        }
    };
    match public {
        Some(base) => print!(
            "{}",
            wsdl::with_address(&format!("{base}{}", wsdl::SERVICE_PATH))
        ),
        None => print!("{}", wsdl::PUBLISHED),
    }
    ExitCode::SUCCESS
}

fn run(explicit: Option<&Path>) -> ExitCode {
    let (source, loaded) = load(explicit);
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{source}: {} problem(s); nothing started", e.problems.len());
            print_problems("error", &e.problems);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let _log = prefront::telemetry::init(&loaded.config.log.level);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %source, "prefront starting");
    for w in &loaded.warnings {
        tracing::warn!("config: {w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let explicit = explicit.map(Path::to_path_buf);
    runtime.block_on(async {
        // Handlers first: a SIGTERM or SIGHUP while binding must not kill the process.
        let shutdown = shutdown_signal();
        let hup = hangup_signal();
        let gateway = match prefront::Gateway::bind(loaded.config).await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        tokio::spawn(reload_on_sighup(hup, gateway.reloader(), explicit));
        if let Some(every) = sd_notify::watchdog_interval() {
            tokio::spawn(async move {
                loop {
                    sd_notify::notify("WATCHDOG=1");
                    tokio::time::sleep(every).await;
                }
            });
        }
        sd_notify::notify("READY=1\nSTATUS=serving");
        gateway
            .run(async {
                shutdown.await;
                sd_notify::notify("STOPPING=1\nSTATUS=draining in-flight calls");
            })
            .await;
        ExitCode::SUCCESS
    })
}

fn demo(fixed_ports: bool) -> ExitCode {
    let _log = prefront::telemetry::init("info");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        prefront::demo::run(
            fixed_ports,
            |addrs| {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}", prefront::demo::banner(addrs));
                let _ = out.flush();
            },
            shutdown_signal(),
        )
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGHUP re-reads the configuration. A file with problems is refused with every problem logged,
/// and the configuration in force stays; calls in flight finish with the one they started with.
#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

/// The SIGHUP handler, registered now (call it inside the runtime).
#[cfg(unix)]
fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {}

#[cfg(unix)]
async fn reload_on_sighup(
    hup: Hangup,
    reloader: prefront::app::Reloader,
    explicit: Option<std::path::PathBuf>,
) {
    let Some(mut hup) = hup else {
        tracing::warn!("cannot listen for SIGHUP: configuration reload is off");
        return;
    };
    while hup.recv().await.is_some() {
        sd_notify::notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}",
            sd_notify::monotonic_usec()
        ));
        let (source, loaded) = load(explicit.as_deref());
        match loaded {
            Err(e) => {
                tracing::error!(
                    config = %source,
                    problems = e.problems.len(),
                    "reload refused: the configuration has problems; the one in force stays"
                );
                for p in &e.problems {
                    tracing::error!("config: {p}");
                }
            }
            Ok(l) => match reloader.reload(l.config) {
                Ok(kept) => {
                    for w in &l.warnings {
                        tracing::warn!("config: {w}");
                    }
                    for k in &kept {
                        tracing::warn!(setting = %k, "changed in the file but needs a restart: the old value stays until then");
                    }
                    tracing::info!(config = %source, "configuration reloaded");
                }
                Err(e) => tracing::error!(
                    config = %source,
                    "reload refused: {e}; the configuration in force stays"
                ),
            },
        }
        sd_notify::notify("READY=1\nSTATUS=serving");
    }
}

#[cfg(not(unix))]
async fn reload_on_sighup(_: Hangup, _: prefront::app::Reloader, _: Option<std::path::PathBuf>) {}

/// Registers the Ctrl-C / SIGTERM handlers now — a signal during start-up must stop the box
/// cleanly, not kill it — and completes when one arrives (what systemd and `docker stop` send).
/// Call it inside the runtime.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, Signal, SignalKind};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            async fn wait(s: Option<Signal>) {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = wait(term) => {},
                _ = wait(int) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
