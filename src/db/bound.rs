//! The target-wide session bound: a target with several databases has one pool per
//! database (a PostgreSQL session is bound to one database), and all of them together keep at
//! most `pool_size` sessions open.
//!
//! How: a [`Bound`] is a semaphore of `pool_size` permits shared by the pools of one target's
//! entries. Opening a session takes a permit first (in `login::TargetConnect`), and the permit
//! lives in the session's connection task, so it is released when the session closes (dropped
//! by its pool, retired for age, broken, or the pool closed), plus [`SERVER_EXIT_GRACE`] for
//! the server's backend to go. When no permit is free,
//! the opener closes an idle session of a sibling pool (which gives its permit back) and waits
//! for a permit; that wait is bounded by deadpool's create timeout, which `get_client` sets to
//! at most the caller's pool wait, so every wait for a permit has the check's deadline.
//!
//! Owns the permits and the list of pools to evict from. Does not own the pools themselves,
//! their sizing or hooks (`db`), or the choice of credentials (`login`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

// Weak handles (no reference cycle: a pool's connector holds the bound, and the bound holds
// only weak handles to the pools).
use deadpool_postgres::WeakPool;

/// At most `size` open sessions across the pools that share it.
pub struct Bound {
    size: usize,
    permits: Arc<Semaphore>,
    /// The pools that share the bound, to close an idle session of when a sibling needs one.
    pools: Mutex<Vec<WeakPool>>,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("size", &self.size)
            .field("open", &self.open())
            .finish()
    }
}

/// How long a closed session keeps its permit after its connection ended: the time the
/// server's backend may take to go after our Terminate (its `pg_stat_activity` entry is
/// cleared as it exits, which we cannot see: our side of the socket is closed first). 100 ms
/// held on an idle box; a clean-clone CI run with the suite's other tests beside it saw a
/// third session of a bound of 2 for a moment, so the grace is 250 ms. The cost is paid
/// only when a session must close an idle sibling to open, once per such switch.
pub(super) const SERVER_EXIT_GRACE: Duration = Duration::from_millis(250);

/// How long one wait for a permit lasts before looking for an idle sibling session again
/// (a session may turn idle in a sibling pool while we wait).
const RECHECK: Duration = Duration::from_millis(25);

impl Bound {
    pub fn new(size: usize) -> Arc<Self> {
        Arc::new(Bound {
            size,
            permits: Arc::new(Semaphore::new(size)),
            pools: Mutex::new(Vec::new()),
        })
    }

    /// The bound (the target's `pool_size`).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Sessions open now across the pools that share the bound.
    pub fn open(&self) -> usize {
        self.size.saturating_sub(self.permits.available_permits())
    }

    /// Adds a pool whose idle sessions may be closed for a sibling.
    pub(super) fn register(&self, pool: &Pool) {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.retain(|w| w.upgrade().is_some());
        pools.push(pool.weak());
    }

    /// A permit for one new session. Unbounded here on purpose: the only caller runs inside
    /// deadpool's create step, whose timeout (at most the check's pool wait) cancels it.
    pub(super) async fn acquire(&self) -> OwnedSemaphorePermit {
        loop {
            if let Ok(p) = self.permits.clone().try_acquire_owned() {
                return p;
            }
            self.evict_one_idle();
            // The semaphore is never closed, so `acquire_owned` only fails by timing out.
            if let Ok(Ok(p)) =
                tokio::time::timeout(RECHECK, self.permits.clone().acquire_owned()).await
            {
                return p;
            }
        }
    }

    /// Closes one idle session of any pool sharing the bound (true if one was found). Its
    /// connection task ends shortly after and gives the permit back.
    fn evict_one_idle(&self) -> bool {
        let pools: Vec<Pool> = {
            let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            pools.iter().filter_map(WeakPool::upgrade).collect()
        };
        for pool in pools {
            if pool.status().available == 0 {
                continue;
            }
            let mut left = 1usize;
            pool.retain(|_, _| {
                if left > 0 {
                    left -= 1;
                    false
                } else {
                    true
                }
            });
            if left == 0 {
                tracing::debug!(
                    "closed an idle session of a sibling database's pool for the target's session bound"
                );
                return true;
            }
        }
        false
    }
}
