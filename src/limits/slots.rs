//! Answer slots: how many agent answers (a debate counts as one: its turns run one at a time) a
//! user may have running at once, on every instance together. A slot is reserved in one atomic
//! step when the request is accepted, before it reaches the writer, and is held by a
//! [`SlotLease`] that travels with the request to the job that runs it; dropping the last copy
//! of the lease (the job ended, or the request turned out to be a repeat, was refused or was
//! lost) gives the slot back. Nothing checks and then acts in two steps.
//!
//! With a Redis broker the slots of a user live in one sorted set (member = lease id, score =
//! expiry by Redis' own clock), reserved by a Lua script so three instances cannot all take the
//! last slot; live leases are refreshed every [`REFRESH`], so the slots of an instance that died
//! come back after [`LEASE_TTL`]. If Redis cannot be reached, the instance decides alone (it
//! still never exceeds the limit by itself) and says so in its log.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use redis::{Script, aio::ConnectionManager};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

/// A lease not refreshed for this long is gone (its instance died).
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// How often an instance refreshes the leases it holds.
pub const REFRESH: Duration = Duration::from_secs(10);
/// Longest wait for Redis on the request path before deciding locally.
const REDIS_WAIT: Duration = Duration::from_millis(750);

const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1";

const REFRESH_ONE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1";

/// The slots of this instance, and of the fleet when Redis is configured.
pub struct AnswerSlots {
    limit: usize,
    local: Mutex<HashMap<String, usize>>,
    shared: Option<Shared>,
}

struct Shared {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    prefix: String,
    reserve: Script,
    refresh: Script,
    /// Leases held in Redis by this instance: lease id -> user.
    held: Mutex<HashMap<String, String>>,
}

/// A reserved slot; the slot is free again once every copy is dropped.
#[derive(Debug)]
pub struct SlotLease {
    slots: Arc<AnswerSlots>,
    user: String,
    id: String,
    shared: bool,
}

impl std::fmt::Debug for AnswerSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerSlots")
            .field("limit", &self.limit)
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

impl AnswerSlots {
    /// `limit` per user (0 = none); `redis` = (URL, key prefix) to share the slots of a fleet.
    pub fn new(limit: usize, redis: Option<(&str, &str)>) -> anyhow::Result<Arc<Self>> {
        let shared = match redis {
            Some((url, prefix)) => Some(Shared {
                client: redis::Client::open(url)?,
                conn: OnceCell::new(),
                prefix: format!("{prefix}:slots"),
                reserve: Script::new(RESERVE),
                refresh: Script::new(REFRESH_ONE),
                held: Mutex::default(),
            }),
            None => None,
        };
        Ok(Arc::new(Self {
            limit,
            local: Mutex::default(),
            shared,
        }))
    }

    /// Reserve a slot for `user`, or `Err(limit)` when they have `limit` running already.
    pub async fn reserve(self: &Arc<Self>, user: &str) -> Result<Arc<SlotLease>, usize> {
        if self.limit > 0 {
            let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
            let n = local.entry(user.to_string()).or_default();
            if *n >= self.limit {
                return Err(self.limit);
            }
            *n += 1;
        }
        // Taken locally: from here on, dropping `lease` gives the slot back.
        let mut lease = SlotLease {
            slots: self.clone(),
            user: user.to_string(),
            id: uuid::Uuid::now_v7().to_string(),
            shared: false,
        };
        if let (true, Some(shared)) = (self.limit > 0, &self.shared) {
            match tokio::time::timeout(REDIS_WAIT, shared.reserve(&lease, self.limit)).await {
                Ok(Ok(true)) => lease.shared = true,
                Ok(Ok(false)) => return Err(self.limit),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "answer slots: Redis unreachable, deciding on this instance alone")
                }
                Err(_) => {
                    tracing::warn!("answer slots: Redis too slow, deciding on this instance alone")
                }
            }
        }
        Ok(Arc::new(lease))
    }

    /// Keep the leases of this instance alive in Redis until `stop`.
    pub fn spawn_refresher(self: &Arc<Self>, stop: CancellationToken) {
        if self.shared.is_none() {
            return;
        }
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(REFRESH) => {}
                }
                let Some(me) = me.upgrade() else { return };
                if let Some(shared) = &me.shared
                    && let Err(e) = shared.refresh_all().await
                {
                    tracing::warn!(error = %e, "answer slots: could not refresh leases in Redis");
                }
            }
        });
    }

    fn release(&self, lease: &SlotLease) {
        if self.limit == 0 {
            return;
        }
        {
            let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = local.get_mut(&lease.user) {
                *n -= 1;
                if *n == 0 {
                    local.remove(&lease.user);
                }
            }
        }
        if let (true, Some(shared)) = (lease.shared, &self.shared) {
            shared
                .held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&lease.id);
            let (key, id) = (shared.key(&lease.user), lease.id.clone());
            let client = shared.conn.get().cloned();
            if let (Some(mut conn), Ok(rt)) = (client, tokio::runtime::Handle::try_current()) {
                rt.spawn(async move {
                    let removed: redis::RedisResult<i64> = redis::cmd("ZREM")
                        .arg(&key)
                        .arg(&id)
                        .query_async(&mut conn)
                        .await;
                    if let Err(e) = removed {
                        tracing::warn!(error = %e, "answer slots: release not recorded in Redis (it expires on its own)");
                    }
                });
            }
        }
    }
}

impl Shared {
    fn key(&self, user: &str) -> String {
        format!("{}:{user}", self.prefix)
    }

    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        self.conn
            .get_or_try_init(|| {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(REDIS_WAIT))
                    .set_response_timeout(Some(REDIS_WAIT));
                ConnectionManager::new_with_config(self.client.clone(), config)
            })
            .await
            .cloned()
    }

    async fn reserve(&self, lease: &SlotLease, limit: usize) -> redis::RedisResult<bool> {
        let mut conn = self.connection().await?;
        let ok: i64 = self
            .reserve
            .key(self.key(&lease.user))
            .arg(limit)
            .arg(&lease.id)
            .arg(LEASE_TTL.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        if ok == 1 {
            self.held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(lease.id.clone(), lease.user.clone());
        }
        Ok(ok == 1)
    }

    async fn refresh_all(&self) -> redis::RedisResult<()> {
        let held: Vec<(String, String)> = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, user)| (id.clone(), user.clone()))
            .collect();
        if held.is_empty() {
            return Ok(());
        }
        let mut conn = self.connection().await?;
        for (id, user) in held {
            let _: i64 = self
                .refresh
                .key(self.key(&user))
                .arg(&id)
                .arg(LEASE_TTL.as_millis() as u64)
                .invoke_async(&mut conn)
                .await?;
        }
        Ok(())
    }
}

impl Drop for SlotLease {
    fn drop(&mut self) {
        let slots = self.slots.clone();
        slots.release(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_user_gets_at_most_limit_slots_and_they_come_back_when_dropped() {
        let slots = AnswerSlots::new(2, None).unwrap();
        let a = slots.reserve("u").await.unwrap();
        let b = slots.reserve("u").await.unwrap();
        for _ in 0..5 {
            assert_eq!(
                slots.reserve("u").await.err(),
                Some(2),
                "refusals take nothing back"
            );
        }
        assert!(slots.reserve("v").await.is_ok(), "users are independent");
        let copy = a.clone();
        drop(a);
        assert!(
            slots.reserve("u").await.is_err(),
            "a copy still holds the slot"
        );
        drop(copy);
        let c = slots.reserve("u").await.unwrap();
        drop((b, c));
        assert!(slots.local.lock().unwrap().is_empty());
    }
}
