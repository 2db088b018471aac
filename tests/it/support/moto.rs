//! moto (`pip install 'moto[server]'`; `.ci/run` installs it) as the tests' AWS: S3 for the
//! archive upload, Redshift `GetClusterCredentials` and Secrets Manager for target logins.
//!
//! Owns starting `moto_server` on a free loopback port (ready within 30 s), stopping it and
//! starting it again on the same port (an outage), and the two S3 calls the tests make
//! themselves (create a bucket, list its keys; moto answers unsigned requests). A missing
//! `moto_server` panics: such a test must fail, never pass silently. Calls that need a real
//! AWS SDK (boto3 setup scripts) stay with the test that makes them.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::http;
use super::pg::free_port;

/// A running (or stopped, between [`Moto::stop`] and [`Moto::restart`]) `moto_server`.
pub struct Moto {
    /// `None` while stopped.
    child: Option<Child>,
    /// Kept across a restart, so the daemon's configured endpoint stays right.
    port: u16,
    /// How many first calls moto serves without checking SigV4 signatures and IAM policies
    /// (`INITIAL_NO_AUTH_ACTION_COUNT`); `None`: it checks none.
    no_auth_calls: Option<u32>,
}

impl Moto {
    /// moto without signature or policy checks.
    pub fn start() -> Moto {
        Moto::start_with(None)
    }

    /// moto that checks signatures and IAM policies after its first `no_auth_calls` calls
    /// (`None`: never).
    pub fn start_with(no_auth_calls: Option<u32>) -> Moto {
        let mut m = Moto {
            child: None,
            port: free_port(),
            no_auth_calls,
        };
        m.restart();
        m
    }

    /// Starts the (stopped) server again on the same port; it starts empty.
    pub fn restart(&mut self) {
        self.stop();
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(n) = self.no_auth_calls {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run moto_server ({e}); install it with pip install 'moto[server]' (.ci/run does)")
        });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(self.addr()).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moto_server did not listen within 30 s");
    }

    /// Kills the server (an S3/AWS outage); [`restart`](Self::restart) brings it back.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL` and endpoint settings.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates an S3 bucket (status 200 required).
    pub async fn create_bucket(&self, bucket: &str) {
        let r = http::request(self.addr(), "PUT", &format!("/{bucket}"), &[], b"")
            .await
            .unwrap_or_else(|e| panic!("moto: {e}"));
        assert_eq!(r.status, 200, "{}", r.body);
    }

    /// Every key in the bucket (up to 1,000).
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let r = http::get(self.addr(), &format!("/{bucket}?list-type=2&max-keys=1000"))
            .await
            .unwrap_or_else(|e| panic!("moto: {e}"));
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(String::from)
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}
