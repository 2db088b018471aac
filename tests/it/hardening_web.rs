//! Hardening, the web endpoint: TLS and basic auth on `/metrics` from `--web.config.file` through
//! the real daemon (certificates made with `openssl`, requests made with `curl`), plain HTTP
//! refused on the TLS port, a bad web config exiting 2, and malformed requests (sent raw)
//! refused with a 4xx while the daemon keeps serving.

use std::path::Path;
use std::process::Command;

use crate::support::names::*;
use crate::support::*;

fn run(dir: &Path, program: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A bcrypt hash of `password` (cost 4, for speed), in the `$2b$` form htpasswd and
/// python's bcrypt write.
fn bcrypt_hash(_dir: &Path, password: &str) -> String {
    bcrypt::hash(password, 4).expect("bcrypt hashes")
}

/// `curl` result: (HTTP status, headers and body as text).
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "5", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl is required");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_over_tls_with_basic_auth_and_bad_web_configs_exit_two() {
    let db = database().await;
    let work = WorkDir::new();
    let dir = work.path();
    run(
        dir,
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
    );
    let hash = bcrypt_hash(dir, "s3cret pass");
    let web = work.write(
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\nbasic_auth_users:\n  prom: '{hash}'\n"
        ),
    );
    let cfg = work.write(
        "checks.toml",
        &config_toml(
            &work,
            &db,
            &check_toml("sec", "SELECT 1 AS v", "values = [\"v\"]"),
        ),
    );
    let web_s = web.to_string_lossy().into_owned();
    let mut d = Daemon::spawn(&cfg, "127.0.0.1:0", &["--web.config.file", &web_s], &[]);
    let addr = d.wait_listening(secs(15)).await;
    let listening = d.logs_with_message("listening");
    assert!(
        listening[0].0.contains("\"tls\":true") && listening[0].0.contains("\"basic_auth\":true"),
        "{}",
        listening[0].0
    );
    let cacert = dir.join("cert.pem").to_string_lossy().into_owned();
    let url = format!("https://127.0.0.1:{}/metrics", addr.port());

    // Right credentials: 200 and a valid scrape (wait for the first run).
    let deadline = std::time::Instant::now() + secs(10);
    let body = loop {
        let (code, resp) = curl(&["--cacert", &cacert, "-u", "prom:s3cret pass", &url]);
        assert_eq!(code, 200, "{resp}");
        let body = resp.split_once("\r\n\r\n").unwrap().1.to_owned();
        let m = Metrics::parse(&body).unwrap();
        if m.check_value(SUCCESS, "sec") == Some(1.0) {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(ms(200)).await;
    };
    assert!(body.contains("itest_sec_v{target=\"main\"} 1"), "{body}");

    // Wrong or missing credentials: 401 with a challenge, on every route.
    for (what, extra) in [
        ("wrong password", vec!["-u", "prom:nope"]),
        ("unknown user", vec!["-u", "root:s3cret pass"]),
        ("no credentials", vec![]),
    ] {
        for path in ["/metrics", "/", "/-/healthy", "/-/ready"] {
            let url = format!("https://127.0.0.1:{}{path}", addr.port());
            let mut args = vec!["--cacert", cacert.as_str()];
            args.extend(extra.iter().copied());
            args.push(&url);
            let (code, resp) = curl(&args);
            assert_eq!(code, 401, "{what} {path}: {resp}");
            assert!(
                resp.to_ascii_lowercase()
                    .contains("www-authenticate: basic realm="),
                "{what} {path}: {resp}"
            );
            assert!(!resp.contains("itest_"), "{what} {path} leaked data");
        }
    }
    // Really TLS with our certificate: unknown CA refused, plain HTTP gets no answer.
    let (code, _) = curl(&["-u", "prom:s3cret pass", &url]);
    assert_eq!(
        code, 0,
        "the self-signed certificate must not verify without --cacert"
    );
    assert!(
        http_get_plain(addr).await.is_err(),
        "plain HTTP on the TLS port must not be answered"
    );
    d.sigterm();
    assert_eq!(d.wait_exit(secs(15)).await.code(), Some(0));

    // A bad web config file is a start-up error: exit 2, the problem in the log.
    for (name, text, needle) in [
        (
            "missing_cert.yml",
            "tls_server_config:\n  cert_file: nope.pem\n  key_file: key.pem\n".to_string(),
            "nope.pem",
        ),
        (
            "not_bcrypt.yml",
            "basic_auth_users:\n  prom: plaintext\n".to_string(),
            "bcrypt",
        ),
        (
            "unknown_key.yml",
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  bogus: 1\n"
                .to_string(),
            "bogus",
        ),
        (
            "syntax.yml",
            "basic_auth_users: [".to_string(),
            "syntax.yml",
        ),
        (
            "mismatch.yml",
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: cert.pem\n".to_string(),
            "key",
        ),
    ] {
        let path = work.write(name, &text);
        let p = path.to_string_lossy().into_owned();
        let mut d = Daemon::spawn(&cfg, "127.0.0.1:0", &["--web.config.file", &p], &[]);
        let status = d.wait_exit(secs(15)).await;
        assert_eq!(status.code(), Some(2), "{name}: {}", d.log_text());
        assert!(
            d.log_text().contains(needle),
            "{name}: the problem ({needle}) is reported:\n{}",
            d.log_text()
        );
    }
}

/// A plain-HTTP GET against a TLS port; `Err` when no HTTP response comes back.
async fn http_get_plain(addr: std::net::SocketAddr) -> Result<(), String> {
    crate::support::http::get(addr, "/metrics")
        .await
        .map(|_| ())
}

/// Requests no client sends (a request line that is not HTTP, a header without a colon, a
/// second Content-Length that disagrees, an unknown HTTP version) get a 4xx answer, never a
/// hang or a crash, and the daemon keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_and_the_daemon_keeps_serving() {
    let checks = check_toml("ok", "SELECT 1 AS v", "values = [\"v\"]");
    let (_db, _work, d) = start_with_checks(&checks).await;
    for raw in [
        &b"NOT AN HTTP REQUEST\r\n\r\n"[..],
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 5\r\n\r\nab",
        b"GET /metrics HTTP/9.9\r\nHost: x\r\n\r\n",
    ] {
        let answer = http::raw_exchange(d.addr(), raw)
            .await
            .unwrap_or_else(|e| panic!("{e} for {:?}", String::from_utf8_lossy(raw)));
        let r = http::parse_response(&answer)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&answer)));
        assert!(
            (400..500).contains(&r.status),
            "{:?} answered {}",
            String::from_utf8_lossy(raw),
            r.status
        );
    }
    let m = d
        .wait_metrics("the check to run", secs(10), |m| {
            m.check_value(SUCCESS, "ok") == Some(1.0)
        })
        .await;
    assert!(m.has_family(BUILD_INFO));
}
