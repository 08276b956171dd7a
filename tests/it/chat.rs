//! Two users chatting over WebSocket, idempotent resends, resuming with `after_seq`, history
//! paging, and the slow-consumer rule.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{spawn_app, spawn_app_with};

#[tokio::test]
async fn two_users_chat_and_each_message_arrives_once_in_seq_order() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let thread = app.create_thread(&alice, "pair").await;
    app.add_member(&alice, &thread, "bob").await;
    let mut a = app.ws(&alice).await;
    let mut b = app.ws(&bob).await;
    assert_eq!(a.subscribe(&thread, None).await["head_seq"], 0);
    b.subscribe(&thread, None).await;

    for i in 0..10 {
        let (ws, who) = if i % 2 == 0 {
            (&mut a, "a")
        } else {
            (&mut b, "b")
        };
        ws.send_message(&thread, &format!("{who}-{i}"), &format!("message {i}"))
            .await;
    }
    for ws in [&mut a, &mut b] {
        let mut seqs = Vec::new();
        let mut acks = 0;
        while seqs.len() < 10 || acks < 5 {
            let f = ws.recv().await.expect("frames keep coming");
            match f["type"].as_str().unwrap() {
                "message" => {
                    assert_eq!(f["thread"], thread.as_str());
                    seqs.push(f["seq"].as_i64().unwrap());
                }
                "ack" => {
                    assert_eq!(f["status"], "persisted");
                    assert!(f["seq"].as_i64().is_some() && f["message_id"].is_string());
                    acks += 1;
                }
                other => panic!("unexpected {other}: {f}"),
            }
        }
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
        assert!(
            ws.recv_within(Duration::from_millis(300)).await.is_none(),
            "nothing more"
        );
    }
    let stored = app.messages(&alice, &thread, "").await;
    assert_eq!(stored.len(), 10);
}

#[tokio::test]
async fn a_repeated_send_is_stored_once_and_answered_with_the_original() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let thread = app.create_thread(&alice, "idem").await;
    app.add_member(&alice, &thread, "bob").await;
    let path = format!("/api/threads/{thread}/messages");
    let first = app
        .post(
            &path,
            Some(&alice.token),
            json!({"client_id": "same", "body": "once"}),
        )
        .await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = app
        .post(
            &path,
            Some(&alice.token),
            json!({"client_id": "same", "body": "once"}),
        )
        .await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let theirs = app
        .post(
            &path,
            Some(&bob.token),
            json!({"client_id": "same", "body": "hijack"}),
        )
        .await;
    assert_eq!(theirs.status(), 409);

    // Over WebSocket: the resend gets the same persisted ack, and no second message.
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, Some(1)).await;
    ws.send_message(&thread, "same", "once").await;
    let ack = ws.recv_type("ack").await;
    assert_eq!(
        (ack["seq"].as_i64(), ack["message_id"].as_str()),
        (Some(1), first["id"].as_str())
    );
    let mut bws = app.ws(&bob).await;
    bws.send_message(&thread, "same", "hijack").await;
    let e = bws.recv_type("error").await;
    assert_eq!(
        (e["code"].as_str(), e["client_id"].as_str()),
        (Some("conflict"), Some("same"))
    );
    assert_eq!(app.messages(&alice, &thread, "").await.len(), 1);
    assert!(
        ws.recv_within(Duration::from_millis(300)).await.is_none(),
        "no second message frame"
    );
}

#[tokio::test]
async fn a_client_resumes_with_after_seq_and_misses_nothing() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let thread = app.create_thread(&alice, "resume").await;
    app.add_member(&alice, &thread, "bob").await;
    let mut b = app.ws(&bob).await;
    b.subscribe(&thread, None).await;
    let mut a = app.ws(&alice).await;
    for i in 1..=3 {
        a.send_message(&thread, &format!("m{i}"), "x").await;
    }
    let mut last = 0;
    while last < 3 {
        let f = b.recv_type("message").await;
        last = f["seq"].as_i64().unwrap();
    }
    drop(b); // Bob disconnects
    for i in 4..=8 {
        a.send_message(&thread, &format!("m{i}"), "x").await;
    }
    for _ in 4..=8 {
        a.recv_type("ack").await;
    }
    let mut b = app.ws(&bob).await;
    let sub = b.subscribe(&thread, Some(3)).await;
    assert_eq!(sub["head_seq"], 8);
    let mut seqs = Vec::new();
    for _ in 4..=8 {
        seqs.push(b.recv_type("message").await["seq"].as_i64().unwrap());
    }
    assert_eq!(seqs, vec![4, 5, 6, 7, 8]);
    a.send_message(&thread, "m9", "live").await;
    assert_eq!(
        b.recv_type("message").await["seq"],
        9,
        "then live, no duplicates"
    );
    assert!(b.recv_within(Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn more_than_1000_missed_messages_ask_for_a_resync() {
    let app = spawn_app_with(|s| s.limits.send_rate_per_sec = 0).await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "busy").await;
    let mut a = app.ws(&alice).await;
    for i in 0..1001 {
        a.send_message(&thread, &format!("c{i}"), "x").await;
    }
    let mut acks = 0;
    while acks < 1001 {
        if a.recv_type("ack").await["status"] == "persisted" {
            acks += 1;
        }
    }
    let mut b = app.ws(&alice).await;
    let sub = b.subscribe(&thread, Some(0)).await;
    assert_eq!(sub["head_seq"], 1001);
    assert_eq!(
        b.recv().await.unwrap(),
        json!({"type": "resync", "thread": thread})
    );
    let mut c = app.ws(&alice).await;
    c.subscribe(&thread, Some(1)).await;
    let first = c.recv_type("message").await;
    assert_eq!(first["seq"], 2, "exactly 1000 missed are replayed");
}

#[tokio::test]
async fn history_pages_are_ascending_and_limits_are_checked() {
    let app = spawn_app_with(|s| s.limits.send_rate_per_sec = 0).await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "history").await;
    for i in 1..=12 {
        let r = app
            .post(
                &format!("/api/threads/{thread}/messages"),
                Some(&alice.token),
                json!({"client_id": format!("h{i}"), "body": format!("n{i}")}),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    let seqs = |v: Vec<Value>| {
        v.iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        seqs(app.messages(&alice, &thread, "?limit=3").await),
        vec![10, 11, 12]
    );
    assert_eq!(
        seqs(app.messages(&alice, &thread, "?after_seq=4&limit=3").await),
        vec![5, 6, 7]
    );
    assert_eq!(
        seqs(app.messages(&alice, &thread, "?before_seq=4&limit=2").await),
        vec![2, 3]
    );
    assert_eq!(
        app.messages(&alice, &thread, "?limit=100000").await.len(),
        12
    );
    for bad in ["?limit=0", "?limit=-1", "?limit=abc", "?after_seq=x"] {
        let r = app
            .get(
                &format!("/api/threads/{thread}/messages{bad}"),
                Some(&alice.token),
            )
            .await;
        assert_eq!(r.status(), 422, "{bad}");
    }
    let t: Value = app
        .get(&format!("/api/threads/{thread}"), Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(t["last_seq"], 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_disconnected_without_slowing_the_others() {
    let app = spawn_app_with(|s| {
        s.limits.send_rate_per_sec = 0;
        s.realtime.socket_queue = 128;
    })
    .await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "firehose").await;
    // The slow client subscribes and then never reads again.
    let mut slow = app.ws(&alice).await;
    slow.subscribe(&thread, None).await;
    let mut fast = app.ws(&alice).await;
    fast.subscribe(&thread, None).await;
    let body = "x".repeat(16_000);
    let total = 1500;
    let sender = app.ws(&alice).await;
    let (mut tx, mut rx) = futures_util::StreamExt::split(sender.stream);
    // The sender reads its acks and never has more than 64 unread, so it is not a slow consumer
    // itself even when the machine is busy.
    let acks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = acks.clone();
    tokio::spawn(async move {
        while futures_util::StreamExt::next(&mut rx).await.is_some() {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let send_all = async {
        for i in 0..total {
            while i >= acks.load(std::sync::atomic::Ordering::Relaxed) + 64 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let frame = json!({"type": "send", "thread": thread, "client_id": format!("f{i}"), "body": body});
            futures_util::SinkExt::send(
                &mut tx,
                tokio_tungstenite::tungstenite::Message::Text(frame.to_string().into()),
            )
            .await
            .unwrap();
        }
        tx
    };
    let read_fast = async {
        let mut got = 0;
        while got < total {
            let f = fast.recv().await.expect("the fast client keeps receiving");
            if f["type"] == "message" {
                got += 1;
                assert_eq!(f["seq"], got);
            }
        }
        got
    };
    let (_sender, got) = tokio::join!(send_all, read_fast);
    assert_eq!(got, total);
    assert!(app.metric("ws_slow_consumer_disconnects_total").await >= 1.0);
    // The slow socket was closed by the server: draining it ends before all messages.
    let mut seen = 0;
    while let Some(f) = slow.recv_within(Duration::from_secs(5)).await {
        if f["type"] == "message" {
            seen += 1;
        }
    }
    assert!(seen < total, "slow client got {seen} of {total}");
}
