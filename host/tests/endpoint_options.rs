//! How endpoints are reached: a private CA and mutual TLS against a real TLS server
//! (certificates made for the test, served by rustls and hyper), a request rate limit, and the
//! environment's proxy settings.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::router::{PATIENCE, RouterProcess, Scratch, run_command, toml_path, toml_str};
use support::sink::{Reply, Sink};

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
struct Pki {
    ca: CertificateDer<'static>,
    ca_pem: String,
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
    client_pem: (String, String),
}

fn pki() -> Pki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>, usage| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, "leaf");
        params.extended_key_usages = vec![usage];
        (params.signed_by(&key, &ca).unwrap(), key)
    };
    let (server, server_key) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client, client_key) = leaf(Vec::new(), ExtendedKeyUsagePurpose::ClientAuth);
    Pki {
        ca: ca.der().clone(),
        ca_pem: ca.pem(),
        server: (
            server.der().clone(),
            PrivatePkcs8KeyDer::from(server_key.serialize_der()).into(),
        ),
        client_pem: (client.pem(), client_key.serialize_pem()),
    }
}

/// An HTTPS server on 127.0.0.1 that demands a client certificate signed by the CA and
/// answers 200; records the path of each request it answered.
async fn mtls_server(pki: &Pki) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server.0.clone()], pki.server.1.clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&received);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                // A client without an acceptable certificate fails here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    seen.lock().unwrap().push(request.uri().path().to_owned());
                    async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::new(),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_and_a_client_certificate_reach_a_mutual_tls_endpoint() {
    let pki = pki();
    let (addr, received) = mtls_server(&pki).await;
    let scratch = Scratch::new();
    let ca = scratch.write("ca.pem", &pki.ca_pem);
    let cert = scratch.write("client.pem", &pki.client_pem.0);
    let key = scratch.write("client-key.pem", &pki.client_pem.1);
    let url = |path: &str| toml_str(&format!("https://127.0.0.1:{}/{path}", addr.port()));
    let once = "[endpoints.retry]\nmax_attempts = 1\n";
    let config = scratch.write(
        "router.toml",
        &format!(
            "{tables}[[endpoints]]\nname = \"mtls\"\nurl = {mtls}\n\
             [endpoints.tls]\nca = {ca}\ncert = {cert}\nkey = {{ file = {key} }}\n\n\
             [[endpoints]]\nname = \"system-roots\"\nurl = {system}\n{once}\n\
             [[endpoints]]\nname = \"no-client-cert\"\nurl = {anonymous}\n{once}\
             [endpoints.tls]\nca = {ca}\n",
            tables = scratch.tables(&support::quickstart_recording(), None),
            mtls = url("mtls"),
            system = url("system-roots"),
            anonymous = url("no-client-cert"),
            ca = toml_path(&ca),
            cert = toml_path(&cert),
            key = toml_path(&key),
        ),
    );
    let mut router = RouterProcess::start(&config);
    assert_eq!(router.exit_code(PATIENCE).await, 3, "{}", router.logs());
    let paths = received.lock().unwrap().clone();
    assert_eq!(
        paths.len(),
        25,
        "every event over mutual TLS, nothing else: {paths:?}"
    );
    assert!(paths.iter().all(|p| p == "/mtls"));
    let letters = scratch.dead_letters();
    let failed = |endpoint: &str| {
        letters
            .iter()
            .filter(|l| l["endpoint"] == endpoint)
            .map(|l| l["last_error"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        failed("system-roots").len(),
        25,
        "the CA is not trusted by default"
    );
    assert_eq!(
        failed("no-client-cert").len(),
        25,
        "the server wants a client certificate"
    );
    assert!(failed("mtls").is_empty());
    assert!(!router.logs().contains("BEGIN"), "no PEM in the logs");
}

#[test]
fn a_key_without_its_certificate_is_a_config_error_at_its_place() {
    let scratch = Scratch::new();
    let key = scratch.write("key.pem", "not used");
    let text = format!(
        "{}[[endpoints]]\nname = \"a\"\nurl = \"https://127.0.0.1:1/\"\n[endpoints.tls]\nkey = {{ file = {} }}\n",
        scratch.tables(&support::quickstart_recording(), None),
        toml_path(&key)
    );
    let path = scratch.write("router.toml", &text);
    let out = support::router::command()
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("endpoints[0].tls: cert and key go together"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_spaces_the_requests_to_an_endpoint() {
    let scratch = Scratch::new();
    let sink = Sink::start().await;
    sink.always("/paced", Reply::status(200));
    let config = scratch.write(
        "router.toml",
        &format!(
            "{}[[endpoints]]\nname = \"paced\"\nurl = {}\nrate = 20.0\n",
            scratch.tables(&support::quickstart_recording(), None),
            toml_str(&sink.url("/paced")),
        ),
    );
    let mut router = RouterProcess::start(&config);
    router.expect_success().await;
    let got = sink.received_on("/paced");
    assert_eq!(got.len(), 25);
    // 25 requests at 20 per second take at least 24 gaps of 50 ms (a floor, whatever the
    // machine's speed).
    let span = got.last().unwrap().at - got.first().unwrap().at;
    assert!(span >= Duration::from_millis(24 * 50 - 30), "{span:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_endpoints_honour_the_proxy_settings_of_the_environment() {
    let scratch = Scratch::new();
    // The sink stands in for a forward proxy too: it records the requests sent to it in
    // absolute form by their path, and their `host` header names where they were going.
    let sink = Sink::start().await;
    sink.always("/via-proxy", Reply::status(200));
    sink.always("/direct", Reply::status(200));
    let config = scratch.write(
        "router.toml",
        &format!(
            "{}[[endpoints]]\nname = \"proxied\"\nurl = {}\n\
             [[endpoints]]\nname = \"direct\"\nurl = {}\n",
            scratch.tables(&support::quickstart_recording(), None),
            // Unresolvable: only the proxy can deliver it.
            toml_str("http://receiver.invalid:8080/via-proxy?token=abc"),
            toml_str(&sink.url("/direct")),
        ),
    );
    let mut command = run_command(&config);
    for name in [
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "http_proxy",
        "no_proxy",
    ] {
        command.env_remove(name);
    }
    command
        .env("HTTP_PROXY", format!("http://{}", sink.addr))
        .env("NO_PROXY", "127.0.0.1");
    let mut router = RouterProcess::spawn(command);
    router.expect_success().await;

    let proxied = sink.received_on("/via-proxy");
    let direct = sink.received_on("/direct");
    assert_eq!(proxied.len(), 25, "{}", router.logs());
    assert_eq!(direct.len(), 25);
    for request in &proxied {
        assert_eq!(request.header("host"), "receiver.invalid:8080");
    }
    for request in &direct {
        assert_eq!(request.header("host"), sink.addr.to_string());
    }
    let ids = |got: &[support::sink::Received]| -> Vec<String> {
        got.iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect()
    };
    assert_eq!(
        ids(&proxied),
        ids(&direct),
        "the same events, in the same order"
    );
}
