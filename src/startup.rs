//! Building and running the application: `Application::build(settings)` wires every part
//! together and binds the listener; `run_until_stopped()` serves until SIGTERM/SIGINT (or the
//! shutdown handle) and then drains. Tests and `main` start the server only this way.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::Context;
use axum::{
    Router,
    extract::{ConnectInfo, State},
    http::header,
    middleware,
    response::{IntoResponse, Response},
};
use futures_util::{TryFutureExt, future::Either};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto::Builder, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::{
    agents::Agents,
    auth::{Auth, SigningKey},
    db::{Database, DbState, writer::MessageWriter},
    error::ApiError,
    http::linger::{self, DrainBounds},
    limits::Limits,
    metrics::Metrics,
    realtime::{Realtime, protocol},
    settings::Settings,
    state::{AppState, Lifecycle, Phase},
    threads::Membership,
};

/// A built, bound, not yet running server.
pub struct Application {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    state: AppState,
    shutdown: CancellationToken,
    background: CancellationToken,
    writer_task: tokio::task::JoinHandle<()>,
}

/// Stops a running application (the same path as SIGTERM).
#[derive(Clone)]
pub struct ShutdownHandle(CancellationToken);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.0.cancel();
    }
}

impl Application {
    /// Wire everything and bind the listener(s). Never waits for the database.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        settings.validate()?;
        let settings = Arc::new(settings);
        let limits = Limits::new(&settings).context("configuring the limits")?;
        let metrics = Arc::new(Metrics::default());
        let background = CancellationToken::new();
        let db = Database::start(
            settings.database.clone(),
            metrics.clone(),
            background.clone(),
        );
        let auth = Arc::new(Auth::new(
            settings.auth.clone(),
            settings.limits.concurrent_password_hashes,
        ));
        let members = Arc::new(Membership::default());
        // The flow, one way: writer --Stored--> delivery --Stored--> agents; stream commands
        // (cancel, snapshot requests) from realtime to the agents. Nobody calls back.
        let (stored_tx, stored_rx) = mpsc::unbounded_channel();
        let (to_agents, agents_rx) = mpsc::unbounded_channel();
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        // Every newly stored message, for the memory capture (also one way: it only reads).
        let (heard_tx, heard_rx) = mpsc::unbounded_channel();
        // The broker brings the other instances' events as values too (`Inbound`).
        let (broker, inbound) =
            crate::realtime::broker::connect(&settings, metrics.clone(), background.clone())
                .context("configuring the broker")?;
        let realtime = Arc::new(Realtime::new(
            settings.database.ring_size,
            auth.clone(),
            members.clone(),
            metrics.clone(),
            commands_tx,
            broker,
        ));
        if let Some(inbound) = inbound {
            crate::realtime::apply_inbound(realtime.clone(), db.clone(), inbound);
        }
        let writer_stop = CancellationToken::new();
        let (writer, writer_task) = MessageWriter::start(
            db.clone(),
            settings.database.pending_queue,
            settings.database.write_batch,
            metrics.clone(),
            stored_tx,
            writer_stop.clone(),
        );
        realtime.deliver(stored_rx, to_agents, heard_tx);
        let memories = Arc::new(crate::memories::Memories::new(
            settings.memories.clone(),
            db.clone(),
            realtime.clone(),
        ));
        memories.listen(heard_rx, background.clone());
        let agents = Arc::new(Agents::new(
            &settings,
            metrics.clone(),
            realtime.clone(),
            db.clone(),
            writer.clone(),
        ));
        agents.listen(agents_rx, commands_rx, background.clone());
        // Personas and connections stored by admins: read now, then kept current.
        agents.watch_personas(auth.clone(), background.clone());
        // The writer outlives the drain: it stops after the final flush.
        let stop_writer = writer_stop.clone();
        let bg = background.clone();
        tokio::spawn(async move {
            bg.cancelled().await;
            stop_writer.cancel();
        });
        let documents = Arc::new(crate::documents::Documents::new(
            settings.documents.clone(),
            db.clone(),
            realtime.clone(),
            metrics.clone(),
            crate::documents::embed::Embedder::from_settings(&settings, metrics.clone()),
        )?);
        documents.files.check().await?;
        let state = AppState::new(crate::state::Services {
            settings: settings.clone(),
            db,
            writer,
            auth,
            realtime,
            members,
            limits: Arc::new(limits),
            metrics,
            lifecycle: Arc::new(Lifecycle::default()),
            agents,
            web: Arc::new(crate::assets::WebUi::new(&settings)),
            documents,
            memories,
        });
        spawn_background(&state, background.clone());
        let addr = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let metrics_listener = match settings.server.metrics_addr {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .with_context(|| format!("binding metrics address {a}"))?,
            ),
            None => None,
        };
        Ok(Application {
            listener,
            metrics_listener,
            state,
            shutdown: CancellationToken::new(),
            background,
            writer_task,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// Serve until SIGTERM/SIGINT or the shutdown handle, then drain within the deadline.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            listener,
            metrics_listener,
            state,
            shutdown,
            background,
            writer_task,
        } = self;
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            signals.cancel();
        });
        let separate_metrics = metrics_listener.is_some();
        if let Some(l) = metrics_listener {
            let app = Router::new()
                .route("/metrics", axum::routing::get(metrics_endpoint))
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    crate::http::headers::layer,
                ))
                .with_state(state.clone());
            tokio::spawn(serve(
                l,
                app,
                None,
                shutdown.clone(),
                Duration::from_secs(1),
                header_timeout(&state),
                DrainBounds::new(&state.settings.server),
            ));
        }
        let app = router(state.clone(), !separate_metrics);
        state.lifecycle.set(Phase::Serving);
        tracing::info!(
            port = listener.local_addr().map(|a| a.port()).unwrap_or(0),
            "emergence serving"
        );
        let deadline = Duration::from_millis(state.settings.server.shutdown_deadline_ms);
        let fast_assets = Arc::new(crate::assets::FastAssets::new(
            &state.metrics,
            state.settings.clone(),
        ));
        let server = tokio::spawn(serve(
            listener,
            app,
            Some(fast_assets),
            shutdown.clone(),
            deadline,
            header_timeout(&state),
            DrainBounds::new(&state.settings.server),
        ));
        shutdown.cancelled().await;
        let started = Instant::now();
        drain(&state, deadline).await;
        let _ = tokio::time::timeout(deadline.saturating_sub(started.elapsed()), server).await;
        background.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), writer_task).await;
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "emergence stopped"
        );
        Ok(())
    }
}

fn header_timeout(state: &AppState) -> Duration {
    Duration::from_millis(state.settings.server.header_read_timeout_ms)
}

/// Tell clients to reconnect elsewhere, finish agent streams, flush queued messages.
async fn drain(state: &AppState, deadline: Duration) {
    let started = Instant::now();
    state.lifecycle.set(Phase::Draining);
    tracing::info!(connections = state.realtime.connection_count(), "draining");
    let budget = deadline.saturating_sub(Duration::from_millis(500));
    state.agents.drain(budget.mul_f32(0.6)).await;
    state.realtime.close_all(1012, "service restart");
    let left = state
        .writer
        .flush(budget.saturating_sub(started.elapsed()))
        .await;
    if left > 0 {
        tracing::warn!(
            pending = left,
            "shutting down with queued messages (their senders will resend)"
        );
    }
    while state.realtime.connection_count() > 0 && started.elapsed() < budget {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Accept connections until shutdown; then let in-flight requests finish (bounded).
async fn serve(
    listener: TcpListener,
    app: Router,
    fast_assets: Option<Arc<crate::assets::FastAssets>>,
    shutdown: CancellationToken,
    deadline: Duration,
    header_timeout: Duration,
    drain: DrainBounds,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        // Shared with the realtime sweepers once the connection is a WebSocket.
        let socket = Arc::new(crate::http::socket::Socket::new(stream));
        let upgradable = socket.clone();
        let app = app.clone();
        // A connection must send its first request within the header timeout: silent sockets and
        // clients dribbling the HTTP/2 preface are dropped (protocol detection has no deadline
        // of its own).
        let seen_request = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = seen_request.clone();
        let fast = fast_assets.clone();
        let pages = fast_assets.as_ref().and_then(|f| f.pages());
        let service = tower::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            seen.store(true, Ordering::Relaxed);
            // A body answered before it was read is drained after the answer, not reset under
            // the client (crate::http::linger).
            let linger = drain.applies_to(&req);
            if let Some(response) = fast.as_ref().and_then(|f| f.serve(&req)) {
                if linger {
                    linger::drain_in_background(req.into_body(), drain);
                }
                return Either::Left(std::future::ready(Ok(response)));
            }
            req.extensions_mut().insert(ConnectInfo(peer));
            // An HTTP/1 upgrade takes the whole connection: `/ws` writes frames to it directly.
            if req.version() <= hyper::Version::HTTP_11
                && req.headers().contains_key(hyper::header::UPGRADE)
            {
                req.extensions_mut()
                    .insert(crate::http::socket::Upgradable(upgradable.clone()));
            }
            let (req, announced) = drain.wrap(req, linger);
            Either::Right(app.clone().oneshot(req).map_ok(move |mut response| {
                if linger {
                    drain.mark_close_if_undrainable(announced, &mut response);
                }
                response
            }))
        });
        let conn = builder.serve_connection_with_upgrades(
            TokioIo::new(crate::http::zerocopy::Conn::new(socket.clone(), pages)),
            TowerToHyperService::new(service),
        );
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            tokio::pin!(conn);
            tokio::select! {
                _ = &mut conn => return,
                _ = tokio::time::sleep(header_timeout) => {}
            }
            if seen_request.load(Ordering::Relaxed) {
                let _ = conn.await;
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(deadline, graceful.shutdown()).await;
}

/// Background work: signing key, revocation refresh, answer-slot leases, status frames.
fn spawn_background(state: &AppState, stop: CancellationToken) {
    state.limits.answers.spawn_refresher(stop.clone());
    crate::threads::lifecycle::spawn_purge(state.clone(), stop.clone());
    crate::documents::spawn_sweeper(state.documents.clone(), stop.clone());
    // The signing key: configured, or generated once and kept in the database.
    if !state.auth.has_key() {
        let s = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            loop {
                if s.db.wait_up(Duration::from_secs(1)).await {
                    let candidate = SigningKey::generate_hex();
                    match s.db.run(|st| async move { st.kv_get_or_insert("signing_key", &candidate).await }).await {
                        Ok(key) => {
                            s.auth.set_key(SigningKey::new(key.into_bytes()));
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "could not load the signing key yet"),
                    }
                }
                if stop.is_cancelled() {
                    return;
                }
            }
        });
    }
    // Revocations: refreshed from the database so every instance honours a logout within 5 s.
    let s = state.clone();
    let stop2 = stop.clone();
    tokio::spawn(async move {
        let every = Duration::from_millis(s.settings.database.revocation_refresh_ms);
        let mut since = crate::db::now_ms() - s.settings.auth.token_ttl_secs as i64 * 1000;
        loop {
            if s.db.is_up() {
                let (from, now) = (since, crate::db::now_ms());
                if let Ok(rows) =
                    s.db.run(|st| async move { st.revoked_since(from, now).await })
                        .await
                {
                    for (sid, _, expires) in rows {
                        if s.auth.revocations.insert(&sid, expires) {
                            s.realtime.close_session(&sid);
                        }
                    }
                    // Overlap windows: clocks of instances differ a little.
                    since = now - 10_000;
                }
            }
            tokio::select! {
                _ = stop2.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    });
    // Return memory freed by bursts (reconnect storms, outage backlogs) to the system, so RSS
    // tracks what is really in use (jemalloc's background thread does this on its own).
    #[cfg(not(feature = "jemalloc"))]
    let trim_stop = stop.clone();
    #[cfg(not(feature = "jemalloc"))]
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = trim_stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(30)) => crate::memory::return_free_memory(),
            }
        }
    });
    // Status frames on every database state change.
    let s = state.clone();
    tokio::spawn(async move {
        let mut rx = s.db.watch();
        let mut last = *rx.borrow();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = rx.changed() => if changed.is_err() { return },
            }
            let now = *rx.borrow_and_update();
            if now != last {
                last = now;
                let broker = s.realtime.broker_state().as_str();
                s.realtime
                    .broadcast_all(&protocol::status(now.as_str(), broker));
                if now == DbState::Up {
                    tracing::info!("database up: flushing queued messages");
                }
            }
        }
    });
}

/// The HTTP surface. Pure: no sockets, so most behaviour is testable with `oneshot`.
pub fn router(state: AppState, with_metrics: bool) -> Router {
    let api = Router::new()
        .merge(crate::auth::routes())
        .merge(crate::threads::routes())
        .merge(crate::search::routes())
        .merge(crate::export::routes())
        .merge(crate::messages::routes())
        .merge(crate::agents::routes())
        .merge(crate::agents::admin::routes())
        .merge(crate::usage::routes())
        .merge(crate::documents::routes())
        .merge(crate::memories::routes())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::http::middleware::admission,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::http::json::MAX_BODY_BYTES,
        ));

    let mut app = Router::new()
        .merge(crate::health::routes())
        .merge(crate::realtime::routes())
        .merge(crate::openapi::routes())
        .merge(api)
        .merge(crate::assets::routes());
    if with_metrics {
        app = app.route("/metrics", axum::routing::get(metrics_endpoint));
    }
    app.fallback(crate::assets::fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::http::middleware::record_metrics,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(crate::http::trace::layer())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::http::headers::layer,
        ))
        .with_state(state)
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Prometheus text exposition.
///
/// On the main listener unless a separate metrics address is configured.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "health",
    responses((status = 200, description = "Prometheus text format 0.0.4",
        content_type = "text/plain; version=0.0.4; charset=utf-8", body = String))
)]
pub(crate) async fn metrics_endpoint(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
