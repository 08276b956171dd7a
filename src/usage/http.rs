//! The usage and budget routes: `GET /api/usage` (the caller's answers), `GET /api/admin/usage`
//! (everyone's, admins only), each as JSON or CSV (`?format=csv` or `Accept: text/csv`);
//! `GET /api/me/budget` (the caller's budgets today and this month); `GET|PUT /api/admin/budgets`
//! (the default for everyone) and `PUT|DELETE /api/admin/budgets/{user_id}` (one user's
//! override). Admin routes admit only an active admin's sign-in session (403 otherwise).

use std::collections::HashMap;

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, put},
};
use serde_json::{Map, Value};

use super::{
    budget::{Limits, limits_view},
    report::{self, ReportRequest},
};
use crate::{
    auth::{AdminUser, CurrentUser},
    contract::usage::{BudgetLimits, BudgetOverride, BudgetSettingsView, MyBudget, UsageReport},
    db::{
        now_ms,
        usage::{DEFAULT_BUDGET, UsageQuery},
    },
    error::ApiError,
    http::{
        IdPath,
        json::{Fields, JsonObject},
    },
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/usage", get(my_usage))
        .route("/api/admin/usage", get(all_usage))
        .route("/api/me/budget", get(my_budget))
        .route(
            "/api/admin/budgets",
            get(list_budgets).put(set_default_budget),
        )
        .route(
            "/api/admin/budgets/{id}",
            put(set_user_budget).delete(delete_user_budget),
        )
}

fn accepts_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"))
}

fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

/// Build a report of `user_id`'s answers (everyone's when `None`), as JSON or CSV.
async fn report(
    state: &AppState,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    user_id: Option<String>,
) -> Result<Response, ApiError> {
    let req = ReportRequest::parse(q, accepts_csv(headers), today(), user_id.is_none())?;
    let (from_ms, to_ms) = req.range_ms();
    let query = UsageQuery {
        user_id,
        from_ms,
        to_ms,
    };
    let groups = state
        .db
        .run(|s| async move { s.usage(&query).await })
        .await?;
    let usernames: HashMap<String, String> = if req.group.contains(&report::Dimension::User) {
        let accounts = state.db.run(|s| async move { s.accounts().await }).await?;
        accounts.into_iter().map(|a| (a.id, a.username)).collect()
    } else {
        HashMap::new()
    };
    let out = report::build(
        &req,
        &groups,
        &state.settings.prices,
        &state.settings.usage.currency,
        &usernames,
    );
    if req.csv {
        let body = report::to_csv(&out)?;
        let name = format!("attachment; filename=\"usage-{}-{}.csv\"", out.from, out.to);
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (header::CONTENT_DISPOSITION, name),
            ],
            body,
        )
            .into_response());
    }
    Ok(Json(out).into_response())
}

/// The caller's agent answers (the ones they asked for), summed and priced.
#[utoipa::path(get, path = "/api/usage", operation_id = "myUsage", tag = "usage",
    security(("bearer" = []), ("cookie" = [])),
    params(
        ("from" = Option<String>, Query, description = "First day, `YYYY-MM-DD` (UTC); default: the 1st of this month"),
        ("to" = Option<String>, Query, description = "Last day, inclusive; default: today"),
        ("group" = Option<String>, Query, description = "Comma-separated: `day` (default), `agent`, `model`"),
        ("format" = Option<String>, Query, description = "`json` (default) or `csv` (also `Accept: text/csv`)"),
    ),
    responses((status = 200, description = "The report (JSON, or CSV with the same rows)", body = UsageReport),
        (status = 422, response = crate::error::responses::Validation)))]
pub(crate) async fn my_usage(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    report(&state, &q, &headers, Some(user.id().to_string())).await
}

/// Every user's agent answers, summed and priced (admins only; `group` may also name `user`).
#[utoipa::path(get, path = "/api/admin/usage", operation_id = "adminUsage", tag = "admin",
    security(("bearer" = []), ("cookie" = [])),
    params(
        ("from" = Option<String>, Query, description = "First day, `YYYY-MM-DD` (UTC); default: the 1st of this month"),
        ("to" = Option<String>, Query, description = "Last day, inclusive; default: today"),
        ("group" = Option<String>, Query, description = "Comma-separated: `day` (default), `agent`, `model`, `user`"),
        ("format" = Option<String>, Query, description = "`json` (default) or `csv` (also `Accept: text/csv`)"),
    ),
    responses((status = 200, description = "The report (JSON, or CSV with the same rows)", body = UsageReport),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 422, response = crate::error::responses::Validation)))]
pub(crate) async fn all_usage(
    State(state): State<AppState>,
    _admin: AdminUser,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    report(&state, &q, &headers, None).await
}

/// The caller's token budgets: limit, spent and left today and this month, and when each resets.
#[utoipa::path(get, path = "/api/me/budget", operation_id = "myBudget", tag = "usage",
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "Today's and this month's budget", body = MyBudget)))]
pub(crate) async fn my_budget(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<MyBudget>, ApiError> {
    Ok(Json(
        state.agents.budgets().mine(user.id(), now_ms()).await?,
    ))
}

/// The default budget and every user's override.
#[utoipa::path(get, path = "/api/admin/budgets", operation_id = "adminListBudgets", tag = "admin",
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "Default and overrides", body = BudgetSettingsView),
        (status = 403, response = crate::error::responses::Forbidden)))]
pub(crate) async fn list_budgets(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> Result<Json<BudgetSettingsView>, ApiError> {
    let rows = state
        .db
        .run(|s| async move { s.budget_rows(None).await })
        .await?;
    let default = state.agents.budgets().default_of(&rows);
    let overrides = rows
        .into_iter()
        .filter(|r| r.user_id != DEFAULT_BUDGET)
        .map(|r| BudgetOverride {
            username: r.username.unwrap_or_default(),
            user_id: r.user_id,
            limits: limits_view(Limits {
                daily: r.daily_tokens,
                monthly: r.monthly_tokens,
            }),
        })
        .collect();
    Ok(Json(BudgetSettingsView {
        default: limits_view(default),
        overrides,
    }))
}

/// `{"daily_tokens": N|null, "monthly_tokens": N|null}`: each a positive whole number, or null.
fn parse_limits(body: &Map<String, Value>) -> Result<Limits, ApiError> {
    let mut f = Fields::new(body);
    let mut limit = |name: &str| match body.get(name) {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().filter(|n| (1..=i64::MAX as u64).contains(n)) {
            Some(n) => Some(n as i64),
            None => {
                f.reject(name, "must be a positive whole number of tokens, or null");
                None
            }
        },
    };
    let limits = Limits {
        daily: limit("daily_tokens"),
        monthly: limit("monthly_tokens"),
    };
    for key in body.keys() {
        if key != "daily_tokens" && key != "monthly_tokens" {
            f.reject(key, "is not a budget field");
        }
    }
    f.finish()?;
    Ok(limits)
}

/// Set the default budget of every user without an override (null: no limit).
#[utoipa::path(put, path = "/api/admin/budgets", operation_id = "adminSetDefaultBudget",
    tag = "admin", security(("bearer" = []), ("cookie" = [])),
    request_body = BudgetLimits,
    responses((status = 200, description = "The default now", body = BudgetLimits),
        (status = 403, response = crate::error::responses::Forbidden)))]
pub(crate) async fn set_default_budget(
    State(state): State<AppState>,
    _admin: AdminUser,
    JsonObject(body): JsonObject,
) -> Result<Json<BudgetLimits>, ApiError> {
    let limits = parse_limits(&body)?;
    state
        .db
        .run(|s| async move {
            s.set_budget(DEFAULT_BUDGET, limits.daily, limits.monthly, now_ms())
                .await
        })
        .await?;
    Ok(Json(limits_view(limits)))
}

/// Set one user's own limits (null: the default's limit applies).
#[utoipa::path(put, path = "/api/admin/budgets/{id}", operation_id = "adminSetUserBudget",
    tag = "admin", security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "User id")),
    request_body = BudgetLimits,
    responses((status = 200, description = "The user's override", body = BudgetOverride),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 404, response = crate::error::responses::NotFound)))]
pub(crate) async fn set_user_budget(
    State(state): State<AppState>,
    _admin: AdminUser,
    IdPath(id): IdPath,
    JsonObject(body): JsonObject,
) -> Result<Json<BudgetOverride>, ApiError> {
    let limits = parse_limits(&body)?;
    let uid = id.clone();
    let Some(user) = state
        .db
        .run(|s| async move { s.user_by_id(&uid).await })
        .await?
    else {
        return Err(ApiError::NotFound);
    };
    let uid = id.clone();
    state
        .db
        .run(|s| async move {
            s.set_budget(&uid, limits.daily, limits.monthly, now_ms())
                .await
        })
        .await?;
    Ok(Json(BudgetOverride {
        user_id: id,
        username: user.username,
        limits: limits_view(limits),
    }))
}

/// Remove a user's override: the default applies again.
#[utoipa::path(delete, path = "/api/admin/budgets/{id}", operation_id = "adminDeleteUserBudget",
    tag = "admin", security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "User id")),
    responses((status = 204, description = "Removed"),
        (status = 403, response = crate::error::responses::Forbidden),
        (status = 404, response = crate::error::responses::NotFound)))]
pub(crate) async fn delete_user_budget(
    State(state): State<AppState>,
    _admin: AdminUser,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    if id == DEFAULT_BUDGET {
        return Err(ApiError::NotFound);
    }
    let removed = state
        .db
        .run(|s| async move { s.delete_budget(&id).await })
        .await?;
    if removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
