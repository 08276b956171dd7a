//! The OpenAPI document against the checked-in file and against the router's route table.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{PATH, json};
use crate::http::routes::ROUTES;

const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    serde_json::from_str(&json()).unwrap()
}

/// `(METHOD, path)` of every operation of the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if item.get(m).is_some() {
                ops.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

#[test]
fn openapi_json_is_current() {
    let generated = json();
    if std::env::var("UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(CHECKED_IN, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(CHECKED_IN).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/openapi.json differs from what the handlers and contract types generate: run \
         `UPDATE_OPENAPI=1 cargo test --lib openapi` and commit the result"
    );
}

#[test]
fn the_document_is_openapi_3_1() {
    let doc = document();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    assert_eq!(doc["info"]["title"], "Emergence");
}

/// The route table is checked against the router (`tests/it/metrics.rs` by requests, the table's
/// own test by the sources); here the document is checked against the table, both ways.
#[test]
fn every_route_of_the_router_is_documented_and_every_operation_is_routed() {
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .flat_map(|(route, methods)| {
            // A catch-all segment (`{*path}`) is an ordinary path parameter in OpenAPI.
            let path = route.replace("{*", "{");
            methods.iter().map(move |m| (m.to_string(), path.clone()))
        })
        .collect();
    let documented = operations(&document());
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the OpenAPI document (add #[utoipa::path] and list the handler in \
         src/openapi.rs): {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "operations the router does not serve: {unrouted:?}"
    );
    assert!(routed.iter().any(|(_, p)| p == PATH));
}

#[test]
fn every_operation_has_a_unique_id_a_tag_and_an_answer() {
    let doc = document();
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            let Some(op) = item.get(m) else { continue };
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(!id.is_empty(), "{m} {path} has no operationId");
            assert!(ids.insert(id.to_string()), "operationId {id} is used twice");
            assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()));
            // The single sign-on browser routes answer only with redirects (303).
            let success: &[char] = if path.starts_with("/auth/oidc/") {
                &['3']
            } else {
                &['1', '2']
            };
            assert!(
                op["responses"]
                    .as_object()
                    .is_some_and(|r| r.keys().any(|s| s.starts_with(success))),
                "{m} {path} documents no success"
            );
        }
    }
}

/// Every error answer carries the contract's body, whether inline or a shared response (but
/// `/readyz`, whose 503 says why the instance is not ready).
#[test]
fn every_error_answer_is_the_contract_error_body() {
    let doc = document();
    let shared = &doc["components"]["responses"];
    let error_body = serde_json::json!({"$ref": "#/components/schemas/ErrorBody"});
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            let Some(op) = item.get(m) else { continue };
            for (status, answer) in op["responses"].as_object().unwrap() {
                if status.starts_with(['1', '2', '3']) || path == "/readyz" {
                    continue;
                }
                let answer = match answer["$ref"].as_str() {
                    Some(r) => &shared[r.rsplit('/').next().unwrap()],
                    None => answer,
                };
                assert_eq!(
                    answer["content"]["application/json"]["schema"], error_body,
                    "{m} {path} {status}"
                );
            }
        }
    }
}

/// Which routes need a credential, as `CurrentUser` and the WebSocket decide it.
#[test]
fn only_the_public_routes_go_without_a_credential() {
    let public = [
        "/",
        "/favicon.svg",
        "/favicon.ico",
        "/assets/{path}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/openapi.json",
        "/api/auth/register",
        "/api/auth/login",
        // Its credential is the reset link's secret, in the body.
        "/api/auth/reset",
        // Single sign-on: how to sign in, and the browser's round trip through a provider (the
        // exchange's credential is the single-use hand-over code, in the body).
        "/api/auth/options",
        "/api/auth/oidc/exchange",
        "/auth/oidc/{provider}/start",
        "/auth/oidc/{provider}/callback",
    ];
    let doc = document();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            let Some(op) = item.get(m) else { continue };
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            assert_eq!(
                !secured,
                public.contains(&path.as_str()),
                "{m} {path}: security {}",
                op["security"]
            );
        }
    }
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["cookie"]["in"], "cookie");
    assert_eq!(schemes["cookie"]["name"], crate::auth::COOKIE);
}
