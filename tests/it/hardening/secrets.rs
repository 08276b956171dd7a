//! Secrets: provider keys and database passwords never appear in answers, metrics or Debug output.

use serde_json::Value;

use crate::support::spawn_app_with;

#[tokio::test]
async fn provider_keys_and_database_passwords_never_appear_in_answers_metrics_or_debug_output() {
    const KEY: &str = "sk-hardening-DO-NOT-LEAK-1234567890";
    const SIGNING: &str = "signing-key-DO-NOT-LEAK-0987654321";
    let app = spawn_app_with(|s| {
        s.providers.openai_api_key = Some(emergence::settings::Secret::new(KEY));
        s.providers.anthropic_api_key = Some(emergence::settings::Secret::new(KEY));
        s.providers.gemini_api_key = Some(emergence::settings::Secret::new(KEY));
        s.providers.openai_base_url = Some("http://127.0.0.1:9/v1".into());
        s.auth.signing_key = Some(emergence::settings::Secret::new(SIGNING));
        let mut agent = s.agents[0].clone();
        agent.id = "remote".into();
        agent.provider = "openai".into();
        agent.model = "gpt-test".into();
        s.agents.push(agent);
    })
    .await;
    let alice = app.register("alice").await;
    let mut seen = String::new();
    for path in [
        "/api/agents",
        "/metrics",
        "/readyz",
        "/healthz",
        "/api/me",
        "/",
    ] {
        let r = app.get(path, Some(&alice.token)).await;
        assert!(r.status().is_success(), "{path}");
        seen.push_str(&format!("{:?}", r.headers()));
        seen.push_str(&r.text().await.unwrap());
    }
    let agents: Value = app
        .get("/api/agents", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    for a in agents["agents"].as_array().unwrap() {
        let mut keys: Vec<&str> = a.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        // `colour` (issue #18) is public, and optional.
        keys.retain(|k| *k != "colour");
        assert_eq!(keys, ["id", "model", "name", "provider"], "{a}");
    }
    assert!(
        !seen.contains(KEY) && !seen.contains(SIGNING),
        "a secret leaked"
    );
    let mut settings = emergence::Settings::default();
    settings.database.url =
        emergence::settings::Secret::new("postgres://app:hunter2-DO-NOT-LEAK@db/emergence");
    settings.providers.openai_api_key = Some(emergence::settings::Secret::new(KEY));
    settings.auth.signing_key = Some(emergence::settings::Secret::new(SIGNING));
    let debug = format!("{settings:?}");
    for secret in ["hunter2-DO-NOT-LEAK", KEY, SIGNING] {
        assert!(!debug.contains(secret), "Debug output shows {secret}");
    }
}
