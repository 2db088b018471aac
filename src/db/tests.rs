//! Classification of connect errors and the auth requests the driver cannot answer.

use super::*;

#[test]
fn auth_code_is_found() {
    assert_eq!(
        unsupported_auth_code(
            "error parsing response from server: unknown authentication tag `13`"
        ),
        Some("13".into())
    );
    assert_eq!(unsupported_auth_code("connection refused"), None);
}

/// A loopback server that answers any startup message with an authentication request
/// of the given code, as Redshift does for sha256 passwords (13) and IdP tokens (14).
async fn fake_server(code: u32) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut len = [0u8; 4];
            if sock.read_exact(&mut len).await.is_err() {
                continue;
            }
            let mut rest = vec![0u8; u32::from_be_bytes(len) as usize - 4];
            let _ = sock.read_exact(&mut rest).await;
            // 'R', length, code, then Redshift's digest parameters (algorithm, salt, nonce).
            let payload = [0u8, 0, 0, 1, 0, 0, 0, 4, 1, 2, 3, 4];
            let mut msg = vec![b'R'];
            msg.extend_from_slice(&((8 + payload.len()) as u32).to_be_bytes());
            msg.extend_from_slice(&code.to_be_bytes());
            msg.extend_from_slice(&payload);
            let _ = sock.write_all(&msg).await;
            let _ = sock.flush().await;
        }
    });
    port
}

fn target_config(port: u16) -> TargetConfig {
    let text = format!(
        "[targets.t]\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"u\"\npassword = \"pw\"\nsslmode = \"disable\"\nconnect_timeout = \"2s\"\n[[checks]]\nname = \"c\"\nquery = \"SELECT 1\"\nvalues = [\"v\"]\n"
    );
    (*crate::config::parse(&text, |_| None).unwrap().targets[0]).clone()
}

#[tokio::test]
async fn unsupported_auth_requests_name_the_cause_and_the_fix() {
    for (code, cause) in [(13, "SHA-256"), (14, "identity-provider")] {
        let port = fake_server(code).await;
        let target = Target::new(Arc::new(target_config(port))).unwrap();
        let err = get_client(&target.pool, Duration::from_secs(3))
            .await
            .expect_err("the fake server never lets us in");
        assert_eq!(err.kind, ErrorKind::Auth, "{err}");
        assert!(err.message.contains(&format!("method {code}")), "{err}");
        assert!(err.message.contains(cause), "{err}");
        assert!(err.message.contains("MD5 password"), "{err}");
        assert!(err.message.contains("IAM"), "{err}");
        assert!(!err.message.contains("pw"), "password leaked: {err}");
    }
}

#[tokio::test]
async fn refused_connections_are_connect_errors() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let target = Target::new(Arc::new(target_config(port))).unwrap();
    let err = get_client(&target.pool, Duration::from_secs(3))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind, ErrorKind::Connect, "{err}");
}

#[test]
fn kinds_are_distinct_label_values() {
    let mut seen = std::collections::HashSet::new();
    for k in ErrorKind::ALL {
        assert!(seen.insert(k.as_str()));
    }
}
