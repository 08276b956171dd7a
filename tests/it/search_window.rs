//! PostgreSQL search at scale (docs/search.md, "At scale"): a word found in thousands of the
//! caller's messages is ranked within a window of their latest matches, chosen from the
//! planner's statistics, and the window never lets in a thread the caller cannot read; a deep
//! page, or a rare word, is ranked over every match.

use serde_json::Value;

use super::{post, search_with};
use crate::support::{TestDb, start, test_settings};

/// `n` messages `body {i}` in `thread`, seqs from `first_seq`, created from `from` on, written
/// straight to the database (thousands of sends through the API would dominate the test).
async fn seed(
    pool: &sqlx::PgPool,
    thread: &str,
    author: &str,
    first_seq: i64,
    n: i64,
    from: i64,
    body: &str,
) {
    sqlx::query(
        "INSERT INTO messages (id, thread_id, seq, client_id, author_kind, author_id, \
                               author_name, body, created_at) \
         SELECT $1 || '-' || i, $1, $2 + i, 'seed-' || i, 'user', $3, 'seeder', \
                $4 || ' ' || i, $5 + i \
         FROM generate_series(0, $6 - 1) AS i",
    )
    .bind(thread)
    .bind(first_seq)
    .bind(author)
    .bind(body)
    .bind(from)
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("UPDATE threads SET last_seq = $2 WHERE id = $1")
        .bind(thread)
        .bind(first_seq + n - 1)
        .execute(pool)
        .await
        .unwrap();
}

fn seqs(hits: &Value) -> Vec<i64> {
    hits["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["seq"].as_i64().unwrap())
        .collect()
}

fn threads_of(hits: &Value) -> Vec<String> {
    hits["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["thread"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frequent_word_is_ranked_among_the_latest_readable_matches_on_postgres() {
    let db = TestDb::postgres().await;
    let url = db.url();
    let mut s = test_settings(&url);
    s.limits.send_rate_per_sec = 0;
    let app = start(s, db, true).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mine = app.create_thread(&alice, "mine").await;
    let theirs = app.create_thread(&bob, "theirs").await;
    let rare = post(
        &app,
        &alice,
        &mine,
        "rare",
        "a kestrel over the alpha river",
    )
    .await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let now = 1_900_000_000_000_i64;
    // Alice's thread holds the older half, Bob's (unreadable to her, and ranked higher: the
    // word three times) the newer half: any window reaches into Bob's thread first.
    seed(&pool, &mine, &alice.id, 2, 4500, now, "alpha note").await;
    seed(
        &pool,
        &theirs,
        &bob.id,
        1,
        4500,
        now + 10_000,
        "alpha alpha alpha",
    )
    .await;
    // The statistics the search reads (autovacuum would gather them in time).
    sqlx::query("ANALYZE messages")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("ANALYZE threads").execute(&pool).await.unwrap();

    // First page: windowed (9,001 matches, half of them hers: well over twice the 1,020 ranked);
    // the first window holds only Bob's newest messages, so it is widened.
    let r = search_with(&app, &alice, &[("q", "alpha"), ("limit", "20")]).await;
    assert_eq!(r.status(), 200);
    let hits: Value = r.json().await.unwrap();
    assert_eq!(threads_of(&hits), vec![mine.clone(); 20], "only her thread");
    // Equal ranks: latest first ("alpha note 4499" has seq 4501).
    assert_eq!(seqs(&hits), (4482..=4501).rev().collect::<Vec<_>>());

    // The same page filtered on her as the author (not scanned newest first: the filter is not
    // in the planner's count), from the GIN index in a window of the latest messages, which
    // holds only Bob's at first and is widened.
    let r = search_with(
        &app,
        &alice,
        &[("q", "alpha"), ("limit", "20"), ("author", "alice")],
    )
    .await;
    assert_eq!(r.status(), 200);
    let hits: Value = r.json().await.unwrap();
    assert_eq!(threads_of(&hits), vec![mine.clone(); 20], "only her thread");
    assert_eq!(seqs(&hits), (4482..=4501).rev().collect::<Vec<_>>());

    // A deep page is ranked over every match and reaches the oldest ones.
    let r = search_with(
        &app,
        &alice,
        &[("q", "alpha"), ("limit", "20"), ("offset", "4490")],
    )
    .await;
    let hits: Value = r.json().await.unwrap();
    assert_eq!(threads_of(&hits), vec![mine.clone(); 11]);
    let mut deep = seqs(&hits);
    deep.sort();
    assert_eq!(
        deep,
        (1..=11).collect::<Vec<_>>(),
        "the ten oldest notes and the first message"
    );

    // Bob reads only his thread, windowed too.
    let r = search_with(&app, &bob, &[("q", "alpha"), ("limit", "50")]).await;
    let hits: Value = r.json().await.unwrap();
    assert_eq!(threads_of(&hits), vec![theirs.clone(); 50]);
    assert_eq!(hits["hits"][0]["seq"], 4500);

    // A rare word, older than any window, is found.
    let r = search_with(&app, &alice, &[("q", "kestrel")]).await;
    let hits: Value = r.json().await.unwrap();
    assert_eq!(hits["hits"].as_array().unwrap().len(), 1);
    assert_eq!(hits["hits"][0]["message_id"], rare["id"]);
    assert_eq!(
        threads_of(
            &search_with(&app, &bob, &[("q", "kestrel")])
                .await
                .json()
                .await
                .unwrap()
        ),
        Vec::<String>::new()
    );
}
