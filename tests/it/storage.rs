//! The storage story: one scenario, run against SQLite and PostgreSQL alike.

use std::time::Duration;

use emergence::db::{
    Author, AuthorKind, InsertOutcome, NewMessage, Page, StoreError, Target, Thread, connect,
};

use crate::support::TestDb;

fn new_message(thread: &str, client_id: &str, author: &str, body: &str) -> NewMessage {
    NewMessage {
        id: uuid::Uuid::now_v7().to_string(),
        thread_id: thread.into(),
        client_id: client_id.into(),
        author: Author {
            kind: AuthorKind::User,
            id: author.into(),
            name: author.into(),
        },
        body: body.into(),
        created_at: emergence::db::now_ms(),
        status: None,
        prompt_tokens: None,
        completion_tokens: None,
        meta: None,
        requester: None,
        agent: None,
        stream_id: None,
    }
}

async fn story(db: &TestDb) {
    story_at(Target::url(&db.url())).await;
}

/// The story against the database at `target` (also run through PgBouncer: `pooler.rs`).
pub async fn story_at(target: Target<'_>) {
    let store = connect(target, 4, Duration::from_secs(5), true)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.expect("migrations are idempotent");

    // Users: unique by key.
    let account = |id: &str, name: &str| emergence::db::accounts::NewAccount {
        id: id.into(),
        username: name.into(),
        key: name.to_lowercase(),
        password_hash: "h".into(),
        mode: emergence::db::accounts::Registration::Open,
        invite_hash: None,
        admin: false,
        now: 1,
    };
    for (id, name) in [("u1", "Alice"), ("u2", "bob")] {
        let created = store.register_user(&account(id, name)).await.unwrap();
        assert!(
            matches!(created, emergence::db::accounts::Registered::Created(_)),
            "{created:?}"
        );
    }
    assert_eq!(
        store.register_user(&account("u3", "ALICE")).await.unwrap(),
        emergence::db::accounts::Registered::Taken
    );
    assert_eq!(
        store.user_by_key("alice").await.unwrap().unwrap().username,
        "Alice"
    );
    assert!(store.user_by_key("nobody").await.unwrap().is_none());

    // Sessions and revocations.
    store
        .create_session("s1", "u1", 10, i64::MAX / 2)
        .await
        .unwrap();
    store.revoke_session("s1", 20).await.unwrap();
    let revoked = store.revoked_since(15, 30).await.unwrap();
    assert_eq!(
        revoked.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        vec!["s1"]
    );
    assert!(store.revoked_since(21, 30).await.unwrap().is_empty());

    // Threads and members.
    let t = Thread {
        id: "t1".into(),
        title: "story".into(),
        owner_id: "u1".into(),
        agents: vec!["anima".into()],
        created_at: 5,
        last_seq: 0,
    };
    store.create_thread(&t, 5).await.unwrap();
    store.add_member("t1", "u2", 6).await.unwrap();
    store
        .add_member("t1", "u2", 7)
        .await
        .expect("adding twice is harmless");
    let mut members = store.members("t1").await.unwrap();
    members.sort();
    assert_eq!(members, vec!["u1", "u2"]);
    assert_eq!(
        store.thread("t1").await.unwrap().unwrap().agents,
        vec!["anima"]
    );
    assert_eq!(store.threads_for_user("u2").await.unwrap().len(), 1);
    assert_eq!(store.memberships("u2").await.unwrap(), vec!["t1"]);

    // Messages: gapless seq, idempotency by client_id, conflicts, missing threads.
    let batch = vec![
        new_message("t1", "a", "u1", "one"),
        new_message("t1", "b", "u2", "two"),
        new_message("t1", "a", "u1", "one again"),
        new_message("t1", "b", "u1", "not yours"),
        new_message("missing", "c", "u1", "nowhere"),
    ];
    let out = store.insert_messages(&batch).await.unwrap();
    assert!(matches!(&out[0], InsertOutcome::Inserted(m) if m.seq == 1));
    assert!(matches!(&out[1], InsertOutcome::Inserted(m) if m.seq == 2));
    assert!(matches!(&out[2], InsertOutcome::Existing(m) if m.seq == 1 && m.body == "one"));
    assert!(matches!(&out[3], InsertOutcome::ClientIdTaken));
    assert!(matches!(&out[4], InsertOutcome::NoThread));

    // Concurrent batches from many tasks still give a gapless sequence.
    let mut tasks = Vec::new();
    for task in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let batch: Vec<_> = (0..5)
                    .map(|j| new_message("t1", &format!("c{task}-{i}-{j}"), "u1", "x"))
                    .collect();
                loop {
                    match store.insert_messages(&batch).await {
                        Ok(_) => break,
                        Err(StoreError::Unavailable(_)) => {
                            tokio::time::sleep(Duration::from_millis(5)).await
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = store.messages("t1", Page::After(0), 1000).await.unwrap();
    assert_eq!(all.len(), 402);
    assert!(
        all.iter().enumerate().all(|(i, m)| m.seq == i as i64 + 1),
        "gapless and ascending"
    );
    assert_eq!(store.thread("t1").await.unwrap().unwrap().last_seq, 402);
    let latest = store.messages("t1", Page::Latest, 3).await.unwrap();
    assert_eq!(
        latest.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![400, 401, 402]
    );
    let before = store.messages("t1", Page::Before(3), 10).await.unwrap();
    assert_eq!(before.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2]);
    let by_client = store
        .message_by_client_id("t1", "b")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_client.author.id, "u2");

    // Hostile text is stored verbatim.
    let evil = "'); DROP TABLE messages; -- <script>alert(1)</script> \u{7} é";
    store
        .insert_messages(&[new_message("t1", "evil", "u1", evil)])
        .await
        .unwrap();
    assert_eq!(
        store
            .message_by_client_id("t1", "evil")
            .await
            .unwrap()
            .unwrap()
            .body,
        evil
    );

    usage_story(&store).await;

    // The signing-key slot keeps the first value.
    assert_eq!(store.kv_get_or_insert("k", "first").await.unwrap(), "first");
    assert_eq!(
        store.kv_get_or_insert("k", "second").await.unwrap(),
        "first"
    );
    store.close().await;
}

/// Usage sums per requester, agent and model; limit rows; budget reservations that fit in every
/// period or in none.
async fn usage_story(store: &emergence::db::SharedStore) {
    use emergence::db::{
        MessageMeta,
        usage::{BudgetRow, Counter, PeriodLimit, UsageQuery},
    };
    let answer = |client_id: &str, requester: &str, prompt: i64, completion: i64| {
        let mut m = new_message("t1", client_id, "bot", "an answer");
        m.author.kind = AuthorKind::Agent;
        m.requester = Some(requester.into());
        m.prompt_tokens = Some(prompt);
        m.completion_tokens = Some(completion);
        m.meta = Some(Box::new(MessageMeta {
            model: Some("m1".into()),
            ..MessageMeta::default()
        }));
        m
    };
    store
        .insert_messages(&[
            answer("ans1", "u1", 25, 5),
            answer("ans2", "u1", 10, 2),
            answer("ans3", "u2", 7, 1),
        ])
        .await
        .unwrap();
    let mine = UsageQuery {
        user_id: Some("u1".into()),
        from_ms: 0,
        to_ms: i64::MAX,
    };
    let groups = store.usage(&mine).await.unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    let g = &groups[0];
    assert_eq!(
        (g.user_id.as_str(), g.agent.as_str(), g.model.as_deref()),
        ("u1", "bot", Some("m1"))
    );
    assert_eq!(
        (g.answers, g.prompt_tokens, g.completion_tokens),
        (2, 35, 7)
    );
    assert_eq!(g.day, emergence::db::now_ms() / 86_400_000);
    let everyone = UsageQuery {
        user_id: None,
        ..mine.clone()
    };
    assert_eq!(
        store.usage(&everyone).await.unwrap().len(),
        2,
        "user messages are not usage"
    );
    let past = UsageQuery {
        from_ms: 0,
        to_ms: 1,
        ..mine
    };
    assert!(store.usage(&past).await.unwrap().is_empty());

    store.set_budget("u1", Some(10), None, 1).await.unwrap();
    store.set_budget("*", None, Some(500), 1).await.unwrap();
    store.set_budget("u1", Some(20), None, 2).await.unwrap();
    let rows = store.budget_rows(Some("u1")).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.contains(&BudgetRow {
            user_id: "u1".into(),
            username: Some("Alice".into()),
            daily_tokens: Some(20),
            monthly_tokens: None,
        }),
        "{rows:?}"
    );
    assert!(store.delete_budget("u1").await.unwrap());
    assert!(!store.delete_budget("u1").await.unwrap());

    let periods = [
        PeriodLimit {
            period: "m2026-11".into(),
            limit: None,
        },
        PeriodLimit {
            period: "d2026-11-30".into(),
            limit: Some(100),
        },
    ];
    assert_eq!(store.reserve_usage("u1", &periods, 60).await.unwrap(), None);
    assert_eq!(
        store.reserve_usage("u1", &periods, 60).await.unwrap(),
        None,
        "60 < 100: admitted"
    );
    assert_eq!(
        store.reserve_usage("u1", &periods, 60).await.unwrap(),
        Some("d2026-11-30".to_string()),
        "120 >= 100: refused"
    );
    let keys = ["m2026-11".to_string(), "d2026-11-30".to_string()];
    assert_eq!(
        store.usage_counters("u1", &keys).await.unwrap(),
        vec![
            Counter {
                used: 0,
                reserved: 120
            };
            2
        ],
        "a refused reservation takes nothing, in no period"
    );
    store.settle_usage("u1", &keys, 60, 30).await.unwrap();
    assert_eq!(
        store.usage_counters("u1", &keys).await.unwrap(),
        vec![
            Counter {
                used: 30,
                reserved: 60
            };
            2
        ]
    );
    assert_eq!(
        store.usage_counters("u2", &keys).await.unwrap(),
        vec![Counter::default(); 2]
    );
}

#[tokio::test]
async fn storage_story_on_sqlite() {
    story(&TestDb::sqlite()).await;
}

#[tokio::test]
async fn storage_story_on_postgres() {
    story(&TestDb::postgres().await).await;
}

/// A group commit reads (its idempotency lookup) before it writes. On SQLite a commit by another
/// connection in between (a thread created meanwhile) used to fail it with BUSY_SNAPSHOT, which
/// marked the whole database down for every user; found by the audit battery.
#[tokio::test]
async fn creating_threads_while_messages_are_written_never_marks_sqlite_down() {
    let app = crate::support::spawn_app_with(|s| {
        s.limits.thread_rate_per_min = 0;
        s.limits.send_rate_per_sec = 0;
    })
    .await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "busy").await;
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    let sends = async {
        for i in 0..400 {
            ws.send_message(&thread, &format!("m{i}"), "hello").await;
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    let creates = async {
        let all = (0..100).map(|i| {
            app.post(
                "/api/threads",
                Some(&alice.token),
                serde_json::json!({"title": format!("t{i}")}),
            )
        });
        futures_util::future::join_all(all).await
    };
    let ((), created) = tokio::join!(sends, creates);
    assert!(created.iter().all(|r| r.status() == 201));
    let mut persisted = 0;
    while persisted < 400 {
        let f = ws.recv().await.expect("every send is acknowledged");
        assert_ne!(f["type"], "status", "the database never went down: {f}");
        if f["type"] == "ack" && f["status"] == "persisted" {
            persisted += 1;
        }
    }
    assert!(app.state.db.is_up());
    assert_eq!(app.metric("db_connection_failures_total").await, 0.0);
}
