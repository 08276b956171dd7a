//! The WebSocket phase of a verify run: N clients open (welcome, ping/pong), subscribe to one
//! thread and chat for a while; every send is followed until it is acknowledged and fanned out
//! to every subscriber, then each client proves it is still alive with one more ping.
//!
//! While the database is down this still measures what works without it: connections, round
//! trips, and sends acknowledged `queued` (or refused `unavailable` when the instance cannot
//! check membership). A send is settled once it is persisted and delivered everywhere, refused,
//! or queued while the clients have been told the database is down.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use emergence_client::contract::{
    ClientFrameShape,
    http::{NewMember, NewThread},
};
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

use super::{
    CONNECT_TIMEOUT, Ctx, DELIVERY_GRACE, Options, SEND_INTERVAL, SENDS_PER_USER_PER_SEC,
    probe::{self, Identities, Identity, Kind, Refused},
    report::Latency,
    socket::{self, Refusal, Socket},
};

/// Everything the WebSocket phase measured.
#[derive(Debug, Default)]
pub(super) struct Load {
    /// No probe identity: nothing was measured.
    pub setup_error: Option<Refused>,
    /// No thread to chat in: connections were measured, sends were not.
    pub thread_error: Option<Refused>,
    pub attempts: usize,
    /// Connections that failed to open (upgrade, welcome, pong) or broke while open.
    pub failures: Vec<String>,
    /// One ping/pong round trip per connection that opened.
    pub pings: Vec<Duration>,
    /// A `welcome` or `status` frame said the database is down.
    pub db_down_seen: bool,
    pub subscribers: usize,
    /// Subscriptions refused `unavailable` while the database is down (nothing to replay from).
    pub subscribe_deferred: usize,
    /// Subscriptions refused otherwise, or not answered.
    pub subscribe_failures: Vec<String>,
    pub sent: u64,
    pub persisted: u64,
    /// Acknowledged `queued` and not persisted by the end.
    pub queued: u64,
    /// Sends refused with an error frame, by code.
    pub refused: BTreeMap<String, u64>,
    /// Sends with no answer at all by the end.
    pub unanswered: u64,
    pub delivered: u64,
    /// Every error frame, by code.
    pub error_frames: BTreeMap<String, u64>,
    pub rate_limited_frames: u64,
    pub first_receipts: Vec<Duration>,
    pub notes: Vec<String>,
}

impl Load {
    pub(super) fn latency(&self) -> Latency {
        Latency::of(&self.first_receipts)
    }
}

/// A message sent by a client, followed until every subscriber has it.
#[derive(Debug)]
struct Sent {
    sent_at: Instant,
    first_receipt: Option<Duration>,
    deliveries: usize,
    persisted: bool,
    queued: bool,
    refused: Option<String>,
}

/// State shared by the client tasks.
struct Shared {
    thread: String,
    sent: Mutex<HashMap<String, Sent>>,
    error_frames: Mutex<BTreeMap<String, u64>>,
    rate_limited_frames: AtomicU64,
    /// The database state the clients were last told (welcome, then status frames).
    db_down_now: AtomicBool,
    db_down_seen: AtomicBool,
    /// Clients that will send no more: the run waits for all of them before counting.
    done_sending: AtomicU64,
    live: Arc<super::Live>,
}

impl Shared {
    fn note_db(&self, down: bool) {
        self.db_down_now.store(down, Ordering::Release);
        if down {
            self.db_down_seen.store(true, Ordering::Release);
        }
    }
}

pub(super) async fn run_load(ctx: &Ctx, opts: &Options) -> Load {
    let mut load = Load::default();
    ctx.live.set_phase("probe identity");
    let identities = match probe::identities(ctx, opts).await {
        Ok(ids) => ids,
        Err(e) => {
            load.setup_error = Some(e);
            return load;
        }
    };
    load.notes.extend(identities.notes.iter().cloned());
    chat(ctx, opts, &identities, &mut load).await;
    ctx.live.set_phase("logout");
    probe::log_out(ctx, &identities).await;
    load
}

/// The thread to chat in: the given one (for a token or probe account), else a new one with
/// every probe user as a member.
async fn thread(ctx: &Ctx, opts: &Options, ids: &Identities) -> Result<String, Refused> {
    match (&opts.thread, ids.kind) {
        (Some(thread), Kind::Token | Kind::ProbeUser) => return Ok(thread.clone()),
        (Some(_), Kind::Registered) => {}
        (None, _) => {}
    }
    create_thread(ctx, &ids.list).await
}

/// Open every client, subscribe them, chat, and collect the numbers.
async fn chat(ctx: &Ctx, opts: &Options, ids: &Identities, load: &mut Load) {
    let live = ctx.live.clone();
    if opts.thread.is_some() && ids.kind == Kind::Registered {
        load.notes.push(
            "--thread ignored: registered probe users are not its members; a new thread was used"
                .into(),
        );
    }
    live.set_phase("thread");
    let thread = match thread(ctx, opts, ids).await {
        Ok(t) => Some(t),
        Err(e) => {
            load.thread_error = Some(e);
            None
        }
    };

    live.set_phase("connecting");
    live.clients_total
        .store(opts.ws_clients as u64, Ordering::Relaxed);
    load.attempts = opts.ws_clients;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let opens = (0..opts.ws_clients).map(|i| {
        let id = &ids.list[i % ids.list.len()];
        let nonce = format!("verify-{run_id}-{i}-open");
        async move { socket::open(ctx, id, &nonce).await }
    });
    let mut sockets = Vec::new();
    for result in futures_util::future::join_all(opens).await {
        match result {
            Ok(opened) => {
                live.clients.fetch_add(1, Ordering::Relaxed);
                load.pings.push(opened.rtt);
                load.db_down_seen |= opened.db_down;
                sockets.push(opened);
            }
            Err(e) => {
                live.errors.fetch_add(1, Ordering::Relaxed);
                load.failures.push(e);
            }
        }
    }
    let db_down_at_open = sockets.iter().any(|s| s.db_down);
    let mut open = Vec::with_capacity(sockets.len());
    for s in sockets {
        open.push(s.ws);
    }
    if let Some(thread) = &thread {
        live.set_phase("subscribing");
        open = subscribe_all(open, thread, load).await;
    }

    let shared = Arc::new(Shared {
        thread: thread.clone().unwrap_or_default(),
        sent: Mutex::new(HashMap::new()),
        error_frames: Mutex::new(BTreeMap::new()),
        rate_limited_frames: AtomicU64::new(0),
        db_down_now: AtomicBool::new(db_down_at_open),
        db_down_seen: AtomicBool::new(db_down_at_open),
        done_sending: AtomicU64::new(0),
        live: live.clone(),
    });
    let interval = send_interval(opts, ids, load);
    let send_until = tokio::time::Instant::now() + opts.duration;
    let finish = CancellationToken::new();
    let count = open.len().max(1);
    let tasks: Vec<_> = open
        .into_iter()
        .enumerate()
        .map(|(i, ws)| {
            let client = ChatClient {
                ws,
                prefix: format!("verify-{run_id}-{i}"),
                interval,
                offset: interval.mul_f64(i as f64 / count as f64),
                shared: shared.clone(),
                send_until,
                sending: thread.is_some(),
                finish: finish.clone(),
            };
            if !client.sending {
                shared.done_sending.fetch_add(1, Ordering::Release);
            }
            tokio::spawn(client.run())
        })
        .collect();

    live.set_phase("chatting");
    live.start_load(opts.duration);
    tokio::time::sleep_until(send_until).await;
    live.set_phase("delivering");
    // Every client must have made its last send before "all settled" means anything.
    let clients = tasks.len() as u64;
    let deadline = Instant::now() + DELIVERY_GRACE;
    while Instant::now() < deadline
        && !(shared.done_sending.load(Ordering::Acquire) == clients
            && all_settled(&shared, load.subscribers))
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    finish.cancel();
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(Some(why))) => load.failures.push(why),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => load.failures.push(format!("client task failed: {e}")),
            Err(_) => load.failures.push("client did not finish".into()),
        }
    }
    collect(&shared, load);
}

/// Subscribe every socket; the ones whose connection broke are dropped (a connection failure).
async fn subscribe_all(open: Vec<Socket>, thread: &str, load: &mut Load) -> Vec<Socket> {
    let subscribing = open.into_iter().map(|mut ws| async move {
        let r = socket::subscribe(&mut ws, thread).await;
        (ws, r)
    });
    let mut kept = Vec::new();
    for (ws, result) in futures_util::future::join_all(subscribing).await {
        match result {
            Ok(()) => {
                load.subscribers += 1;
                kept.push(ws);
            }
            Err(Refusal::ErrorFrame(code)) if code == "unavailable" => {
                load.subscribe_deferred += 1;
                kept.push(ws);
            }
            Err(Refusal::Ended(why)) => load.failures.push(format!("{why} before subscribed")),
            Err(other) => {
                load.subscribe_failures
                    .push(format!("{other} before subscribed"));
                kept.push(ws);
            }
        }
    }
    kept
}

/// Keep each user under its send budget.
fn send_interval(opts: &Options, ids: &Identities, load: &mut Load) -> Duration {
    let per_user = opts.ws_clients.div_ceil(ids.list.len());
    let interval = SEND_INTERVAL.max(Duration::from_secs_f64(
        per_user as f64 / SENDS_PER_USER_PER_SEC,
    ));
    if interval > SEND_INTERVAL {
        load.notes.push(format!(
            "{per_user} clients share one user: each sends every {:.1} s to stay under {SENDS_PER_USER_PER_SEC} sends/s per user",
            interval.as_secs_f64()
        ));
    }
    interval
}

/// Every send persisted and delivered to every subscriber, refused, or queued while the
/// database is down.
fn all_settled(shared: &Shared, subscribers: usize) -> bool {
    let down = shared.db_down_now.load(Ordering::Acquire);
    let sent = shared.sent.lock().unwrap_or_else(|e| e.into_inner());
    sent.values().all(|s| {
        s.refused.is_some() || (s.persisted && s.deliveries >= subscribers) || (s.queued && down)
    })
}

fn collect(shared: &Shared, load: &mut Load) {
    let sent = shared.sent.lock().unwrap_or_else(|e| e.into_inner());
    load.sent = sent.len() as u64;
    load.delivered = sent.values().map(|s| s.deliveries as u64).sum();
    load.first_receipts = sent.values().filter_map(|s| s.first_receipt).collect();
    load.persisted = sent.values().filter(|s| s.persisted).count() as u64;
    load.queued = sent.values().filter(|s| s.queued && !s.persisted).count() as u64;
    for s in sent.values() {
        match &s.refused {
            Some(code) => *load.refused.entry(code.clone()).or_default() += 1,
            None if !s.persisted && !s.queued => load.unanswered += 1,
            None => {}
        }
    }
    load.db_down_seen |= shared.db_down_seen.load(Ordering::Acquire);
    load.rate_limited_frames = shared.rate_limited_frames.load(Ordering::Relaxed);
    load.error_frames = shared
        .error_frames
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
}

async fn create_thread(ctx: &Ctx, identities: &[Identity]) -> Result<String, Refused> {
    let owner = ctx.api.with_token(&identities[0].token);
    let now = time::OffsetDateTime::now_utc();
    let title = format!(
        "emergence verify {}",
        now.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    );
    let new_thread = NewThread {
        title,
        agents: None,
    };
    let thread = match owner.create_thread(&new_thread).await {
        Ok(thread) => thread.id,
        Err(e) => return Err(Refused::of(ctx, "creating a thread", &e)),
    };
    for member in identities[1..].iter().filter_map(|i| i.username.as_deref()) {
        let member = NewMember {
            username: member.to_string(),
        };
        if let Err(e) = owner.add_member(&thread, &member).await {
            return Err(Refused::of(ctx, "adding a probe user to the thread", &e));
        }
    }
    Ok(thread)
}

/// One subscriber that also sends every `interval` (when there is a thread).
struct ChatClient {
    ws: Socket,
    prefix: String,
    interval: Duration,
    offset: Duration,
    shared: Arc<Shared>,
    /// No send is started at or after this instant.
    send_until: tokio::time::Instant,
    sending: bool,
    finish: CancellationToken,
}

impl ChatClient {
    /// `Some(why)` when the connection failed before the end of the run.
    async fn run(mut self) -> Option<String> {
        let end = self.serve().await;
        self.stop_sending();
        end
    }

    fn stop_sending(&mut self) {
        if std::mem::take(&mut self.sending) {
            self.shared.done_sending.fetch_add(1, Ordering::Release);
        }
    }

    async fn serve(&mut self) -> Option<String> {
        let mut next = tokio::time::Instant::now() + self.offset;
        let mut n = 0u64;
        loop {
            tokio::select! {
                _ = self.finish.cancelled() => return self.end().await,
                _ = tokio::time::sleep_until(next.min(self.send_until)), if self.sending => {
                    if tokio::time::Instant::now() >= self.send_until {
                        self.stop_sending();
                        continue;
                    }
                    n += 1;
                    next += self.interval;
                    if let Err(e) = self.send(n).await {
                        return Some(format!("send failed: {e}"));
                    }
                }
                frame = self.ws.stream.next() => match frame {
                    Some(Ok(Message::Text(t))) => self.on_frame(t.as_str()),
                    Some(Ok(Message::Close(f))) => {
                        return Some(format!("{} before the end of the run", socket::close_reason(f.as_ref())));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Some(format!("{e}")),
                    None => return Some("connection ended early".into()),
                },
            }
        }
    }

    /// Still alive at the end of the run (one more ping answered, while late frames are still
    /// counted), then closed.
    async fn end(&mut self) -> Option<String> {
        self.stop_sending();
        let nonce = format!("{}-end", self.prefix);
        let alive = tokio::time::timeout(CONNECT_TIMEOUT, self.ping_until_pong(&nonce)).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.stream.close(None)).await;
        match alive {
            Ok(Ok(())) => None,
            Ok(Err(why)) => Some(format!("{why} at the end of the run")),
            Err(_) => Some("no pong within 5 s at the end of the run".into()),
        }
    }

    async fn ping_until_pong(&mut self, nonce: &str) -> Result<(), String> {
        let ping = ClientFrameShape::Ping {
            nonce: Some(Value::from(nonce)),
        };
        self.ws
            .send_frame(&ping)
            .await
            .map_err(|e| format!("ping: {e}"))?;
        loop {
            match self.ws.stream.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    if v["type"] == "pong" && v["nonce"] == nonce {
                        return Ok(());
                    }
                    self.on_frame(t.as_str());
                }
                Some(Ok(Message::Close(f))) => return Err(socket::close_reason(f.as_ref())),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("connection ended".into()),
            }
        }
    }

    async fn send(&mut self, n: u64) -> Result<(), tungstenite::Error> {
        let client_id = format!("{}-{n}", self.prefix);
        // Registered before sending: other clients may receive it before this one returns.
        self.shared
            .sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                client_id.clone(),
                Sent {
                    sent_at: Instant::now(),
                    first_receipt: None,
                    deliveries: 0,
                    persisted: false,
                    queued: false,
                    refused: None,
                },
            );
        self.shared.live.sent.fetch_add(1, Ordering::Relaxed);
        let frame = ClientFrameShape::Send {
            thread: self.shared.thread.clone(),
            client_id,
            body: format!("emergence verify probe {n}"),
            agent: None,
            agents: None,
        };
        self.ws.send_frame(&frame).await
    }

    fn on_frame(&self, text: &str) {
        let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let client_id = v["client_id"].as_str().unwrap_or("");
        let shared = &self.shared;
        let sent = || shared.sent.lock().unwrap_or_else(|e| e.into_inner());
        match v["type"].as_str().unwrap_or("") {
            "message" => {
                if let Some(s) = sent().get_mut(client_id) {
                    s.deliveries += 1;
                    s.first_receipt.get_or_insert_with(|| s.sent_at.elapsed());
                    shared.live.delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            "ack" => {
                if let Some(s) = sent().get_mut(client_id) {
                    match v["status"].as_str() {
                        Some("persisted") => s.persisted = true,
                        _ => s.queued = true,
                    }
                }
            }
            "status" => shared.note_db(v["db"] == "down"),
            "error" => {
                let code = v["code"].as_str().unwrap_or("unknown").to_string();
                if code == "rate_limited" {
                    shared.rate_limited_frames.fetch_add(1, Ordering::Relaxed);
                    shared.live.rate_limited.fetch_add(1, Ordering::Relaxed);
                }
                shared.live.errors.fetch_add(1, Ordering::Relaxed);
                if let Some(s) = sent().get_mut(client_id) {
                    s.refused = Some(code.clone());
                }
                *shared
                    .error_frames
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(code)
                    .or_default() += 1;
            }
            _ => {}
        }
    }
}
