//! The `prefront` command: parses arguments, loads the configuration, and runs the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use prefront::config::{self, Config, ConfigError, Loaded};
use prefront::sd_notify;

mod operate;
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
    /// Look into the buffer and fix what is stuck, with the gateway running (through its admin
    /// API at [admin] listen) or stopped (from the store itself)
    Queue {
        #[command(subcommand)]
        action: operate::QueueAction,
    },
    /// Where is a call? Calls in either direction with what became of them (queued, retried,
    /// delivered with the cloud's answer code, dead, dropped) and operators' actions, newest
    /// first; with the gateway running or stopped
    Trail(operate::TrailArgs),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => check(cli.config.as_deref()),
        Command::Doctor => doctor(cli.config.as_deref()),
        Command::Run => run(cli.config.as_deref()),
        Command::Demo { any_ports } => demo(!any_ports),
        Command::Wsdl { generate } => wsdl(cli.config.as_deref(), generate),
        Command::Queue { action } => {
            operator_command(cli.config.as_deref(), |c| operate::queue(c, action))
        }
        Command::Trail(args) => {
            operator_command(cli.config.as_deref(), |c| operate::trail(c, args))
        }
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

/// `prefront queue …`, `prefront trail …`: the text on stdout, or what went wrong on stderr
/// and exit status 1.
fn operator_command(
    explicit: Option<&Path>,
    command: impl FnOnce(&Config) -> Result<String, String>,
) -> ExitCode {
    let (source, loaded) = load(explicit);
    let config = match loaded {
        Ok(l) => l.config,
        Err(e) => {
            eprintln!("{source}: {} problem(s)", e.problems.len());
            print_problems("error", &e.problems);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match command(&config) {
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
