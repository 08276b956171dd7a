//! The OpenAPI document as served, against the running router, and the contract's HTTP body
//! types against the running server: what the types write, the server takes; what the server
//! answers, the types read back to the same JSON.

use emergence::contract::{
    MessageView,
    http::{
        AgentList, Credentials, DebateAccepted, Liveness, MessageList, NewAccount, NewDebate,
        NewMember, NewThread, PostMessage, Readiness, Session, ThreadList, ThreadView,
    },
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::support::{TestApp, spawn_app};

/// The answer's body read as `T`, after checking `T` writes exactly that JSON back.
async fn typed<T: DeserializeOwned + Serialize>(r: reqwest::Response, status: u16) -> T {
    let url = r.url().path().to_string();
    assert_eq!(r.status(), status, "{url}");
    let raw: Value = r.json().await.unwrap();
    let body: T = serde_json::from_value(raw.clone()).unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(serde_json::to_value(&body).unwrap(), raw, "{url}");
    body
}

async fn post(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    body: impl Serialize,
) -> reqwest::Response {
    app.post(path, token, serde_json::to_value(body).unwrap())
        .await
}

#[tokio::test]
async fn the_api_describes_itself_at_api_openapi_json_to_anyone() {
    let app = spawn_app().await;
    let r = app.get("/api/openapi.json", None).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["cache-control"], "public, max-age=300");
    let etag = h["etag"].to_str().unwrap().to_string();
    let served = r.text().await.unwrap();
    let checked_in =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json")).unwrap();
    assert_eq!(
        served, checked_in,
        "the served document is docs/openapi.json"
    );
    let doc: Value = serde_json::from_str(&served).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));

    let again = app
        .http
        .get(app.url("/api/openapi.json"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert!(again.bytes().await.unwrap().is_empty());
}

/// The document, not the route table, drives the requests: each documented method is routed
/// (anything but 405) and each other method of a documented path is 405.
#[tokio::test]
async fn every_operation_of_the_served_document_is_routed_and_no_other_method_is() {
    let app = spawn_app().await;
    let doc: Value = app
        .get("/api/openapi.json", None)
        .await
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 19, "{}", paths.len());
    for (template, item) in paths {
        let path = template
            .replace("{path}", "no-such-file.js")
            .replace("{id}", "no-such-id");
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let documented = item.get(method.to_lowercase()).is_some();
            let r = app
                .http
                .request(method.parse().unwrap(), app.url(&path))
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status() != 405,
                documented,
                "{method} {template}: {} (documented: {documented})",
                r.status()
            );
        }
    }
}

#[tokio::test]
async fn the_typed_bodies_are_what_the_server_takes_and_answers() {
    let app = spawn_app().await;
    let _: Liveness = typed(app.get("/healthz", None).await, 200).await;
    let _: Readiness = typed(app.get("/readyz", None).await, 200).await;

    let account = NewAccount {
        username: "typed".into(),
        password: "correct horse battery".into(),
        invite: None,
    };
    let session: Session = typed(post(&app, "/api/auth/register", None, &account).await, 201).await;
    let login = Credentials {
        username: account.username.clone(),
        password: account.password.clone(),
    };
    let again: Session = typed(post(&app, "/api/auth/login", None, &login).await, 200).await;
    assert_eq!(again.user, session.user);
    let token = Some(session.token.as_str());
    let me: emergence::contract::accounts::AccountView =
        typed(app.get("/api/me", token).await, 200).await;
    assert_eq!(me, session.user);
    let bob = app.register("bob").await;

    let agents: AgentList = typed(app.get("/api/agents", token).await, 200).await;
    assert!(agents.agents.len() >= 2);
    let new = NewThread {
        title: "  typed  ".into(),
        agents: Some(vec![agents.agents[0].id.clone()]),
    };
    let thread: ThreadView = typed(post(&app, "/api/threads", token, &new).await, 201).await;
    assert_eq!(thread.title, "typed");
    let shown: ThreadView = typed(
        app.get(&format!("/api/threads/{}", thread.id), token).await,
        200,
    )
    .await;
    assert_eq!(shown, thread);
    let list: ThreadList = typed(app.get("/api/threads", token).await, 200).await;
    assert_eq!(list.threads, vec![thread.clone()]);
    let member = NewMember {
        username: bob.username.clone(),
    };
    let r = post(
        &app,
        &format!("/api/threads/{}/members", thread.id),
        token,
        &member,
    )
    .await;
    assert_eq!(r.status(), 204);

    let messages = format!("/api/threads/{}/messages", thread.id);
    let send = PostMessage {
        client_id: "typed-1".into(),
        body: "hello".into(),
        agent: None,
        agents: None,
    };
    let stored: MessageView = typed(post(&app, &messages, token, &send).await, 201).await;
    let repeated: MessageView = typed(post(&app, &messages, token, &send).await, 200).await;
    assert_eq!(repeated, stored);
    let page: MessageList = typed(
        app.get(&format!("{messages}?after_seq=0&limit=10"), token)
            .await,
        200,
    )
    .await;
    assert_eq!(page.messages, vec![stored]);

    let debate = NewDebate {
        client_id: "typed-2".into(),
        topic: "tabs or spaces".into(),
        agents: agents.agents.iter().take(2).map(|a| a.id.clone()).collect(),
        rounds: 1,
        mediator: None,
    };
    let path = format!("/api/threads/{}/debate", thread.id);
    let accepted: DebateAccepted = typed(post(&app, &path, token, &debate).await, 202).await;
    assert_eq!(accepted.client_id, "typed-2");
}
