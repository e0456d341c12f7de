//! `prefront demo`: the gateway wired, in one process, to a simulated HIS (JSON and SOAP), a
//! simulated cloud (HTTPS with a throwaway CA) and a simulated PACS, all on loopback, with
//! ready-to-paste `curl` commands. `POST /demo/cloud/down` and `/demo/cloud/up` on the admin
//! port take the simulated cloud away and back, so a newcomer can watch calls wait in the buffer
//! and drain on the status page.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;

use hyper::{Method, Response, StatusCode};

use crate::listener::{admin, method_not_allowed, not_found, Body};
use crate::sim::{Answer, OutageSwitch, Pki, SimError, Upstream};

/// The simulated cloud's outage switch, once a demo runs in this process.
static CLOUD_SWITCH: OnceLock<OutageSwitch> = OnceLock::new();

/// The admin listener's `POST /demo/cloud/down` and `/demo/cloud/up`.
fn switch_route(method: &Method, path: &str) -> Option<Response<Body>> {
    let switch = CLOUD_SWITCH.get()?;
    let which = path.strip_prefix("/demo/cloud/")?;
    if method != Method::POST {
        return Some(method_not_allowed("POST"));
    }
    Some(match which {
        "down" | "up" => {
            switch.set_down(which == "down");
            tracing::warn!(
                simulated_cloud = which,
                "demo: the simulated cloud is now {which}"
            );
            admin::text(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                format!("simulated cloud is {which}\n"),
            )
        }
        _ => not_found("POST /demo/cloud/down or /demo/cloud/up\n"),
    })
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Sim(#[from] SimError),
    #[error("demo configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Start(#[from] crate::StartError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Where the demo's pieces listen, printed for the user.
#[derive(Debug, Clone)]
pub struct DemoAddrs {
    pub his: SocketAddr,
    pub cloud_listener: SocketAddr,
    pub admin: SocketAddr,
    pub cloud_sim: String,
    pub his_sim: String,
    pub pacs_sim: String,
}

/// The size of the simulated PACS image.
const IMAGE_BYTES: u64 = 1 << 20;

/// A free loopback port: `preferred` if it can be bound, else one the system picks.
fn port(preferred: u16) -> Result<u16, std::io::Error> {
    if preferred != 0 {
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", preferred)) {
            drop(l);
            return Ok(preferred);
        }
    }
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

/// Runs the demo until `shutdown` completes. `fixed_ports`: try 8080/8443/9090 first (what the
/// README's commands use); otherwise any free ports. `ready` is called with the addresses once
/// everything listens.
pub async fn run(
    fixed_ports: bool,
    ready: impl FnOnce(&DemoAddrs),
    shutdown: impl Future<Output = ()>,
) -> Result<(), DemoError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("prefront-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _cleanup = RemoveOnDrop(dir.clone());

    let pki = Pki::generate("prefront demo CA (throwaway)")?;
    let files = pki.write_files(&dir)?;
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    let cloud = Upstream::start(any, Some(pki.server_tls_config()?)).await?;
    cloud.echo();
    let his = Upstream::start(any, None).await?;
    his.echo();
    let pacs = Upstream::start(any, None).await?;
    pacs.answer_default(Answer::File { len: IMAGE_BYTES });
    let soap_his = Upstream::start(any, None).await?;
    soap_his.answer_default(Answer::Soap {
        json: Some(
            serde_json::json!({
                "success": true, "msg": "成功", "code": "10001",
                "data": [
                    {"series": "1", "describe": "胸部 CT (chest CT)", "type": "url",
                     "thumbnailUrl": format!("{}/pacs/thumb-1.png", pacs.url()),
                     "dcms": [format!("{}/pacs/file-1.dcm", pacs.url()),
                              format!("{}/pacs/file-2.dcm", pacs.url())]},
                    {"series": "2", "describe": "腿部 (leg)", "type": "dcmId",
                     "thumbnailUrl": "http://abc.example/shotcut.png",
                     "dcms": ["23231add212ad12dada21"]}
                ]
            })
            .to_string(),
        ),
    });
    let _ = CLOUD_SWITCH.set(cloud.outage_switch());
    admin::register(switch_route);

    let pick = |p: u16| port(if fixed_ports { p } else { 0 });
    let (his_port, cloud_port, admin_port) = (pick(8080)?, pick(8443)?, pick(9090)?);
    let toml = format!(
        r#"
[his_listener]
listen = "127.0.0.1:{his_port}"
allow = ["127.0.0.0/8", "::1/128"]
public_url = "http://127.0.0.1:{his_port}"

[cloud_listener]
listen = "127.0.0.1:{cloud_port}"
allow = ["127.0.0.0/8", "::1/128"]
public_url = "http://127.0.0.1:{cloud_port}"

[admin]
listen = "127.0.0.1:{admin_port}"

[cloud]
base_url = "{cloud_url}/"
ca = {ca:?}
timeout_ms = 3000
connect_timeout_ms = 1000

[his]
kind = "http"
url = "{his_url}/his/{{name}}"
timeout_ms = 3000

[[his.route]]
name = "hospital.interface.pacsReportDcm"
kind = "soap"
url = "{soap_url}/HisService.asmx"
operation = "pacsReportDcm"
namespace = "http://tempuri.org/"

[pacs]
dcm_url = "{pacs_url}/pacs/dcm?dcmId={{dcmId}}&hospitalId={{hospitalId}}"
internal_hosts = ["127.0.0.1:{pacs_port}"]

[buffer]
path = {buffer:?}
retry_min = "1s"
retry_max = "3s"

[log]
level = "info"
"#,
        cloud_url = cloud.url(),
        ca = files.ca.display().to_string(),
        his_url = his.url(),
        soap_url = soap_his.url(),
        pacs_url = pacs.url(),
        pacs_port = pacs.port(),
        buffer = dir.join("buffer").display().to_string(),
    );
    let loaded = crate::Config::from_toml(&toml, &dir).map_err(|e| {
        DemoError::Config(
            e.problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let gateway = crate::Gateway::bind(loaded.config).await?;
    let addrs = DemoAddrs {
        his: gateway.his_addr(),
        cloud_listener: gateway.cloud_addr(),
        admin: gateway
            .admin_addr()
            .unwrap_or_else(|| ([127, 0, 0, 1], admin_port).into()),
        cloud_sim: cloud.url(),
        his_sim: his.url(),
        pacs_sim: pacs.url(),
    };
    ready(&addrs);
    gateway.run(shutdown).await;
    Ok(())
}

/// The text `prefront demo` prints: where things are and what to paste.
pub fn banner(a: &DemoAddrs) -> String {
    let his = format!("http://{}", a.his);
    let cloud = format!("http://{}", a.cloud_listener);
    let admin = format!("http://{}", a.admin);
    format!(
        r#"prefront demo — everything runs on this machine (loopback); nothing leaves it.

  HIS listener      {his}        the HIS calls the cloud here
  cloud listener    {cloud}        the cloud calls the HIS here (plain HTTP in the demo)
  admin             {admin}/status   status page; /metrics, /healthz, /readyz
  simulated cloud   {cloud_sim}   (HTTPS, throwaway CA)
  simulated HIS     {his_sim} (JSON) and a SOAP HIS for pacsReportDcm
  simulated PACS    {pacs_sim}

Try, from another terminal:

  # 1. The HIS calls the cloud (HTTP JSON)
  curl -s -X POST {his}/prefront/patient/getPatientInfo -d '{{"medicalCardNumber":"001"}}'

  # 2. The same through the WebService (SOAP)
  curl -s -X POST {his}/prefront/services/prefrontWebService -H 'Content-Type: text/xml' \
    -d '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:web="http://webservice.prefront/"><soapenv:Body><web:getPatientInfo><param>{{"medicalCardNumber":"001"}}</param></web:getPatientInfo></soapenv:Body></soapenv:Envelope>'

  # 3. The cloud asks the (SOAP) HIS for a patient's images: LAN links come back as signed /files links
  curl -s -X POST {cloud}/his/hospital.interface.pacsReportDcm -d '{{"id":"1","medicalCardNumber":"001"}}'

  # 4. A PACS image streamed through the box
  curl -s -o image.dcm -w '%{{http_code}} %{{size_download}} bytes\n' '{cloud}/pacs/dcm?dcmId=demo-1&hospitalId=1'

  # 5. Take the cloud down, send a reminder (it waits in the buffer), bring the cloud back
  curl -s -X POST {admin}/demo/cloud/down
  curl -s -i -X POST {his}/prefront/sendTipMessage/phyReport -d '{{"patientName":"张三","reportName":"血常规"}}'
  curl -s {admin}/metrics | grep prefront_buffer_depth
  curl -s -X POST {admin}/demo/cloud/up

  # 6. Watch it all
  open {admin}/status   (or paste it into a browser)

Stop with Ctrl-C."#,
        cloud_sim = a.cloud_sim,
        his_sim = a.his_sim,
        pacs_sim = a.pacs_sim,
    )
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
