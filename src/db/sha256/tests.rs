//! Known-answer tests (a vector computed with AWS's Python driver, `redshift_connector`'s
//! `ExtensibleDigest.encode`, the function its `auth_code == 13` branch in `core.py` calls) and the adapter against an in-memory server: split writes, MD5 and
//! errors passed through untouched, bad requests refused without sending anything.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const PASSWORD: &str = "My_sha256_PaSsWoRdŽ";
const SALT: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

fn server_nonce() -> Vec<u8> {
    (0u8..32).collect()
}

#[test]
fn known_answer_vector() {
    assert_eq!(
        PASSWORD.as_bytes(),
        hex("4d795f7368613235365f50615373576f5264c5bd").as_slice(),
        "UTF-8 bytes of the password"
    );
    let salt = hex(SALT);
    assert_eq!(
        verifier(PASSWORD.as_bytes(), &salt).to_vec(),
        hex("f10fc23bc93067c325a99184edf5b8297ba265894f14185b20453911b0fdab15")
    );
    let d = digest(
        PASSWORD.as_bytes(),
        &salt,
        &server_nonce(),
        b"1700000000000",
    );
    assert_eq!(
        d.to_vec(),
        hex("4e55b9e4a48f9484b1923809de44339a368b17e2c0d4eb1c4fac0b53e86ea0b9")
    );
    let msg = response_message(&d, b"1700000000000");
    let expected = [
        hex("6400000039 00000020"),
        d.to_vec(),
        hex("0000000d 31373030303030303030303030"),
    ]
    .concat();
    assert_eq!(msg, expected);
}

/// The `R(13)` message of the vector.
fn request_message(algorithm: u32) -> Vec<u8> {
    [
        hex("52 00000054 0000000d"),
        algorithm.to_be_bytes().to_vec(),
        hex("00000020"),
        hex(SALT),
        hex("00000020"),
        server_nonce(),
    ]
    .concat()
}

#[test]
fn the_vector_request_parses() {
    let m = request_message(0);
    assert_eq!(m.len(), 1 + 0x54);
    let r = parse_request(&m[9..]).unwrap();
    assert_eq!(r.salt, hex(SALT));
    assert_eq!(r.server_nonce, server_nonce());
}

#[test]
fn bad_requests_are_refused_by_name() {
    let m = request_message(1);
    let e = parse_request(&m[9..]).unwrap_err();
    assert!(e.contains("algorithm 1 (scrypt)"), "{e}");
    assert!(e.contains("only 0 (SHA-256)"), "{e}");
    let m = request_message(0);
    for (body, needle) in [
        (&m[9..11], "ends before its algorithm"),
        (&m[9..20], "salt length (32) overruns"),
        (&m[9..m.len() - 1], "server nonce length (32) overruns"),
        (&[0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..], "empty salt"),
    ] {
        let e = parse_request(body).unwrap_err();
        assert!(e.contains(needle), "{e}");
        assert!(e.starts_with(ERROR_PREFIX), "{e}");
    }
    let mut long = m[9..].to_vec();
    long.push(0);
    assert!(
        parse_request(&long)
            .unwrap_err()
            .contains("unexpected bytes")
    );
}

const STARTUP: &[u8] = b"\0\0\0\x08startup";
const OK_AND_READY: &[u8] = b"R\0\0\0\x08\0\0\0\0Z\0\0\0\x05I";
const AUTH_FAILED: &[u8] = b"E\0\0\0\x0bC28P01\0\0";

/// A server that stores only the verifier: sends the request (in `pieces` writes), checks the
/// `'d'` reply and answers OK or 28P01. Returns what it read after the startup bytes.
async fn digest_server(
    mut sock: tokio::io::DuplexStream,
    pieces: &[usize],
    password: &str,
) -> Vec<u8> {
    let salt = hex(SALT);
    let stored = verifier(password.as_bytes(), &salt);
    let mut startup = vec![0u8; STARTUP.len()];
    sock.read_exact(&mut startup).await.unwrap();
    assert_eq!(startup, STARTUP);
    let request = request_message(0);
    let mut at = 0;
    for &n in pieces {
        sock.write_all(&request[at..at + n]).await.unwrap();
        sock.flush().await.unwrap();
        at += n;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    sock.write_all(&request[at..]).await.unwrap();
    let mut head = [0u8; 5];
    sock.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], b'd');
    let len = u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len - 4];
    sock.read_exact(&mut body).await.unwrap();
    assert_eq!(&body[..4], &32u32.to_be_bytes());
    let got: [u8; 32] = body[4..36].try_into().unwrap();
    let nonce_len = u32::from_be_bytes(body[36..40].try_into().unwrap()) as usize;
    let nonce = &body[40..];
    assert_eq!(nonce.len(), nonce_len);
    assert!(nonce.iter().all(u8::is_ascii_digit), "epoch milliseconds");
    if got == digest_from_verifier(&stored, &server_nonce(), nonce) {
        sock.write_all(OK_AND_READY).await.unwrap();
    } else {
        sock.write_all(AUTH_FAILED).await.unwrap();
    }
    sock.flush().await.unwrap();
    [head.to_vec(), body].concat()
}

async fn client(
    sock: tokio::io::DuplexStream,
    password: Option<&str>,
    want: usize,
) -> io::Result<Vec<u8>> {
    let mut s = DigestStream::new(sock, password.map(|p| Arc::new(Secret::new(p))));
    s.write_all(STARTUP).await?;
    s.flush().await?;
    let mut got = vec![0u8; want];
    s.read_exact(&mut got).await?;
    Ok(got)
}

#[tokio::test]
async fn the_right_password_is_let_in_even_when_the_request_is_split() {
    for pieces in [&[][..], &[1][..], &[3, 4, 20][..], &[9, 1, 1, 1][..]] {
        let (a, b) = tokio::io::duplex(64);
        let server = tokio::spawn(digest_server(b, pieces, PASSWORD));
        let got = client(a, Some(PASSWORD), OK_AND_READY.len()).await.unwrap();
        assert_eq!(
            got, OK_AND_READY,
            "tokio-postgres sees R(0) first ({pieces:?})"
        );
        assert_eq!(server.await.unwrap().len(), 1 + 0x39);
    }
}

#[tokio::test]
async fn a_wrong_password_gets_the_servers_error() {
    let (a, b) = tokio::io::duplex(64);
    let server = tokio::spawn(digest_server(b, &[5], PASSWORD));
    let got = client(a, Some("wrong"), AUTH_FAILED.len()).await.unwrap();
    assert_eq!(got, AUTH_FAILED);
    server.await.unwrap();
}

#[tokio::test]
async fn other_first_messages_pass_through_untouched() {
    // MD5 (R(5) + salt), SASL, and an ErrorResponse: handed up byte for byte.
    for first in [
        &b"R\0\0\0\x0c\0\0\0\x05abcdmore"[..],
        &b"R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256\0\0"[..],
        AUTH_FAILED,
    ] {
        let (a, mut b) = tokio::io::duplex(64);
        let server = tokio::spawn(async move {
            let mut startup = vec![0u8; STARTUP.len()];
            b.read_exact(&mut startup).await.unwrap();
            for byte in first {
                b.write_all(&[*byte]).await.unwrap();
            }
            b
        });
        let got = client(a, Some(PASSWORD), first.len()).await.unwrap();
        assert_eq!(got, first);
        drop(server.await.unwrap());
    }
}

#[tokio::test]
async fn unsupported_requests_fail_before_anything_is_sent() {
    let twice = [request_message(0), request_message(0)].concat();
    for (request, needle) in [
        (request_message(1), "algorithm 1"),
        (
            hex("52 00000014 0000000d 00000000 000000c8 01020304"),
            "salt length (200) overruns",
        ),
        (twice, "second time"),
    ] {
        let (a, mut b) = tokio::io::duplex(1024);
        let req = request.clone();
        let server = tokio::spawn(async move {
            let mut startup = vec![0u8; STARTUP.len()];
            b.read_exact(&mut startup).await.unwrap();
            b.write_all(&req).await.unwrap();
            let mut rest = Vec::new();
            let _ = b.read_to_end(&mut rest).await;
            rest
        });
        let err = client(a, Some(PASSWORD), 1).await.unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
        let sent = server.await.unwrap();
        if needle == "second time" {
            assert_eq!(sent.len(), 1 + 0x39, "one answer, to the first request");
        } else {
            assert!(sent.is_empty(), "nothing sent for {needle:?}: {sent:?}");
        }
    }
}

#[tokio::test]
async fn no_password_is_a_clear_error() {
    let (a, mut b) = tokio::io::duplex(1024);
    tokio::spawn(async move {
        let mut startup = vec![0u8; STARTUP.len()];
        b.read_exact(&mut startup).await.unwrap();
        b.write_all(&request_message(0)).await.unwrap();
        let _ = b.read_to_end(&mut Vec::new()).await;
    });
    let err = client(a, None, 1).await.unwrap_err();
    assert!(err.to_string().contains("has none"), "{err}");
}
