//! Documents kept in an S3-compatible bucket (issue #19, `documents.storage`), against a real
//! S3 server (moto) on SQLite and PostgreSQL: the parts land in the bucket and not in the
//! database, the file reads back byte for byte on another instance, extraction and retrieval
//! work from the bucket, deletion removes the objects, a document stored in the database before
//! the bucket was configured stays readable, and a wrong storage setting stops the server at
//! start with the store's reason.

use std::str::FromStr;

use crate::support::{
    TestApp, TestDb, TestUser,
    cluster::instances_on,
    documents::{passages, pdf, settled, uploaded, use_built_extractor},
    s3::MotoS3,
    spawn_on, test_settings,
};

const REDIS: &str = "redis://127.0.0.1:6379";
const BUCKET: &str = "emergence-docs";

/// Rows of `document_parts` for `doc`, read beside the server.
async fn parts_in_database(url: &str, doc: &str) -> i64 {
    let sql = "SELECT COUNT(*) FROM document_parts WHERE document_id = $1";
    if url.starts_with("sqlite:") {
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).unwrap();
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        sqlx::query_scalar(sql)
            .bind(doc)
            .fetch_one(&pool)
            .await
            .unwrap()
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query_scalar(sql)
            .bind(doc)
            .fetch_one(&pool)
            .await
            .unwrap()
    }
}

async fn file(app: &TestApp, user: &TestUser, thread: &str, doc: &str) -> (u16, Vec<u8>) {
    let r = app
        .get(
            &format!("/api/threads/{thread}/documents/{doc}/file"),
            Some(&user.token),
        )
        .await;
    let status = r.status().as_u16();
    (status, r.bytes().await.unwrap().to_vec())
}

/// Three pages of about 0.8 MiB each, so the file takes several 1 MiB parts.
fn big_pdf() -> Vec<u8> {
    let filler = "The tide tables of the northern islands repeat every fortnight. ".repeat(120);
    let mut pages: Vec<Vec<String>> = Vec::new();
    for p in 0..3 {
        let mut lines: Vec<String> = (0..100).map(|_| filler.clone()).collect();
        if p == 2 {
            lines.push("The lighthouse keeper of Vallombrosa is named Ottavia Brenner.".into());
        }
        pages.push(lines);
    }
    let refs: Vec<Vec<&str>> = pages
        .iter()
        .map(|p| p.iter().map(String::as_str).collect())
        .collect();
    let slices: Vec<&[&str]> = refs.iter().map(Vec::as_slice).collect();
    pdf(&slices)
}

async fn files_live_in_the_bucket(db: TestDb, prefix: &str) {
    let s3 = MotoS3::start().await;
    s3.create_bucket(BUCKET).await;
    let apps = instances_on(&db, 2, REDIS, |s| {
        use_built_extractor(s);
        s3.configure(s, BUCKET, prefix);
    })
    .await;
    let alice = apps[0].register("alice").await;
    let thread = apps[0].create_thread(&alice, "bucket").await;
    let bytes = big_pdf();
    assert!(bytes.len() > 2 * 1024 * 1024, "{} bytes", bytes.len());
    let doc = uploaded(&apps[0], &alice, &thread, "atlas.pdf", bytes.clone()).await;
    let indexed = settled(&apps[1], &alice, &thread, &doc).await;
    assert_eq!(indexed["status"], "indexed", "{indexed}");
    assert_eq!(indexed["pages"], 3, "{indexed}");

    // The parts are objects in the bucket, none is a row in the database.
    let keys = s3.keys(BUCKET, &format!("{prefix}/documents/{doc}/")).await;
    let parts = bytes.len().div_ceil(1024 * 1024);
    assert_eq!(keys.len(), parts, "{keys:?}");
    assert_eq!(parts_in_database(&db.url(), &doc).await, 0);

    // Read back byte for byte on the other instance; retrieval found the page-3 passage.
    let (status, got) = file(&apps[1], &alice, &thread, &doc).await;
    assert_eq!(status, 200);
    assert!(
        got == bytes,
        "the file read back differs ({} bytes)",
        got.len()
    );
    let found = passages(&apps[1], &alice, &thread, "lighthouse keeper Vallombrosa").await;
    assert!(!found.is_empty(), "no passage found");
    assert!(
        found[0]["chunk"]["text"]
            .as_str()
            .unwrap()
            .contains("Ottavia Brenner")
    );
    assert_eq!(found[0]["chunk"]["page"], 3, "{found:?}");

    // Deleting removes the objects and the document everywhere.
    let r = apps[1]
        .http
        .delete(apps[1].url(&format!("/api/threads/{thread}/documents/{doc}")))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        s3.keys(BUCKET, &format!("{prefix}/documents/{doc}/"))
            .await
            .is_empty()
    );
    assert_eq!(file(&apps[0], &alice, &thread, &doc).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_files_live_in_an_s3_bucket_on_sqlite() {
    files_live_in_the_bucket(TestDb::sqlite(), "team-a").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_files_live_in_an_s3_bucket_on_postgres() {
    files_live_in_the_bucket(TestDb::postgres().await, "team-b/nested").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_stored_in_the_database_stays_readable_after_a_bucket_is_configured() {
    let s3 = MotoS3::start().await;
    s3.create_bucket(BUCKET).await;
    let mut before = spawn_on(TestDb::sqlite(), use_built_extractor).await;
    let alice = before.register("alice").await;
    let thread = before.create_thread(&alice, "moving").await;
    let old = b"# Ferries\n\nThe night ferry to Skerrivore leaves at eleven.\n".to_vec();
    let doc = uploaded(&before, &alice, &thread, "ferries.md", old.clone()).await;
    assert_eq!(
        settled(&before, &alice, &thread, &doc).await["status"],
        "indexed"
    );
    assert_eq!(parts_in_database(&before.db().url(), &doc).await, 1);
    before.stop().await;
    let db = before.take_db();

    let after = spawn_on(db, |s| {
        use_built_extractor(s);
        s3.configure(s, BUCKET, "later");
    })
    .await;
    assert_eq!(file(&after, &alice, &thread, &doc).await, (200, old));
    let new = b"Plain text mentions the quokka.".to_vec();
    let doc2 = uploaded(&after, &alice, &thread, "notes.txt", new.clone()).await;
    assert_eq!(
        settled(&after, &alice, &thread, &doc2).await["status"],
        "indexed"
    );
    assert_eq!(
        s3.keys(BUCKET, &format!("later/documents/{doc2}/"))
            .await
            .len(),
        1
    );
    assert_eq!(file(&after, &alice, &thread, &doc2).await, (200, new));
}

#[tokio::test]
async fn a_wrong_storage_setting_stops_the_server_at_start_with_its_reason() {
    let s3 = MotoS3::start().await;
    // A scheme the server does not know.
    let db = TestDb::sqlite();
    let mut s = test_settings(&db.url());
    s.documents.storage = Some("ftp://files.example/docs".into());
    let err = emergence::Application::build(s)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("ftp:// is not supported"), "{err}");
    // A bucket that does not exist on the store.
    let mut s = test_settings(&db.url());
    s3.configure(&mut s, "no-such-bucket", "x");
    let err = format!(
        "{:#}",
        emergence::Application::build(s)
            .await
            .err()
            .expect("refused")
    );
    assert!(
        err.contains("no-such-bucket") && err.contains("cannot write"),
        "{err}"
    );
}
