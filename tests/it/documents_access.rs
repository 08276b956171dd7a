//! Who reads which document: a document uploaded on one instance is listed, extracted and
//! retrievable on another (with its `document` frames there), and, as a property over random
//! memberships, no passage of a thread's documents ever reaches a user who cannot read that
//! thread, neither through the route nor through the storage query itself; with embeddings
//! configured (hybrid retrieval), neither through the vector scan nor the read of the passages
//! it found.

use std::collections::{BTreeMap, BTreeSet};

use emergence::db::documents::PassageQuery;
use proptest::{
    collection::vec,
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};
use serde_json::{Value, json};

use crate::support::{
    TestApp, TestDb, TestUser,
    cluster::instances_on,
    documents::{next_frame, passages, settled, uploaded, use_built_extractor},
    embedder::{model_server, use_embeddings},
    spawn_on,
};

/// What the test embeddings configuration stores with each vector.
const MODEL: &str = "openai:all-minilm-l6-v2";

const REDIS: &str = "redis://127.0.0.1:6379";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_uploaded_on_one_instance_is_live_and_retrievable_on_another() {
    let db = TestDb::postgres().await;
    let apps = instances_on(&db, 2, REDIS, use_built_extractor).await;
    let alice = apps[0].register("alice").await;
    let bob = apps[0].register("bob").await;
    let thread = apps[0].create_thread(&alice, "across").await;
    apps[0].add_member(&alice, &thread, "bob").await;
    let mut ws = apps[1].ws(&bob).await;
    ws.subscribe(&thread, None).await;
    let doc = uploaded(
        &apps[0],
        &alice,
        &thread,
        "ferries.md",
        b"# Ferries\n\nThe night ferry to Skerrivore leaves at eleven.\n".to_vec(),
    )
    .await;
    let indexed = next_frame(&mut ws, "document", |v| {
        v["document"]["id"] == doc.as_str() && v["document"]["status"] == "indexed"
    })
    .await;
    assert_eq!(indexed["thread"], thread.as_str());
    assert_eq!(
        settled(&apps[1], &bob, &thread, &doc).await["status"],
        "indexed"
    );
    let found = passages(&apps[1], &bob, &thread, "Skerrivore ferry").await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["document_id"], doc.as_str());
    // The file is there on the other instance too.
    let r = apps[1]
        .get(
            &format!("/api/threads/{thread}/documents/{doc}/file"),
            Some(&bob.token),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Skerrivore"));
}

/// Users, threads and who belongs where.
struct World {
    app: TestApp,
    users: Vec<TestUser>,
    /// Thread id -> (owner index, its document ids).
    threads: Vec<(String, usize, Vec<String>)>,
}

async fn world(app: TestApp) -> World {
    let mut users = Vec::new();
    for name in ["ana", "ben", "cyd", "dee"] {
        users.push(app.register(name).await);
    }
    let mut threads = Vec::new();
    for (i, owner) in [0usize, 1, 2].into_iter().enumerate() {
        let id = app.create_thread(&users[owner], &format!("t{i}")).await;
        let doc = uploaded(
            &app,
            &users[owner],
            &id,
            &format!("t{i}.txt"),
            format!("The zanzibar report of thread {i}: the treasure of t{i} is buried.")
                .into_bytes(),
        )
        .await;
        assert_eq!(
            settled(&app, &users[owner], &id, &doc).await["status"],
            "indexed"
        );
        threads.push((id, owner, vec![doc]));
    }
    World {
        app,
        users,
        threads,
    }
}

/// Make the members of each thread exactly its owner plus `extra[thread]`, through the API.
async fn set_members(w: &World, extra: &BTreeMap<usize, BTreeSet<usize>>) {
    for (t, (thread, owner, _)) in w.threads.iter().enumerate() {
        let wanted = extra.get(&t).cloned().unwrap_or_default();
        for (u, user) in w.users.iter().enumerate() {
            if u == *owner {
                continue;
            }
            if wanted.contains(&u) {
                w.app
                    .add_member(&w.users[*owner], thread, &user.username)
                    .await;
            } else {
                let r = w
                    .app
                    .client_as(Some(&w.users[*owner].token))
                    .request(
                        reqwest::Method::DELETE,
                        &format!("/api/threads/{thread}/members/{}", user.id),
                    )
                    .send()
                    .await
                    .unwrap();
                assert!([204, 404].contains(&r.status().as_u16()), "{}", r.status());
            }
        }
    }
}

/// The ids of every chunk with a vector, read as each thread's owner.
async fn every_chunk_id(w: &World) -> Vec<i64> {
    let store = w.app.state.db.store().expect("database up");
    let vectors = store.embeddings().expect("the SQL store keeps embeddings");
    let mut ids = Vec::new();
    for (thread, owner, _) in &w.threads {
        let found = vectors
            .thread_vectors(thread, &w.users[*owner].id, MODEL)
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "one embedded chunk per thread");
        ids.extend(found.iter().map(|v| v.id));
    }
    ids
}

/// With embeddings: the vector scan and the read by id refuse a non-member too, and give a
/// member only this thread's chunks.
async fn check_vectors(
    w: &World,
    extra: &BTreeMap<usize, BTreeSet<usize>>,
    all_ids: &[i64],
) -> Result<(), TestCaseError> {
    let store = w.app.state.db.store().expect("database up");
    let vectors = store.embeddings().expect("the SQL store keeps embeddings");
    for (t, (thread, owner, doc_ids)) in w.threads.iter().enumerate() {
        for (u, user) in w.users.iter().enumerate() {
            let member = u == *owner || extra.get(&t).is_some_and(|m| m.contains(&u));
            let scanned = vectors
                .thread_vectors(thread, &user.id, MODEL)
                .await
                .unwrap();
            prop_assert_eq!(
                scanned.len(),
                usize::from(member),
                "thread {} user {}",
                t,
                u
            );
            let read = vectors
                .passages_by_id(thread, &user.id, all_ids)
                .await
                .unwrap();
            prop_assert_eq!(read.len(), usize::from(member), "thread {} user {}", t, u);
            prop_assert!(read.iter().all(|p| doc_ids.contains(&p.document_id)));
        }
    }
    Ok(())
}

async fn check(w: &World, extra: &BTreeMap<usize, BTreeSet<usize>>) -> Result<(), TestCaseError> {
    set_members(w, extra).await;
    let store = w.app.state.db.store().expect("database up");
    let docs = store.documents().expect("the SQL store keeps documents");
    for (t, (thread, owner, doc_ids)) in w.threads.iter().enumerate() {
        for (u, user) in w.users.iter().enumerate() {
            let member = u == *owner || extra.get(&t).is_some_and(|m| m.contains(&u));
            // The storage query itself refuses a non-member.
            let direct = docs
                .passages(&PassageQuery {
                    thread_id: thread.clone(),
                    user_id: user.id.clone(),
                    terms: vec!["zanzibar".into(), "treasure".into()],
                    limit: 50,
                })
                .await
                .unwrap();
            prop_assert_eq!(direct.is_empty(), !member, "thread {} user {}", t, u);
            prop_assert!(direct.iter().all(|p| doc_ids.contains(&p.document_id)));
            // The route: the same 404 as a stranger, or only this thread's passages.
            let r = w
                .app
                .get(
                    &format!("/api/threads/{thread}/documents/search?q=zanzibar%20treasure"),
                    Some(&user.token),
                )
                .await;
            if member {
                prop_assert_eq!(r.status().as_u16(), 200);
                let v: Value = r.json().await.unwrap();
                let found = v["passages"].as_array().unwrap();
                prop_assert!(!found.is_empty());
                prop_assert!(
                    found
                        .iter()
                        .all(|p| doc_ids.iter().any(|d| p["document_id"] == d.as_str()))
                );
            } else {
                prop_assert_eq!(r.status().as_u16(), 404);
                let v: Value = r.json().await.unwrap();
                prop_assert_eq!(&v["error"]["code"], &json!("not_found"));
            }
        }
    }
    Ok(())
}

/// Extra members per thread: a subset of the four users for each of the three threads.
fn memberships() -> impl Strategy<Value = BTreeMap<usize, BTreeSet<usize>>> {
    vec(proptest::collection::btree_set(0usize..4, 0..4), 3)
        .prop_map(|sets| sets.into_iter().enumerate().collect())
}

#[test]
fn no_passage_of_a_thread_is_ever_retrieved_for_a_user_who_cannot_read_it() {
    property(false);
}

#[test]
fn with_embeddings_no_passage_or_vector_of_a_thread_reaches_a_user_who_cannot_read_it() {
    property(true);
}

/// The property over random memberships, with full text alone or with embeddings (the real
/// model on loopback).
fn property(hybrid: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let model = hybrid.then(|| rt.block_on(model_server()));
    let url = model.as_ref().map(|m| m.url.clone());
    let (w, all_ids) = rt.block_on(async {
        let app = spawn_on(TestDb::sqlite(), |s| {
            use_built_extractor(s);
            s.limits.member_rate_per_min = 0;
            if let Some(url) = &url {
                use_embeddings(s, "openai", url);
            }
        })
        .await;
        let w = world(app).await;
        let mut ids = Vec::new();
        if hybrid {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
            while w.app.metric("document_chunks_embedded_total").await < 3.0 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "chunks not embedded"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            ids = every_chunk_id(&w).await;
        }
        (w, ids)
    });
    let mut runner = TestRunner::new(Config {
        cases: 24,
        max_shrink_iters: 16,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&memberships(), |extra| {
        rt.block_on(async {
            check(&w, &extra).await?;
            if hybrid {
                check_vectors(&w, &extra, &all_ids).await?;
            }
            Ok(())
        })
    });
    rt.block_on(async {
        let mut app = w.app;
        app.stop().await;
    });
    drop(model);
    result.unwrap();
}
