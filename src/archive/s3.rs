//! The S3 client behind archive uploads (cargo feature `s3`): object_store's Amazon S3 store
//! with the process's AWS credential chain (`aws::chain`: environment, shared-credentials
//! profile, web identity, ECS task role, instance role).
//! Kept apart so a build without the feature carries none of the S3 and HTTP client crates
//! (they add 3 MB of code, most of the exporter's idle memory).

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, ObjectStore, PutOptions, PutPayload,
    RetryConfig,
};

use super::upload::{Store, UploadError};
use crate::config::S3Config;

/// The upload seam over an object_store client.
struct S3(Arc<dyn ObjectStore>);

impl Store for S3 {
    fn put<'a>(
        &'a self,
        key: &'a str,
        body: Vec<u8>,
        content_type: &'static str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            let opts = PutOptions {
                attributes: Attributes::from_iter([(Attribute::ContentType, content_type)]),
                ..PutOptions::default()
            };
            self.0
                .put_opts(&ObjectPath::from(key), PutPayload::from(body), opts)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// Builds the S3 client from `[exporter.s3]` and the AWS credential chain.
pub fn client(cfg: &S3Config) -> Result<Arc<dyn Store>, UploadError> {
    Ok(Arc::new(S3(client_with(cfg, |b| b)?)))
}

/// [`client`], with a last say on the builder (tests pass credentials this way).
fn client_with(
    cfg: &S3Config,
    adjust: impl FnOnce(AmazonS3Builder) -> AmazonS3Builder,
) -> Result<Arc<dyn ObjectStore>, UploadError> {
    // reqwest is built without a bundled TLS provider: install ring, the rustls provider the
    // rest of the binary (database TLS, HTTPS server) already uses, so only one is linked.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let region = cfg
        .region
        .clone()
        .unwrap_or_else(crate::aws::default_region);
    let mut b =
        crate::aws::chain::builder(cfg.profile.as_deref(), &region).with_bucket_name(&cfg.bucket);
    if let Some(e) = &cfg.endpoint {
        b = b
            .with_endpoint(e)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(cfg.allow_http);
    }
    // One request retries briefly; the queue's backoff handles longer outages.
    b = b
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: cfg.timeout,
        })
        .with_client_options(
            ClientOptions::new()
                .with_timeout(cfg.timeout)
                .with_connect_timeout(Duration::from_secs(10))
                .with_allow_http(cfg.allow_http),
        );
    Ok(Arc::new(
        adjust(b)
            .build()
            .map_err(|e| UploadError::Client(e.to_string()))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::layout;
    use crate::archive::upload::{self, moto};
    use tokio_util::sync::CancellationToken;

    async fn wait_for(what: &str, deadline: Duration, f: impl Fn() -> bool) {
        let end = tokio::time::Instant::now() + deadline;
        while !f() {
            assert!(
                tokio::time::Instant::now() < end,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uploads_to_moto_retry_while_it_is_down_and_lose_nothing() {
        use crate::archive::Archiver;
        use crate::archive::retention::{self, Policy};
        use crate::config::Retention;
        use crate::sample::ResultSet;
        use chrono::TimeZone;
        use object_store::ObjectStoreExt;

        let mut moto = moto::Moto::start();
        moto.create_bucket("archive-test");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let cfg = S3Config {
            bucket: "archive-test".into(),
            prefix: "rs/history".into(),
            region: Some("us-east-1".into()),
            endpoint: Some(moto.endpoint()),
            allow_http: true,
            profile: None,
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_millis(800),
            timeout: Duration::from_secs(5),
        };
        let raw = client_with(&cfg, |b| {
            b.with_access_key_id("testing")
                .with_secret_access_key("testing")
        })
        .unwrap();
        let store: Arc<dyn Store> = Arc::new(S3(raw.clone()));
        let at = |d: u32| -> std::time::SystemTime {
            chrono::Utc
                .with_ymd_and_hms(2026, 1, d, 6, 0, 0)
                .unwrap()
                .into()
        };
        let rs = ResultSet {
            columns: vec!["db".into(), "n".into()],
            rows: vec![vec![Some("dev".into()), Some("1".into())]],
        };
        // A file an earlier run wrote but did not upload: queued at start.
        let before = Archiver::new(root.clone());
        let earlier = before.write("main", "c", at(1), &rs).await.unwrap();

        let a = Archiver::new(root.clone());
        let stop = CancellationToken::new();
        let (q, worker) = upload::start(
            cfg.clone(),
            store.clone(),
            root.clone(),
            a.stats.clone(),
            stop.clone(),
        );
        let a = a.with_uploads(q.clone());
        let second = a.write("main", "c", at(2), &rs).await.unwrap();
        assert!(q.idle(Duration::from_secs(30)).await, "uploads finished");
        for (path, key) in [
            (
                &earlier,
                "rs/history/main/c/dt=2026-01-01/c_20260101T060000.000Z.csv",
            ),
            (
                &second,
                "rs/history/main/c/dt=2026-01-02/c_20260102T060000.000Z.csv",
            ),
        ] {
            let meta = raw.head(&ObjectPath::from(key)).await.unwrap();
            assert_eq!(meta.size, std::fs::metadata(path).unwrap().len());
            assert_eq!(
                std::fs::read_to_string(layout::upload_marker(path)).unwrap(),
                key
            );
        }
        assert_eq!(a.stats.get("main", "c").uploads, 2);

        // S3 goes away: the upload fails, is counted and retried; the file stays, and
        // retention (which would delete everything this old) keeps it.
        moto.stop();
        let third = a.write("main", "c", at(3), &rs).await.unwrap();
        wait_for("two failed attempts", Duration::from_secs(30), || {
            a.stats.get("main", "c").upload_errors >= 2
        })
        .await;
        assert_eq!(q.pending(), 1);
        assert!(!layout::upload_marker(&third).exists());
        let policy = Policy {
            global: Retention {
                max_age: Some(Duration::from_secs(3600)),
                max_bytes: None,
            },
            require_upload: true,
            ..Policy::default()
        };
        let enforce = || {
            let (a, p) = (a.clone(), policy.clone());
            tokio::task::spawn_blocking(move || retention::enforce(&a, &p, chrono::Utc::now()))
        };
        let o = enforce().await.unwrap();
        assert_eq!((o.deleted, o.held_for_upload), (2, 1));
        assert!(third.exists() && !earlier.exists() && !second.exists());

        // S3 is back (empty, as moto keeps nothing): the retry uploads the file.
        moto.restart();
        moto.create_bucket("archive-test");
        assert!(
            q.idle(Duration::from_secs(30)).await,
            "upload after recovery"
        );
        raw.head(&ObjectPath::from(
            "rs/history/main/c/dt=2026-01-03/c_20260103T060000.000Z.csv",
        ))
        .await
        .unwrap();
        assert!(layout::upload_marker(&third).exists());
        let s = a.stats.get("main", "c");
        assert_eq!((s.uploads, s.upload_pending), (3, 0));
        // Now it may go.
        assert_eq!(enforce().await.unwrap().deleted, 1);
        stop.cancel();
        worker.await.unwrap();
    }
}
