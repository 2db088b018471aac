//! TLS to the database, against a real PostgreSQL with `ssl = on` and a certificate issued by a
//! throwaway CA (made with the `openssl` command): the right CA passes, a wrong CA and a wrong
//! host name fail with a clear error, `require` encrypts without verifying, `disable` does not
//! encrypt. Each case runs `redshift-exporter once` with a check that reports whether its own
//! session is encrypted (`pg_stat_ssl`).

use std::path::{Path, PathBuf};
use std::process::Command;

use redshift_exporter::pgtemp::TempCluster;

pub(crate) struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl command is installed");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for localhost/127.0.0.1 signed by it, and an unrelated CA.
pub(crate) fn make_pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for ca in ["ca", "other-ca"] {
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
                "-subj",
                &format!("/CN=redshift-exporter test {ca}"),
            ],
        );
    }
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        d.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "server.crt",
            "-extfile",
            "san.ext",
        ],
    );
    Pki { dir }
}

/// A throwaway PostgreSQL with TLS on `pki`'s server certificate; `hba` replaces pg_hba.conf.
fn start_ssl_cluster(pki: &Pki, hba: Option<&str>) -> TempCluster {
    let crt = std::fs::read(pki.path("server.crt")).unwrap();
    let key = std::fs::read(pki.path("server.key")).unwrap();
    let mut files: Vec<(&str, &[u8], u32)> =
        vec![("server.crt", &crt, 0o644), ("server.key", &key, 0o600)];
    if let Some(h) = hba {
        files.push(("pg_hba.conf", h.as_bytes(), 0o600));
    }
    TempCluster::start_with(
        &files,
        &[
            ("ssl", "on"),
            ("ssl_cert_file", "server.crt"),
            ("ssl_key_file", "server.key"),
        ],
    )
    .expect("a throwaway PostgreSQL with TLS starts")
}

/// Runs `once` with one target; returns (exit code, stdout, stderr).
fn once(dir: &Path, port: u16, target_extra: &str) -> (i32, String, String) {
    let archive = dir.join("archive").display().to_string();
    let config = format!(
        r#"
[exporter]
archive_dir = "{archive}"
[targets.main]
port = {port}
database = "postgres"
user = "postgres"
connect_timeout = "5s"
{target_extra}
[[checks]]
name = "encrypted"
query = "SELECT CASE WHEN ssl THEN 1 ELSE 0 END::float8 AS v FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
values = ["v"]
timeout = "10s"
"#
    );
    let path = dir.join("checks.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_redshift-exporter"))
        .args(["once", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value the check's CSV recorded: 1 when its session was encrypted.
fn encrypted(out: &str) -> String {
    let path = out
        .split_whitespace()
        .find_map(|w| w.strip_prefix("file="))
        .unwrap_or_else(|| panic!("no file= in {out}"));
    let csv = std::fs::read_to_string(path).unwrap();
    csv.lines().nth(1).unwrap_or_default().to_string()
}

#[test]
fn tls_to_the_database_verifies_ca_and_host_name() {
    let pki = make_pki();
    let cluster = start_ssl_cluster(&pki, None);
    let port = cluster.port();
    let dir = pki.dir.path();
    let ca = pki.path("ca.crt").display().to_string();
    let other = pki.path("other-ca.crt").display().to_string();

    // Right CA, right name: verified and encrypted (the check's session sees ssl = true).
    let (code, out, err) = once(
        dir,
        port,
        &format!("host = \"localhost\"\nsslmode = \"verify-full\"\nca_file = \"{ca}\""),
    );
    assert_eq!(
        code, 0,
        "verify-full with the right CA must pass:\n{out}\n{err}"
    );
    assert!(
        out.contains("ok check=encrypted target=main rows=1"),
        "{out}"
    );
    assert_eq!(encrypted(&out), "1", "the session must be encrypted");

    // The IP address is in the certificate too.
    let (code, out, err) = once(
        dir,
        port,
        &format!("host = \"127.0.0.1\"\nsslmode = \"verify-full\"\nca_file = \"{ca}\""),
    );
    assert_eq!(code, 0, "verify-full by IP SAN must pass:\n{out}\n{err}");

    // Wrong CA: refused, and the reason says so.
    let (code, out, _) = once(
        dir,
        port,
        &format!("host = \"localhost\"\nsslmode = \"verify-full\"\nca_file = \"{other}\""),
    );
    assert_eq!(code, 1, "verify-full with a wrong CA must fail:\n{out}");
    assert!(out.contains("kind=connect"), "{out}");
    assert!(
        out.to_lowercase().contains("certificate"),
        "the error names the certificate problem: {out}"
    );
    assert!(
        out.contains("UnknownIssuer") || out.to_lowercase().contains("unknown issuer"),
        "{out}"
    );

    // Wrong host name (connecting to the right address): refused for the name.
    let (code, out, _) = once(
        dir,
        port,
        &format!(
            "host = \"wrong.example\"\nhostaddr = \"127.0.0.1\"\nsslmode = \"verify-full\"\nca_file = \"{ca}\""
        ),
    );
    assert_eq!(code, 1, "a certificate for another name must fail:\n{out}");
    assert!(
        out.contains("NotValidForName") || out.to_lowercase().contains("not valid for name"),
        "{out}"
    );

    // require: encrypted, not verified (libpq semantics), so a wrong CA does not matter.
    let (code, out, err) = once(
        dir,
        port,
        &format!(
            "host = \"wrong.example\"\nhostaddr = \"127.0.0.1\"\nsslmode = \"require\"\nca_file = \"{other}\""
        ),
    );
    assert_eq!(code, 0, "require encrypts without verifying:\n{out}\n{err}");
    assert_eq!(encrypted(&out), "1", "require must encrypt");

    // disable: plain TCP; the check sees an unencrypted session.
    let (code, out, err) = once(dir, port, "host = \"127.0.0.1\"\nsslmode = \"disable\"");
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(encrypted(&out), "0", "disable must not encrypt");
    drop(cluster);
}

/// A PostgreSQL with TLS where everyone but `postgres` logs in with a SCRAM password over TLS.
#[cfg(feature = "aws")]
pub(crate) async fn tls_cluster() -> (TempCluster, Pki) {
    tls_cluster_with("scram-sha-256").await
}

/// A PostgreSQL with TLS where everyone but `postgres` logs in over TLS with the pg_hba
/// password `method` (`scram-sha-256`, `md5`).
pub(crate) async fn tls_cluster_with(method: &'static str) -> (TempCluster, Pki) {
    tokio::task::spawn_blocking(move || {
        let pki = make_pki();
        let hba = format!(
            "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhostssl all all 127.0.0.1/32 {method}\n"
        );
        let c = start_ssl_cluster(&pki, Some(&hba));
        (c, pki)
    })
    .await
    .unwrap()
}
