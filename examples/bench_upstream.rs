//! Fast loopback upstreams for `bench/run.sh`: a cloud (HTTPS, throwaway CA from
//! `prefront::sim::Pki`; the same cloud also on a plain-HTTP port) and a SOAP HIS (HTTP), each
//! answering at once with a fixed answer and keeping nothing per request (unlike
//! `prefront::sim::Upstream`, which records every request).
//!
//! ```text
//! cargo run --release --example bench_upstream -- --dir DIR [--workers 1] [--max-secs 3600]
//! ```
//!
//! Writes into DIR the CA and server certificate (`ca.pem`, `server.pem`, `server.key`) and the
//! payloads of the scenarios (`patient.json`, `soap.xml`, `his_query.json`) with the answers a
//! caller must get (`cloud_answer.json`, `his_answer.json`), then prints one line
//! `cloud=PORT his=PORT cloud_http=PORT` on stdout and serves until killed (or `--max-secs`).
//!
//! - cloud, HTTPS: any POST gets `cloud_answer.json` (the spec's envelope, code 10001); HEAD (the
//!   link probe) gets 200.
//! - cloud, plain HTTP (`cloud_http`): the same answers without TLS (the `--upstream http` and
//!   scenario 1b configurations of `bench/run.sh`).
//! - HIS, HTTP: a path ending in `/xml` gets the HIS answer as XML elements (`param = "xml"`),
//!   one ending in `/string` the same answer as JSON in `<return>` (`param = "string"`), any
//!   other `his_answer.json` as plain JSON.

#[path = "../benches/common/mod.rs"]
mod common;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Parser, Debug)]
#[command(about = "Fast loopback cloud (HTTPS and HTTP) and SOAP HIS (HTTP) for bench/run.sh")]
struct Args {
    /// Directory for the certificates and payload files (created if absent).
    #[arg(long)]
    dir: PathBuf,
    /// Runtime worker threads (the upstream must not take the CPU the gateway is measured on).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Exit after this many seconds in any case (a safety net if the harness dies).
    #[arg(long, default_value_t = 3600)]
    max_secs: u64,
    /// Port of the cloud listener (default: any free port).
    #[arg(long, default_value_t = 0)]
    cloud_port: u16,
    /// Serve the certificate and key already in --dir (a cloud that comes back, trusted by a
    /// gateway started earlier) instead of making a new CA; payload files are left as they are.
    #[arg(long)]
    reuse_pki: bool,
}

/// The fixed answers, built once.
struct Answers {
    cloud: Bytes,
    his_json: Bytes,
    his_xml: Bytes,
    his_string: Bytes,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("bench_upstream: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), String> {
    std::fs::create_dir_all(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let tls = if args.reuse_pki {
        tls_from_files(&args.dir)?
    } else {
        let pki = prefront::sim::Pki::generate("prefront bench CA").map_err(|e| e.to_string())?;
        pki.write_files(&args.dir).map_err(|e| e.to_string())?;
        pki.server_tls_config().map_err(|e| e.to_string())?
    };

    let patient = common::patient_request();
    let his_answer = common::his_answer().to_string();
    // The two SOAP answers must read back as the same JSON, or scenario 3's two rows would not
    // be about the same call.
    let hints = prefront::soap::xmljson::ArrayHints::new(common::HIS_ARRAYS);
    let back = prefront::soap::xmljson::xml_to_json(
        common::his_answer_wrapper("queryWaitPay").as_bytes(),
        &hints,
    )
    .map_err(|e| format!("the XML answer does not map back: {e}"))?
    .to_string();
    // Compared as text: key order counts too.
    if back != his_answer {
        return Err("the XML answer does not map back to the JSON answer".into());
    }
    let files = [
        ("patient.json", patient.clone()),
        ("soap.xml", common::soap_request(&patient)),
        ("his_query.json", common::his_query()),
        ("cloud_answer.json", common::cloud_answer()),
        ("his_answer.json", his_answer.clone()),
    ];
    if !args.reuse_pki {
        for (name, text) in files {
            let p = args.dir.join(name);
            std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
        }
    }
    let answers = Arc::new(Answers {
        cloud: Bytes::from(common::cloud_answer()),
        his_json: Bytes::from(his_answer),
        // Operation names do not matter to prefront's reading of the answer (the wrapper is the
        // Body's first child, whatever it is called).
        his_xml: Bytes::from(common::his_answer_xml_envelope("queryWaitPay")),
        his_string: Bytes::from(common::his_answer_string_envelope(
            "queryMedicalInsuranceOrder",
        )),
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.max(1))
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let cloud = TcpListener::bind(("127.0.0.1", args.cloud_port))
            .await
            .map_err(|e| e.to_string())?;
        let his = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let cloud_http = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let port = |l: &TcpListener| l.local_addr().map(|a| a.port()).unwrap_or(0);
        println!(
            "cloud={} his={} cloud_http={}",
            port(&cloud),
            port(&his),
            port(&cloud_http)
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        tokio::spawn(accept(cloud, Some(acceptor), answers.clone(), true));
        tokio::spawn(accept(cloud_http, None, answers.clone(), true));
        tokio::spawn(accept(his, None, answers, false));
        tokio::time::sleep(Duration::from_secs(args.max_secs)).await;
        eprintln!("bench_upstream: --max-secs reached, exiting");
        Ok(())
    })
}

/// TLS settings serving `server.pem` and `server.key` from `dir` (ALPN `http/1.1`).
fn tls_from_files(dir: &std::path::Path) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert = dir.join("server.pem");
    let chain = CertificateDer::pem_file_iter(&cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = dir.join("server.key");
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

async fn accept(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    answers: Arc<Answers>,
    cloud: bool,
) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => {
                // Out of descriptors: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let answers = answers.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve(tcp, answers, cloud).await,
                Some(acceptor) => {
                    if let Ok(Ok(s)) =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    {
                        serve(s, answers, cloud).await;
                    }
                }
            }
        });
    }
}

async fn serve<S>(io: S, answers: Arc<Answers>, cloud: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let answers = answers.clone();
        async move { Ok::<_, Infallible>(answer(req, &answers, cloud).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

async fn answer(req: Request<Incoming>, answers: &Answers, cloud: bool) -> Response<Full<Bytes>> {
    let head = req.method() == Method::HEAD;
    let path_kind = if req.uri().path().ends_with("/xml") {
        2
    } else if req.uri().path().ends_with("/string") {
        1
    } else {
        0
    };
    // Read the whole request, as a real peer does, before answering.
    if req.into_body().collect().await.is_err() {
        return reply(StatusCode::BAD_REQUEST, "text/plain", Bytes::new());
    }
    const JSON: &str = "application/json;charset=UTF-8";
    const XML: &str = "text/xml; charset=utf-8";
    if head {
        return reply(StatusCode::OK, JSON, Bytes::new());
    }
    match (cloud, path_kind) {
        (true, _) => reply(StatusCode::OK, JSON, answers.cloud.clone()),
        (false, 2) => reply(StatusCode::OK, XML, answers.his_xml.clone()),
        (false, 1) => reply(StatusCode::OK, XML, answers.his_string.clone()),
        (false, _) => reply(StatusCode::OK, JSON, answers.his_json.clone()),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}
