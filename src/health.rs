//! `/healthz` (liveness: never touches the database) and `/readyz` (can this instance serve
//! users? `starting` until the first database connection attempt has ended; after that a down
//! database only makes it `degraded`, still 200, so a platform does not kill instances that are
//! still serving).

use axum::{Json, Router, extract::State, http::StatusCode, routing::get};

use crate::{
    contract::http::{Alive, BrokerStatus, DbStatus, Liveness, Readiness, ReadyStatus},
    db::DbState,
    realtime::broker::BrokerState,
    state::{AppState, Phase},
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// Liveness: the process answers. Never touches the database.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "health",
    responses((status = 200, description = "The process is alive", body = Liveness))
)]
pub(crate) async fn healthz() -> Json<Liveness> {
    Json(Liveness { status: Alive::Ok })
}

/// Readiness: whether this instance can serve users.
///
/// 200 `ready`, or `degraded` while the database or broker is unreachable but connections are
/// still accepted; 503 `starting` or `draining` otherwise.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "health",
    responses(
        (status = 200, description = "Serving (`ready` or `degraded`)", body = Readiness),
        (status = 503, description = "Not serving (`starting` or `draining`)", body = Readiness),
    )
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let db = match state.db.state() {
        DbState::Up => DbStatus::Up,
        DbState::Down => DbStatus::Down,
    };
    let broker = match state.realtime.broker_state() {
        BrokerState::Local => BrokerStatus::Local,
        BrokerState::Up => BrokerStatus::Up,
        BrokerState::Down => BrokerStatus::Down,
    };
    let phase = match state.lifecycle.phase() {
        // Before the first connection attempt has ended, "db down" would only mean "not tried
        // yet": a load balancer must not send users to an instance that is about to be ready.
        Phase::Serving if !state.db.first_attempt_ended() => Phase::Starting,
        phase => phase,
    };
    let (code, status) = match phase {
        Phase::Starting => (StatusCode::SERVICE_UNAVAILABLE, ReadyStatus::Starting),
        Phase::Draining => (StatusCode::SERVICE_UNAVAILABLE, ReadyStatus::Draining),
        Phase::Serving if db == DbStatus::Up && broker != BrokerStatus::Down => {
            (StatusCode::OK, ReadyStatus::Ready)
        }
        Phase::Serving => (StatusCode::OK, ReadyStatus::Degraded),
    };
    (code, Json(Readiness { status, db, broker }))
}
