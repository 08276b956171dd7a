//! Usage and cost (issue #15): the usage reports equal the sums of the stored per-message token
//! counts, cost is tokens times the price table, CSV carries the same rows as JSON, the admin
//! report is for admins only, and `llm_cost_total` counts the same money. SQLite and PostgreSQL.

use std::collections::HashMap;

use emergence::settings::usage::Price;
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    agents::{agent, follow_stream, use_fake_providers},
    support::accounts::{app, call, code, get_as},
    support::{TestApp, TestUser, fake_llm::FakeLlm},
};

pub const INPUT_PRICE: f64 = 3.0;
pub const OUTPUT_PRICE: f64 = 15.0;

/// A server whose agents `gpt` (OpenAI wire) and `claude` (Anthropic wire) answer with model
/// `ok`, priced in the settings.
pub async fn priced_app(
    pg: bool,
    url: &str,
    configure: impl FnOnce(&mut emergence::Settings),
) -> TestApp {
    let url = url.to_string();
    app(pg, move |s| {
        s.agents = vec![
            agent("gpt", "openai", "ok"),
            agent("claude", "anthropic", "ok"),
        ];
        use_fake_providers(s, &url);
        s.prices.insert(
            "ok".into(),
            Price {
                input_per_million: INPUT_PRICE,
                output_per_million: OUTPUT_PRICE,
            },
        );
        configure(s);
    })
    .await
}

/// Ask `agent` in `thread` over a WebSocket and follow the answer to its end.
pub async fn ask(
    app: &TestApp,
    user: &TestUser,
    thread: &str,
    agent: &str,
    client_id: &str,
) -> Value {
    let mut ws = app.ws(user).await;
    ws.subscribe(thread, None).await;
    ws.send(
        json!({"type":"send","thread":thread,"client_id":client_id,"body":"hello","agent":agent}),
    )
    .await;
    let seen = follow_stream(&mut ws).await;
    seen.end.or(seen.error).expect("the stream ends")
}

/// (prompt, completion) summed over the agent answers stored in `thread`.
async fn stored_tokens(app: &TestApp, user: &TestUser, thread: &str) -> (u64, u64) {
    let messages = app.messages(user, thread, "?limit=200").await;
    messages
        .iter()
        .filter(|m| m["author"]["kind"] == "agent")
        .fold((0, 0), |(p, c), m| {
            (
                p + m["prompt_tokens"].as_u64().unwrap_or(0),
                c + m["completion_tokens"].as_u64().unwrap_or(0),
            )
        })
}

fn cost(prompt: u64, completion: u64) -> f64 {
    (prompt as f64 * INPUT_PRICE + completion as f64 * OUTPUT_PRICE) / 1e6
}

async fn get_text(
    app: &TestApp,
    path: &str,
    token: &str,
    accept: Option<&str>,
) -> (u16, String, String) {
    let mut req = app
        .http
        .request(Method::GET, app.url(path))
        .bearer_auth(token);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, r.text().await.unwrap())
}

/// The CSV's rows as maps from header to cell.
fn csv_rows(text: &str) -> Vec<HashMap<String, String>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .map(|l| {
            header
                .iter()
                .zip(l.split(','))
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

async fn usage_equals_stored_tokens_and_cost_is_tokens_times_price(pg: bool) {
    let (fake, url) = FakeLlm::start().await;
    let app = priced_app(pg, &url, |_| {}).await;
    let alice = app.register("alice").await; // the first account: an admin
    let bob = app.register("bob").await;
    let a_thread = app.create_thread(&alice, "alice asks").await;
    let b_thread = app.create_thread(&bob, "bob asks").await;
    app.add_member(&alice, &a_thread, "bob").await;
    for (i, who) in ["gpt", "gpt", "claude"].iter().enumerate() {
        let end = ask(&app, &alice, &a_thread, who, &format!("a{i}")).await;
        assert_eq!(end["type"], "stream_end", "{end}");
    }
    // Bob asks in Alice's thread too: his answer is his usage, not hers.
    assert_eq!(
        ask(&app, &bob, &a_thread, "gpt", "b0").await["type"],
        "stream_end"
    );
    assert_eq!(
        ask(&app, &bob, &b_thread, "claude", "b1").await["type"],
        "stream_end"
    );
    assert_eq!(fake.count("ok"), 5);

    let (p_all, c_all) = stored_tokens(&app, &alice, &a_thread).await;
    let (p_b, c_b) = stored_tokens(&app, &bob, &b_thread).await;
    assert!(p_all > 0 && c_all > 0, "the fake reports usage");

    // Mine, by agent and model: Alice's three answers.
    let (status, mine) = call(
        &app,
        Method::GET,
        "/api/usage?group=agent,model",
        &alice.token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{mine}");
    let total = &mine["total"];
    assert_eq!(total["answers"], 3);
    // Bob's answer in Alice's thread is a quarter of that thread's tokens (all answers equal).
    assert_eq!(total["prompt_tokens"].as_u64().unwrap(), p_all * 3 / 4);
    assert_eq!(total["completion_tokens"].as_u64().unwrap(), c_all * 3 / 4);
    let (p_a, c_a) = (p_all * 3 / 4, c_all * 3 / 4);
    assert_eq!(total["total_tokens"].as_u64().unwrap(), p_a + c_a);
    assert!(
        (total["cost"].as_f64().unwrap() - cost(p_a, c_a)).abs() < 1e-12,
        "{total}"
    );
    let rows = mine["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{mine}");
    let gpt = rows.iter().find(|r| r["agent"] == "gpt").unwrap();
    assert_eq!(
        (gpt["model"].as_str(), gpt["answers"].as_u64()),
        (Some("ok"), Some(2))
    );
    assert!(
        rows.iter()
            .all(|r| r.get("day").is_none() && r.get("user_id").is_none())
    );

    // By day (the default): today, the same totals.
    let (_, by_day) = get_as(&app, &alice.token, "/api/usage").await;
    let today = time::OffsetDateTime::now_utc().date().to_string();
    assert_eq!(by_day["rows"].as_array().unwrap().len(), 1);
    assert_eq!(by_day["rows"][0]["day"], today.as_str());
    assert_eq!(by_day["rows"][0]["total_tokens"], total["total_tokens"]);
    assert_eq!(by_day["group"], json!(["day"]));
    // A range that ends yesterday has none of it.
    let yesterday = (time::OffsetDateTime::now_utc().date() - time::Duration::days(1)).to_string();
    let (_, before) = get_as(
        &app,
        &alice.token,
        &format!("/api/usage?from={yesterday}&to={yesterday}"),
    )
    .await;
    assert_eq!(before["total"]["answers"], 0);

    // CSV, asked by `format` or by `Accept`: the JSON's rows and figures.
    for (path, accept) in [
        ("/api/usage?group=agent,model&format=csv", None),
        ("/api/usage?group=agent,model", Some("text/csv")),
    ] {
        let (status, ctype, text) = get_text(&app, path, &alice.token, accept).await;
        assert_eq!(status, 200);
        assert!(ctype.starts_with("text/csv"), "{ctype}");
        let csv = csv_rows(&text);
        assert_eq!(csv.len(), rows.len());
        for (c, j) in csv.iter().zip(rows) {
            assert_eq!(c["agent"], j["agent"].as_str().unwrap());
            assert_eq!(c["model"], j["model"].as_str().unwrap());
            for n in [
                "answers",
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
            ] {
                assert_eq!(c[n], j[n].as_u64().unwrap().to_string(), "{n}");
            }
            let csv_cost: f64 = c["cost"].parse().unwrap();
            assert!((csv_cost - j["cost"].as_f64().unwrap()).abs() < 1e-6);
        }
    }

    // Everyone's, by user: admins only.
    let (status, all) = get_as(&app, &alice.token, "/api/admin/usage?group=user").await;
    assert_eq!(status, 200, "{all}");
    let by_user: Vec<&Value> = all["rows"].as_array().unwrap().iter().collect();
    assert_eq!(by_user.len(), 2);
    let bob_row = by_user.iter().find(|r| r["username"] == "bob").unwrap();
    assert_eq!(bob_row["user_id"], bob.id.as_str());
    assert_eq!(bob_row["answers"], 2);
    assert_eq!(
        bob_row["prompt_tokens"].as_u64().unwrap(),
        p_all / 4 + p_b,
        "bob's answers in both threads"
    );
    assert_eq!(
        bob_row["completion_tokens"].as_u64().unwrap(),
        c_all / 4 + c_b
    );
    assert_eq!(all["total"]["prompt_tokens"].as_u64().unwrap(), p_all + p_b);
    let (_, ctype, text) = get_text(
        &app,
        "/api/admin/usage?group=user,agent&format=csv",
        &alice.token,
        None,
    )
    .await;
    assert!(ctype.starts_with("text/csv"));
    assert!(
        text.starts_with("user_id,username,agent,answers,"),
        "{text}"
    );
    for (path, token) in [
        ("/api/admin/usage", &bob.token),
        ("/api/admin/usage?format=csv", &bob.token),
    ] {
        let (status, body) = get_as(&app, token, path).await;
        assert_eq!((status, code(&body)), (403, "forbidden"), "{path}");
    }

    // Bad parameters: a 422 naming the field, never a 500.
    for (path, field) in [
        ("/api/usage?group=user", "group"),
        ("/api/usage?group=week", "group"),
        ("/api/usage?from=yesterday", "from"),
        ("/api/usage?from=2026-02-30", "from"),
        ("/api/usage?from=2026-05-02&to=2026-05-01", "to"),
        ("/api/usage?from=2020-01-01&to=2026-01-01", "to"),
        ("/api/usage?format=xml", "format"),
    ] {
        let (status, body) = get_as(&app, &alice.token, path).await;
        assert_eq!((status, code(&body)), (422, "validation"), "{path}: {body}");
        assert!(body["error"]["fields"][field].is_string(), "{path}: {body}");
    }
    let (status, _) = get_as(&app, "not-a-token", "/api/usage").await;
    assert_eq!(status, 401);

    // The metric counts the same money, by agent and model (no user label).
    let metric = app.metric("llm_cost_total{").await;
    assert!(
        (metric - cost(p_all + p_b, c_all + c_b)).abs() < 1e-6,
        "{metric}"
    );
    let text = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        text.contains("llm_cost_total{agent=\"gpt\",model=\"ok\"}"),
        "{text}"
    );
    assert!(!text.contains(&alice.id) && !text.contains(&bob.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_equals_stored_tokens_and_cost_is_tokens_times_price_on_sqlite() {
    usage_equals_stored_tokens_and_cost_is_tokens_times_price(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_equals_stored_tokens_and_cost_is_tokens_times_price_on_postgres() {
    usage_equals_stored_tokens_and_cost_is_tokens_times_price(true).await
}
