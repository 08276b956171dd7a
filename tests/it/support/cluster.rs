//! Several in-process instances on one database and one Redis channel, each subscribed to Redis
//! before the test starts its traffic.

use std::time::Duration;

use emergence::realtime::BrokerState;

use super::{TestApp, TestDb, start, test_settings};

/// Start `n` instances on `db` (owned by the caller) and a fresh channel of `redis_url`, with the
/// limits that would otherwise throttle one test client off; `configure` adjusts the rest.
pub async fn instances_on(
    db: &TestDb,
    n: usize,
    redis_url: &str,
    configure: impl Fn(&mut emergence::Settings),
) -> Vec<TestApp> {
    let channel = format!("emergence:test:{}", uuid::Uuid::new_v4());
    let mut apps = Vec::new();
    for _ in 0..n {
        let mut s = test_settings(&db.url());
        s.broker.url = Some(emergence::settings::Secret::new(redis_url));
        s.broker.channel = channel.clone();
        s.limits.send_rate_per_sec = 0;
        s.limits.auth_rate_per_min = 0;
        s.limits.ws_connect_rate_per_min = 0;
        s.limits.thread_rate_per_min = 0;
        s.limits.member_rate_per_min = 0;
        s.limits.ws_per_ip = 0;
        configure(&mut s);
        apps.push(start(s, TestDb::Shared(db.url()), true).await);
    }
    // Every instance subscribed before the test starts its traffic (bounded: 10 s on a loaded
    // machine), so a fault injected next cuts an established subscription.
    for app in &apps {
        for _ in 0..500 {
            if app.state.realtime.broker_state() == BrokerState::Up {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            app.state.realtime.broker_state(),
            BrokerState::Up,
            "the instance subscribed to Redis"
        );
    }
    apps
}
