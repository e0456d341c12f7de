//! The `prefront` command: parses arguments, loads the configuration, and runs the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use prefront::config::{self, Config, ConfigError, Loaded};

/// Exit code for a configuration that cannot be used (BSD's EX_USAGE, as linkerd uses).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "prefront",
    version,
    about = "Hospital DMZ gateway (前置机) between the HIS and the WeChat cloud platform"
)]
struct Cli {
    /// Configuration file [default: /etc/prefront/prefront.toml if it exists, else the built-in example]
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
    /// Print the published WSDL (prefrontWebService), its address taken from
    /// his_listener.public_url when the configuration sets it
    Wsdl {
        /// Print the WSDL generated from the catalogue instead (to update wsdl/ deliberately)
        #[arg(long)]
        generate: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => check(cli.config.as_deref()),
        Command::Run => run(cli.config.as_deref()),
        Command::Wsdl { generate } => wsdl(cli.config.as_deref(), generate),
    }
}

/// Loads the configuration the command line names, or the installed one, or the built-in example.
fn load(explicit: Option<&Path>) -> (String, Result<Loaded, ConfigError>) {
    if let Some(p) = explicit {
        return (p.display().to_string(), Config::from_file(p));
    }
    let installed = Path::new(config::INSTALLED_PATH);
    if installed.exists() {
        return (
            installed.display().to_string(),
            Config::from_file(installed),
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
    prefront::telemetry::init(&loaded.config.log.level);
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
    runtime.block_on(async {
        let gateway = match prefront::Gateway::bind(loaded.config).await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        gateway.run(shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

/// Completes on Ctrl-C or SIGTERM (what systemd and `docker stop` send).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
