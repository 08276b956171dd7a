//! Hybrid retrieval (issue #19, docs/documents.md "Hybrid retrieval") with a real embeddings
//! model (all-MiniLM-L6-v2 on loopback, `support::embedder`): recall@5 on the labelled set the
//! tests ship (tests/data/retrieval-set.json) for full text alone and for full text fused with
//! embeddings, on SQLite and PostgreSQL, the second through the backfill of documents indexed
//! before embeddings were configured; passages embedded at indexing through Ollama's
//! `/api/embed`, never found from another thread; and an embeddings API that fails, which leaves
//! documents indexed and retrieval on full text.

use std::time::Duration;

use serde_json::Value;

use crate::support::{
    TestApp, TestDb, TestUser,
    documents::{passages, settled, uploaded, use_built_extractor},
    embedder::{model_server, use_embeddings},
    heavy,
    process::free_port,
    spawn_app_with, spawn_on,
};

/// The labelled set: passages `{id, text}` and queries `{q, relevant}`.
fn labelled_set() -> Value {
    serde_json::from_str(include_str!("../data/retrieval-set.json")).unwrap()
}

/// Upload each passage as `ID.txt` and wait until all are indexed; how many chunks they made.
async fn upload_passages(app: &TestApp, user: &TestUser, thread: &str, items: &[Value]) -> f64 {
    let mut ids = Vec::new();
    for p in items {
        let name = format!("{}.txt", p["id"].as_str().unwrap());
        let text = p["text"].as_str().unwrap().as_bytes().to_vec();
        ids.push(uploaded(app, user, thread, &name, text).await);
    }
    let mut chunks = 0.0;
    for id in &ids {
        let doc = settled(app, user, thread, id).await;
        assert_eq!(doc["status"], "indexed", "{doc}");
        chunks += doc["chunks"].as_f64().unwrap();
    }
    chunks
}

/// Until `document_chunks_embedded_total` reaches `chunks` (at most 3 minutes).
async fn embedded(app: &TestApp, chunks: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let done = app.metric("document_chunks_embedded_total").await;
        if done >= chunks {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{done} of {chunks} chunks embedded in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The share of queries whose relevant passage is among the first 5 found, and the misses.
async fn recall_at_5(
    app: &TestApp,
    user: &TestUser,
    thread: &str,
    set: &Value,
) -> (f64, Vec<String>) {
    let queries = set["queries"].as_array().unwrap();
    let mut misses = Vec::new();
    for q in queries {
        let text = q["q"].as_str().unwrap();
        let want = format!("{}.txt", q["relevant"].as_str().unwrap());
        let found = passages(app, user, thread, text).await;
        assert!(found.len() <= 5, "{found:?}");
        if !found.iter().any(|p| p["name"] == want.as_str()) {
            misses.push(format!("{text} -> {want}"));
        }
    }
    let recall = (queries.len() - misses.len()) as f64 / queries.len() as f64;
    (recall, misses)
}

async fn hybrid_retrieval_beats_full_text_alone(db: TestDb) {
    let _machine = heavy().await;
    let model = model_server().await;
    let set = labelled_set();
    let items = set["passages"].as_array().unwrap().clone();
    let queries = set["queries"].as_array().unwrap().len() as f64;
    // First without embeddings: full text alone.
    let mut app = spawn_on(db, use_built_extractor).await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "labelled set").await;
    let chunks = upload_passages(&app, &alice, &thread, &items).await;
    let (bm25, bm25_misses) = recall_at_5(&app, &alice, &thread, &set).await;
    let db = app.take_db();
    app.stop().await;
    // Then on the same database with the model configured: the backfill embeds what is there.
    let app = spawn_on(db, |s| {
        use_built_extractor(s);
        use_embeddings(s, "openai", &model.url);
    })
    .await;
    embedded(&app, chunks).await;
    let (hybrid, hybrid_misses) = recall_at_5(&app, &alice, &thread, &set).await;
    println!(
        "recall@5 on {} queries over {} passages: full text alone {bm25:.3}, hybrid (RRF k=60) {hybrid:.3}",
        queries,
        items.len()
    );
    println!("full text missed: {bm25_misses:#?}\nhybrid missed: {hybrid_misses:#?}");
    assert!(hybrid > bm25, "hybrid {hybrid} <= full text {bm25}");
    // Every question was embedded once, by the model.
    assert_eq!(
        app.metric(r#"embedding_requests_total{purpose="query",outcome="ok"}"#)
            .await,
        queries
    );
    let (_, texts) = model.stats().await;
    assert!(texts as f64 >= chunks + queries, "{texts} texts embedded");
}

#[tokio::test]
async fn hybrid_retrieval_beats_full_text_alone_on_the_labelled_set_on_sqlite() {
    hybrid_retrieval_beats_full_text_alone(TestDb::sqlite()).await;
}

#[tokio::test]
async fn hybrid_retrieval_beats_full_text_alone_on_the_labelled_set_on_postgres() {
    hybrid_retrieval_beats_full_text_alone(TestDb::postgres().await).await;
}

#[tokio::test]
async fn passages_are_embedded_at_indexing_through_ollama_and_never_found_from_another_thread() {
    let model = model_server().await;
    let app = spawn_app_with(|s| {
        use_built_extractor(s);
        use_embeddings(s, "ollama", &model.url);
    })
    .await;
    let set = labelled_set();
    let items = set["passages"].as_array().unwrap();
    let pick =
        |id: &str| -> Vec<Value> { items.iter().filter(|p| p["id"] == id).cloned().collect() };
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let theirs = app.create_thread(&alice, "travel").await;
    let his = app.create_thread(&bob, "hotels").await;
    let mut chunks = 0.0;
    for id in ["p04", "p11", "p15"] {
        chunks += upload_passages(&app, &alice, &theirs, &pick(id)).await;
    }
    chunks += upload_passages(&app, &bob, &his, &pick("p21")).await;
    embedded(&app, chunks).await;
    assert!(
        app.metric(r#"embedding_requests_total{purpose="index",outcome="ok"}"#)
            .await
            >= 1.0
    );
    assert!(
        app.metric(r#"embedding_request_seconds_count{purpose="index"}"#)
            .await
            >= 1.0
    );
    // No word of this question is in the ferry passage: its meaning finds it.
    let question = "When does the boat depart for the isle?";
    let found = passages(&app, &alice, &theirs, question).await;
    assert_eq!(found[0]["name"], "p04.txt", "{found:?}");
    // Bob, asking the same in his thread, gets only his thread's passage.
    let found = passages(&app, &bob, &his, question).await;
    assert!(!found.is_empty());
    assert!(found.iter().all(|p| p["name"] == "p21.txt"), "{found:?}");
    // And Alice's thread is a 404 for him, as for any stranger.
    let r = app
        .get(
            &format!("/api/threads/{theirs}/documents/search?q=boat"),
            Some(&bob.token),
        )
        .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_failing_embeddings_api_leaves_documents_indexed_and_retrieval_on_full_text() {
    // Nothing listens there: every embeddings request fails.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let app = spawn_app_with(|s| {
        use_built_extractor(s);
        use_embeddings(s, "openai", &dead);
    })
    .await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "billing").await;
    let id = uploaded(
        &app,
        &alice,
        &thread,
        "invoices.txt",
        b"Invoices must be paid within thirty days; late payments incur a fee.".to_vec(),
    )
    .await;
    let doc = settled(&app, &alice, &thread, &id).await;
    assert_eq!(doc["status"], "indexed", "{doc}");
    // The passage is counted as left without a vector once its tries are spent.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while app.metric("document_embedding_failures_total").await < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no embedding failure counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        app.metric(r#"embedding_requests_total{purpose="index",outcome="error"}"#)
            .await
            >= 3.0,
        "a batch is tried three times"
    );
    let found = passages(&app, &alice, &thread, "late payments").await;
    assert_eq!(found[0]["name"], "invoices.txt", "{found:?}");
    assert_eq!(
        app.metric(r#"embedding_requests_total{purpose="query",outcome="error"}"#)
            .await,
        1.0
    );
    assert_eq!(doc["status"], "indexed");
}
