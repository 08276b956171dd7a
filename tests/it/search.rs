//! Full-text search (issue 17) on SQLite (FTS5) and PostgreSQL (tsvector + GIN): English and
//! French forms, highlighted snippets, filters and paging, no hit from a thread the caller cannot
//! read (a seeded property test over random memberships), and messages stored after a database
//! outage are found once flushed.

#[path = "search_window.rs"]
mod window;

use std::{collections::BTreeSet, time::Duration};

use serde_json::{Value, json};

use crate::{
    support::{
        TestApp, TestDb, TestUser,
        fault_proxy::{FaultProxy, Mode},
        start, test_settings,
    },
    threads_lifecycle::{delete, patch},
};

async fn post(app: &TestApp, user: &TestUser, thread: &str, client_id: &str, body: &str) -> Value {
    let r = app
        .post(
            &format!("/api/threads/{thread}/messages"),
            Some(&user.token),
            json!({"client_id": client_id, "body": body}),
        )
        .await;
    assert_eq!(r.status(), 201, "{body}");
    r.json().await.unwrap()
}

async fn search(app: &TestApp, user: &TestUser, query: &str) -> Value {
    let r = app
        .http
        .get(app.url("/api/search"))
        .query(&[("q", query)])
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{query}");
    r.json().await.unwrap()
}

async fn search_with(app: &TestApp, user: &TestUser, params: &[(&str, &str)]) -> reqwest::Response {
    app.http
        .get(app.url("/api/search"))
        .query(params)
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap()
}

fn bodies_of(hits: &Value) -> Vec<String> {
    hits["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["message_id"].as_str().unwrap().to_string())
        .collect()
}

async fn language_story(db: TestDb) {
    let mut s = test_settings(&db.url());
    s.limits.send_rate_per_sec = 0;
    let app = start(s, db, true).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let thread = app.create_thread(&alice, "Langues").await;
    app.add_member(&alice, &thread, "bob").await;
    let running = post(
        &app,
        &alice,
        &thread,
        "en",
        "The runners were running along the river",
    )
    .await;
    let eating = post(
        &app,
        &bob,
        &thread,
        "fr",
        "Nous aimons manger des pommes le dimanche",
    )
    .await;
    let other = post(
        &app,
        &alice,
        &thread,
        "x",
        "Nothing to see here <b>bold</b>",
    )
    .await;

    // English: another form of the word.
    let hits = search(&app, &alice, "run").await;
    assert_eq!(bodies_of(&hits), [running["id"].as_str().unwrap()]);
    let hit = &hits["hits"][0];
    assert_eq!(hit["thread"], thread.as_str());
    assert_eq!(hit["thread_title"], "Langues");
    assert_eq!(hit["seq"], 1);
    assert_eq!(hit["author"]["name"], "alice");
    let snippet = hit["snippet"].as_str().unwrap();
    assert!(snippet.contains("\u{e000}running\u{e001}"), "{snippet:?}");

    // French: "mangeait" finds "manger".
    let hits = search(&app, &bob, "mangeait").await;
    assert_eq!(bodies_of(&hits), [eating["id"].as_str().unwrap()]);
    // Several words: all must match.
    assert_eq!(
        bodies_of(&search(&app, &bob, "pommes dimanche").await).len(),
        1
    );
    assert!(bodies_of(&search(&app, &bob, "pommes river").await).is_empty());
    // Markup in a body comes back as text; only the markers are special.
    let hits = search(&app, &alice, "bold").await;
    assert_eq!(bodies_of(&hits), [other["id"].as_str().unwrap()]);
    assert!(hits["hits"][0]["snippet"].as_str().unwrap().contains("<b>"));
    // Query syntax of either engine is plain text here.
    for q in [
        "\"",
        "run*",
        "NEAR(a b)",
        "a OR",
        "-",
        "(",
        "'; DROP TABLE messages; --",
    ] {
        let r = search_with(&app, &alice, &[("q", q)]).await;
        assert_eq!(r.status(), 200, "{q}");
    }

    // Filters: author (username), date range, thread; paging.
    let by_bob = search_with(&app, &alice, &[("q", "pommes"), ("author", "bob")]).await;
    assert_eq!(bodies_of(&by_bob.json().await.unwrap()).len(), 1);
    let by_alice = search_with(&app, &alice, &[("q", "pommes"), ("author", "alice")]).await;
    assert!(bodies_of(&by_alice.json().await.unwrap()).is_empty());
    let by_agent = search_with(&app, &alice, &[("q", "pommes"), ("agent", "echo")]).await;
    assert!(bodies_of(&by_agent.json().await.unwrap()).is_empty());
    let future = search_with(
        &app,
        &alice,
        &[("q", "pommes"), ("from", "2999-01-01T00:00:00Z")],
    )
    .await;
    assert!(bodies_of(&future.json().await.unwrap()).is_empty());
    let past = search_with(
        &app,
        &alice,
        &[
            ("q", "pommes"),
            ("to", "2999-01-01T00:00:00Z"),
            ("from", "2000-01-01T00:00:00Z"),
        ],
    )
    .await;
    assert_eq!(bodies_of(&past.json().await.unwrap()).len(), 1);
    let other_thread = app.create_thread(&alice, "elsewhere").await;
    post(&app, &alice, &other_thread, "y", "more pommes here").await;
    assert_eq!(bodies_of(&search(&app, &alice, "pommes").await).len(), 2);
    let only = search_with(&app, &alice, &[("q", "pommes"), ("thread", &other_thread)]).await;
    let only: Value = only.json().await.unwrap();
    assert_eq!(bodies_of(&only).len(), 1);
    assert_eq!(only["hits"][0]["thread"], other_thread.as_str());
    let page1: Value = search_with(&app, &alice, &[("q", "pommes"), ("limit", "1")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page1["next_offset"], 1);
    let page2: Value = search_with(
        &app,
        &alice,
        &[("q", "pommes"), ("limit", "1"), ("offset", "1")],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_ne!(bodies_of(&page1), bodies_of(&page2));
    assert_eq!(bodies_of(&page2).len(), 1);

    // Archived threads stay searchable.
    patch(&app, &alice, &other_thread, json!({"archived": true})).await;
    assert_eq!(bodies_of(&search(&app, &alice, "pommes").await).len(), 2);

    // Bad parameters are 422 naming the field.
    for (params, field) in [
        (vec![("q", "")], "q"),
        (vec![], "q"),
        (vec![("q", "x"), ("limit", "0")], "limit"),
        (vec![("q", "x"), ("limit", "abc")], "limit"),
        (vec![("q", "x"), ("offset", "-1")], "offset"),
        (vec![("q", "x"), ("from", "yesterday")], "from"),
    ] {
        let r = search_with(&app, &alice, &params).await;
        assert_eq!(r.status(), 422, "{params:?}");
        let e: Value = r.json().await.unwrap();
        assert!(e["error"]["fields"][field].is_string(), "{e}");
    }
    let long = "a".repeat(201);
    assert_eq!(
        search_with(&app, &alice, &[("q", &long)]).await.status(),
        422
    );
    assert_eq!(app.get("/api/search?q=x", None).await.status(), 401);
}

#[tokio::test]
async fn search_finds_english_and_french_forms_with_filters_on_sqlite() {
    language_story(TestDb::sqlite()).await;
}

#[tokio::test]
async fn search_finds_english_and_french_forms_with_filters_on_postgres() {
    language_story(TestDb::postgres().await).await;
}

/// A small deterministic generator (no dependency needed for a seeded loop).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Random memberships, removals and deletions: every user's hits come exactly from the threads
/// they can read, never from another.
async fn no_leak_story(db: TestDb, seed: u64) {
    let mut s = test_settings(&db.url());
    s.limits.send_rate_per_sec = 0;
    s.limits.thread_rate_per_min = 0;
    s.limits.member_rate_per_min = 0;
    let app = start(s, db, true).await;
    let mut rng = Lcg(seed);
    let mut users = Vec::new();
    for i in 0..4 {
        users.push(app.register(&format!("user{i}")).await);
    }
    // (thread id, members by index, deleted)
    let mut threads: Vec<(String, BTreeSet<usize>, bool)> = Vec::new();
    for t in 0..8 {
        let owner = (rng.next() % 4) as usize;
        let id = app.create_thread(&users[owner], &format!("t{t}")).await;
        let mut members = BTreeSet::from([owner]);
        for (u, user) in users.iter().enumerate() {
            if u != owner && rng.chance(40) {
                app.add_member(&users[owner], &id, &user.username).await;
                members.insert(u);
            }
        }
        post(
            &app,
            &users[owner],
            &id,
            "c",
            &format!("zebra crossing number {t}"),
        )
        .await;
        threads.push((id, members, false));
    }
    let check = async |threads: &[(String, BTreeSet<usize>, bool)]| {
        for (u, user) in users.iter().enumerate() {
            let hits = search_with(&app, user, &[("q", "zebra"), ("limit", "100")]).await;
            let hits: Value = hits.json().await.unwrap();
            let got: BTreeSet<String> = hits["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["thread"].as_str().unwrap().to_string())
                .collect();
            let readable: BTreeSet<String> = threads
                .iter()
                .filter(|(_, m, deleted)| m.contains(&u) && !deleted)
                .map(|(id, _, _)| id.clone())
                .collect();
            assert_eq!(got, readable, "user{u}, seed {seed}");
            // Asking for a thread one cannot read by id finds nothing either.
            for (id, m, deleted) in threads {
                if !m.contains(&u) || *deleted {
                    let r = search_with(&app, user, &[("q", "zebra"), ("thread", id)]).await;
                    let r: Value = r.json().await.unwrap();
                    assert!(r["hits"].as_array().unwrap().is_empty(), "seed {seed}");
                }
            }
        }
    };
    check(&threads).await;
    // Random removals, leaves and deletions, then check again.
    for (id, members, deleted) in threads.iter_mut() {
        let owner_id: Value = app
            .get(
                &format!("/api/threads/{id}"),
                Some(&users[*members.iter().next().unwrap()].token),
            )
            .await
            .json()
            .await
            .unwrap();
        let owner = users
            .iter()
            .position(|u| u.id == owner_id["owner_id"].as_str().unwrap())
            .unwrap();
        if rng.chance(25) {
            assert_eq!(
                delete(&app, &users[owner], &format!("/api/threads/{id}"))
                    .await
                    .status(),
                204
            );
            *deleted = true;
            continue;
        }
        let others: Vec<usize> = members.iter().copied().filter(|m| *m != owner).collect();
        if let Some(&gone) = others.first().filter(|_| rng.chance(60)) {
            let r = delete(
                &app,
                &users[owner],
                &format!("/api/threads/{id}/members/{}", users[gone].id),
            )
            .await;
            assert_eq!(r.status(), 204);
            members.remove(&gone);
        }
    }
    check(&threads).await;
}

#[tokio::test]
async fn search_never_returns_a_hit_from_a_thread_the_caller_cannot_read_on_sqlite() {
    for seed in [1, 2, 3] {
        no_leak_story(TestDb::sqlite(), seed).await;
    }
}

#[tokio::test]
async fn search_never_returns_a_hit_from_a_thread_the_caller_cannot_read_on_postgres() {
    for seed in [4, 5, 6] {
        no_leak_story(TestDb::postgres().await, seed).await;
    }
}

/// A message sent while the database is down is queued, flushed on recovery by the group commit,
/// and then found by search (the index is written in the same transaction).
async fn outage_story(sqlite: bool) {
    let db = if sqlite {
        TestDb::sqlite()
    } else {
        TestDb::postgres().await
    };
    let proxy = FaultProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let url = if sqlite {
        db.url()
    } else {
        db.url_via(proxy.port)
    };
    let sqlite_dir = db.sqlite_dir().cloned();
    let app = start(test_settings(&url), db, true).await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "outage").await;
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    ws.send_message(&thread, "before", "before the outage")
        .await;
    ws.recv_until("persisted", |f| {
        f["type"] == "ack" && f["status"] == "persisted"
    })
    .await;

    let moved = sqlite_dir.as_ref().map(|d| d.with_extension("away"));
    if let (Some(dir), Some(moved)) = (&sqlite_dir, &moved) {
        std::fs::rename(dir, moved).unwrap();
        app.state
            .db
            .drop_connections("test: database file made unavailable")
            .await;
    } else {
        proxy.set(Mode::Refuse);
        proxy.reset_all();
    }
    // Sent while down: queued (the database may be found down by this very send).
    ws.send_message(
        &thread,
        "during",
        "a quokka smiled while the database was away",
    )
    .await;
    let ack = ws.recv_type("ack").await;
    assert_eq!(
        (ack["client_id"].as_str(), ack["status"].as_str()),
        (Some("during"), Some("queued"))
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let (Some(dir), Some(moved)) = (&sqlite_dir, &moved) {
        std::fs::rename(moved, dir).unwrap();
    } else {
        proxy.set(Mode::Pass);
    }
    ws.recv_until("persisted", |f| {
        f["type"] == "ack" && f["status"] == "persisted" && f["client_id"] == "during"
    })
    .await;
    let hits = search(&app, &alice, "quokka").await;
    assert_eq!(hits["hits"].as_array().unwrap().len(), 1, "{hits}");
    assert_eq!(hits["hits"][0]["seq"], 2);
}

#[tokio::test]
async fn a_message_stored_after_a_database_outage_is_found_on_sqlite() {
    outage_story(true).await;
}

#[tokio::test]
async fn a_message_stored_after_a_database_outage_is_found_on_postgres() {
    outage_story(false).await;
}

fn seqs_of(messages: &[Value]) -> Vec<i64> {
    messages
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect()
}

/// A hit opens its thread at the message: `around_seq` answers the page centred on it, clipped
/// at both ends of the thread, and refuses to be mixed with the other two directions.
async fn jump_story(db: TestDb) {
    let mut s = test_settings(&db.url());
    s.limits.send_rate_per_sec = 0;
    let app = start(s, db, true).await;
    let alice = app.register("alice").await;
    let stranger = app.register("mallory").await;
    let thread = app.create_thread(&alice, "Long history").await;
    for i in 1..=30 {
        let body = if i == 17 {
            "the needle in the haystack".to_string()
        } else {
            format!("straw number {i}")
        };
        post(&app, &alice, &thread, &format!("c{i}"), &body).await;
    }
    let hits = search(&app, &alice, "needle").await;
    let seq = hits["hits"][0]["seq"].as_i64().unwrap();
    assert_eq!(seq, 17);

    let page = app
        .messages(&alice, &thread, &format!("?around_seq={seq}&limit=5"))
        .await;
    assert_eq!(seqs_of(&page), vec![15, 16, 17, 18, 19]);
    assert_eq!(page[2]["body"], "the needle in the haystack");
    // An even limit keeps one more after the message than before it.
    let page = app
        .messages(&alice, &thread, "?around_seq=17&limit=4")
        .await;
    assert_eq!(seqs_of(&page), vec![16, 17, 18, 19]);
    // Clipped at the start and at the head of the thread.
    let page = app.messages(&alice, &thread, "?around_seq=2&limit=7").await;
    assert_eq!(seqs_of(&page), vec![1, 2, 3, 4, 5, 6, 7]);
    let page = app
        .messages(&alice, &thread, "?around_seq=29&limit=7")
        .await;
    assert_eq!(seqs_of(&page), vec![26, 27, 28, 29, 30]);
    // Default limit: 50 centred on 17 is the whole thread here.
    let page = app.messages(&alice, &thread, "?around_seq=17").await;
    assert_eq!(seqs_of(&page), (1..=30).collect::<Vec<_>>());

    for (query, field) in [
        ("around_seq=0", "around_seq"),
        ("around_seq=x", "around_seq"),
        ("around_seq=3&after_seq=1", "around_seq"),
        ("around_seq=3&before_seq=9", "around_seq"),
    ] {
        let r = app
            .get(
                &format!("/api/threads/{thread}/messages?{query}"),
                Some(&alice.token),
            )
            .await;
        assert_eq!(r.status(), 422, "{query}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "validation", "{query}");
        assert!(v["error"]["fields"][field].is_string(), "{query}: {v}");
    }
    // Not a member: the same 404 as any other page.
    let r = app
        .get(
            &format!("/api/threads/{thread}/messages?around_seq=17"),
            Some(&stranger.token),
        )
        .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_hit_opens_the_history_around_its_message_on_sqlite() {
    jump_story(TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_hit_opens_the_history_around_its_message_on_postgres() {
    jump_story(TestDb::postgres().await).await;
}
