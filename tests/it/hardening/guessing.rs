//! Authorization: guessed thread IDs get the same 404 as missing threads, and neither thread
//! probes nor logins reveal by their timing what exists.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{spawn_app, spawn_app_with};

use super::raw::*;

#[tokio::test]
async fn guessed_thread_ids_get_the_same_404_as_missing_threads_everywhere() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let stranger = app.register("stranger").await;
    let thread = app.create_thread(&owner, "secret").await;
    app.post(
        &format!("/api/threads/{thread}/messages"),
        Some(&owner.token),
        json!({"client_id": "s1", "body": "the secret"}),
    )
    .await;
    let missing = uuid::Uuid::now_v7().to_string();
    let long = "9".repeat(4_000);
    let odd_ids = [
        thread.clone(),
        missing,
        thread.to_uppercase(),
        format!("{thread} "),
        "0".into(),
        "1".into(),
        "-1".into(),
        "%27%20OR%20%271%27%3D%271".into(),
        "%2e%2e".into(),
        "00000000-0000-0000-0000-000000000000".into(),
        long,
        "%E2%80%AE".into(),
    ];
    let not_found = json!({"error": {"code": "not_found", "message": "not found"}});
    for id in &odd_ids {
        let checks = [
            app.get(&format!("/api/threads/{id}"), Some(&stranger.token))
                .await,
            app.get(
                &format!("/api/threads/{id}/messages"),
                Some(&stranger.token),
            )
            .await,
            app.get(
                &format!("/api/threads/{id}/messages?after_seq=0"),
                Some(&stranger.token),
            )
            .await,
            app.post(
                &format!("/api/threads/{id}/messages"),
                Some(&stranger.token),
                json!({"client_id": "x", "body": "hi"}),
            )
            .await,
            app.post(
                &format!("/api/threads/{id}/members"),
                Some(&stranger.token),
                json!({"username": "stranger"}),
            )
            .await,
            app.post(
                &format!("/api/threads/{id}/debate"),
                Some(&stranger.token),
                json!({"client_id": "d", "topic": "t", "agents": ["anima", "neo"], "rounds": 1}),
            )
            .await,
        ];
        for r in checks {
            let url = r.url().path().to_string();
            assert_eq!(r.status(), 404, "{url}");
            assert_eq!(r.json::<Value>().await.unwrap(), not_found, "{url}");
        }
    }
    let mut ws = app.ws(&stranger).await;
    for id in odd_ids.iter().take(2) {
        ws.send(json!({"type": "subscribe", "thread": id, "after_seq": 0}))
            .await;
        assert_eq!(ws.recv().await.unwrap()["code"], "not_found");
        ws.send(json!({"type": "send", "thread": id, "client_id": "c", "body": "hi"}))
            .await;
        assert_eq!(ws.recv().await.unwrap()["code"], "not_found");
        ws.send(
            json!({"type": "debate", "thread": id, "client_id": "d", "topic": "t",
                       "agents": ["anima", "neo"], "rounds": 1}),
        )
        .await;
        assert_eq!(ws.recv().await.unwrap()["code"], "not_found");
    }
    let stored = app.messages(&owner, &thread, "").await;
    assert_eq!(stored.len(), 1, "the stranger stored nothing");
    let list: Value = app
        .get("/api/threads", Some(&stranger.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["threads"], json!([]));
}

#[tokio::test]
async fn a_stranger_cannot_tell_a_real_thread_from_a_missing_one_by_timing() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let stranger = app.register("stranger").await;
    let thread = app.create_thread(&owner, "secret").await;
    for i in 0..20 {
        app.post(
            &format!("/api/threads/{thread}/messages"),
            Some(&owner.token),
            json!({"client_id": format!("m{i}"), "body": "content"}),
        )
        .await;
    }
    let time = |id: String| {
        let app = &app;
        let token = stranger.token.clone();
        async move {
            let started = Instant::now();
            let r = app.get(&format!("/api/threads/{id}"), Some(&token)).await;
            let elapsed = started.elapsed();
            assert_eq!(r.status(), 404);
            let _ = r.bytes().await;
            elapsed
        }
    };
    for _ in 0..5 {
        time(thread.clone()).await;
        time(uuid::Uuid::now_v7().to_string()).await;
    }
    let (mut real, mut missing) = (Vec::new(), Vec::new());
    for i in 0..50 {
        // Interleaved, alternating which goes first, so background noise hits both alike.
        if i % 2 == 0 {
            real.push(time(thread.clone()).await);
            missing.push(time(uuid::Uuid::now_v7().to_string()).await);
        } else {
            missing.push(time(uuid::Uuid::now_v7().to_string()).await);
            real.push(time(thread.clone()).await);
        }
    }
    let (r, m) = (median(&mut real), median(&mut missing));
    assert!(
        within(r, m, 3.0, Duration::from_millis(20)),
        "stranger on a real thread: median {r:?}; missing thread: median {m:?}"
    );
}

#[tokio::test]
async fn login_timing_does_not_reveal_whether_a_username_exists() {
    let app = spawn_app_with(|s| {
        s.limits.auth_rate_per_min = 0;
        s.limits.failed_logins_per_user = 0;
    })
    .await;
    app.register("alice").await;
    let login = |username: &'static str| {
        let app = &app;
        async move {
            let started = Instant::now();
            let r = app
                .post(
                    "/api/auth/login",
                    None,
                    json!({"username": username, "password": "not the password"}),
                )
                .await;
            let elapsed = started.elapsed();
            assert_eq!(r.status(), 401, "{username}");
            assert_eq!(
                r.json::<Value>().await.unwrap(),
                json!({"error": {"code": "unauthorized", "message": "wrong username or password"}})
            );
            elapsed
        }
    };
    for _ in 0..2 {
        login("alice").await;
        login("nobody_here").await;
    }
    let (mut existing, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..15 {
        if i % 2 == 0 {
            existing.push(login("alice").await);
            unknown.push(login("nobody_here").await);
        } else {
            unknown.push(login("nobody_here").await);
            existing.push(login("alice").await);
        }
    }
    let (e, u) = (median(&mut existing), median(&mut unknown));
    assert!(
        within(e, u, 2.0, Duration::ZERO),
        "existing user, wrong password: median {e:?}; unknown user: median {u:?}"
    );
}
