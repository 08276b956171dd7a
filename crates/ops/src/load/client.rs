//! What the load generator needs of the target: where it is (HTTP and WebSocket URLs), users,
//! threads and members set up over the API, and the clock and counters every connection shares.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, anyhow, bail};
use emergence_client::{
    Client, StatusCode,
    contract::http::{NewAccount, NewMember, NewThread},
};

use super::{LoadConfig, Mode, Protocol, histogram::Histogram};

// ---------------------------------------------------------------------------------------------
// Shared counters and the clock

/// Wall-clock microseconds, read through a monotonic clock so that every task agrees.
#[derive(Clone, Copy)]
pub(crate) struct Clock {
    pub(crate) base: Instant,
    pub(crate) base_unix_us: u64,
}

impl Clock {
    pub(crate) fn new() -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        Self {
            base: Instant::now(),
            base_unix_us: unix,
        }
    }
    pub(crate) fn unix_us(&self, at: Instant) -> u64 {
        self.base_unix_us + at.saturating_duration_since(self.base).as_micros() as u64
    }
    pub(crate) fn now_us(&self) -> u64 {
        self.unix_us(Instant::now())
    }
}

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) connected: AtomicUsize,
    /// Sender tasks still in their send loop.
    pub(crate) senders_active: AtomicUsize,
    pub(crate) connect_failures: AtomicUsize,
    pub(crate) open: AtomicUsize,
    pub(crate) sent: AtomicU64,
    pub(crate) unsent: AtomicU64,
    pub(crate) persisted: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) closed_by_server: AtomicU64,
    pub(crate) errors_by_code: Mutex<BTreeMap<String, u64>>,
    /// Delivery latencies (fanout: one per delivery, so also the delivery count and, through
    /// `record_at`, the latest receipt time) or ack latencies (persist).
    pub(crate) latency: Histogram,
    pub(crate) connect: Histogram,
    pub(crate) first_error: Mutex<Option<String>>,
}

impl Stats {
    pub(crate) fn error(&self, code: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self
            .errors_by_code
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(code.to_string())
            .or_default() += 1;
    }
    pub(crate) fn connect_failed(&self, why: String) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(why);
        }
    }
}

/// The timestamp a load message carries: the digits after `"lg:` in a frame.
pub(crate) fn stamp(text: &str) -> Option<u64> {
    // Once per delivery in the generator: a searcher built once, not per call.
    static LG: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"lg:"));
    let at = LG.find(text.as_bytes())? + 4;
    let rest = &text.as_bytes()[at..];
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// The value of a short string field, found without parsing the whole frame.
pub(crate) fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("\"{name}\":\"");
    let at = text.find(&key)? + key.len();
    let rest = &text[at..];
    Some(&rest[..rest.find('"')?])
}

pub(crate) fn frame_type(text: &str) -> Option<&str> {
    field(text, "type")
}

// ---------------------------------------------------------------------------------------------
// Target and setup

/// Where to connect: the HTTP base (for setup) and the WebSocket endpoint.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) http: reqwest::Url,
    pub(crate) ws: String,
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Target {
    pub(crate) fn parse(url: &str, ws_path: &str) -> anyhow::Result<Target> {
        let http = reqwest::Url::parse(url).with_context(|| format!("--url {url:?}"))?;
        let scheme = match http.scheme() {
            "http" | "ws" => "ws",
            "https" | "wss" => bail!(
                "{url}: TLS WebSockets are not built into this binary (tokio-tungstenite without a TLS \
                 feature); load-test through a plain-HTTP address or a local TLS-terminating proxy"
            ),
            other => bail!("--url must be http(s)://, not {other}://"),
        };
        let host = http
            .host_str()
            .ok_or_else(|| anyhow!("--url has no host"))?
            .to_string();
        let port = http.port_or_known_default().unwrap_or(80);
        let host_port = match http.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let mut http = http;
        if http.scheme() == "ws" {
            let _ = http.set_scheme("http");
        }
        Ok(Target {
            ws: format!("{scheme}://{host_port}{ws_path}"),
            http,
            host,
            port,
        })
    }

    pub(crate) fn ws_url(&self, token: Option<&str>) -> String {
        match token {
            Some(t) => format!("{}?token={}", self.ws, encode_query(t)),
            None => self.ws.clone(),
        }
    }
}

pub(crate) fn encode_query(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Tokens and the thread a run uses.
pub(crate) struct Plan {
    /// Token of the subscribers (and of idle connections).
    pub(crate) subscriber: Option<String>,
    /// One token per sender.
    pub(crate) senders: Vec<String>,
    pub(crate) thread: Option<String>,
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source works");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A user registered for this run.
pub(crate) struct User {
    pub(crate) token: String,
    pub(crate) username: String,
}

pub(crate) async fn register(api: &Client, tag: &str) -> anyhow::Result<User> {
    let account = NewAccount {
        username: format!("lg_{tag}"),
        password: random_hex(12),
        invite: None,
    };
    match api.register(&account).await {
        Ok(session) => Ok(User {
            token: session.token,
            username: account.username,
        }),
        Err(e) if e.status() == Some(StatusCode::TOO_MANY_REQUESTS) => bail!(
            "registering load-test users was rate limited: start the server with \
             EMERGENCE_AUTH_RATE_PER_MIN=0, use fewer --senders, or pass --token"
        ),
        Err(e) => Err(e).context("registering a load-test user"),
    }
}

pub(crate) async fn create_thread(api: &Client) -> anyhow::Result<String> {
    let thread = NewThread {
        title: "emergence load".into(),
        agents: None,
    };
    let thread = api
        .create_thread(&thread)
        .await
        .context("creating the load-test thread")?;
    Ok(thread.id)
}

pub(crate) async fn add_member(api: &Client, thread: &str, username: &str) -> anyhow::Result<()> {
    let member = NewMember {
        username: username.to_string(),
    };
    api.add_member(thread, &member)
        .await
        .with_context(|| format!("adding {username} to the thread"))
}

/// Register what is missing: one user whose token every subscriber shares (connections per user
/// are unlimited), one user per sender, and a thread they all belong to.
pub(crate) async fn prepare(cfg: &LoadConfig, target: &Target) -> anyhow::Result<Plan> {
    if cfg.protocol == Protocol::Broadcast {
        return Ok(Plan {
            subscriber: None,
            senders: vec![String::new(); cfg.senders],
            thread: None,
        });
    }
    let needs_thread = cfg.mode != Mode::Idle;
    let api = Client::new(target.http.clone())?;
    if let Some(token) = &cfg.token {
        let thread = match (&cfg.thread, needs_thread) {
            (Some(t), _) => Some(t.clone()),
            (None, true) => Some(create_thread(&api.with_token(token)).await?),
            (None, false) => None,
        };
        return Ok(Plan {
            subscriber: Some(token.clone()),
            senders: vec![token.clone(); cfg.senders],
            thread,
        });
    }
    let run = random_hex(4);
    let owner = register(&api, &format!("{run}_owner")).await?;
    let as_owner = api.with_token(&owner.token);
    let thread = match (&cfg.thread, needs_thread) {
        (Some(t), _) => Some(t.clone()),
        (None, true) => Some(create_thread(&as_owner).await?),
        (None, false) => None,
    };
    let mut senders = Vec::with_capacity(cfg.senders);
    if cfg.mode != Mode::Idle {
        for i in 0..cfg.senders {
            let user = register(&api, &format!("{run}_s{i}")).await?;
            if let Some(t) = &thread {
                add_member(&as_owner, t, &user.username).await?;
            }
            senders.push(user.token);
        }
    }
    Ok(Plan {
        subscriber: Some(owner.token),
        senders,
        thread,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::traffic::sent_at;

    #[test]
    fn load_frames_carry_their_timestamp() {
        let f = r#"{"author":{"id":"u"},"body":"lg:1732790000123456:0:7 xxx","type":"message"}"#;
        assert_eq!(stamp(f), Some(1_732_790_000_123_456));
        assert_eq!(stamp(r#"{"type":"ack","status":"persisted"}"#), None);
        assert_eq!(frame_type(f), Some("message"));
        assert_eq!(
            sent_at("lg-ab12-0-5-1732790000123456"),
            Some(1_732_790_000_123_456)
        );
    }

    #[test]
    fn targets_map_http_to_ws() {
        let t = Target::parse("http://127.0.0.1:8080/", "/ws").unwrap();
        assert_eq!(t.ws, "ws://127.0.0.1:8080/ws");
        assert_eq!(
            Client::new(t.http.clone())
                .unwrap()
                .url("/api/threads")
                .as_str(),
            "http://127.0.0.1:8080/api/threads"
        );
        assert_eq!(
            t.ws_url(Some("v1.a+b")),
            "ws://127.0.0.1:8080/ws?token=v1.a%2Bb"
        );
        assert!(Target::parse("ftp://x", "/ws").is_err());
    }
}
