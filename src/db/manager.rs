//! The database manager: owns connection health so that nothing else has to.
//!
//! * Every operation goes through [`Database::run`], which fails fast while the circuit is open
//!   (database down) and bounds each operation with the query timeout, so requests never pile up
//!   behind a dead database — including a half-open TCP connection that never answers.
//! * A failure flips the state to down ("database connection lost"), drops the pool and wakes the
//!   supervisor, which is the single half-open probe: it rebuilds the pool with capped exponential
//!   backoff and full jitter, runs pending migrations, and flips the state back to up
//!   ("database reconnected after N attempts in T ms").
//! * While up, a heartbeat pings every second so an idle instance notices an outage too.
//! * State changes are broadcast on a `watch` channel (WebSocket `status` frames, `/readyz`).

use std::{
    future::Future,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::{SharedStore, StoreError};
use crate::{metrics::Metrics, settings::DatabaseSettings};

/// Whether the database answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbState {
    Up,
    Down,
}

impl DbState {
    pub fn as_str(self) -> &'static str {
        match self {
            DbState::Up => "up",
            DbState::Down => "down",
        }
    }
}

/// Cheap to clone handle to the managed database.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

struct Inner {
    settings: DatabaseSettings,
    store: RwLock<Option<SharedStore>>,
    /// Where connections come from: the configured URL, or (in unit tests) a given store.
    source: Source,
    state: watch::Sender<DbState>,
    wake: Notify,
    /// Set while writes are queued: the supervisor then probes at least every `URGENT_PROBE`.
    urgent: AtomicBool,
    /// The first successful connection may create the SQLite file; reconnections never do, so an
    /// unavailable file is waited for, never silently replaced by an empty database.
    connected_once: AtomicBool,
    /// Set when the first connection attempt has ended, either way: until then `Down` only means
    /// "not tried yet" (`/readyz` says `starting`, not `degraded`).
    first_attempt_ended: AtomicBool,
    /// Woken when the first attempt ends ([`Database::first_attempt`]).
    first_attempt_done: Notify,
    /// When the first attempt must have ended (its own timeout), even if it was cancelled.
    first_attempt_deadline: Instant,
    metrics: Arc<Metrics>,
}

/// Where the manager gets its store from.
enum Source {
    /// `settings.url`, opened by [`super::connect`].
    Url,
    /// A store given by a unit test.
    #[cfg(test)]
    Given(SharedStore),
}

/// Probe interval ceiling while user messages wait in the queue.
const URGENT_PROBE: Duration = Duration::from_millis(250);
/// Heartbeat interval while up.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Connection attempts in flight at once while probing urgently.
const MAX_HEDGED: usize = 4;

impl Database {
    /// Start managing the database at the configured URL. Never fails because the database is down:
    /// the state starts `Down` and the supervisor connects (and migrates) as soon as it can.
    pub fn start(
        settings: DatabaseSettings,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Database {
        Database::start_from(Source::Url, settings, metrics, shutdown)
    }

    /// Manage `store` instead of connecting to the URL (unit tests, with the in-memory fake):
    /// every "connection attempt" pings it, so a fake that is down is reconnected to exactly
    /// like a real database.
    #[cfg(test)]
    pub(crate) fn start_with(
        store: SharedStore,
        settings: DatabaseSettings,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Database {
        Database::start_from(Source::Given(store), settings, metrics, shutdown)
    }

    fn start_from(
        source: Source,
        settings: DatabaseSettings,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Database {
        let (state, _) = watch::channel(DbState::Down);
        metrics.db_up.set(0);
        let db = Database {
            inner: Arc::new(Inner {
                settings: settings.clone(),
                store: RwLock::new(None),
                source,
                state,
                wake: Notify::new(),
                urgent: AtomicBool::new(false),
                connected_once: AtomicBool::new(false),
                first_attempt_ended: AtomicBool::new(false),
                first_attempt_done: Notify::new(),
                first_attempt_deadline: Instant::now() + attempt_timeout(&settings),
                metrics,
            }),
        };
        tokio::spawn(db.clone().supervise(shutdown));
        db
    }

    pub fn state(&self) -> DbState {
        *self.inner.state.borrow()
    }

    pub fn is_up(&self) -> bool {
        self.state() == DbState::Up
    }

    /// Whether the first connection attempt has ended (connected or failed), or its time is up.
    pub fn first_attempt_ended(&self) -> bool {
        self.inner.first_attempt_ended.load(Ordering::Acquire)
            || Instant::now() >= self.inner.first_attempt_deadline
    }

    /// Wait until the first connection attempt has ended (or its time is up): work that can
    /// wait (local model discovery) stays out of the way of a cold start.
    pub async fn first_attempt(&self) {
        let done = self.inner.first_attempt_done.notified();
        tokio::pin!(done);
        // Registered before the flag is read, so an attempt ending in between still wakes it.
        done.as_mut().enable();
        if self.first_attempt_ended() {
            return;
        }
        let deadline = tokio::time::Instant::from_std(self.inner.first_attempt_deadline);
        tokio::select! {
            _ = done => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }

    fn end_first_attempt(&self) {
        if !self.inner.first_attempt_ended.swap(true, Ordering::AcqRel) {
            self.inner.first_attempt_done.notify_waiters();
        }
    }

    /// Follow state changes.
    pub fn watch(&self) -> watch::Receiver<DbState> {
        self.inner.state.subscribe()
    }

    /// Wait until the database is up, at most `timeout`.
    pub async fn wait_up(&self, timeout: Duration) -> bool {
        let mut rx = self.watch();
        tokio::time::timeout(timeout, rx.wait_for(|s| *s == DbState::Up))
            .await
            .is_ok()
    }

    /// Ask the supervisor to probe eagerly (writes are waiting) or relax.
    pub fn set_urgent(&self, urgent: bool) {
        self.inner.urgent.store(urgent, Ordering::Relaxed);
        if urgent {
            self.inner.wake.notify_one();
        }
    }

    /// The backend in use, when connected.
    pub fn store(&self) -> Option<SharedStore> {
        self.inner
            .store
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Close the pool and mark the database down, as if the connection had been lost.
    /// Used by operators' tooling and tests to make the pool unusable.
    pub async fn drop_connections(&self, why: &str) {
        let store = self.store();
        self.mark_down(why);
        if let Some(store) = store {
            store.close().await;
        }
    }

    /// Run one operation against the database, failing fast while it is down and bounding the
    /// operation by the query timeout. An unreachable database turns the state to down.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(SharedStore) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let Some(store) = self.store().filter(|_| self.is_up()) else {
            return Err(StoreError::Unavailable("database is down".into()));
        };
        let started = Instant::now();
        let result = tokio::time::timeout(self.inner.settings.query_timeout(), op(store)).await;
        self.inner
            .metrics
            .db_query_duration
            .observe(started.elapsed());
        match result {
            Err(_) => {
                self.count_failed_operation("query timed out");
                self.mark_down("query timed out");
                Err(StoreError::Unavailable("query timed out".into()))
            }
            Ok(Err(e)) if e.is_unavailable() => {
                self.count_failed_operation(&e.to_string());
                self.mark_down(&e.to_string());
                Err(e)
            }
            Ok(other) => other,
        }
    }

    /// One operation failed because the database was unreachable: its `database operation
    /// failed` log event and `db_connection_failures_total`, together, so that `emergence guard`
    /// (the logs) and `/metrics` count the same failures.
    fn count_failed_operation(&self, cause: &str) {
        tracing::warn!(cause, "database operation failed");
        self.inner.metrics.db_connection_failures.inc();
    }

    fn mark_down(&self, cause: &str) {
        let was_up = self.inner.state.send_if_modified(|s| {
            let changed = *s == DbState::Up;
            *s = DbState::Down;
            changed
        });
        if was_up {
            self.inner
                .store
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            self.inner.metrics.db_up.set(0);
            tracing::warn!(cause, "database connection lost");
            self.inner.wake.notify_one();
        }
    }

    async fn supervise(self, shutdown: CancellationToken) {
        let mut first = true;
        loop {
            let Some(store) = self.reconnect(first, &shutdown).await else {
                return;
            };
            first = false;
            *self.inner.store.write().unwrap_or_else(|e| e.into_inner()) = Some(store.clone());
            self.inner.connected_once.store(true, Ordering::Relaxed);
            self.inner.metrics.db_up.set(1);
            self.inner.state.send_replace(DbState::Up);
            self.end_first_attempt();
            // Watch for trouble: a failed operation wakes us, the heartbeat catches idle outages.
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.inner.wake.notified() => {}
                    _ = tokio::time::sleep(HEARTBEAT) => {
                        let _ = self.run(|s| async move { s.ping().await }).await;
                    }
                }
                if !self.is_up() {
                    break;
                }
            }
        }
    }

    /// Connect with capped exponential backoff and full jitter; `None` on shutdown.
    ///
    /// While writes are queued, probes are hedged: a new attempt starts every `URGENT_PROBE`
    /// even if earlier ones still hang (a blackholed connection only fails at its timeout), so a
    /// returning database is written to within a second.
    ///
    /// Counting (docs/operations.md#metrics): every attempt started counts once in
    /// `db_connect_attempts_total`; every attempt that ends without a connection (an error, its
    /// timeout, or cancelled unanswered to make room for a newer one) counts once in
    /// `db_connection_failures_total`. Attempts still running when another one connects are
    /// abandoned and counted in neither. `db_reconnect_attempts_total` counts the outage (once).
    async fn reconnect(&self, first: bool, shutdown: &CancellationToken) -> Option<SharedStore> {
        let s = &self.inner.settings;
        let metrics = &self.inner.metrics;
        let started = Instant::now();
        let mut attempt: u32 = 0;
        let mut failed: u32 = 0;
        if !first {
            metrics.db_reconnect_attempts.inc();
        }
        let mut attempts = tokio::task::JoinSet::new();
        let mut started_attempts: std::collections::VecDeque<tokio::task::AbortHandle> =
            Default::default();
        let mut next_start = tokio::time::Instant::now();
        loop {
            let urgent = self.inner.urgent.load(Ordering::Relaxed);
            let now = tokio::time::Instant::now();
            if now >= next_start && (attempts.is_empty() || urgent) {
                attempt += 1;
                metrics.db_connect_attempts.inc();
                // Bounded hedging: the oldest attempt (most likely hung) makes room. It ends in
                // `join_next` as cancelled, and is counted there.
                started_attempts.retain(|h| !h.is_finished());
                if started_attempts.len() >= MAX_HEDGED
                    && let Some(oldest) = started_attempts.pop_front()
                {
                    oldest.abort();
                }
                let me = self.clone();
                started_attempts.push_back(attempts.spawn(async move { me.connect_once().await }));
                next_start = now
                    + if urgent {
                        URGENT_PROBE
                    } else {
                        Duration::from_millis(s.backoff_max_ms)
                    };
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                done = attempts.join_next(), if !attempts.is_empty() => {
                    let cause = match done {
                        Some(Ok(Ok(store))) => {
                            attempts.abort_all();
                            let ms = started.elapsed().as_millis() as u64;
                            if first {
                                tracing::info!(backend = store.backend_name(), attempts = attempt, failed, ms, "database connected");
                            } else {
                                metrics.db_reconnect_success.inc();
                                tracing::info!(
                                    backend = store.backend_name(),
                                    attempts = attempt,
                                    failed,
                                    ms,
                                    "database reconnected after {attempt} attempts in {ms} ms"
                                );
                            }
                            return Some(store);
                        }
                        Some(Ok(Err(e))) => {
                            let mut delay = backoff_delay(attempt, s.backoff_initial_ms, s.backoff_max_ms);
                            if self.inner.urgent.load(Ordering::Relaxed) {
                                delay = delay.min(URGENT_PROBE);
                            }
                            next_start = tokio::time::Instant::now() + delay;
                            e.to_string()
                        }
                        // Aborted to make room (see above): it never answered.
                        Some(Err(e)) if e.is_cancelled() => {
                            "cancelled unanswered: a newer attempt took its place".to_string()
                        }
                        Some(Err(e)) => format!("attempt crashed: {e}"),
                        None => continue,
                    };
                    failed += 1;
                    metrics.db_connection_failures.inc();
                    if failed == 1 || failed.is_power_of_two() {
                        tracing::warn!(attempt, failed, cause, "database connection attempt failed");
                    }
                }
                _ = tokio::time::sleep_until(next_start) => {}
                // Writes just got queued: re-evaluate the schedule.
                _ = self.inner.wake.notified(), if !urgent => {
                    next_start = next_start.min(tokio::time::Instant::now() + URGENT_PROBE);
                }
            }
        }
    }

    async fn connect_once(&self) -> Result<SharedStore, StoreError> {
        let s = &self.inner.settings;
        let timeout = Duration::from_millis(s.connect_timeout_ms);
        let may_create = !self.inner.connected_once.load(Ordering::Relaxed);
        let attempt = async {
            let store = match &self.inner.source {
                Source::Url => {
                    super::connect(super::Target::of(s), s.max_connections, timeout, may_create)
                        .await?
                }
                #[cfg(test)]
                Source::Given(store) => {
                    store.ping().await?;
                    store.clone()
                }
            };
            store.migrate().await?;
            Ok::<_, StoreError>(store)
        };
        let result = match tokio::time::timeout(attempt_timeout(s), attempt).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(
                "connection attempt timed out".into(),
            )),
        };
        // A success is published by the supervisor once the state is `Up`, so readiness goes
        // from `starting` to `ready` with nothing between.
        if result.is_err() {
            self.end_first_attempt();
        }
        result
    }
}

/// The longest one connection attempt (connect, then migrate) may take.
fn attempt_timeout(s: &DatabaseSettings) -> Duration {
    Duration::from_millis(s.connect_timeout_ms) * 2
}

/// Full jitter: a uniformly random delay in `[0, min(cap, initial * 2^(attempt-1))]`.
pub fn backoff_delay(attempt: u32, initial_ms: u64, cap_ms: u64) -> Duration {
    let exp = initial_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(30));
    let ceiling = exp.min(cap_ms).max(1);
    Duration::from_millis(random_u64() % (ceiling + 1))
}

/// A random number from the operating system (no RNG state to carry around).
pub fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    let _ = getrandom::fill(&mut buf);
    u64::from_le_bytes(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        for attempt in 1..40 {
            let d = backoff_delay(attempt, 100, 5_000);
            assert!(d <= Duration::from_millis(5_000));
            let ceiling = (100u64 << (attempt - 1).min(30)).min(5_000);
            assert!(d.as_millis() as u64 <= ceiling);
        }
        let samples: std::collections::HashSet<_> =
            (0..50).map(|_| backoff_delay(10, 100, 5_000)).collect();
        assert!(samples.len() > 10, "full jitter spreads delays");
    }

    fn sqlite_at(path: &str) -> DatabaseSettings {
        DatabaseSettings {
            url: crate::settings::Secret::new(format!("sqlite://{path}")),
            // A deadline far past the test's own wait: only the attempt's end can wake it.
            connect_timeout_ms: 30_000,
            ..DatabaseSettings::default()
        }
    }

    #[tokio::test]
    async fn first_attempt_wakes_its_waiters_when_the_first_connection_ends_either_way() {
        let shutdown = CancellationToken::new();
        let _stop = shutdown.clone().drop_guard();
        let metrics = Arc::new(Metrics::default());
        let dir = std::env::temp_dir().join(format!("emergence-first-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let wait = Duration::from_secs(20);

        let up = Database::start(
            sqlite_at(&format!("{}/e.db", dir.display())),
            metrics.clone(),
            shutdown.clone(),
        );
        tokio::time::timeout(wait, up.first_attempt())
            .await
            .expect("a database that opens ends the first attempt");
        assert!(
            up.is_up(),
            "the success is published before the waiters wake"
        );

        // A file where a directory must be: SQLite cannot open it, at once and every time.
        let file = dir.join("file");
        std::fs::write(&file, b"").unwrap();
        let down = Database::start(
            sqlite_at(&format!("{}/e.db", file.display())),
            metrics,
            shutdown.clone(),
        );
        tokio::time::timeout(wait, down.first_attempt())
            .await
            .expect("a failed first attempt wakes the waiters too");
        assert!(!down.is_up());
        assert!(down.first_attempt_ended());
        shutdown.cancel();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
