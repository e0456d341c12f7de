#![allow(dead_code)]
//! Starts the real gateway in-process on loopback port 0 with a configuration given as TOML.

use std::net::SocketAddr;
use std::path::Path;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestGateway {
    pub his_addr: SocketAddr,
    pub cloud_addr: SocketAddr,
    /// The admin listener's address when the TOML has an `[admin]` section.
    pub admin_addr: Option<SocketAddr>,
    /// The files listener's address when the TOML has a `[files_listener]` section.
    pub files_addr: Option<SocketAddr>,
    /// The gateway's own buffer directory when the test's TOML names none (removed on drop).
    pub buffer_dir: Option<super::TempDir>,
    /// Puts a new configuration in force, as SIGHUP does.
    pub reloader: prefront::app::Reloader,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestGateway {
    /// `http://127.0.0.1:PORT` of the HIS listener.
    pub fn his_url(&self) -> String {
        format!("http://{}", self.his_addr)
    }

    /// The cloud listener's base URL: `https://localhost:PORT` when `tls` (the test PKI's
    /// server certificate is for localhost), else `http://127.0.0.1:PORT`.
    pub fn cloud_url(&self, tls: bool) -> String {
        if tls {
            format!("https://localhost:{}", self.cloud_addr.port())
        } else {
            format!("http://{}", self.cloud_addr)
        }
    }

    /// `http://<admin listener><path>`; panics when the TOML has no `[admin]`.
    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.admin_addr.expect("the config has an [admin] section")
        )
    }

    /// `http://<files listener><path>`; panics when the TOML has no `[files_listener]`.
    pub fn files_url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.files_addr
                .expect("the config has a [files_listener] section")
        )
    }

    /// The admin listener's `/metrics` text (asserting a 200).
    pub async fn metrics(&self) -> String {
        let r = super::plain_client()
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .expect("metrics answer");
        assert_eq!(r.status(), 200);
        r.text().await.expect("metrics body")
    }

    /// Reloads `toml` (relative paths resolve against the working directory) as SIGHUP would;
    /// returns what the reload kept from the old configuration. Panics if it does not load.
    pub fn reload(&self, toml: &str) -> Vec<String> {
        let loaded = match prefront::Config::from_toml(toml, Path::new(".")) {
            Ok(l) => l,
            Err(e) => panic!("test config invalid: {:#?}", e.problems),
        };
        self.reloader
            .reload(loaded.config)
            .expect("the reload is accepted")
    }

    /// Signals shutdown and waits for the drain to finish.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Parses `toml` (relative paths resolve against `base_dir`), binds, and runs the gateway.
/// A TOML without a `[buffer]` section gets a fresh buffer directory of its own, so tests running
/// side by side never share a store. Panics with every config problem listed if the TOML is
/// invalid: that is a test bug.
pub async fn spawn_gateway_in(toml: &str, base_dir: &Path) -> TestGateway {
    let mut buffer_dir = None;
    let mut toml = toml.to_string();
    let doc = super::ConfigToml::parse(&toml);
    if doc.get("buffer").is_none() {
        let dir = super::TempDir::new("prefront-buffer");
        toml = doc
            .set_path("buffer.path", &dir.path().join("buffer"))
            .render();
        buffer_dir = Some(dir);
    }
    let loaded = match prefront::Config::from_toml(&toml, base_dir) {
        Ok(l) => l,
        Err(e) => panic!("test config invalid: {:#?}", e.problems),
    };
    let gw = prefront::Gateway::bind(loaded.config)
        .await
        .expect("gateway binds on loopback");
    let his_addr = gw.his_addr();
    let cloud_addr = gw.cloud_addr();
    let admin_addr = gw.admin_addr();
    let files_addr = gw.files_addr();
    let reloader = gw.reloader();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        gw.run(async {
            let _ = rx.await;
        })
        .await;
    });
    TestGateway {
        his_addr,
        cloud_addr,
        admin_addr,
        files_addr,
        buffer_dir,
        reloader,
        stop: Some(tx),
        task: Some(task),
    }
}

pub async fn spawn_gateway(toml: &str) -> TestGateway {
    spawn_gateway_in(toml, Path::new(".")).await
}

/// A minimal valid configuration: both listeners on 127.0.0.1:0 (plain HTTP), loopback allowed,
/// the cloud at `cloud_url` (trusting `cloud_ca` if given), the HIS default route at `his_url`
/// (a template with {name}/{method}, or None for no default). `extra` is appended verbatim
/// (e.g. `[[his.route]]` blocks); to change what is there, patch it with [`super::ConfigToml`].
pub fn basic_config(
    cloud_url: &str,
    cloud_ca: Option<&Path>,
    his_url: Option<&str>,
    extra: &str,
) -> String {
    let ca = cloud_ca
        .map(|p| format!("ca = {:?}\n", p.display().to_string()))
        .unwrap_or_default();
    let his = his_url
        .map(|u| format!("[his]\nkind = \"http\"\nurl = {u:?}\ntimeout_ms = 5000\n"))
        .unwrap_or_default();
    format!(
        r#"
[his_listener]
listen = "127.0.0.1:0"
allow = ["127.0.0.0/8", "::1/128"]

[cloud_listener]
listen = "127.0.0.1:0"
allow = ["127.0.0.0/8", "::1/128"]

[cloud]
base_url = {cloud_url:?}
{ca}timeout_ms = 5000

{his}
[log]
level = "info"

{extra}
"#
    )
}

/// The value of the sample whose name-and-labels part is exactly `series`, if present.
pub fn metric_sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}
