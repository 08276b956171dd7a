//! Documents (issue #19) on SQLite and PostgreSQL: each type uploaded, extracted in the bounded
//! child and found by retrieval; the limits' errors; the same 404 for non-members as for
//! strangers; live `document` frames; deletion that leaves retrieval at once; and the offline
//! agent answering a page-3 question by quoting page 3 with a citation.

use serde_json::{Value, json};

use crate::support::{
    TestApp, TestDb,
    documents::{docx, next_frame, passages, pdf, settled, upload, uploaded, use_built_extractor},
    spawn_on,
};

/// The atlas: its answer is on page 3 only.
pub fn atlas() -> Vec<u8> {
    pdf(&[
        &[
            "Chapter one describes the coastline.",
            "Tides are gentle here.",
        ],
        &["Chapter two lists the harbours and their ferries."],
        &[
            "Chapter three is about the lighthouse.",
            "The lighthouse keeper of Vallombrosa is named Ottavia Brenner.",
        ],
    ])
}

async fn app_on(db: TestDb) -> TestApp {
    spawn_on(db, use_built_extractor).await
}

async fn each_type_is_extracted_and_found(app: TestApp) {
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "library").await;
    let files: Vec<(&str, Vec<u8>, &str)> = vec![
        ("atlas.pdf", atlas(), "Vallombrosa"),
        (
            "hangar.docx",
            docx(&[
                (Some("Heading1"), "Airships"),
                (None, "The zeppelin hangar measures four hundred metres."),
            ]),
            "zeppelin",
        ),
        (
            "recipes.md",
            b"# Recipes\n\nThe secret ingredient is cardamom.\n".to_vec(),
            "cardamom",
        ),
        (
            "notes.txt",
            b"Plain text mentions the quokka.".to_vec(),
            "quokka",
        ),
        (
            "fauna.html",
            b"<html><body><h1>Fauna</h1><p>The axolotl regrows limbs.</p>\
              <script>var hidden = 'scriptword';</script></body></html>"
                .to_vec(),
            "axolotl",
        ),
        (
            "animals.csv",
            b"animal,habitat\nplatypus,river\nemu,plain\n".to_vec(),
            "platypus",
        ),
    ];
    let mut ids = Vec::new();
    for (name, bytes, _) in &files {
        ids.push(uploaded(&app, &alice, &thread, name, bytes.clone()).await);
    }
    for ((name, _, word), id) in files.iter().zip(&ids) {
        let doc = settled(&app, &alice, &thread, id).await;
        assert_eq!(doc["status"], "indexed", "{name}: {doc}");
        assert_eq!(doc["stage"], "indexed", "{name}: {doc}");
        let found = passages(&app, &alice, &thread, word).await;
        assert!(!found.is_empty(), "{name}: nothing found for {word}");
        assert_eq!(found[0]["document_id"], id.as_str(), "{name}: {found:?}");
        assert_eq!(found[0]["name"], *name);
        assert!(
            found[0]["chunk"]["text"].as_str().unwrap().contains(word),
            "{name}: {found:?}"
        );
    }
    // Pages and headings are kept.
    let atlas_hit = &passages(&app, &alice, &thread, "lighthouse keeper").await[0];
    assert_eq!(atlas_hit["chunk"]["page"], 3, "{atlas_hit}");
    let docx_hit = &passages(&app, &alice, &thread, "zeppelin").await[0];
    assert_eq!(docx_hit["chunk"]["heading"], "Airships", "{docx_hit}");
    assert!(
        passages(&app, &alice, &thread, "scriptword")
            .await
            .is_empty()
    );
    let atlas_doc = settled(&app, &alice, &thread, &ids[0]).await;
    assert_eq!(atlas_doc["pages"], 3, "{atlas_doc}");
    // The listing, oldest first, all indexed.
    let r = app
        .get(
            &format!("/api/threads/{thread}/documents"),
            Some(&alice.token),
        )
        .await;
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    let names: Vec<&str> = list["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, files.iter().map(|f| f.0).collect::<Vec<_>>());
    // The file comes back as uploaded; a page's passages open at that page.
    let r = app
        .get(
            &format!("/api/threads/{thread}/documents/{}/file", ids[0]),
            Some(&alice.token),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("atlas.pdf")
    );
    assert_eq!(r.bytes().await.unwrap().to_vec(), files[0].1);
    let r = app
        .get(
            &format!("/api/threads/{thread}/documents/{}/chunks?page=3", ids[0]),
            Some(&alice.token),
        )
        .await;
    assert_eq!(r.status(), 200);
    let page: Value = r.json().await.unwrap();
    let text: String = page["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_string())
        .collect();
    assert!(text.contains("Ottavia Brenner"), "{page}");
    assert!(!text.contains("harbours"), "{page}");
}

#[tokio::test]
async fn each_type_is_extracted_and_found_by_retrieval_on_sqlite() {
    each_type_is_extracted_and_found(app_on(TestDb::sqlite()).await).await;
}

#[tokio::test]
async fn each_type_is_extracted_and_found_by_retrieval_on_postgres() {
    each_type_is_extracted_and_found(app_on(TestDb::postgres().await).await).await;
}

async fn error_code(r: reqwest::Response, status: u16) -> String {
    assert_eq!(r.status(), status);
    let v: Value = r.json().await.unwrap();
    v["error"]["code"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn too_large_files_are_413_unknown_types_415_a_spent_quota_403_and_nothing_is_kept() {
    let app = spawn_on(TestDb::sqlite(), |s| {
        use_built_extractor(s);
        s.documents.max_bytes = 64 * 1024;
        s.documents.quota_bytes = 100 * 1024;
    })
    .await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "limits").await;
    let big = "a line of text\n".repeat(20_000).into_bytes();
    let r = upload(&app, &alice, &thread, "big.txt", big).await;
    assert_eq!(error_code(r, 413).await, "file_too_large");
    let r = upload(&app, &alice, &thread, "tool.exe", b"MZ\x90\x00".to_vec()).await;
    assert_eq!(error_code(r, 415).await, "unsupported_type");
    // The name says PDF, the bytes do not.
    let r = upload(&app, &alice, &thread, "fake.pdf", b"just text".to_vec()).await;
    assert_eq!(error_code(r, 415).await, "unsupported_type");
    let r = upload(&app, &alice, &thread, "blob.txt", vec![0u8, 159, 146, 150]).await;
    assert_eq!(error_code(r, 415).await, "unsupported_type");
    let r = upload(&app, &alice, &thread, "empty.txt", Vec::new()).await;
    assert_eq!(error_code(r, 422).await, "validation");
    // A body that is not a form.
    let r = app
        .post(
            &format!("/api/threads/{thread}/documents"),
            Some(&alice.token),
            json!({"file": "x"}),
        )
        .await;
    assert_eq!(error_code(r, 400).await, "bad_request");
    let r = app
        .get(
            &format!("/api/threads/{thread}/documents"),
            Some(&alice.token),
        )
        .await;
    let list: Value = r.json().await.unwrap();
    assert_eq!(
        list["documents"],
        json!([]),
        "refused uploads leave nothing"
    );
    // The quota: 60 KiB fits in 100 KiB once, not twice.
    let sixty = "0123456789\n".repeat(60 * 1024 / 11).into_bytes();
    uploaded(&app, &alice, &thread, "one.txt", sixty.clone()).await;
    let r = upload(&app, &alice, &thread, "two.txt", sixty.clone()).await;
    assert_eq!(error_code(r, 403).await, "quota_exceeded");
    // Another user has their own quota.
    let bob = app.register("bob").await;
    let bobs = app.create_thread(&bob, "bob's").await;
    uploaded(&app, &bob, &bobs, "two.txt", sixty).await;
}

#[tokio::test]
async fn a_non_member_gets_the_same_404_as_for_a_thread_that_does_not_exist() {
    let app = app_on(TestDb::sqlite()).await;
    let alice = app.register("alice").await;
    let mallory = app.register("mallory").await;
    let thread = app.create_thread(&alice, "private").await;
    let doc = uploaded(&app, &alice, &thread, "atlas.pdf", atlas()).await;
    settled(&app, &alice, &thread, &doc).await;
    let missing = "0190a0a0-0000-7000-8000-000000000000";
    for (t, d) in [(thread.as_str(), doc.as_str()), (missing, doc.as_str())] {
        for path in [
            format!("/api/threads/{t}/documents"),
            format!("/api/threads/{t}/documents/{d}"),
            format!("/api/threads/{t}/documents/{d}/file"),
            format!("/api/threads/{t}/documents/{d}/chunks"),
            format!("/api/threads/{t}/documents/search?q=lighthouse"),
        ] {
            let r = app.get(&path, Some(&mallory.token)).await;
            assert_eq!(r.status(), 404, "{path}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(
                body,
                json!({"error": {"code": "not_found", "message": "not found"}}),
                "{path}"
            );
        }
        let r = upload(&app, &mallory, t, "x.txt", b"hello".to_vec()).await;
        assert_eq!(r.status(), 404);
        let r = app
            .client_as(Some(&mallory.token))
            .request(
                reqwest::Method::DELETE,
                &format!("/api/threads/{t}/documents/{d}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    // Still there for its owner.
    assert_eq!(passages(&app, &alice, &thread, "lighthouse").await.len(), 1);
}

#[tokio::test]
async fn members_see_a_document_appear_and_index_live_and_deletion_leaves_retrieval_at_once() {
    let app = app_on(TestDb::sqlite()).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let thread = app.create_thread(&alice, "shared").await;
    app.add_member(&alice, &thread, "bob").await;
    app.add_member(&alice, &thread, "carol").await;
    let mut ws = app.ws(&carol).await;
    ws.subscribe(&thread, None).await;
    let doc = uploaded(
        &app,
        &bob,
        &thread,
        "notes.md",
        b"# Birds\n\nThe kakapo is a flightless parrot.\n".to_vec(),
    )
    .await;
    let is_doc = |v: &Value| v["document"]["id"] == doc.as_str();
    let queued = next_frame(&mut ws, "document", is_doc).await;
    assert_eq!(queued["thread"], thread.as_str());
    assert_eq!(queued["document"]["status"], "processing");
    assert_eq!(queued["document"]["stage"], "queued");
    let extracting = next_frame(&mut ws, "document", is_doc).await;
    assert_eq!(extracting["document"]["stage"], "extracting");
    let indexed = next_frame(&mut ws, "document", is_doc).await;
    assert_eq!(indexed["document"]["status"], "indexed", "{indexed}");
    assert_eq!(indexed["document"]["chunks"], 1);
    assert_eq!(passages(&app, &carol, &thread, "kakapo").await.len(), 1);
    // A member who neither owns the thread nor uploaded the document may not delete it.
    let delete = |token: String| {
        let (client, path) = (
            app.client_as(Some(&token)),
            format!("/api/threads/{thread}/documents/{doc}"),
        );
        async move {
            client
                .request(reqwest::Method::DELETE, &path)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(delete(carol.token.clone()).await, 403);
    assert_eq!(delete(bob.token.clone()).await, 204);
    assert!(passages(&app, &carol, &thread, "kakapo").await.is_empty());
    let gone = next_frame(&mut ws, "document", is_doc).await;
    assert_eq!(gone["deleted"], true, "{gone}");
    let r = app
        .get(
            &format!("/api/threads/{thread}/documents/{doc}/file"),
            Some(&alice.token),
        )
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(delete(alice.token.clone()).await, 404);
}

async fn the_offline_agent_quotes_page_3_with_a_citation(app: TestApp) {
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "atlas").await;
    let doc = uploaded(&app, &alice, &thread, "atlas.pdf", atlas()).await;
    assert_eq!(
        settled(&app, &alice, &thread, &doc).await["status"],
        "indexed"
    );
    let mut ws = app.ws(&alice).await;
    ws.subscribe(&thread, None).await;
    ws.send(json!({"type": "send", "thread": thread, "client_id": "q1",
        "body": "Who is the lighthouse keeper of Vallombrosa?", "agent": "anima"}))
        .await;
    let answer = next_frame(&mut ws, "message", |v| v["author"]["kind"] == "agent").await;
    let body = answer["body"].as_str().unwrap();
    assert!(
        body.contains("\"The lighthouse keeper of Vallombrosa is named Ottavia Brenner.\" [1] (atlas.pdf, page 3)"),
        "{body}"
    );
    let citation = &answer["citations"][0];
    assert_eq!(citation["n"], 1, "{answer}");
    assert_eq!(citation["document_id"], doc.as_str());
    assert_eq!(citation["name"], "atlas.pdf");
    assert_eq!(citation["page"], 3);
    assert!(
        citation["quote"]
            .as_str()
            .unwrap()
            .contains("Ottavia Brenner"),
        "{citation}"
    );
    // The stored message keeps its citations.
    let stored = app.messages(&alice, &thread, "").await;
    let last = stored.last().unwrap();
    assert_eq!(last["citations"], answer["citations"]);
    // The citation opens its passage.
    let r = app
        .get(
            &format!(
                "/api/threads/{thread}/documents/{doc}/chunks?from_ord={}&limit=1",
                citation["ord"]
            ),
            Some(&alice.token),
        )
        .await;
    let chunk: Value = r.json().await.unwrap();
    assert_eq!(chunk["chunks"][0]["page"], 3, "{chunk}");
    // One document indexed; one retrieval, for the one agent turn.
    assert_eq!(app.metric("documents_indexed_total").await, 1.0);
    assert_eq!(app.metric("document_retrieval_seconds_count").await, 1.0);
}

#[tokio::test]
async fn the_offline_agent_quotes_page_3_with_a_citation_on_sqlite() {
    the_offline_agent_quotes_page_3_with_a_citation(app_on(TestDb::sqlite()).await).await;
}

#[tokio::test]
async fn the_offline_agent_quotes_page_3_with_a_citation_on_postgres() {
    the_offline_agent_quotes_page_3_with_a_citation(app_on(TestDb::postgres().await).await).await;
}
