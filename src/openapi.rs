//! The HTTP API as an OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and the contract's types (`contract`, `contract::http`), served at
//! `GET /api/openapi.json` and checked in as `docs/openapi.json`. Unit tests fail when the
//! checked-in file differs (`UPDATE_OPENAPI=1 cargo test --lib openapi` rewrites it) and when a
//! route of the router (`http::routes::ROUTES`) is missing from the document or the document
//! names one the router does not have.
//!
//! What every route of a kind answers is added here, once, by [`Conventions`], following the
//! rules the router applies: credentials (401; 403 for a cookie from a foreign `Origin` on a
//! state change), JSON bodies (400, 413, 415, 422), and the admission of `/api/*` (500, 503).
//!
//! The document is public, built once (at its first request), and served like a static file: no
//! credential, no rate limit, no admission control, `Cache-Control: public, max-age=300` and an
//! `ETag` (a matching `If-None-Match` gets 304).

use std::sync::{Arc, OnceLock};

use axum::{
    Extension, Router,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use utoipa::{
    Modify, OpenApi,
    openapi::{
        self, ContentBuilder, ObjectBuilder, Ref, RefOr, ResponseBuilder,
        path::{HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn, PathItem},
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::{
    contract::{ClientFrameShape, ServerFrame},
    error::responses as errors,
    state::AppState,
};

/// Where the document is served.
pub const PATH: &str = "/api/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Emergence",
        description = "The HTTP API of Emergence, a real-time multi-agent chat server. \
            Every non-2xx answer has the body `ErrorBody`; a method a path does not take is \
            405 `method_not_allowed`. The WebSocket protocol (`GET /ws`) is described in \
            docs/protocol.md; its frames are the `ServerFrame` and `ClientFrameShape` schemas."
    ),
    paths(
        crate::health::healthz,
        crate::health::readyz,
        crate::startup::metrics_endpoint,
        crate::realtime::connection::upgrade,
        crate::auth::routes::register,
        crate::auth::routes::login,
        crate::auth::routes::logout,
        crate::auth::routes::me,
        crate::auth::account::reset_password,
        crate::auth::account::list_sessions,
        crate::auth::account::revoke_session,
        crate::auth::account::change_password,
        crate::auth::account::create_token,
        crate::auth::account::list_tokens,
        crate::auth::account::revoke_token,
        crate::auth::admin::list_users,
        crate::auth::admin::update_user,
        crate::auth::admin::approve_user,
        crate::auth::admin::reset_link,
        crate::auth::admin::user_sessions,
        crate::auth::admin::end_user_sessions,
        crate::auth::admin::create_invite,
        crate::auth::admin::list_invites,
        crate::auth::admin::revoke_invite,
        crate::auth::oidc::options,
        crate::auth::oidc::exchange,
        crate::auth::oidc::start,
        crate::auth::oidc::callback,
        crate::agents::http::list_agents,
        crate::threads::create,
        crate::threads::list,
        crate::threads::show,
        crate::threads::add_member,
        crate::threads::lifecycle::update,
        crate::threads::lifecycle::delete,
        crate::threads::members::list,
        crate::threads::members::remove,
        crate::search::search,
        crate::export::export_thread,
        crate::export::export_me,
        crate::export::import,
        crate::messages::history,
        crate::messages::post_message,
        crate::agents::http::post_debate,
        crate::usage::http::my_usage,
        crate::usage::http::all_usage,
        crate::usage::http::my_budget,
        crate::usage::http::list_budgets,
        crate::usage::http::set_default_budget,
        crate::usage::http::set_user_budget,
        crate::usage::http::delete_user_budget,
        crate::documents::http::create,
        crate::documents::http::list,
        crate::documents::http::search,
        crate::documents::http::show,
        crate::documents::http::remove,
        crate::documents::http::download,
        crate::documents::http::chunks,
        crate::agents::admin::list_connections,
        crate::agents::admin::create_connection,
        crate::agents::admin::update_connection,
        crate::agents::admin::delete_connection,
        crate::agents::admin::connection_models,
        crate::agents::admin::agents::list_agents,
        crate::agents::admin::agents::create_agent,
        crate::agents::admin::agents::update_agent,
        crate::agents::admin::agents::delete_agent,
        crate::memories::http::settings,
        crate::memories::http::set_settings,
        crate::memories::http::list,
        crate::memories::http::create,
        crate::memories::http::update,
        crate::memories::http::remove,
        crate::memories::http::delete_all,
        serve,
    ),
    components(
        schemas(ServerFrame, ClientFrameShape),
        responses(
            errors::BadRequest,
            errors::Unauthorized,
            errors::Forbidden,
            errors::NotFound,
            errors::Conflict,
            errors::TooLarge,
            errors::UnsupportedType,
            errors::Validation,
            errors::RateLimited,
            errors::Internal,
            errors::Unavailable,
        )
    ),
    modifiers(&Conventions),
    tags(
        (name = "auth", description = "Accounts and sessions"),
        (name = "account", description = "My sessions, password and API tokens"),
        (name = "admin", description = "Administrators: accounts, invites, usage and budgets, \
            agents and provider connections"),
        (name = "usage", description = "My usage, its cost, and my budget"),
        (name = "threads", description = "Threads and their members"),
        (name = "messages", description = "A thread's messages"),
        (name = "agents", description = "Agents and debates"),
        (name = "documents", description = "A thread's documents, their passages and retrieval"),
        (name = "memories", description = "My memory items (opt-in): facts and thread summaries"),
        (name = "realtime", description = "The WebSocket endpoint"),
        (name = "health", description = "Liveness, readiness and metrics"),
        (name = "meta", description = "This document"),
        (name = "web", description = "The embedded web UI"),
    )
)]
struct ApiDoc;

/// The document.
pub fn document() -> openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as served and checked in: pretty JSON with a final newline.
pub fn json() -> String {
    document()
        .to_pretty_json()
        .expect("the OpenAPI document always serialises")
        + "\n"
}

/// `GET /api/openapi.json`, outside the API's admission control and limits.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", get(serve))
        .layer(Extension(Arc::new(Published::default())))
}

/// The document's bytes and their `ETag`, made at the first request (building it takes a few
/// milliseconds, which an instance that is never asked for it need not spend at start-up).
#[derive(Default)]
struct Published(OnceLock<(Bytes, HeaderValue)>);

impl Published {
    fn get(&self) -> &(Bytes, HeaderValue) {
        self.0.get_or_init(|| {
            let body = json();
            let digest = Sha256::digest(body.as_bytes());
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            let etag = HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header");
            (Bytes::from(body), etag)
        })
    }
}

/// This document (OpenAPI 3.1). Public and cacheable.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json",
            body = Object,
            headers(("ETag" = String), ("Cache-Control" = String, description = "`public, max-age=300`"))),
        (status = 304, description = "Not modified (`If-None-Match` matched the `ETag`)"),
    )
)]
async fn serve(Extension(doc): Extension<Arc<Published>>, headers: HeaderMap) -> Response {
    let (body, etag) = doc.get();
    let cache = [
        (header::ETAG, etag.clone()),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        ),
    ];
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == etag
        });
    if matches {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    let content_type = (
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    (StatusCode::OK, cache, [content_type], body.clone()).into_response()
}

/// Security schemes, the answers every route of a kind gives, and the web UI's files.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        add_security_schemes(doc);
        add_web_ui(doc);
        for (path, item) in doc.paths.paths.iter_mut() {
            for (method, op) in operations_mut(item) {
                add_common_answers(path, method, op);
            }
        }
    }
}

fn add_security_schemes(doc: &mut openapi::OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "`Authorization: Bearer <token>`, the token of `register` or `login`",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        "cookie",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            crate::auth::COOKIE,
            "The session cookie set by `register` and `login` (HttpOnly, SameSite=Lax). A \
             state change it authenticates from a foreign `Origin` is refused with 403.",
        ))),
    );
    components.add_security_scheme(
        "token",
        SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
            "token",
            "`?token=<token>`, on `GET /ws` only",
        ))),
    );
}

/// Every operation of a path item, with its method.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = (HttpMethod, &mut Operation)> {
    [
        (HttpMethod::Get, item.get.as_mut()),
        (HttpMethod::Put, item.put.as_mut()),
        (HttpMethod::Post, item.post.as_mut()),
        (HttpMethod::Delete, item.delete.as_mut()),
        (HttpMethod::Options, item.options.as_mut()),
        (HttpMethod::Head, item.head.as_mut()),
        (HttpMethod::Patch, item.patch.as_mut()),
        (HttpMethod::Trace, item.trace.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.map(|op| (method, op)))
}

/// The answers that follow from what an operation is (see the module's doc).
fn add_common_answers(path: &str, method: HttpMethod, op: &mut Operation) {
    let mut answers: Vec<(&str, &str)> = Vec::new();
    let authenticated = op.security.as_ref().is_some_and(|s| !s.is_empty());
    // The WebSocket answers a bad credential after the upgrade (error frame, close 4401).
    if authenticated && path != "/ws" {
        answers.push(("401", "Unauthorized"));
        if method != HttpMethod::Get {
            answers.push(("403", "Forbidden"));
        }
    }
    if op.request_body.is_some() {
        answers.extend([
            ("400", "BadRequest"),
            ("413", "TooLarge"),
            ("415", "UnsupportedType"),
            ("422", "Validation"),
        ]);
    }
    if path.starts_with("/api/") && path != PATH {
        answers.extend([("500", "Internal"), ("503", "Unavailable")]);
    }
    for (status, name) in answers {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
    }
}

/// The embedded web UI: `/`, the favicons and the content-hashed bundle.
fn add_web_ui(doc: &mut openapi::OpenApi) {
    let files = [
        (
            "/",
            "webIndex",
            "The web UI (`no-cache`, `ETag`)",
            "text/html",
        ),
        ("/favicon.svg", "faviconSvg", "The favicon", "image/svg+xml"),
        (
            "/favicon.ico",
            "faviconIco",
            "The favicon as ICO, when the build ships one (404 otherwise)",
            "image/x-icon",
        ),
        (
            "/assets/{path}",
            "webAsset",
            "A content-hashed file of the web UI (`immutable`); `path` may contain `/`",
            "*/*",
        ),
    ];
    for (path, id, summary, content_type) in files {
        let ok = ResponseBuilder::new()
            .description(summary)
            // Bytes of that type: OpenAPI 3.1 describes them by the media type alone.
            .content(content_type, ContentBuilder::new().build())
            .build();
        let mut op = OperationBuilder::new()
            .operation_id(Some(id))
            .summary(Some(summary))
            .tag("web")
            .response("200", ok)
            .response(
                "304",
                ResponseBuilder::new()
                    .description("Not modified (`If-None-Match`)")
                    .build(),
            )
            .response("404", Ref::from_response_name("NotFound"));
        if path.contains("{path}") {
            op = op.parameter(
                ParameterBuilder::new()
                    .name("path")
                    .parameter_in(ParameterIn::Path)
                    .required(openapi::Required::True)
                    .schema(Some(
                        ObjectBuilder::new().schema_type(openapi::Type::String),
                    )),
            );
        }
        doc.paths
            .add_path_operation(path, vec![HttpMethod::Get], op.build());
    }
}

#[cfg(test)]
mod tests;
