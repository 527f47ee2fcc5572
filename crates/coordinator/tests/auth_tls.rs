//! Authentication and TLS on real sockets: prover tokens (fleet and per-prover), admin
//! bearer tokens with roles, TLS and mutual TLS with certificates made here (rcgen), and
//! the clear message when a URL's scheme does not match what the server speaks. The store
//! plays no part in these checks, so they run on SQLite only.

mod support;

use proofmill_coordinator::{AdminAuth, ProverAuth, Role, ServerTls, TokenHash};
use proofmill_proto::client::{self, BearerToken, ClientTls, Speaks};
use proofmill_proto::v1::admin_service_client::AdminServiceClient;
use proofmill_proto::v1::prover_service_client::ProverServiceClient;
use proofmill_proto::v1::{
    CancelJobRequest, CordonProverRequest, ErrorCode, HealthCheckRequest, LaunchProofRequest,
    ProverMessage, SystemStatusRequest, prover_message::Kind as In,
};
use proofmill_prover::{Prover, ProverConfig};
use proofmill_types::ProofType;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::time::Duration;
use support::*;
use tonic::Code;
use tonic::transport::Channel;

fn prover_auth() -> ProverAuth {
    ProverAuth::open()
        .with_fleet_token("fleet-secret")
        .with_file(&format!("gpu-1 {}\n", TokenHash::of("gpu-1-secret")))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prover_tokens_fleet_and_own() {
    let env = Env::new(Db::Sqlite, "auth-provers");
    let mut cfg = fast_config();
    cfg.prover_auth = prover_auth();
    let c = start(&env, cfg).await;
    let with = |name: &str, token: Option<&str>| proofmill_proto::v1::Register {
        token: token.map(str::to_string),
        ..register(name, &["exec"], 1)
    };
    // (register, accepted, words the refusal must hold)
    let cases = [
        (with("cpu-1", None), false, "missing prover token"),
        (with("cpu-1", Some("nope")), false, "wrong prover token"),
        (
            with("gpu-2", Some("gpu-1-secret")),
            false,
            "bound to the name `gpu-1`",
        ),
        (
            with("gpu-1", Some("fleet-secret")),
            false,
            "has a token of its own",
        ),
    ];
    for (reg, _, words) in &cases {
        let (_tx, mut rx) = open(&c.url(), In::Register(reg.clone())).await;
        let r = first_response(&mut rx).await;
        assert!(!r.accepted, "{:?} accepted", reg.name);
        assert_eq!(r.code, ErrorCode::Unauthenticated as i32, "{}", r.reason);
        assert!(r.reason.contains(words), "{}", r.reason);
        assert!(!r.reason.contains("secret"), "a secret in {}", r.reason);
    }
    // Refused: nothing registered.
    assert!(c.coord.provers().await.unwrap().is_empty());

    let own = RawProver::register(&c.url(), with("gpu-1", Some("gpu-1-secret"))).await;
    let fleet = RawProver::register(&c.url(), with("cpu-1", Some("fleet-secret"))).await;
    let mut names: Vec<String> = c
        .coord
        .provers()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.info.name)
        .collect();
    names.sort();
    assert_eq!(names, ["cpu-1", "gpu-1"]);
    drop((own, fleet));
    c.stop().await;
}

fn admin_auth() -> AdminAuth {
    let mut auth = AdminAuth::open();
    auth.add("viewer", Role::ReadOnly, TokenHash::of("view-token"))
        .unwrap();
    auth.add("ops", Role::Operator, TokenHash::of("ops-token"))
        .unwrap();
    auth
}

async fn admin_with(
    url: &str,
    token: Option<&str>,
) -> AdminServiceClient<tonic::service::interceptor::InterceptedService<Channel, BearerToken>> {
    let channel = Channel::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    AdminServiceClient::with_interceptor(channel, BearerToken::new(token).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_roles() {
    let env = Env::new(Db::Sqlite, "auth-admin");
    let mut cfg = fast_config();
    cfg.admin_auth = admin_auth();
    let c = start(&env, cfg).await;
    submit(&c.coord, 1, &["exec"]).await;
    let _p = RawProver::register(&c.url(), register("p1", &["exec"], 1)).await;
    let prover_id = c.coord.provers().await.unwrap()[0].id.to_string();

    // Open: the liveness call.
    let mut anonymous = admin_with(&c.url(), None).await;
    assert!(anonymous.health_check(HealthCheckRequest {}).await.is_ok());
    let s = anonymous
        .system_status(SystemStatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    assert!(s.message().contains("missing admin token"), "{s:?}");
    let s = admin_with(&c.url(), Some("guess"))
        .await
        .system_status(SystemStatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");

    // Read-only: reads yes, controls no (and nothing changes).
    let mut viewer = admin_with(&c.url(), Some("view-token")).await;
    viewer.system_status(SystemStatusRequest {}).await.unwrap();
    let cordon = CordonProverRequest {
        prover_id: prover_id.clone(),
        cordoned: true,
    };
    let s = viewer.cordon_prover(cordon.clone()).await.unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    assert!(
        s.message()
            .contains("`viewer` has role read-only; this call needs operator"),
        "{s:?}"
    );
    let s = viewer
        .cancel_job(CancelJobRequest {
            chain_id: 0,
            batch: 1,
            proof_type: "exec".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    let s = viewer
        .launch_proof(LaunchProofRequest::default())
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    let s = anonymous.cordon_prover(cordon.clone()).await.unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    assert!(c.coord.provers().await.unwrap()[0].cordoned.is_none());
    let counts = c.coord.status().await.unwrap().jobs;
    assert_eq!(counts["exec"].cancelled, 0, "{counts:?}");

    // Operator: the control goes through.
    let mut ops = admin_with(&c.url(), Some("ops-token")).await;
    let r = ops.cordon_prover(cordon).await.unwrap().into_inner();
    assert!(r.error.is_none(), "{r:?}");
    assert!(c.coord.provers().await.unwrap()[0].cordoned.is_some());
    c.stop().await;
}

/// A CA, and leaf certificates it signs.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Pki {
            ca: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn ca_pem(&self) -> Vec<u8> {
        self.ca.pem().into_bytes()
    }

    /// (certificate, key) in PEM.
    fn leaf(&self, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> (Vec<u8>, Vec<u8>) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
    }
}

fn client_tls(pki: &Pki, identity: Option<(Vec<u8>, Vec<u8>)>) -> ClientTls {
    ClientTls {
        ca: Some(pki.ca_pem()),
        identity,
    }
}

/// Opens a prover stream over `tls` and sends Register: whether the coordinator accepted.
async fn register_over(url: &str, tls: &ClientTls, name: &str) -> Result<bool, String> {
    let channel = client::endpoint(url, tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| client::error_chain(&e))?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(ProverMessage {
        kind: Some(In::Register(register(name, &["exec"], 1))),
    })
    .await
    .unwrap();
    let mut inbound = ProverServiceClient::new(channel)
        .prover_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|s| format!("{s:?}"))?
        .into_inner();
    let r = tokio::time::timeout(Duration::from_secs(5), first_response(&mut inbound))
        .await
        .map_err(|_| "no answer".to_string())?;
    Ok(r.accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_certificates_of_its_ca() {
    let pki = Pki::new("proofmill test CA");
    let rogue = Pki::new("rogue CA");
    let (cert, key) = pki.leaf(
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let env = Env::new(Db::Sqlite, "auth-mtls");
    let mut cfg = fast_config();
    cfg.tls = Some(ServerTls::from_pem(&cert, &key, Some(&pki.ca_pem())).unwrap());
    let c = start(&env, cfg).await;
    let https = format!("https://127.0.0.1:{}", c.addr.port());

    // A real prover with a certificate of the CA registers.
    let client_id = pki.leaf(&["prover-1"], ExtendedKeyUsagePurpose::ClientAuth);
    let prover = Prover::new(ProverConfig {
        coordinators: vec![https.clone()],
        name: "tls-prover".into(),
        version: "v1".into(),
        tls: client_tls(&pki, Some(client_id.clone())),
        backends: vec![(
            ProofType::new("exec").unwrap(),
            std::sync::Arc::new(proofmill_devnet::ExecBackend),
        )],
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        ..ProverConfig::default()
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(prover.run(async move {
        let _ = stop_rx.await;
    }));
    wait_for(
        "the prover registered over TLS",
        Duration::from_secs(20),
        || async {
            let provers = c.coord.provers().await.unwrap();
            provers
                .iter()
                .any(|p| p.info.name == "tls-prover" && p.connected)
        },
    )
    .await;
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;

    // Refused: no certificate, or one from another CA; nothing registers.
    let before = c.coord.provers().await.unwrap().len();
    let no_cert = register_over(&https, &client_tls(&pki, None), "anon").await;
    assert!(no_cert.is_err(), "{no_cert:?}");
    let rogue_id = rogue.leaf(&["prover-x"], ExtendedKeyUsagePurpose::ClientAuth);
    let rogue_cert = register_over(&https, &client_tls(&pki, Some(rogue_id)), "rogue").await;
    assert!(rogue_cert.is_err(), "{rogue_cert:?}");
    // A client that does not trust the server's CA refuses it.
    let untrusting = register_over(&https, &client_tls(&rogue, Some(client_id)), "x").await;
    let e = untrusting.unwrap_err();
    assert!(e.contains("certificate"), "{e}");
    let names: Vec<String> = c
        .coord
        .provers()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.info.name)
        .collect();
    assert_eq!(names.len(), before, "{names:?}");
    assert!(names.iter().all(|n| n == "tls-prover"), "{names:?}");

    // http:// to this TLS port: the probe and the message say so.
    let http = format!("http://127.0.0.1:{}", c.addr.port());
    assert_eq!(client::probe(&http).await, Some(Speaks::Tls));
    let failed = register_over(&http, &ClientTls::default(), "plain")
        .await
        .unwrap_err();
    let why = client::explain(&http, &failed).await;
    assert!(why.contains("serves TLS: use https://"), "{why}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_plaintext_server_says_so() {
    let pki = Pki::new("proofmill test CA");
    let env = Env::new(Db::Sqlite, "auth-plain");
    let c = start(&env, fast_config()).await;
    let https = format!("https://127.0.0.1:{}", c.addr.port());
    assert_eq!(client::probe(&c.url()).await, Some(Speaks::Plaintext));
    let failed = register_over(&https, &client_tls(&pki, None), "p")
        .await
        .unwrap_err();
    let why = client::explain(&https, &failed).await;
    assert!(why.contains("serves plaintext: use http://"), "{why}");
    // TLS options with an http:// URL are refused before connecting.
    let e = client::endpoint(&c.url(), &client_tls(&pki, None)).unwrap_err();
    assert!(e.contains("use https://"), "{e}");
    assert!(c.coord.provers().await.unwrap().is_empty());
    c.stop().await;
}

#[test]
fn bad_pem_is_an_error_at_startup() {
    let e = ServerTls::from_pem(b"not a cert", b"not a key", None).unwrap_err();
    assert!(e.to_string().contains("TLS"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_asks_the_same_admin_tokens() {
    let env = Env::new(Db::Sqlite, "auth-standby");
    let store = proofmill_store::open_store(&env.db_url).await.unwrap();
    let (_holder, seen) = tokio::sync::watch::channel(None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serving = proofmill_coordinator::Standby::new(
        store,
        seen,
        vec!["exec".into()],
        proofmill_types::DEFAULT_CHAIN,
    )
    .secured(admin_auth(), None)
    .spawn_serve(tokio_stream::wrappers::TcpListenerStream::new(listener));

    let s = admin_with(&url, None)
        .await
        .system_status(SystemStatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    let mut viewer = admin_with(&url, Some("view-token")).await;
    let status = viewer
        .system_status(SystemStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.standby, "{status:?}");
    let s = viewer
        .cordon_prover(CordonProverRequest {
            prover_id: "x".into(),
            cordoned: true,
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    // An operator gets past the door, to the standby's own refusal.
    let s = admin_with(&url, Some("ops-token"))
        .await
        .cordon_prover(CordonProverRequest {
            prover_id: "x".into(),
            cordoned: true,
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
    // The client API: the same door, then the standby's refusal.
    let mut client =
        proofmill_proto::v1::client_service_client::ClientServiceClient::connect(url.clone())
            .await
            .unwrap();
    let get = || proofmill_proto::v1::GetBatchRequest {
        chain_id: 1,
        batch_number: 1,
    };
    let s = client.get_batch(get()).await.unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    let mut request = tonic::Request::new(get());
    request
        .metadata_mut()
        .insert("authorization", "Bearer view-token".parse().unwrap());
    let s = client.get_batch(request).await.unwrap_err();
    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
    assert!(s.message().starts_with("standby coordinator"), "{s:?}");
    serving.stop().await.unwrap();
}
