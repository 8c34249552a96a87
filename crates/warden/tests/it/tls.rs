//! TLS everywhere: the MCP listener terminates TLS (and reloads its
//! certificate when the files change), verifies client certificates where
//! mTLS is on (and names the caller by them), and upstream connections
//! refuse expired and wrong-host certificates and present Warden's own
//! certificate to an upstream that asks for one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use warden::auth::{AuthConfig, MethodConfig};
use warden::tls::ListenerTls;
use warden_identity::{CertificateName, Delegates, MtlsMapping};

use crate::support::*;

/// A test CA that signs server and client certificates.
struct Pki {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca_pem: String,
    dir: tempfile::TempDir,
}

/// A certificate and its key, as PEM files.
struct Issued {
    cert: PathBuf,
    key: PathBuf,
    cert_pem: String,
    key_pem: String,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = rcgen::KeyPair::generate().expect("ca key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let ca = params.self_signed(&key).expect("ca");
        Pki {
            ca_pem: ca.pem(),
            issuer: rcgen::Issuer::new(params, key),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn ca_file(&self) -> PathBuf {
        let path = self.dir.path().join("ca.pem");
        std::fs::write(&path, &self.ca_pem).expect("ca");
        path
    }

    /// A certificate for `names` (DNS or IP), with `cn`, maybe a URI SAN,
    /// maybe long expired, written as `<file>.crt` and `<file>.key`.
    fn issue(
        &self,
        file: &str,
        names: &[&str],
        cn: &str,
        uri: Option<&str>,
        expired: bool,
    ) -> Issued {
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        if let Some(uri) = uri {
            params
                .subject_alt_names
                .push(rcgen::SanType::URI(uri.try_into().expect("uri")));
        }
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        let issued = Issued {
            cert: self.dir.path().join(format!("{file}.crt")),
            key: self.dir.path().join(format!("{file}.key")),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        std::fs::write(&issued.cert, &issued.cert_pem).expect("cert");
        std::fs::write(&issued.key, &issued.key_pem).expect("key");
        issued
    }
}

/// One TLS request to Warden at `addr` as `localhost`, trusting `ca`,
/// presenting `client` if given: the status and body, or the failure.
async fn tls_request(
    addr: std::net::SocketAddr,
    ca: &str,
    client: Option<&Issued>,
    body: &Value,
) -> Result<(StatusCode, Bytes, String), String> {
    tls_exchange(addr, ca, client, Some(body), "/mcp", None)
        .await
        .map(|(status, body, served, _)| (status, body, served))
}

/// A TLS GET (`body: None`) or POST of `body` to `path`.
async fn tls_exchange(
    addr: std::net::SocketAddr,
    ca: &str,
    client: Option<&Issued>,
    body: Option<&Value>,
    path: &str,
    session: Option<&str>,
) -> Result<(StatusCode, Bytes, String, Option<String>), String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(issued) => builder
            .with_client_auth_cert(
                rustls_pki_types::CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("chain"),
                rustls_pki_types::PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
                    .expect("key"),
            )
            .expect("client auth"),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let served = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|leaf| warden_identity::ClientCertificate::from_der(leaf))
        .and_then(|c| c.common_name)
        .unwrap_or_default();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let uri = format!("https://localhost:{}{path}", addr.port());
    let request = match body {
        Some(body) => Request::post(uri)
            .header("content-type", "application/json")
            .header("accept", ACCEPT_BOTH)
            .body(Full::new(Bytes::from(body.to_string()))),
        None => Request::get(uri).body(Full::new(Bytes::new())),
    };
    let mut request = request.expect("request");
    request
        .headers_mut()
        .insert("host", http::HeaderValue::from_static("localhost"));
    if let Some(session) = session {
        let headers = request.headers_mut();
        headers.insert("mcp-session-id", session.parse().expect("session"));
        headers.insert(
            "mcp-protocol-version",
            http::HeaderValue::from_static("2025-11-25"),
        );
    }
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body, served, session))
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "tls-it", "version": "1"}}})
}

fn listener(server: &Issued, client_ca: Option<PathBuf>) -> ListenerTls {
    ListenerTls {
        cert_file: server.cert.clone(),
        key_file: server.key.clone(),
        client_ca_file: client_ca,
        client_certificate_required: true,
    }
}

#[tokio::test]
async fn the_listener_terminates_tls_and_reloads_its_certificate_when_the_files_change() {
    let (upstream, _demo) = demo_upstream().await;
    let pki = Pki::new("listener CA");
    let server = pki.issue("server", &["localhost", "127.0.0.1"], "first", None, false);
    let warden = WardenBuilder::new(&upstream)
        .tls(listener(&server, None))
        .limits(|l| l.reload_interval = Duration::from_millis(50))
        .start()
        .await;
    let addr = warden.running.mcp_addr;
    let (status, _, served) = tls_request(addr, &pki.ca_pem, None, &initialize())
        .await
        .expect("tls");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served, "first");

    // Plain HTTP to a TLS listener gets no MCP answer.
    let plain = Agent::new(&format!("http://{addr}/mcp"));
    let request = plain
        .post_request("")
        .body(Full::new(Bytes::from(initialize().to_string())))
        .expect("request");
    let sent = tokio::time::timeout(Duration::from_secs(5), async {
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<Full<Bytes>>()
            .request(request)
            .await
    })
    .await
    .expect("answered or closed in time");
    assert!(sent.is_err(), "{sent:?}");

    // A new certificate written in place is served to new connections.
    std::fs::write(
        &server.cert,
        pki.issue("next", &["localhost"], "rotated", None, false)
            .cert_pem,
    )
    .expect("rotate cert");
    let next_key = std::fs::read(pki.dir.path().join("next.key")).expect("key");
    std::fs::write(&server.key, next_key).expect("rotate key");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, served) = tls_request(addr, &pki.ca_pem, None, &initialize())
            .await
            .expect("tls");
        assert_eq!(status, StatusCode::OK);
        if served == "rotated" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still serving {served}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_admin_listener_terminates_tls_too() {
    let (upstream, _demo) = demo_upstream().await;
    let pki = Pki::new("admin CA");
    let server = pki.issue("admin", &["localhost"], "admin", None, false);
    let warden = WardenBuilder::new(&upstream)
        .admin_tls(listener(&server, None))
        .start()
        .await;
    let admin = warden.running.admin_addr.expect("admin listener");
    let (status, body, served, _) = tls_exchange(admin, &pki.ca_pem, None, None, "/healthz", None)
        .await
        .expect("tls");
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(served, "admin");
    // The MCP listener, without a tls section, still speaks plain HTTP.
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
}

#[tokio::test]
async fn mtls_refuses_clients_without_a_certificate_and_names_those_with_one() {
    let (upstream, demo) = demo_upstream().await;
    let pki = Pki::new("listener CA");
    let clients = Pki::new("clients CA");
    let server = pki.issue("server", &["localhost"], "server", None, false);
    let notes_bot = clients.issue(
        "notes",
        &[],
        "notes-bot",
        Some("spiffe://test/agent/notes-bot"),
        false,
    );
    let reader = clients.issue(
        "reader",
        &[],
        "reader",
        Some("spiffe://test/agent/reader"),
        false,
    );
    let stranger =
        Pki::new("another CA").issue("x", &[], "x", Some("spiffe://test/agent/notes-bot"), false);
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\ntools:\n  create_note:\n    tier: write\n    callers: { agents: [\"spiffe://test/agent/notes-bot\"] }\n")
        .tls(listener(&server, Some(clients.ca_file())))
        .auth(AuthConfig {
            methods: vec![MethodConfig::Mtls(MtlsMapping {
                name_from: CertificateName::SanUri,
                groups: vec![],
            })],
            anonymous: false,
            delegates: Delegates::default(),
            oauth: None,
        })
        .start()
        .await;
    let addr = warden.running.mcp_addr;
    for (who, client) in [
        ("no certificate", None),
        ("another CA's certificate", Some(&stranger)),
    ] {
        let refused = tls_request(addr, &pki.ca_pem, client, &initialize()).await;
        assert!(refused.is_err(), "{who}: {refused:?}");
    }
    // The caller is who its certificate says: the policy grants by it.
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "create_note", "arguments": {"customer_id": 1, "text": "mtls"}}});
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let ca = pki.ca_pem.clone();
    let post = |client: &Issued, body: &Value, session: Option<&str>| {
        let (ca, body, session) = (ca.clone(), body.clone(), session.map(str::to_owned));
        let client = Issued {
            cert: client.cert.clone(),
            key: client.key.clone(),
            cert_pem: client.cert_pem.clone(),
            key_pem: client.key_pem.clone(),
        };
        async move {
            tls_exchange(
                addr,
                &ca,
                Some(&client),
                Some(&body),
                "/mcp",
                session.as_deref(),
            )
            .await
            .expect("tls")
        }
    };
    let mut sessions = Vec::new();
    for (client, allowed) in [(&notes_bot, true), (&reader, false)] {
        let (status, body, _, session) = post(client, &initialize(), None).await;
        assert_eq!(status, StatusCode::OK, "{body:?}");
        let session = session.expect("a session");
        let (status, _, _, _) = post(client, &initialized, Some(&session)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let (status, reply, _, _) = post(client, &call, Some(&session)).await;
        assert_eq!(status, StatusCode::OK);
        let reply: Value = serde_json::from_slice(&reply).expect("json");
        assert_eq!(
            reply["result"]["isError"].as_bool().unwrap_or(false),
            !allowed,
            "{reply}"
        );
        if !allowed {
            assert_eq!(
                reply["result"]["structuredContent"]["warden"]["reason"],
                "not-for-caller"
            );
        }
        sessions.push(session);
    }
    assert_eq!(
        demo.notes_written(),
        1,
        "notes-bot's call ran, reader's did not"
    );
    // reader's certificate does not open notes-bot's session.
    let (status, _, _, _) = post(&reader, &call, Some(&sessions[0])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(demo.notes_written(), 1);
}

/// An https upstream (the demo server behind TLS) presenting `server`,
/// asking clients for a certificate from `client_ca` if given.
async fn tls_upstream(server: &Issued, client_ca: Option<&str>) -> String {
    use rustls_pki_types::pem::PemObject;
    let (plain_url, _) = demo_upstream().await;
    let plain: http::Uri = plain_url.parse().expect("url");
    let plain_addr = plain.authority().expect("authority").to_string();
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(server.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("chain");
    let key =
        rustls_pki_types::PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).expect("key");
    let builder = rustls::ServerConfig::builder();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(cert.expect("pem")).expect("root");
            }
            builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .expect("verifier"),
            )
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(
        builder.with_single_cert(certs, key).expect("server config"),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, plain_addr) = (acceptor.clone(), plain_addr.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(plain_addr).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    format!("https://localhost:{port}/mcp")
}

async fn initialize_through(warden: &TestWarden) -> StatusCode {
    Agent::new(&warden.url).post(&initialize()).await.status
}

#[tokio::test]
async fn upstream_certificates_are_verified_and_warden_presents_its_own_where_asked() {
    let pki = Pki::new("upstream CA");
    let ca_file = pki.ca_file();
    let valid = pki.issue("valid", &["localhost"], "upstream", None, false);
    let expired = pki.issue("expired", &["localhost"], "upstream", None, true);
    let wrong_host = pki.issue("wrong", &["other.example"], "upstream", None, false);
    for (server, expected) in [
        (&valid, StatusCode::OK),
        (&expired, StatusCode::BAD_GATEWAY),
        (&wrong_host, StatusCode::BAD_GATEWAY),
    ] {
        let url = tls_upstream(server, None).await;
        let warden = WardenBuilder::new(&url).ca_file(&ca_file).start().await;
        assert_eq!(
            initialize_through(&warden).await,
            expected,
            "{}",
            server.cert.display()
        );
    }
    // Without the CA, even the valid chain is not trusted.
    let url = tls_upstream(&valid, None).await;
    let untrusted = WardenBuilder::new(&url).start().await;
    let reply = Agent::new(&untrusted.url).post(&initialize()).await;
    assert_error(&reply, StatusCode::BAD_GATEWAY, -32001);
    // An upstream that asks for a client certificate: Warden presents its own.
    let clients = Pki::new("upstream clients CA");
    let warden_cert = clients.issue("warden", &[], "warden", None, false);
    let url = tls_upstream(&valid, Some(&clients.ca_pem)).await;
    let without = WardenBuilder::new(&url).ca_file(&ca_file).start().await;
    assert_eq!(initialize_through(&without).await, StatusCode::BAD_GATEWAY);
    let with = WardenBuilder::new(&url)
        .ca_file(&ca_file)
        .upstream_client_cert(&warden_cert.cert, &warden_cert.key)
        .start()
        .await;
    assert_eq!(initialize_through(&with).await, StatusCode::OK);
    let _: &Path = pki.dir.path();
}

/// An approver known by their client certificate (`approvals.identity`
/// with `mtls` on the admin listener): decides with no token at all, with
/// the CLI's `--client-cert`; a certificate from the same CA that `allow`
/// does not name decides nothing, and no certificate is nobody.
#[tokio::test]
async fn an_approver_known_by_a_client_certificate_decides_without_a_token() {
    use crate::approvals::{approvals, invoice, warden_result};
    let (upstream, demo) = demo_upstream().await;
    let pki = Pki::new("admin CA");
    let clients = Pki::new("approvers CA");
    let server = pki.issue("admin", &["localhost"], "admin", None, false);
    let carol = clients.issue(
        "carol",
        &[],
        "carol",
        Some("spiffe://test/approver/carol"),
        false,
    );
    let dave = clients.issue(
        "dave",
        &[],
        "dave",
        Some("spiffe://test/approver/dave"),
        false,
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut settings = approvals(tmp.path(), Duration::from_millis(200));
    settings.identity = Some(warden::auth::ApproverIdentityConfig {
        methods: vec![MethodConfig::Mtls(MtlsMapping {
            name_from: CertificateName::SanUri,
            groups: vec![],
        })],
        allow: Delegates {
            agents: vec!["spiffe://test/approver/carol".into()],
            groups: vec![],
        },
    });
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\ntools:\n  send_invoice: approve\n")
        // Optional: token approvers, Slack and probes connect without one.
        .admin_tls(ListenerTls {
            client_certificate_required: false,
            ..listener(&server, Some(clients.ca_file()))
        })
        .approvals(settings)
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let pending = warden_result(&agent.call(1, "send_invoice", invoice(300)).await);
    let id = pending["structuredContent"]["approval"]["id"]
        .as_str()
        .expect("pending, with its id")
        .to_owned();
    let admin = warden.running.admin_addr.expect("admin listener");
    let approve = format!("/approvals/{id}/approve");

    let (status, body, _, _) = tls_exchange(
        admin,
        &pki.ca_pem,
        Some(&dave),
        Some(&json!({})),
        &approve,
        None,
    )
    .await
    .expect("tls");
    assert_eq!(status, StatusCode::FORBIDDEN, "{body:?}");
    let said: Value = serde_json::from_slice(&body).expect("json");
    assert!(
        said["error"]
            .as_str()
            .is_some_and(|e| e.contains("spiffe://test/approver/dave is not an approver")),
        "{said}"
    );
    // No certificate: connected, but nobody.
    let (status, body, _, _) =
        tls_exchange(admin, &pki.ca_pem, None, Some(&json!({})), &approve, None)
            .await
            .expect("tls without a client certificate");
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body:?}");
    assert_eq!(demo.invoices_sent(), 0);

    // carol decides with the CLI, presenting her certificate, no token.
    let ca = pki.dir.path().join("admin-ca.pem");
    std::fs::write(&ca, &pki.ca_pem).expect("ca");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["approvals", "approve", &id, "--admin"])
        .arg(format!("https://localhost:{}", admin.port()))
        .arg("--ca-file")
        .arg(&ca)
        .arg("--client-cert")
        .arg(&carol.cert)
        .arg("--client-key")
        .arg(&carol.key)
        .env_remove("WARDEN_APPROVER_TOKEN")
        .env_remove("WARDEN_CONFIG")
        .output()
        .await
        .expect("runs");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(said.contains("approved"), "{said}");
    let (status, body, _, _) = tls_exchange(
        admin,
        &pki.ca_pem,
        Some(&carol),
        None,
        &format!("/approvals/{id}"),
        None,
    )
    .await
    .expect("tls");
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let decided: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(decided["status"], "approved");
    assert_eq!(
        decided["votes"][0]["approver"],
        "spiffe://test/approver/carol"
    );
    let ran = warden_result(&agent.call(2, "send_invoice", invoice(300)).await);
    assert_eq!(ran["isError"], Value::Null, "{ran}");
    assert_eq!(demo.invoices_sent(), 1);
}
