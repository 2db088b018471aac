//! Redshift's sha256 password authentication (request code 13) through the exporter's pool,
//! against an in-process stand-in that speaks the wire protocol over TLS (a throwaway CA from
//! [`crate::tls`]) and stores only the verifier `SHA256(password ‖ salt)`; and, to show the
//! adapter leaves other methods alone, MD5 and cancel against a real PostgreSQL with TLS.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redshift_exporter::db::{self, ErrorKind, Target};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::pg::TestDb;
use crate::tls::{Pki, make_pki};

const PASSWORD: &str = "Sha256-Only-Ž-4471";

/// What the stand-in saw.
#[derive(Default)]
struct Seen {
    logins: AtomicUsize,
    refused: AtomicUsize,
    cancels: AtomicUsize,
    cancel: tokio::sync::Notify,
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    ctx.finish().as_ref().try_into().unwrap()
}

fn acceptor(pki: &Pki) -> tokio_rustls::TlsAcceptor {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.path("server.crt"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(pki.path("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Starts the stand-in; it sends its request in `pieces`-byte writes (0: one write).
async fn stand_in(pki: &Pki, pieces: usize) -> (u16, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let acceptor = acceptor(pki);
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen = s.clone();
            tokio::spawn(async move {
                let (_, code) = read_start(&mut sock).await?;
                assert_eq!(code, 80877103, "TLS first");
                sock.write_all(b"S").await.ok()?;
                let mut tls = acceptor.accept(sock).await.ok()?;
                session(&mut tls, &seen, pieces).await
            });
        }
    });
    (port, seen)
}

async fn read_start<S: AsyncRead + Unpin>(s: &mut S) -> Option<(Vec<u8>, u32)> {
    let len = s.read_u32().await.ok()? as usize;
    let code = s.read_u32().await.ok()?;
    let mut rest = vec![0u8; len - 8];
    s.read_exact(&mut rest).await.ok()?;
    Some((rest, code))
}

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn error(code: &str, text: &str) -> Vec<u8> {
    let body = format!("SFATAL\0VFATAL\0C{code}\0M{text}\0\0");
    message(b'E', body.as_bytes())
}

fn one_row(column: &str, value: &str) -> Vec<u8> {
    let mut t = 1u16.to_be_bytes().to_vec();
    t.extend_from_slice(column.as_bytes());
    // NUL, table OID, column number, type OID (text), size, modifier, format.
    t.extend_from_slice(&[
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
    ]);
    let mut d = 1u16.to_be_bytes().to_vec();
    d.extend_from_slice(&(value.len() as u32).to_be_bytes());
    d.extend_from_slice(value.as_bytes());
    [
        message(b'T', &t),
        message(b'D', &d),
        message(b'C', b"SELECT 1\0"),
    ]
    .concat()
}

const READY: &[u8] = b"Z\0\0\0\x05I";

async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    seen: &Seen,
    pieces: usize,
) -> Option<()> {
    let (_, code) = read_start(s).await?;
    if code == 80877102 {
        seen.cancels.fetch_add(1, Ordering::SeqCst);
        seen.cancel.notify_waiters();
        return Some(());
    }
    assert_eq!(code, 196608, "startup message");
    let salt: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(7)).collect();
    let stored = sha256(&[PASSWORD.as_bytes(), &salt]);
    let mut nonce = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).unwrap();
    let mut body = 13u32.to_be_bytes().to_vec();
    body.extend_from_slice(&0u32.to_be_bytes());
    body.extend_from_slice(&32u32.to_be_bytes());
    body.extend_from_slice(&salt);
    body.extend_from_slice(&32u32.to_be_bytes());
    body.extend_from_slice(&nonce);
    let request = message(b'R', &body);
    for chunk in request.chunks(if pieces == 0 { request.len() } else { pieces }) {
        s.write_all(chunk).await.ok()?;
        s.flush().await.ok()?;
        if pieces > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // The 'd' reply: Int32(32) digest Int32(n) client_nonce.
    assert_eq!(s.read_u8().await.ok()?, b'd');
    let len = s.read_u32().await.ok()? as usize;
    let mut reply = vec![0u8; len - 4];
    s.read_exact(&mut reply).await.ok()?;
    assert_eq!(len, 4 + 4 + 32 + 4 + (reply.len() - 40));
    let client_nonce = &reply[40..];
    assert!(client_nonce.iter().all(u8::is_ascii_digit));
    if reply[4..36] != sha256(&[&stored, &nonce, client_nonce]) {
        seen.refused.fetch_add(1, Ordering::SeqCst);
        s.write_all(&error(
            "28P01",
            "password authentication failed for user \"exporter\"",
        ))
        .await
        .ok()?;
        return Some(());
    }
    seen.logins.fetch_add(1, Ordering::SeqCst);
    let mut hello = message(b'R', &0u32.to_be_bytes());
    hello.extend(message(b'S', b"server_version\x008.0.2\0"));
    hello.extend(message(b'S', b"client_encoding\0UTF8\0"));
    hello.extend(message(b'K', &[0, 0, 0, 42, 0, 0, 0, 7]));
    hello.extend_from_slice(READY);
    s.write_all(&hello).await.ok()?;
    loop {
        let tag = s.read_u8().await.ok()?;
        let len = s.read_u32().await.ok()? as usize;
        let mut body = vec![0u8; len - 4];
        s.read_exact(&mut body).await.ok()?;
        if tag == b'X' {
            return Some(());
        }
        let sql = String::from_utf8_lossy(&body[..body.len() - 1]).into_owned();
        let mut out = if sql.is_empty() {
            message(b'I', b"")
        } else if sql.starts_with("SET ") {
            message(b'C', b"SET\0")
        } else if sql == "SELECT version()" {
            one_row(
                "version",
                "PostgreSQL 8.0.2 on i686-pc-linux-gnu, Redshift 1.0.1",
            )
        } else if sql.starts_with("SELECT pg_sleep") {
            let cancelled =
                tokio::time::timeout(Duration::from_secs(20), seen.cancel.notified()).await;
            assert!(cancelled.is_ok(), "no cancel request came");
            error("57014", "canceling statement due to user request")
        } else {
            one_row("v", "1")
        };
        out.extend_from_slice(READY);
        s.write_all(&out).await.ok()?;
    }
}

fn target(port: u16, pki: &Pki, password: &str, extra: &str) -> Target {
    let ca = pki.path("ca.crt").display().to_string();
    let text = format!(
        "[targets.t]\nhost = \"localhost\"\nport = {port}\ndatabase = \"dev\"\nuser = \"exporter\"\npassword = \"{password}\"\nsslmode = \"verify-full\"\nca_file = \"{ca}\"\nconnect_timeout = \"5s\"\npool_size = 4\n{extra}\n[[checks]]\nname = \"c\"\nquery = \"SELECT 1\"\nvalues = [\"v\"]\n"
    );
    let config = redshift_exporter::config::parse(&text, |_| None).unwrap();
    Target::new(config.targets[0].clone()).unwrap()
}

async fn select_one(client: &tokio_postgres::Client) -> String {
    first(&client.simple_query("SELECT 1 AS v").await.unwrap())
}

fn first(rows: &[tokio_postgres::SimpleQueryMessage]) -> String {
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sha256_user_logs_in_over_verified_tls_and_a_wrong_password_is_28p01() {
    let pki = make_pki();
    for pieces in [0, 1, 7] {
        let (port, seen) = stand_in(&pki, pieces).await;
        let t = target(port, &pki, PASSWORD, "");
        let client = db::get_client(&t.pool, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("sha256 login (request in {pieces}-byte writes): {e}"));
        assert_eq!(select_one(&client).await, "1");
        // A second concurrent session logs in on its own.
        let other = db::get_client(&t.pool, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(select_one(&other).await, "1");
        assert_eq!(seen.logins.load(Ordering::SeqCst), 2);
        drop((client, other));
        t.close().await;
    }

    let (port, seen) = stand_in(&pki, 0).await;
    let t = target(port, &pki, "not-the-password", "");
    let err = db::get_client(&t.pool, Duration::from_secs(10))
        .await
        .expect_err("a wrong password is refused");
    assert_eq!(err.kind, ErrorKind::Auth, "{err}");
    assert!(err.message.contains("28P01"), "{err}");
    assert!(!err.message.contains("not-the-password"), "{err}");
    assert_eq!(seen.refused.load(Ordering::SeqCst), 1);

    // Declared PostgreSQL: code 13 is not Redshift's there, and is not answered.
    let t = target(port, &pki, PASSWORD, "deployment = \"postgres\"");
    let err = db::get_client(&t.pool, Duration::from_secs(10))
        .await
        .expect_err("not answered for deployment = postgres");
    assert_eq!(err.kind, ErrorKind::Auth, "{err}");
    assert!(err.message.contains("method 13"), "{err}");
    assert_eq!(seen.logins.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_requests_reach_a_sha256_server() {
    let pki = make_pki();
    let (port, seen) = stand_in(&pki, 3).await;
    let t = target(port, &pki, PASSWORD, "");
    let client = db::get_client(&t.pool, Duration::from_secs(10))
        .await
        .unwrap();
    let token = client.cancel_token();
    let query = tokio::spawn(async move {
        let r = client.simple_query("SELECT pg_sleep(60)").await;
        (r, client)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    t.cancel(&token).await.expect("the cancel request is sent");
    let (r, client) = tokio::time::timeout(Duration::from_secs(10), query)
        .await
        .expect("the query ends after the cancel")
        .unwrap();
    let e = r.expect_err("cancelled");
    assert_eq!(e.code().map(|c| c.code()), Some("57014"), "{e}");
    assert_eq!(seen.cancels.load(Ordering::SeqCst), 1);
    // The session is still usable.
    assert_eq!(select_one(&client).await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_and_cancel_against_postgresql_pass_through_the_adapter() {
    let (cluster, pki) = crate::tls::tls_cluster_with("md5").await;
    let admin = TestDb::at("127.0.0.1", cluster.port(), "postgres", "postgres", None);
    // A pre-hashed 'md5…' password is stored as MD5 whatever password_encryption says.
    admin
        .execute("DO $$ BEGIN EXECUTE format('CREATE ROLE md5user LOGIN PASSWORD %L', 'md5' || md5('Md5-Pass-991md5user')); END $$")
        .await;
    let stored = admin.connect().await;
    let rows = stored
        .simple_query("SELECT left(rolpassword, 3) FROM pg_authid WHERE rolname = 'md5user'")
        .await
        .unwrap();
    assert_eq!(first(&rows), "md5", "the role's password is stored as MD5");
    let extra = "user = \"md5user\"\ndatabase = \"postgres\"";
    let text = |pw: &str| {
        let ca = pki.path("ca.crt").display().to_string();
        format!(
            "[targets.t]\nhost = \"localhost\"\nport = {}\npassword = \"{pw}\"\nsslmode = \"verify-full\"\nca_file = \"{ca}\"\nconnect_timeout = \"5s\"\n{extra}\n[[checks]]\nname = \"c\"\nquery = \"SELECT 1\"\nvalues = [\"v\"]\n",
            cluster.port()
        )
    };
    let t = Target::new(
        redshift_exporter::config::parse(&text("Md5-Pass-991"), |_| None)
            .unwrap()
            .targets[0]
            .clone(),
    )
    .unwrap();
    let client = db::get_client(&t.pool, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("MD5 login through the adapter: {e}"));
    let rows = client
        .simple_query(
            "SELECT current_user || ' ' || ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        )
        .await
        .unwrap();
    assert_eq!(first(&rows), "md5user true");
    let token = client.cancel_token();
    let query = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(60)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    t.cancel(&token).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), query)
        .await
        .expect("cancelled within 10 s")
        .unwrap();
    assert_eq!(
        r.expect_err("cancelled").code().map(|c| c.code()),
        Some("57014")
    );

    let t = Target::new(
        redshift_exporter::config::parse(&text("wrong"), |_| None)
            .unwrap()
            .targets[0]
            .clone(),
    )
    .unwrap();
    let err = db::get_client(&t.pool, Duration::from_secs(5))
        .await
        .expect_err("wrong MD5 password");
    assert_eq!(err.kind, ErrorKind::Auth, "{err}");
    assert!(err.message.contains("28P01"), "{err}");
    drop(cluster);
}
