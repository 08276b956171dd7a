//! Per-user memory (issue #19, docs/memories.md), on SQLite and PostgreSQL: off by default and
//! then nothing is captured; on, a stated fact is captured once (a `memory` frame to the owner's
//! socket), edited, deleted; another user can neither see nor change it (404); limits answer in
//! the contract's style; threads are summarised at N messages and when archived; the local agent
//! mentions a remembered fact; and, as a property over random users, threads and memberships,
//! the context an agent receives for one user never holds another user's items.

use std::time::Duration;

use proptest::{
    collection::vec,
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    agents::{agent, use_fake_providers},
    on_both,
    support::{
        TestApp, TestUser,
        accounts::{app, call, code, delete_as, get_as},
        documents::next_frame,
        fake_llm::FakeLlm,
    },
};

/// Turn memory on or off for `user`.
async fn opt(app: &TestApp, user: &TestUser, enabled: bool) -> Value {
    let (status, v) = call(
        app,
        Method::PUT,
        "/api/memories/settings",
        &user.token,
        Some(json!({ "enabled": enabled })),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["enabled"], enabled);
    v
}

/// Post `body` as `user` in `thread` (HTTP), with no agent.
async fn say(app: &TestApp, user: &TestUser, thread: &str, client_id: &str, body: &str) {
    let r = app
        .post(
            &format!("/api/threads/{thread}/messages"),
            Some(&user.token),
            json!({ "client_id": client_id, "body": body }),
        )
        .await;
    assert_eq!(r.status(), 201);
}

/// The texts of `user`'s items (newest first), optionally of one kind.
async fn texts(app: &TestApp, user: &TestUser, query: &str) -> Vec<String> {
    let (status, v) = get_as(app, &user.token, &format!("/api/memories{query}")).await;
    assert_eq!(status, 200, "{v}");
    v["memories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect()
}

/// `user`'s items once `pred` holds of their texts (capture runs in the background).
async fn eventually(
    app: &TestApp,
    user: &TestUser,
    query: &str,
    pred: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = texts(app, user, query).await;
        if pred(&now) {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "memory never became as expected: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn capture_edit_delete_and_privacy(pg: bool) {
    let app = app(pg, |s| {
        s.memories.max_items = 4;
        s.memories.max_chars = 60;
    })
    .await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let thread = app.create_thread(&alice, "plans").await;
    app.add_member(&alice, &thread, "bob").await;

    // Off by default: a stated fact is not captured.
    let (status, s) = get_as(&app, &alice.token, "/api/memories/settings").await;
    assert_eq!(status, 200);
    assert_eq!(
        s,
        json!({"enabled": false, "count": 0, "max_items": 4, "max_chars": 60})
    );
    say(&app, &alice, &thread, "m1", "I prefer answers in French.").await;

    // On: the next one is captured, announced to her socket, and the earlier one never was
    // (capture follows the commit order).
    opt(&app, &alice, true).await;
    let mut ws = app.ws(&alice).await;
    say(
        &app,
        &alice,
        &thread,
        "m2",
        "Hi! Remember that my favourite colour is teal.",
    )
    .await;
    let frame = next_frame(&mut ws, "memory", |_| true).await;
    assert_eq!(frame["change"], "added", "{frame}");
    assert_eq!(frame["memory"]["text"], "My favourite colour is teal");
    assert_eq!(frame["memory"]["kind"], "fact");
    assert_eq!(frame["memory"]["source_thread"], thread.as_str());
    let id = frame["memory"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        texts(&app, &alice, "").await,
        ["My favourite colour is teal"]
    );

    // The same fact again is kept once; a question and Bob's statements are not Alice's facts.
    say(
        &app,
        &alice,
        &thread,
        "m3",
        "remember that my FAVOURITE colour is teal!",
    )
    .await;
    say(&app, &alice, &thread, "m4", "Do you think I prefer tea?").await;
    say(&app, &bob, &thread, "m5", "I prefer coffee.").await;
    say(&app, &alice, &thread, "m6", "I work on a compiler").await;
    let now = eventually(&app, &alice, "", |t| t.len() == 2).await;
    assert_eq!(now, ["I work on a compiler", "My favourite colour is teal"]);
    assert!(texts(&app, &bob, "").await.is_empty(), "Bob never opted in");

    // Another user: 404 on every item route, exactly like an item that does not exist.
    let path = format!("/api/memories/{id}");
    for (method, body) in [
        (Method::PATCH, Some(json!({"text": "hijacked"}))),
        (Method::DELETE, None),
    ] {
        let (status, v) = call(&app, method.clone(), &path, &bob.token, body.clone()).await;
        assert_eq!((status, code(&v)), (404, "not_found"), "{method} {v}");
        let (status, v) = call(
            &app,
            method,
            "/api/memories/no-such-item",
            &alice.token,
            body,
        )
        .await;
        assert_eq!((status, code(&v)), (404, "not_found"), "{v}");
    }
    let (_, all) = delete_as(&app, &bob.token, "/api/memories").await;
    assert_eq!(all["deleted"], 0);
    assert_eq!(texts(&app, &alice, "").await.len(), 2);

    // Edit: trimmed; a duplicate is 409; empty or too long is 422 on `text`.
    let (status, v) = call(
        &app,
        Method::PATCH,
        &path,
        &alice.token,
        Some(json!({"text": "  My favourite colour is green "})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["text"], "My favourite colour is green");
    let changed = next_frame(&mut ws, "memory", |f| f["change"] == "updated").await;
    assert_eq!(changed["memory"]["id"], id.as_str());
    let (status, v) = call(
        &app,
        Method::PATCH,
        &path,
        &alice.token,
        Some(json!({"text": "i work on a COMPILER"})),
    )
    .await;
    assert_eq!((status, code(&v)), (409, "conflict"), "{v}");
    for bad in [
        json!({"text": "   "}),
        json!({"text": "x".repeat(61)}),
        json!({"text": 3}),
        json!({}),
    ] {
        let (status, v) = call(&app, Method::PATCH, &path, &alice.token, Some(bad)).await;
        assert_eq!((status, code(&v)), (422, "validation"), "{v}");
        assert!(v["error"]["fields"]["text"].is_string(), "{v}");
    }

    // Add by hand, up to the limit (403 quota_exceeded beyond); a duplicate is 409.
    for text in ["I live in Lyon", "Call me Ali"] {
        let (status, v) = call(
            &app,
            Method::POST,
            "/api/memories",
            &alice.token,
            Some(json!({ "text": text })),
        )
        .await;
        assert_eq!(status, 201, "{v}");
        assert_eq!(v["kind"], "fact");
        assert!(v.get("source_thread").is_none(), "{v}");
    }
    let (status, v) = call(
        &app,
        Method::POST,
        "/api/memories",
        &alice.token,
        Some(json!({"text": "call me ali"})),
    )
    .await;
    assert_eq!((status, code(&v)), (409, "conflict"), "{v}");
    let (status, v) = call(
        &app,
        Method::POST,
        "/api/memories",
        &alice.token,
        Some(json!({"text": "One more"})),
    )
    .await;
    assert_eq!((status, code(&v)), (403, "quota_exceeded"), "{v}");

    // Pages, newest first.
    let (_, page) = get_as(&app, &alice.token, "/api/memories?limit=3").await;
    assert_eq!(page["memories"].as_array().unwrap().len(), 3);
    let before = page["next_before"].as_str().unwrap().to_string();
    let (_, rest) = get_as(
        &app,
        &alice.token,
        &format!("/api/memories?before={before}"),
    )
    .await;
    assert_eq!(rest["memories"].as_array().unwrap().len(), 1);
    assert!(rest.get("next_before").is_none(), "{rest}");
    assert_eq!(texts(&app, &alice, "?kind=summary").await.len(), 0);
    for q in ["?limit=0", "?limit=x", "?kind=secret"] {
        let (status, v) = get_as(&app, &alice.token, &format!("/api/memories{q}")).await;
        assert_eq!((status, code(&v)), (422, "validation"), "{q} {v}");
    }
    let (status, v) = call(
        &app,
        Method::PUT,
        "/api/memories/settings",
        &alice.token,
        Some(json!({"enabled": "yes"})),
    )
    .await;
    assert_eq!((status, code(&v)), (422, "validation"), "{v}");

    // Delete one, then everything.
    let (status, _) = delete_as(&app, &alice.token, &path).await;
    assert_eq!(status, 204);
    let (status, _) = delete_as(&app, &alice.token, &path).await;
    assert_eq!(status, 404);
    let (status, v) = delete_as(&app, &alice.token, "/api/memories").await;
    assert_eq!((status, v["deleted"].as_u64()), (200, Some(3)), "{v}");
    next_frame(&mut ws, "memory", |f| f["change"] == "cleared").await;
    let (_, s) = get_as(&app, &alice.token, "/api/memories/settings").await;
    assert_eq!(
        (s["enabled"].as_bool(), s["count"].as_u64()),
        (Some(true), Some(0))
    );
}

on_both!(
    capture_edit_delete_and_privacy,
    memory_is_opt_in_captured_once_editable_and_private_on_sqlite,
    memory_is_opt_in_captured_once_editable_and_private_on_postgres
);

async fn summaries_at_n_messages_and_on_archive(pg: bool) {
    let app = app(pg, |s| s.memories.summary_every = 4).await;
    let ana = app.register("ana").await;
    let ben = app.register("ben").await;
    let cyd = app.register("cyd").await;
    opt(&app, &ana, true).await;
    opt(&app, &ben, true).await;
    let thread = app.create_thread(&ana, "Billing").await;
    app.add_member(&ana, &thread, "ben").await;
    app.add_member(&ana, &thread, "cyd").await;
    say(
        &app,
        &ana,
        &thread,
        "s1",
        "We must pick a database for the billing service.",
    )
    .await;
    say(
        &app,
        &ben,
        &thread,
        "s2",
        "I had lunch at noon today with my cousin.",
    )
    .await;
    say(
        &app,
        &ben,
        &thread,
        "s3",
        "The billing service needs a database with strong transactions.",
    )
    .await;
    say(
        &app,
        &ana,
        &thread,
        "s4",
        "Then the billing database is PostgreSQL.",
    )
    .await;
    // The fourth message: every opted-in member gets the summary; Cyd did not opt in.
    for user in [&ana, &ben] {
        let s = eventually(&app, user, "?kind=summary", |t| t.len() == 1).await;
        assert!(
            s[0].starts_with("Thread \"Billing\" (4 messages): "),
            "{s:?}"
        );
        assert!(
            s[0].contains("PostgreSQL") && !s[0].contains("lunch"),
            "{s:?}"
        );
    }
    assert!(texts(&app, &cyd, "").await.is_empty());

    // Archived by a member who opted in: their summary of that thread is replaced, once.
    let other = app.create_thread(&ben, "Garden").await;
    say(
        &app,
        &ben,
        &other,
        "g1",
        "The roses in the garden need water every morning.",
    )
    .await;
    say(
        &app,
        &ben,
        &other,
        "g2",
        "Tomatoes grow well in the sunny garden corner.",
    )
    .await;
    let (status, v) = call(
        &app,
        Method::PATCH,
        &format!("/api/threads/{other}"),
        &ben.token,
        Some(json!({"archived": true})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let s = eventually(&app, &ben, "?kind=summary", |t| t.len() == 2).await;
    assert!(
        s[0].starts_with("Thread \"Garden\" (2 messages): ben: "),
        "{s:?}"
    );
    let (status, _) = call(
        &app,
        Method::PATCH,
        &format!("/api/threads/{other}"),
        &ben.token,
        Some(json!({"archived": false})),
    )
    .await;
    assert_eq!(status, 200);
    say(&app, &ben, &other, "g3", "The garden hose is broken again.").await;
    call(
        &app,
        Method::PATCH,
        &format!("/api/threads/{other}"),
        &ben.token,
        Some(json!({"archived": true})),
    )
    .await;
    let s = eventually(&app, &ben, "?kind=summary", |t| {
        t.iter().any(|x| x.contains("(3 messages)"))
    })
    .await;
    assert_eq!(s.len(), 2, "one summary per thread: {s:?}");
}

on_both!(
    summaries_at_n_messages_and_on_archive,
    threads_are_summarised_for_opted_in_members_at_n_messages_and_on_archive_on_sqlite,
    threads_are_summarised_for_opted_in_members_at_n_messages_and_on_archive_on_postgres
);

async fn local_agent_uses_a_remembered_fact(pg: bool) {
    let app = app(pg, |_| {}).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    opt(&app, &alice, true).await;
    let thread = app.create_thread(&alice, "colours").await;
    app.add_member(&alice, &thread, "bob").await;
    say(
        &app,
        &alice,
        &thread,
        "f1",
        "Remember that my favourite colour is teal.",
    )
    .await;
    eventually(&app, &alice, "", |t| t.len() == 1).await;
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    let ask = |who: &str, cid: &str| {
        json!({"type": "send", "thread": thread, "client_id": cid,
        "body": format!("{who} here: what colour should my new bike be?"), "agent": "anima"})
    };
    ws.send(ask("alice", "q1")).await;
    let answer = next_frame(&mut ws, "message", |v| v["author"]["kind"] == "agent").await;
    let body = answer["body"].as_str().unwrap();
    assert!(
        body.contains("From what you asked me to remember: \"My favourite colour is teal\"."),
        "{body}"
    );
    // Bob asks the same in the same thread: Alice's memory is not his.
    let mut bws = app.ws(&bob).await;
    bws.subscribe(&thread, None).await;
    bws.send(ask("bob", "q2")).await;
    let answer = next_frame(&mut bws, "message", |v| v["author"]["kind"] == "agent").await;
    let body = answer["body"].as_str().unwrap();
    assert!(!body.contains("remember"), "{body}");
    // Off again: Alice's items stay, agents no longer receive them.
    opt(&app, &alice, false).await;
    ws.send(ask("alice", "q3")).await;
    let answer = next_frame(&mut ws, "message", |v| {
        v["author"]["kind"] == "agent" && v["seq"].as_i64() > Some(5)
    })
    .await;
    assert!(
        !answer["body"].as_str().unwrap().contains("remember"),
        "{answer}"
    );
    assert_eq!(texts(&app, &alice, "").await.len(), 1);
    // Her export holds her item; Bob's holds none.
    let (_, export) = get_as(&app, &alice.token, "/api/me/export").await;
    assert_eq!(
        export["memories"][0]["text"], "My favourite colour is teal",
        "{export}"
    );
    let (_, export) = get_as(&app, &bob.token, "/api/me/export").await;
    assert!(export.get("memories").is_none(), "{export}");
}

on_both!(
    local_agent_uses_a_remembered_fact,
    the_local_agent_mentions_what_its_requester_asked_it_to_remember_on_sqlite,
    the_local_agent_mentions_what_its_requester_asked_it_to_remember_on_postgres
);

/// Users with one secret fact each, and threads shared at random.
struct World {
    app: TestApp,
    fake: FakeLlm,
    users: Vec<TestUser>,
    threads: Vec<String>,
}

const USERS: usize = 4;

fn codeword(u: usize) -> String {
    format!("zebra{u}quartz")
}

async fn world(pg: bool) -> World {
    let (fake, url) = FakeLlm::start().await;
    let app = app(pg, move |s| {
        s.agents = vec![agent("gpt", "openai", "ok")];
        use_fake_providers(s, &url);
    })
    .await;
    let mut users = Vec::new();
    for u in 0..USERS {
        let user = app.register(&format!("user{u}")).await;
        opt(&app, &user, true).await;
        // Each states their secret in a thread of their own.
        let own = app.create_thread(&user, "private").await;
        say(
            &app,
            &user,
            &own,
            "secret",
            &format!("Remember that my codeword is {}.", codeword(u)),
        )
        .await;
        eventually(&app, &user, "", |t| t.len() == 1).await;
        users.push(user);
    }
    let mut threads = Vec::new();
    for t in 0..3 {
        threads.push(
            app.create_thread(&users[t % USERS], &format!("shared {t}"))
                .await,
        );
    }
    World {
        app,
        fake,
        users,
        threads,
    }
}

/// One question: `asker` joins `thread` (added by its owner if needed) and asks `gpt`; the
/// request the provider received holds the asker's codeword and nobody else's.
async fn check(w: &World, n: usize, asker: usize, thread: usize) -> Result<(), TestCaseError> {
    let owner = thread % USERS;
    let tid = &w.threads[thread];
    if asker != owner {
        let (status, _) = call(
            &w.app,
            Method::POST,
            &format!("/api/threads/{tid}/members"),
            &w.users[owner].token,
            Some(json!({"username": w.users[asker].username})),
        )
        .await;
        prop_assert_eq!(status, 204);
    }
    let mut ws = w.app.ws(&w.users[asker]).await;
    ws.subscribe(tid, None).await;
    ws.send(
        json!({"type": "send", "thread": tid, "client_id": format!("ask-{n}"),
        "body": "What is my codeword?", "agent": "gpt"}),
    )
    .await;
    next_frame(&mut ws, "stream_end", |_| true).await;
    let body = w.fake.bodies.lock().unwrap().last().cloned().unwrap();
    let text = body.to_string();
    prop_assert!(
        text.contains(&codeword(asker)),
        "the asker's own item: {}",
        text
    );
    for other in (0..USERS).filter(|o| *o != asker) {
        prop_assert!(
            !text.contains(&codeword(other)),
            "user{}'s item reached user{}: {}",
            other,
            asker,
            text
        );
    }
    Ok(())
}

async fn no_agent_context_holds_another_users_items(pg: bool) {
    let w = world(pg).await;
    let mut runner = TestRunner::new(Config {
        cases: 4,
        failure_persistence: None,
        ..Config::default()
    });
    let asks = vec((0..USERS, 0..3usize), 3..5);
    let handle = tokio::runtime::Handle::current();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let result = tokio::task::block_in_place(|| {
        runner.run(&asks, |asks| {
            handle.block_on(async {
                for (asker, thread) in asks {
                    let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    check(&w, n, asker, thread).await?;
                }
                Ok(())
            })
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

on_both!(
    no_agent_context_holds_another_users_items,
    an_agent_never_receives_another_users_memory_on_sqlite,
    an_agent_never_receives_another_users_memory_on_postgres
);
