//! A stranger cannot read, post, subscribe or learn that a thread exists.

use serde_json::{Value, json};

use crate::support::spawn_app;

#[tokio::test]
async fn strangers_get_the_same_404_as_for_a_missing_thread() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let stranger = app.register("stranger").await;
    let thread = app.create_thread(&owner, "secret").await;
    let missing = uuid::Uuid::now_v7().to_string();
    for id in [thread.as_str(), missing.as_str()] {
        let r = app
            .get(&format!("/api/threads/{id}"), Some(&stranger.token))
            .await;
        assert_eq!(r.status(), 404);
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body,
            json!({"error": {"code": "not_found", "message": "not found"}})
        );
        assert_eq!(
            app.get(
                &format!("/api/threads/{id}/messages"),
                Some(&stranger.token)
            )
            .await
            .status(),
            404
        );
        let post = app
            .post(
                &format!("/api/threads/{id}/messages"),
                Some(&stranger.token),
                json!({"client_id": "x", "body": "hi"}),
            )
            .await;
        assert_eq!(post.status(), 404);
        let add = app
            .post(
                &format!("/api/threads/{id}/members"),
                Some(&stranger.token),
                json!({"username": "stranger"}),
            )
            .await;
        assert_eq!(add.status(), 404);
    }
    let list = app
        .get("/api/threads", Some(&stranger.token))
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(list["threads"], json!([]));

    let mut ws = app.ws(&stranger).await;
    for id in [thread.as_str(), missing.as_str()] {
        ws.send(json!({"type": "subscribe", "thread": id})).await;
        let e = ws.recv().await.unwrap();
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("not_found"))
        );
        ws.send(json!({"type": "send", "thread": id, "client_id": "c", "body": "hi"}))
            .await;
        let e = ws.recv().await.unwrap();
        assert_eq!(
            (e["code"].as_str(), e["client_id"].as_str()),
            (Some("not_found"), Some("c"))
        );
    }
    // Nothing was stored by the stranger.
    assert!(app.messages(&owner, &thread, "").await.is_empty());
}

#[tokio::test]
async fn only_the_owner_adds_members_and_members_then_see_the_thread() {
    let app = spawn_app().await;
    let owner = app.register("owner2").await;
    let member = app.register("member2").await;
    let third = app.register("third2").await;
    let thread = app.create_thread(&owner, "team").await;
    let unknown = app
        .post(
            &format!("/api/threads/{thread}/members"),
            Some(&owner.token),
            json!({"username": "nobody"}),
        )
        .await;
    assert_eq!(unknown.status(), 404);
    app.add_member(&owner, &thread, "MEMBER2").await;
    let r = app
        .get(&format!("/api/threads/{thread}"), Some(&member.token))
        .await;
    assert_eq!(r.status(), 200);
    let by_member = app
        .post(
            &format!("/api/threads/{thread}/members"),
            Some(&member.token),
            json!({"username": "third2"}),
        )
        .await;
    assert_eq!(by_member.status(), 403);
    assert_eq!(
        app.get(&format!("/api/threads/{thread}"), Some(&third.token))
            .await
            .status(),
        404
    );
}
