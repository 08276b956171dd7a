//! `/healthz` (liveness: never touches the database) and `/readyz` (can this instance serve
//! users? `starting` until the first database connection attempt has ended; after that a down
//! database only makes it `degraded`, still 200, so a platform does not kill instances that are
//! still serving).

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use serde_json::json;

use crate::state::{AppState, Phase};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let db = state.db.state().as_str();
    let broker = state.realtime.broker_state().as_str();
    let phase = match state.lifecycle.phase() {
        // Before the first connection attempt has ended, "db down" would only mean "not tried
        // yet": a load balancer must not send users to an instance that is about to be ready.
        Phase::Serving if !state.db.first_attempt_ended() => Phase::Starting,
        phase => phase,
    };
    let (code, status) = match phase {
        Phase::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        Phase::Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
        Phase::Serving if db == "up" && broker != "down" => (StatusCode::OK, "ready"),
        Phase::Serving => (StatusCode::OK, "degraded"),
    };
    (
        code,
        Json(json!({"status": status, "db": db, "broker": broker})),
    )
}
