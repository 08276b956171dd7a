//! `emergence backup` and `emergence restore`, on both backends: a populated server is backed up
//! while it runs, the backup is restored into a fresh database, and a fresh server on it shows
//! every thread and every message exactly as before, to the same tokens and to new logins.

use std::{collections::BTreeMap, path::Path, time::Duration};

use serde_json::{Value, json};

use crate::support::{
    TestApp, TestDb, TestUser, accounts::PASSWORD, process::BUILT, spawn_app, spawn_pg_app_with,
    start, test_settings,
};

#[tokio::test]
async fn a_sqlite_backup_taken_while_serving_restores_every_thread_and_message_into_a_fresh_server()
{
    let source = spawn_app().await;
    backup_restore_story(source, TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_postgres_backup_taken_while_serving_restores_every_thread_and_message_into_a_fresh_server()
 {
    let source = spawn_pg_app_with(|_| {}).await;
    backup_restore_story(source, TestDb::postgres().await).await;
}

async fn backup_restore_story(source: TestApp, fresh: TestDb) {
    let users = populate(&source).await;
    let before = snapshot(&source, &users).await;
    let seen: usize = before.values().map(count_messages).sum();
    assert!(seen >= 8, "a populated server: {before:#?}");

    let dir = std::env::temp_dir().join(format!("emergence-backup-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("emergence.backup");

    // Taken while the source keeps serving.
    let started = std::time::Instant::now();
    let out = emergence(
        &["backup", "--out", file.to_str().unwrap()],
        &source.database_url,
    )
    .await;
    assert!(out.ok, "backup: {}", out.text);
    assert!(out.text.contains("3 users"), "{}", out.text);
    eprintln!(
        "backup ({seen} messages as the users see them): {} bytes in {:?}: {}",
        std::fs::metadata(&file).unwrap().len(),
        started.elapsed(),
        out.text.trim()
    );
    let again = emergence(
        &["backup", "--out", file.to_str().unwrap()],
        &source.database_url,
    )
    .await;
    assert!(
        !again.ok && again.text.contains("already exists"),
        "a backup never overwrites: {}",
        again.text
    );

    // Never over a database that holds data (here: the live source).
    let refused = emergence(
        &["restore", "--from", file.to_str().unwrap()],
        &source.database_url,
    )
    .await;
    assert!(
        !refused.ok
            && (refused.text.contains("refusing to overwrite") || refused.text.contains("in use")),
        "{}",
        refused.text
    );

    let url = fresh.url();
    let out = emergence(&["restore", "--from", file.to_str().unwrap()], &url).await;
    assert!(out.ok, "restore: {}", out.text);
    assert!(out.text.contains("3 users"), "{}", out.text);
    let restored = start(test_settings(&url), fresh, true).await;

    // Same threads, members' views and messages, read with the tokens issued before (the
    // signing key is part of the backup)...
    let after = snapshot(&restored, &users).await;
    assert_eq!(after, before);
    // ... and with new logins.
    for user in &users {
        let r = restored
            .post(
                "/api/auth/login",
                None,
                json!({"username": user.username, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status(), 200, "{} logs in", user.username);
        let token = r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string();
        let fresh_login = TestUser {
            token,
            ..user.clone()
        };
        assert_eq!(
            snapshot(&restored, std::slice::from_ref(&fresh_login)).await[&user.username],
            before[&user.username]
        );
    }
    // Sequences go on from where they were.
    let alice = &users[0];
    let plans = before["alice"]["threads"][0]["id"].as_str().unwrap();
    let last = before["alice"]["threads"][0]["last_seq"].as_i64().unwrap();
    let r = restored
        .post(
            &format!("/api/threads/{plans}/messages"),
            Some(&alice.token),
            json!({"client_id": "after-restore", "body": "still here"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap()["seq"], last + 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Three users; a shared thread with an agent answer in it, a private one, an empty one.
async fn populate(app: &TestApp) -> Vec<TestUser> {
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let solo = app.create_thread(&bob, "bob alone").await;
    app.create_thread(&carol, "nothing said yet").await;
    let r = app
        .post(
            "/api/threads",
            Some(&alice.token),
            json!({"title": "plans 🌍 <b>& \"quotes\"</b>", "agents": ["anima"]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let plans = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.add_member(&alice, &plans, "bob").await;
    let send = |user: &TestUser, thread: &str, client_id: &str, body: Value| {
        let (token, path) = (
            user.token.clone(),
            format!("/api/threads/{thread}/messages"),
        );
        let mut body = body;
        body["client_id"] = json!(client_id);
        async move {
            let r = app.post(&path, Some(&token), body).await;
            assert_eq!(r.status(), 201, "{path}");
        }
    };
    send(&alice, &plans, "a1", json!({"body": "first, no agent"})).await;
    send(
        &bob,
        &plans,
        "b1",
        json!({"body": "  trimmed \n\tunicode ✓  "}),
    )
    .await;
    send(
        &alice,
        &plans,
        "a2",
        json!({"body": "Anima, your view?", "agent": "anima"}),
    )
    .await;
    send(&bob, &solo, "s1", json!({"body": "note to self"})).await;
    send(&bob, &solo, "s2", json!({"body": "x".repeat(16_384)})).await;
    // The agent's answer is stored too (a message authored by an agent).
    let mut answered = false;
    for _ in 0..300 {
        let history = app.messages(&alice, &plans, "?after_seq=0&limit=500").await;
        if history.iter().any(|m| m["author"]["kind"] == "agent") {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "the agent answered within 30 s");
    send(&alice, &plans, "a3", json!({"body": "after the answer"})).await;
    vec![alice, bob, carol]
}

/// Per user: the thread list, and for each thread its resource and every message.
async fn snapshot(app: &TestApp, users: &[TestUser]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for user in users {
        let list: Value = app
            .get("/api/threads", Some(&user.token))
            .await
            .json()
            .await
            .unwrap();
        let mut threads = Vec::new();
        for t in list["threads"].as_array().unwrap() {
            let id = t["id"].as_str().unwrap();
            let one: Value = app
                .get(&format!("/api/threads/{id}"), Some(&user.token))
                .await
                .json()
                .await
                .unwrap();
            let messages = app.messages(user, id, "?after_seq=0&limit=500").await;
            threads.push(json!({"listed": t, "thread": one, "messages": messages}));
        }
        let me: Value = app
            .get("/api/me", Some(&user.token))
            .await
            .json()
            .await
            .unwrap();
        out.insert(
            user.username.clone(),
            json!({"me": me, "threads": list["threads"], "detail": threads}),
        );
    }
    out
}

fn count_messages(user: &Value) -> usize {
    user["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["messages"].as_array().unwrap().len())
        .sum()
}

/// What a run of the binary printed, and whether it exited 0.
struct Run {
    ok: bool,
    text: String,
}

async fn emergence(args: &[&str], database_url: &str) -> Run {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(BUILT)
            .args(args)
            .env("DATABASE_URL", database_url)
            .env("EMERGENCE_REGISTRATION", "open")
            .env("EMERGENCE_LOG", "warn")
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
            .output(),
    )
    .await
    .expect("the command finishes within 60 s")
    .expect("the binary runs");
    Run {
        ok: out.status.success(),
        text: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}
