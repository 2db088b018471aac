//! A per-target cache of fetched login credentials (IAM temporary credentials, a secret's
//! value): one fetch in flight at a time, renewal ahead of expiry, one re-fetch after a login
//! reports the value stale, and backoff after failures (longer when throttled).
//!
//! Owns: when to fetch. Does not own: what a fetch does (`iam`, `secret`) or what counts as a
//! stale login (`db`/`login` decide and call [`Cache::invalidate`]).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::AwsError;

/// Credentials are renewed at least this long before they expire (AWS's JDBC driver uses 60 s
/// too); ones that live barely longer than that, at half their life.
pub const RENEW_MARGIN: Duration = Duration::from_secs(60);
/// Backoff after a failed fetch: 1 s, doubling, at most 60 s (twice that when throttled).
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// A fetched value and when it stops working (`None`: until a login says otherwise).
#[derive(Debug)]
pub struct Issued<T> {
    pub value: T,
    pub expires: Option<SystemTime>,
}

struct Entry<T> {
    value: Arc<T>,
    renew_at: Option<Instant>,
    expires_at: Option<Instant>,
}

struct State<T> {
    current: Option<Entry<T>>,
    /// A login with `current` failed: fetch before handing it out again.
    stale: bool,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<AwsError>,
}

pub struct Cache<T> {
    state: tokio::sync::Mutex<State<T>>,
    fetches: AtomicU64,
}

impl<T> Default for Cache<T> {
    fn default() -> Self {
        Cache {
            state: tokio::sync::Mutex::new(State {
                current: None,
                stale: false,
                failures: 0,
                retry_at: None,
                last_error: None,
            }),
            fetches: AtomicU64::new(0),
        }
    }
}

/// The delay before the next attempt after `failures` failed ones.
pub fn backoff(failures: u32, throttled: bool) -> Duration {
    let d = BACKOFF_START
        .saturating_mul(1 << failures.saturating_sub(1).min(10))
        .min(BACKOFF_MAX);
    if throttled { d * 2 } else { d }
}

impl<T> Cache<T> {
    /// How many fetches were started.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The cached value, or a new one from `fetch` when there is none, it is due for renewal,
    /// or a login reported it stale. Concurrent callers wait for the one fetch in flight.
    /// During backoff no fetch is made: a still-valid value is handed out, else the last error.
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<Arc<T>, AwsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Issued<T>, AwsError>>,
    {
        let mut st = self.state.lock().await;
        let now = Instant::now();
        let usable = |st: &State<T>, now: Instant| {
            st.current
                .as_ref()
                .filter(|e| !st.stale && e.expires_at.is_none_or(|x| now < x))
                .map(|e| e.value.clone())
        };
        if let Some(e) = &st.current {
            if !st.stale && e.renew_at.is_none_or(|r| now < r) {
                return Ok(e.value.clone());
            }
        }
        if st.retry_at.is_some_and(|at| now < at) {
            if let Some(v) = usable(&st, now) {
                return Ok(v);
            }
            if let Some(e) = &st.last_error {
                return Err(e.clone());
            }
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match fetch().await {
            Ok(issued) => {
                let now = Instant::now();
                let (renew_at, expires_at) = match issued.expires {
                    None => (None, None),
                    Some(at) => {
                        let life = at
                            .duration_since(SystemTime::now())
                            .unwrap_or(Duration::ZERO);
                        // Lives shorter than the margin (no real API issues those) are
                        // renewed at half-life rather than on every use.
                        let margin = if life > RENEW_MARGIN + Duration::from_secs(1) {
                            RENEW_MARGIN
                        } else {
                            life / 2
                        };
                        (Some(now + life - margin), Some(now + life))
                    }
                };
                let value = Arc::new(issued.value);
                st.current = Some(Entry {
                    value: value.clone(),
                    renew_at,
                    expires_at,
                });
                st.stale = false;
                st.failures = 0;
                st.retry_at = None;
                st.last_error = None;
                Ok(value)
            }
            Err(e) => {
                st.failures += 1;
                st.retry_at = Some(Instant::now() + backoff(st.failures, e.throttled()));
                st.last_error = Some(e.clone());
                // A failed renewal keeps handing out what still works.
                usable(&st, Instant::now()).ok_or(e)
            }
        }
    }

    /// A login with `used` failed as if it were stale (expired token, rotated password): the
    /// next [`get`](Self::get) fetches anew. Only the first report about one value counts, so a
    /// burst of failed logins makes one re-fetch. Returns whether this call marked it.
    pub async fn invalidate(&self, used: &Arc<T>) -> bool {
        let mut st = self.state.lock().await;
        let same = st
            .current
            .as_ref()
            .is_some_and(|e| Arc::ptr_eq(&e.value, used));
        if same && !st.stale {
            st.stale = true;
            // A re-fetch after a failed login is not held back by an earlier backoff.
            st.retry_at = None;
            true
        } else {
            false
        }
    }

    /// Forgets the value (reload): the next `get` fetches.
    pub async fn clear(&self) {
        let mut st = self.state.lock().await;
        st.current = None;
        st.retry_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn ok(v: u32, life: Option<Duration>) -> Result<Issued<u32>, AwsError> {
        Ok(Issued {
            value: v,
            expires: life.map(|l| SystemTime::now() + l),
        })
    }

    #[tokio::test]
    async fn one_fetch_serves_concurrent_callers() {
        let cache = Arc::new(Cache::<u32>::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get(|| async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        ok(7, Some(Duration::from_secs(900)))
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(*t.await.unwrap().unwrap(), 7);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(cache.fetches(), 1);
    }

    #[tokio::test]
    async fn renewal_comes_before_expiry() {
        let cache = Cache::<u32>::default();
        // 900 s: renewed 60 s early, so not now.
        cache
            .get(|| async { ok(1, Some(Duration::from_secs(900))) })
            .await
            .unwrap();
        let v = cache.get(|| async { ok(2, None) }).await.unwrap();
        assert_eq!(*v, 1);
        // 200 ms: renewed at half its life.
        let cache = Cache::<u32>::default();
        cache
            .get(|| async { ok(1, Some(Duration::from_millis(200))) })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        let v = cache
            .get(|| async { ok(2, Some(Duration::from_secs(900))) })
            .await
            .unwrap();
        assert_eq!(*v, 2, "renewed after half its life, before it expired");
    }

    #[tokio::test]
    async fn a_stale_report_refetches_once() {
        let cache = Cache::<u32>::default();
        let first = cache.get(|| async { ok(1, None) }).await.unwrap();
        assert!(cache.invalidate(&first).await);
        assert!(
            !cache.invalidate(&first).await,
            "a second report changes nothing"
        );
        let second = cache.get(|| async { ok(2, None) }).await.unwrap();
        assert_eq!(*second, 2);
        assert!(
            !cache.invalidate(&first).await,
            "an old value's failure is old news"
        );
        assert_eq!(*cache.get(|| async { ok(3, None) }).await.unwrap(), 2);
        assert_eq!(cache.fetches(), 2);
    }

    #[tokio::test]
    async fn failures_back_off_and_throttling_longer() {
        let cache = Cache::<u32>::default();
        let fail = || async { Err::<Issued<u32>, _>(AwsError::new("Throttling", "Rate exceeded")) };
        assert!(cache.get(fail).await.is_err());
        // Within the backoff no call is made.
        let e = cache
            .get(|| async { panic!("no fetch during backoff") })
            .await
            .unwrap_err();
        assert_eq!(e.code, "Throttling");
        assert_eq!(cache.fetches(), 1);
        assert_eq!(backoff(1, false), Duration::from_secs(1));
        assert_eq!(backoff(1, true), Duration::from_secs(2));
        assert_eq!(backoff(3, false), Duration::from_secs(4));
        assert_eq!(backoff(30, false), Duration::from_secs(60));
    }

    #[tokio::test]
    async fn a_failed_renewal_keeps_the_valid_value() {
        let cache = Cache::<u32>::default();
        cache
            .get(|| async { ok(1, Some(Duration::from_millis(400))) })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        let v = cache
            .get(|| async { Err(AwsError::new("ServiceUnavailable", "down")) })
            .await
            .unwrap();
        assert_eq!(*v, 1, "still valid for 150 ms");
    }
}
