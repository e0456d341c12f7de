//! Windows: `prefront service install | uninstall | run`, and where an installed box keeps its
//! files: `%ProgramData%\Prefront\prefront.toml`, `…\data\` (the buffer), `…\logs\prefront.log`.
//!
//! `service run` is what the service manager (SCM) starts: the same `Gateway::bind` +
//! `Gateway::run(shutdown)` as `prefront run`, with the shutdown future completed by the SCM's
//! Stop or Shutdown. The service sets its own recovery actions (restart after 5 s, 30 s, 60 s;
//! the count resets after a day) at every start, because the `.msi` registers it with
//! `ServiceInstall`, which cannot (and wixl refuses `ServiceConfigFailureActions`).
//!
//! Configuration reload (`prefront reload`, SIGHUP on Linux) is not there yet on Windows: restart
//! the service after editing the file.
//!
//! The parts that are not Windows API (paths, the first-start configuration) build everywhere so
//! the Linux test suite checks them.
#![cfg_attr(not(windows), allow(dead_code))]

use std::path::PathBuf;

/// The service's name for the SCM (`sc query prefront`).
pub const SERVICE_NAME: &str = "prefront";
const DISPLAY_NAME: &str = "Prefront gateway (前置机)";
const DESCRIPTION: &str = "Hospital DMZ gateway (前置机) between the HIS and the regional WeChat \
cloud platform. Configuration: %ProgramData%\\Prefront\\prefront.toml; log: \
%ProgramData%\\Prefront\\logs\\prefront.log.";

/// `%ProgramData%\Prefront` (`C:\ProgramData\Prefront` when the variable is missing).
pub fn base_dir() -> PathBuf {
    std::env::var_os("ProgramData")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"))
        .join("Prefront")
}

/// Where an installed box keeps its configuration on Windows.
pub fn config_path() -> PathBuf {
    base_dir().join("prefront.toml")
}

/// The service's log file.
pub fn log_path() -> PathBuf {
    base_dir().join("logs").join("prefront.log")
}

/// A log file larger than this is renamed to `prefront.log.1` when the service starts.
const LOG_KEEP_BYTES: u64 = 16 * 1024 * 1024;

/// The configuration the service writes at its first start when there is none: the example
/// (`config::EXAMPLE`) with the buffer under `%ProgramData%\Prefront\data\buffer`, the admin page
/// on `127.0.0.1:9090`, and Windows line ends (so Notepad on Server 2016 shows it right).
pub fn first_config() -> String {
    const HEADER: &str = "\
# prefront — %ProgramData%\\Prefront\\prefront.toml, written by the service at its first start
# from the example configuration. The installer never overwrites or removes it.
#
# As written it listens on loopback only and starts with neither a HIS nor the cloud reachable;
# the admin page (/healthz /readyz /metrics /status) is on 127.0.0.1:9090. Put the hospital's
# values in, then:
#   \"C:\\Program Files\\Prefront\\prefront.exe\" check --config C:\\ProgramData\\Prefront\\prefront.toml
#   sc stop prefront  &  sc start prefront        (no reload on Windows yet: restart it)
# Log: %ProgramData%\\Prefront\\logs\\prefront.log. Buffer: %ProgramData%\\Prefront\\data\\buffer.
#
# Sizes: \"512KiB\", \"1MiB\", \"1GiB\". Durations: \"500ms\", \"30s\", \"1h\", \"7d\".
# Relative file paths are relative to the directory of this file (%ProgramData%\\Prefront).
";
    let mut out = String::from(HEADER);
    let mut in_header = true;
    let mut admin_next = false;
    for line in prefront::config::EXAMPLE.lines() {
        // The example's own opening comment talks about /etc/prefront: replaced by HEADER.
        if in_header && (line.starts_with('#') || line.trim().is_empty()) {
            continue;
        }
        if in_header {
            out.push('\n');
        }
        in_header = false;
        let trimmed = line.trim_start();
        if trimmed.starts_with("path = \"../data/buffer\"") {
            out.push_str(
                "path = \"data/buffer\"          # %ProgramData%\\Prefront\\data\\buffer\n",
            );
        } else if let Some(rest) = line.strip_prefix("# [admin]") {
            out.push_str("[admin]");
            out.push_str(rest);
            out.push('\n');
            admin_next = true;
        } else if admin_next && line.starts_with("# listen") {
            out.push_str(&line[2..]);
            out.push('\n');
            admin_next = false;
        } else {
            // e.g. shared_secret_file: relative to this file's directory on Windows.
            out.push_str(&line.replace("/etc/prefront/", ""));
            out.push('\n');
        }
    }
    out.replace('\n', "\r\n")
}

#[cfg(windows)]
pub use service::{command, Action};

#[cfg(windows)]
mod service {
    use std::ffi::OsString;
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    use clap::Subcommand;
    use prefront::config::Config;
    use windows_service::service::{
        ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
        ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
        ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
    };
    use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
    use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
    use windows_service::{define_windows_service, service_dispatcher};

    use super::{base_dir, config_path, first_config, log_path, LOG_KEEP_BYTES, SERVICE_NAME};

    /// `prefront service …`
    #[derive(Subcommand)]
    pub enum Action {
        /// Register the Windows service (automatic start, restart on failure) and start it
        /// (the .msi does this itself; run from an Administrator prompt)
        Install,
        /// Stop and remove the Windows service (configuration, buffer and logs stay)
        Uninstall,
        /// What the service manager starts; not for a console (use `prefront run` there)
        Run,
    }

    /// Exit code the service reports for a configuration it cannot use (as `prefront run`).
    const EXIT_CONFIG: u32 = 64;
    /// Exit code the service reports when it could not start (a port in use, the buffer, …).
    const EXIT_START: u32 = 1;
    /// How long the SCM should wait for a stop: the drain deadline and some.
    const STOP_WAIT: Duration = Duration::from_secs(15);

    /// The configuration file `service run` was given (`--config`), if any.
    static EXPLICIT: OnceLock<Option<PathBuf>> = OnceLock::new();

    pub fn command(action: Action, explicit: Option<&Path>) -> ExitCode {
        match action {
            Action::Install => install(explicit),
            Action::Uninstall => uninstall(),
            Action::Run => {
                let _ = EXPLICIT.set(explicit.map(Path::to_path_buf));
                match service_dispatcher::start(SERVICE_NAME, ffi_service_main) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!(
                            "prefront service run: {}: this command is for the Windows service \
                             manager; to run the gateway in this console use `prefront run`",
                            describe(&e)
                        );
                        ExitCode::FAILURE
                    }
                }
            }
        }
    }

    /// windows-service hides the OS error behind "IO error in winapi call".
    fn describe(e: &windows_service::Error) -> String {
        match e {
            windows_service::Error::Winapi(io) => io.to_string(),
            other => other.to_string(),
        }
    }

    fn elevated_hint(e: &windows_service::Error) -> &'static str {
        match e {
            windows_service::Error::Winapi(io) if io.raw_os_error() == Some(5) => {
                " (run this from an Administrator command prompt)"
            }
            _ => "",
        }
    }

    fn install(explicit: Option<&Path>) -> ExitCode {
        let exe = match std::env::current_exe() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("cannot find this program's path: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut args = vec![OsString::from("service"), OsString::from("run")];
        if let Some(c) = explicit {
            let abs = std::path::absolute(c).unwrap_or_else(|_| c.to_path_buf());
            args.push(OsString::from("--config"));
            args.push(abs.into_os_string());
        }
        let info = ServiceInfo {
            name: OsString::from(SERVICE_NAME),
            display_name: OsString::from(super::DISPLAY_NAME),
            service_type: ServiceType::OWN_PROCESS,
            start_type: ServiceStartType::AutoStart,
            error_control: ServiceErrorControl::Normal,
            executable_path: exe,
            launch_arguments: args,
            dependencies: vec![],
            account_name: None, // LocalSystem
            account_password: None,
        };
        let result = (|| {
            let manager = ServiceManager::local_computer(
                None::<&str>,
                ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
            )?;
            let service = manager.create_service(
                &info,
                ServiceAccess::CHANGE_CONFIG | ServiceAccess::START | ServiceAccess::QUERY_STATUS,
            )?;
            // Not fatal (Wine has no recovery actions); the service tries again at every start.
            if let Err(e) = service.set_description(super::DESCRIPTION) {
                eprintln!("warning: cannot set the description: {}", describe(&e));
            }
            if let Err(e) = set_recovery(&service) {
                eprintln!(
                    "warning: cannot set the recovery actions (restart on failure): {}",
                    describe(&e)
                );
            }
            service.start::<&str>(&[])?;
            Ok::<_, windows_service::Error>(service)
        })();
        match result {
            Ok(service) => {
                println!("service `{SERVICE_NAME}` installed (automatic start, restarts on failure) and starting");
                let state = wait_for(
                    &service,
                    ServiceState::StartPending,
                    Duration::from_secs(15),
                );
                let config = explicit.map_or_else(config_path, Path::to_path_buf);
                println!("state: {state:?}; configuration {}", config.display());
                println!("log: {}", log_path().display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "cannot install the service: {}{}",
                    describe(&e),
                    elevated_hint(&e)
                );
                ExitCode::FAILURE
            }
        }
    }

    fn uninstall() -> ExitCode {
        let result = (|| {
            let manager =
                ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)?;
            let service = manager.open_service(
                SERVICE_NAME,
                ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
            )?;
            if service.query_status()?.current_state != ServiceState::Stopped {
                let _ = service.stop();
                wait_for(&service, ServiceState::StopPending, STOP_WAIT + STOP_WAIT);
            }
            service.delete()?;
            Ok::<_, windows_service::Error>(())
        })();
        match result {
            Ok(()) => {
                println!(
                    "service `{SERVICE_NAME}` removed; the configuration, buffer and logs stay in {}",
                    base_dir().display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "cannot remove the service: {}{}",
                    describe(&e),
                    elevated_hint(&e)
                );
                ExitCode::FAILURE
            }
        }
    }

    /// Waits while the service is in `pending`; returns the state it ended in.
    fn wait_for(
        service: &windows_service::service::Service,
        pending: ServiceState,
        max: Duration,
    ) -> ServiceState {
        let start = Instant::now();
        loop {
            let state = match service.query_status() {
                Ok(s) => s.current_state,
                Err(_) => return pending,
            };
            if state != pending || start.elapsed() > max {
                return state;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Restart after 5 s, 30 s, then 60 s; the failure count resets after a day. Also when the
    /// service stops itself with an error (a port in use), not only when it crashes.
    fn set_recovery(service: &windows_service::service::Service) -> windows_service::Result<()> {
        let restart = |secs| ServiceAction {
            action_type: ServiceActionType::Restart,
            delay: Duration::from_secs(secs),
        };
        service.update_failure_actions(ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(24 * 3600)),
            reboot_msg: None,
            command: None,
            actions: Some(vec![restart(5), restart(30), restart(60)]),
        })?;
        service.set_failure_actions_on_non_crash_failures(true)
    }

    /// What the .msi cannot set (wixl): the recovery actions, and the display name and
    /// description in Chinese (wixl crashes on non-ASCII text). Done at every start, each part on
    /// its own (Wine, for one, has no recovery actions); the display name only when it differs,
    /// with the command line and settings the service already has. Returns what failed.
    fn configure_self() -> Vec<String> {
        let service =
            match ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
                .and_then(|m| {
                    m.open_service(
                        SERVICE_NAME,
                        ServiceAccess::CHANGE_CONFIG | ServiceAccess::QUERY_CONFIG,
                    )
                }) {
                Ok(s) => s,
                Err(e) => return vec![format!("settings (cannot open it: {})", describe(&e))],
            };
        let mut failed = Vec::new();
        if let Err(e) = set_recovery(&service) {
            failed.push(format!(
                "recovery actions (restart on failure): {}",
                describe(&e)
            ));
        }
        if let Err(e) = service.set_description(super::DESCRIPTION) {
            failed.push(format!("description: {}", describe(&e)));
        }
        let rename = || -> windows_service::Result<()> {
            let config = service.query_config()?;
            if config.display_name == super::DISPLAY_NAME {
                return Ok(());
            }
            let exe = std::env::current_exe().map_err(windows_service::Error::Winapi)?;
            service.change_config(&ServiceInfo {
                name: OsString::from(SERVICE_NAME),
                display_name: OsString::from(super::DISPLAY_NAME),
                service_type: config.service_type,
                start_type: config.start_type,
                error_control: config.error_control,
                // Quoted when it has spaces (C:\Program Files\…).
                executable_path: exe,
                // What the service manager started us with: `service run [--config …]`.
                launch_arguments: std::env::args_os().skip(1).collect(),
                dependencies: config.dependencies,
                account_name: None, // unchanged
                account_password: None,
            })
        };
        if let Err(e) = rename() {
            failed.push(format!("display name: {}", describe(&e)));
        }
        failed
    }

    define_windows_service!(ffi_service_main, service_main);

    fn service_main(_args: Vec<OsString>) {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let handler = move |control| match control {
            ServiceControl::Stop | ServiceControl::Shutdown => {
                let _ = stop_tx.send(true);
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        };
        let Ok(status) = service_control_handler::register(SERVICE_NAME, handler) else {
            return;
        };
        let set = |state, accept, exit, wait| {
            let _ = status.set_service_status(ServiceStatus {
                service_type: ServiceType::OWN_PROCESS,
                current_state: state,
                controls_accepted: accept,
                exit_code: exit,
                checkpoint: 0,
                wait_hint: wait,
                process_id: None,
            });
        };
        set(
            ServiceState::StartPending,
            ServiceControlAccept::empty(),
            ServiceExitCode::NO_ERROR,
            Duration::from_secs(30),
        );
        let exit = serve(stop_rx, |running| {
            if running {
                set(
                    ServiceState::Running,
                    ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
                    ServiceExitCode::NO_ERROR,
                    Duration::ZERO,
                );
            } else {
                set(
                    ServiceState::StopPending,
                    ServiceControlAccept::empty(),
                    ServiceExitCode::NO_ERROR,
                    STOP_WAIT,
                );
            }
        });
        let code = match exit {
            0 => ServiceExitCode::NO_ERROR,
            n => ServiceExitCode::ServiceSpecific(n),
        };
        set(
            ServiceState::Stopped,
            ServiceControlAccept::empty(),
            code,
            Duration::ZERO,
        );
    }

    /// Opens the log file, keeping one older generation when it has grown large.
    fn open_log() -> std::io::Result<std::fs::File> {
        let path = log_path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > LOG_KEEP_BYTES) {
            let _ = std::fs::rename(&path, path.with_extension("log.1"));
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
    }

    /// The configuration file: `--config`, or `%ProgramData%\Prefront\prefront.toml`, written
    /// from the example when it does not exist. Returns the path and whether it was created.
    fn ensure_config() -> std::io::Result<(PathBuf, bool)> {
        if let Some(Some(p)) = EXPLICIT.get() {
            return Ok((p.clone(), false));
        }
        let path = config_path();
        std::fs::create_dir_all(base_dir().join("data"))?;
        if path.exists() {
            return Ok((path, false));
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(first_config().as_bytes())?;
                f.sync_all()?;
                Ok((path, true))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok((path, false)),
            Err(e) => Err(e),
        }
    }

    /// The gateway under the SCM; `status(true)` once serving, `status(false)` when stopping.
    /// Returns the exit code the service reports (0: stopped as asked).
    fn serve(
        mut stop: tokio::sync::watch::Receiver<bool>,
        status: impl Fn(bool) + Send + Sync,
    ) -> u32 {
        let log = open_log();
        let ensured = ensure_config();
        let loaded = ensured
            .as_ref()
            .ok()
            .map(|(path, _)| Config::from_file(path));
        let level = match &loaded {
            Some(Ok(l)) => l.config.log.level.clone(),
            _ => "info".to_string(),
        };
        // Held to the end of the service run: dropping it writes out the last lines.
        let _log = match log {
            Ok(file) => prefront::telemetry::init_file(&level, file),
            // Nowhere to write: the SCM still sees the exit code.
            Err(_) => prefront::telemetry::init(&level),
        };
        let ((path, created), loaded) = match (ensured, loaded) {
            (Ok(p), Some(l)) => (p, l),
            (Err(e), _) => {
                tracing::error!(dir = %base_dir().display(), "cannot create the configuration: {e}");
                return EXIT_CONFIG;
            }
            (Ok(_), None) => unreachable!("the configuration is read whenever it is there"),
        };
        if created {
            tracing::info!(config = %path.display(), "no configuration: wrote the example there");
        }
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            config = %path.display(),
            "prefront starting (Windows service)"
        );
        let loaded = match loaded {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(
                    config = %path.display(),
                    problems = e.problems.len(),
                    "the configuration has problems; nothing started"
                );
                for p in &e.problems {
                    tracing::error!("config: {p}");
                }
                return EXIT_CONFIG;
            }
        };
        for w in &loaded.warnings {
            tracing::warn!("config: {w}");
        }
        for what in configure_self() {
            tracing::warn!("cannot set the service's {what}");
        }
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the async runtime");
                return EXIT_START;
            }
        };
        runtime.block_on(async {
            let gateway = match prefront::Gateway::bind(loaded.config).await {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!("cannot start: {e}");
                    return EXIT_START;
                }
            };
            status(true);
            gateway
                .run(async {
                    while !*stop.borrow_and_update() {
                        if stop.changed().await.is_err() {
                            // The handler is gone: nobody can ask us to stop any more.
                            std::future::pending::<()>().await;
                        }
                    }
                    tracing::info!("stop requested by the service manager");
                    status(false);
                })
                .await;
            tracing::info!("prefront stopped");
            0
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn first_config_is_the_example_with_windows_paths_and_the_admin_page() {
        let text = super::first_config();
        assert!(text.contains("\r\n") && !text.replace("\r\n", "").contains('\n'));
        assert!(!text.contains("/etc/prefront"), "{text}");
        assert!(!text.contains("/var/lib/prefront"), "{text}");
        let base = Path::new("/ProgramData/Prefront");
        let loaded = prefront::Config::from_toml(&text.replace("\r\n", "\n"), base)
            .unwrap_or_else(|e| panic!("{:?}", e.problems));
        let c = loaded.config;
        assert_eq!(c.buffer.path, base.join("data/buffer"));
        let admin = c.admin.expect("[admin] must be on");
        assert_eq!(admin.listen.to_string(), "127.0.0.1:9090");
        assert!(c.his_listener.listen.ip().is_loopback());
        assert!(c.cloud_listener.listen.ip().is_loopback());
    }
}
