//! The web UI, embedded in the binary: content-hashed files served with immutable caching,
//! `index.html` with `no-cache` + ETag, precompressed brotli/gzip chosen by `Accept-Encoding`,
//! security headers, and an SPA fallback for app routes (never for `/assets/*` or `/api/*`).
//! Nothing here passes through a rate limiter.

use std::sync::Arc;

use axum::{
    Router,
    extract::Request,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use bytes::Bytes;

use crate::{
    error::ApiError,
    metrics::{Counter, Histogram, Metrics},
    settings::Settings,
    state::AppState,
};

/// One embedded file.
pub struct Embedded {
    pub path: &'static str,
    pub body: &'static [u8],
    pub br: Option<&'static [u8]>,
    pub gz: Option<&'static [u8]>,
    pub etag: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/embedded_assets.rs"));

/// `index.html`, possibly rewritten to point at a CDN.
struct Index {
    body: Bytes,
    br: Option<Bytes>,
    gz: Option<Bytes>,
    etag: String,
    csp: String,
}

/// The UI shell, prepared once at start-up.
pub struct WebUi {
    index: Option<Arc<Index>>,
}

impl WebUi {
    pub fn new(settings: &Settings) -> Self {
        Self {
            index: build_index(settings),
        }
    }
}

fn build_index(settings: &Settings) -> Option<Arc<Index>> {
    (|| {
        let file = find("/index.html")?;
        let base = settings
            .web
            .asset_base_url
            .as_deref()
            .map(|b| b.trim_end_matches('/'));
        let mut csp_sources = String::from("'self'");
        let index = match base {
            None => Index {
                body: Bytes::from_static(file.body),
                br: file.br.map(Bytes::from_static),
                gz: file.gz.map(Bytes::from_static),
                etag: file.etag.to_string(),
                csp: String::new(),
            },
            Some(base) => {
                let html = String::from_utf8_lossy(file.body)
                    .replace("\"/assets/", &format!("\"{base}/assets/"));
                let origin = base.split('/').take(3).collect::<Vec<_>>().join("/");
                csp_sources.push(' ');
                csp_sources.push_str(&origin);
                Index {
                    etag: format!("\"{:x}\"", html.len() as u64 ^ 0x9e3779b97f4a7c15),
                    body: Bytes::from(html.into_bytes()),
                    br: None,
                    gz: None,
                    csp: String::new(),
                }
            }
        };
        let index = with_sign_in_options(index, settings);
        Some(Arc::new(Index {
            csp: format!(
                "default-src 'self'; script-src {csp_sources}; style-src {csp_sources}; img-src 'self' data:; \
                     connect-src 'self' ws: wss:; font-src 'self'; object-src 'none'; base-uri 'none'; \
                     form-action 'self'; frame-ancestors 'none'"
            ),
            ..index
        }))
    })()
}

/// When single sign-on is configured (or password login is off), the sign-in page must know it
/// before anything is typed: the options (`GET /api/auth/options`'s body) go into the shell as
/// `<meta name="emergence-sign-in">`, so the first load makes no extra request. Without either,
/// the shell stays as built (with its precompressed copies).
fn with_sign_in_options(index: Index, settings: &Settings) -> Index {
    let auth = &settings.auth;
    if auth.password_login && auth.oidc.is_empty() {
        return index;
    }
    let options = serde_json::json!({
        "password_login": auth.password_login,
        "providers": auth.oidc.iter().map(|p| serde_json::json!({
            "name": p.name,
            "label": p.label(),
            "start_url": format!("/auth/oidc/{}/start", p.name),
        })).collect::<Vec<_>>(),
    })
    .to_string()
    .replace('&', "&amp;")
    .replace('"', "&quot;")
    .replace('<', "&lt;")
    .replace('>', "&gt;");
    let html = String::from_utf8_lossy(&index.body).replacen(
        "</head>",
        &format!("<meta name=\"emergence-sign-in\" content=\"{options}\" />\n  </head>"),
        1,
    );
    Index {
        etag: {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(html.as_bytes());
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            format!("\"{hex}\"")
        },
        body: Bytes::from(html.into_bytes()),
        br: None,
        gz: None,
        csp: index.csp,
    }
}

fn find(path: &str) -> Option<&'static Embedded> {
    FILES.iter().find(|f| f.path == path)
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/assets/{*path}", get(asset))
        .route("/favicon.svg", get(asset))
        .route("/favicon.ico", get(asset))
        .route("/", get(serve_index))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Brotli,
    Gzip,
    Identity,
}

impl Encoding {
    /// The `Content-Encoding` value (none for identity).
    fn name(self) -> Option<&'static str> {
        match self {
            Encoding::Brotli => Some("br"),
            Encoding::Gzip => Some("gzip"),
            Encoding::Identity => None,
        }
    }
}

/// Pick the best encoding the client accepts (q=0 means refused).
fn negotiate(headers: &HeaderMap, have_br: bool, have_gz: bool) -> Encoding {
    let accept = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let accepts = |name: &str| {
        accept.split(',').any(|part| {
            let mut it = part.split(';');
            let coding = it.next().unwrap_or("").trim();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            (coding.eq_ignore_ascii_case(name) || coding == "*") && q > 0.0
        })
    };
    if have_br && accepts("br") {
        Encoding::Brotli
    } else if have_gz && accepts("gzip") {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "png" => "image/png",
        "json" | "map" => "application/json",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

/// What to answer for one file; the bodies are shared, never copied per request.
struct Body<'a> {
    path: &'a str,
    identity: Bytes,
    br: Option<Bytes>,
    gz: Option<Bytes>,
    etag: &'a str,
    cache: &'static str,
}

impl Body<'_> {
    /// The body in `enc` (identity where there is no such copy).
    fn encoded(&self, enc: Encoding) -> &Bytes {
        match enc {
            Encoding::Brotli => self.br.as_ref().unwrap_or(&self.identity),
            Encoding::Gzip => self.gz.as_ref().unwrap_or(&self.identity),
            Encoding::Identity => &self.identity,
        }
    }
}

impl Body<'static> {
    fn embedded(file: &'static Embedded) -> Self {
        Body {
            path: file.path,
            identity: Bytes::from_static(file.body),
            br: file.br.map(Bytes::from_static),
            gz: file.gz.map(Bytes::from_static),
            etag: file.etag,
            cache: if file.path.starts_with("/assets/") {
                "public, max-age=31536000, immutable"
            } else {
                "no-cache"
            },
        }
    }
}

fn respond(req_headers: &HeaderMap, method: &Method, b: Body<'_>) -> Response {
    if not_modified(req_headers, b.etag) {
        return (StatusCode::NOT_MODIFIED, headers_for(&b, None)).into_response();
    }
    let enc = negotiate(req_headers, b.br.is_some(), b.gz.is_some());
    let headers = headers_for(&b, Some(enc));
    if method == Method::HEAD {
        return (StatusCode::OK, headers).into_response();
    }
    (StatusCode::OK, headers, b.encoded(enc).clone()).into_response()
}

/// The headers of an answer with `b`: caching and its validator, then, for a `200` in the
/// encoding `ok` (`None`: a `304`), type, encoding and length.
fn headers_for(b: &Body<'_>, ok: Option<Encoding>) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(16);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(b.cache));
    if let Ok(v) = HeaderValue::from_str(b.etag) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    let Some(enc) = ok else {
        return headers;
    };
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(b.path)),
    );
    if let Some(name) = enc.name() {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(name));
    }
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(b.encoded(enc).len()),
    );
    headers
}

async fn asset(req: Request) -> Response {
    let Some(file) = find(req.uri().path()) else {
        return ApiError::NotFound.into_response();
    };
    respond(req.headers(), req.method(), Body::embedded(file))
}

/// The hashed bundle is the hottest path of every page load: `GET`/`HEAD` of an embedded
/// `/assets/*` file is answered here, ahead of the router and its middleware (trace span,
/// per-request label strings, timeout), with the same headers and the same metrics
/// (pre-resolved). Anything else (misses, other methods) goes through the router.
pub struct FastAssets {
    settings: Arc<Settings>,
    /// `[GET, HEAD] x [200, 304]`.
    requests: [[Arc<Counter>; 2]; 2],
    duration: [Arc<Histogram>; 2],
    /// Every hashed file with its answer headers made once, per encoding and scheme.
    prepared: std::collections::HashMap<&'static str, Prepared>,
}

/// One hashed file and its `200` headers (everything but `x-request-id`), indexed by
/// `[https][encoding]`: cloning a made header map costs less than building one per request.
struct Prepared {
    file: &'static Embedded,
    headers: [[HeaderMap; 3]; 2],
}

impl Prepared {
    fn new(file: &'static Embedded) -> Self {
        let make = |https: bool, enc: Encoding| {
            let mut h = headers_for(&Body::embedded(file), Some(enc));
            crate::http::headers::apply(&mut h, https);
            h
        };
        let row =
            |https| [Encoding::Brotli, Encoding::Gzip, Encoding::Identity].map(|e| make(https, e));
        Prepared {
            file,
            headers: [row(false), row(true)],
        }
    }
}

const ASSET_ROUTE: &str = "/assets/{*path}";

impl FastAssets {
    pub fn new(metrics: &Metrics, settings: Arc<Settings>) -> Self {
        let c = |m: &str, s: &str| metrics.http_requests.with(&[ASSET_ROUTE, m, s]);
        let d = |m: &str| metrics.http_duration.with(&[ASSET_ROUTE, m]);
        Self {
            settings,
            requests: [
                [c("GET", "200"), c("GET", "304")],
                [c("HEAD", "200"), c("HEAD", "304")],
            ],
            duration: [d("GET"), d("HEAD")],
            prepared: FILES
                .iter()
                .filter(|f| f.path.starts_with("/assets/"))
                .map(|f| (f.path, Prepared::new(f)))
                .collect(),
        }
    }

    /// Where the connections of this listener send the hashed files' bodies from.
    pub fn pages(&self) -> Option<&'static crate::http::zerocopy::Pages> {
        pages()
    }

    pub fn serve<B>(&self, req: &hyper::Request<B>) -> Option<Response> {
        let path = req.uri().path();
        if !path.starts_with("/assets/") {
            return None;
        }
        let m = match *req.method() {
            Method::GET => 0,
            Method::HEAD => 1,
            _ => return None,
        };
        let started = std::time::Instant::now();
        let prepared = self.prepared.get(path)?;
        let https = crate::auth::served_over_https(req.headers(), &self.settings);
        let file = prepared.file;
        let mut response = if not_modified(req.headers(), file.etag) {
            let mut headers = headers_for(&Body::embedded(file), None);
            crate::http::headers::apply(&mut headers, https);
            (StatusCode::NOT_MODIFIED, headers).into_response()
        } else {
            let enc = negotiate(req.headers(), file.br.is_some(), file.gz.is_some());
            let body = match m {
                0 => axum::body::Body::from(Body::embedded(file).encoded(enc).clone()),
                _ => axum::body::Body::empty(),
            };
            let mut response = Response::new(body);
            *response.headers_mut() = prepared.headers[usize::from(https)][enc as usize].clone();
            response
        };
        let id = match req.headers().get("x-request-id") {
            Some(v) => v.clone(),
            None => {
                let mut buf = uuid::Uuid::encode_buffer();
                let s = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
                HeaderValue::from_str(s).expect("a UUID is a valid header value")
            }
        };
        response.headers_mut().insert("x-request-id", id);
        let s = usize::from(response.status() == StatusCode::NOT_MODIFIED);
        self.requests[m][s].inc();
        self.duration[m].observe(started.elapsed());
        Some(response)
    }
}

/// The hashed files' bodies in one sealed in-memory file, made once per process.
fn pages() -> Option<&'static crate::http::zerocopy::Pages> {
    static PAGES: std::sync::OnceLock<Option<&'static crate::http::zerocopy::Pages>> =
        std::sync::OnceLock::new();
    *PAGES.get_or_init(|| {
        crate::http::zerocopy::Pages::leak(
            FILES
                .iter()
                .filter(|f| f.path.starts_with("/assets/"))
                .flat_map(|f| [Some(f.body), f.br, f.gz])
                .flatten(),
        )
    })
}

async fn serve_index(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
) -> Response {
    index_response(&state, &req)
}

fn index_response(state: &AppState, req: &Request) -> Response {
    let Some(index) = state.web.index.clone() else {
        return ApiError::Unavailable {
            retry_after_secs: 60,
        }
        .into_response();
    };
    let mut response = respond(
        req.headers(),
        req.method(),
        Body {
            path: "/index.html",
            identity: index.body.clone(),
            br: index.br.clone(),
            gz: index.gz.clone(),
            etag: &index.etag,
            cache: "no-cache",
        },
    );
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&index.csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    response
}

/// Unknown routes: JSON 404 under `/api/` and `/assets/`, the app shell for UI routes.
pub async fn fallback(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
) -> Response {
    let path = req.uri().path();
    let ui_route = matches!(*req.method(), Method::GET | Method::HEAD)
        && !path.starts_with("/api/")
        && !path.starts_with("/assets/")
        && path != "/ws"
        && !path.contains('.');
    if ui_route {
        index_response(&state, &req)
    } else {
        ApiError::NotFound.into_response()
    }
}

/// Write the hashed files to `dir` for a bucket or CDN (`emergence assets export DIR`).
pub fn export(dir: &std::path::Path) -> anyhow::Result<usize> {
    let mut n = 0;
    for f in FILES.iter().filter(|f| f.path.starts_with("/assets/")) {
        let target = dir.join(f.path.trim_start_matches('/'));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, f.body)?;
        if let Some(br) = f.br {
            std::fs::write(target.with_extension(format!("{}.br", ext(&target))), br)?;
        }
        if let Some(gz) = f.gz {
            std::fs::write(target.with_extension(format!("{}.gz", ext(&target))), gz)?;
        }
        n += 1;
    }
    Ok(n)
}

fn ext(p: &std::path::Path) -> String {
    p.extension()
        .map(|e| e.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// Paths of every embedded file (for `verify` and tests).
pub fn embedded_paths() -> Vec<&'static str> {
    FILES.iter().map(|f| f.path).collect()
}
