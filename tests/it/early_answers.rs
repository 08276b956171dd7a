//! Early answers on kept-alive connections: a request refused before its body was read (413 for
//! an announced oversize body, 401 without a token, 415 for a non-JSON type, 429 over a limit)
//! gets its answer while the client is still sending, then the server reads and discards the
//! rest (bounded in bytes and time, like nginx's lingering close) instead of resetting the
//! connection under the client. A drained connection serves the next request; one whose body
//! goes past the bound is closed, but only after the answer could be read.
//!
//! Raw sockets: the test controls exactly when each body byte leaves, and reads alongside, as a
//! browser uploading a file does.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    task::JoinHandle,
};

use crate::support::{TestApp, TestUser, spawn_app_with};

const MB: usize = 1_000_000;
/// The drain bounds these tests run with (production: 8 MiB and 5 s).
const DRAIN_BYTES: usize = 8 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(2);

async fn app() -> TestApp {
    spawn_app_with(|s| {
        s.server.early_answer_drain_bytes = DRAIN_BYTES;
        s.server.early_answer_drain_ms = DRAIN_TIME.as_millis() as u64;
    })
    .await
}

/// How the client sends its body.
#[derive(Clone, Copy)]
enum Pace {
    /// As fast as the socket takes it, 64 KiB writes.
    Fast,
    /// `chunk` bytes every `every`.
    Slow { chunk: usize, every: Duration },
}

/// One answer read off the socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
    /// Body bytes the client had sent when the whole answer had arrived.
    sent_by_then: usize,
    /// From the first body byte to the whole answer.
    after: Duration,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn closes(&self) -> bool {
        self.head.contains("\r\nconnection: close")
    }
}

/// What the uploading half saw.
struct Upload {
    sent: usize,
    error: Option<std::io::Error>,
    wr: OwnedWriteHalf,
}

/// A kept-alive HTTP/1.1 connection: requests are written as the test says, answers read as they
/// come.
struct Conn {
    rd: OwnedReadHalf,
    wr: Option<OwnedWriteHalf>,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(port: u16) -> Conn {
        let (rd, wr) = TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap()
            .into_split();
        Conn {
            rd,
            wr: Some(wr),
            buf: Vec::new(),
        }
    }

    /// Send `head` (request line and headers, no blank line) and start streaming `body` at
    /// `pace`; the upload runs on while the caller reads.
    async fn start_upload(
        &mut self,
        head: &str,
        body: Vec<u8>,
        pace: Pace,
    ) -> (JoinHandle<Upload>, Arc<AtomicUsize>, Instant) {
        let len = body.len();
        let mut wr = self.wr.take().expect("no upload already running");
        let head = format!("{head}Content-Length: {len}\r\n\r\n");
        wr.write_all(head.as_bytes()).await.unwrap();
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = sent.clone();
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let (chunk, every) = match pace {
                Pace::Fast => (64 * 1024, None),
                Pace::Slow { chunk, every } => (chunk, Some(every)),
            };
            let mut done = 0;
            let mut error = None;
            while done < len {
                let n = chunk.min(len - done);
                if let Err(e) = wr.write_all(&body[done..done + n]).await {
                    error = Some(e);
                    break;
                }
                done += n;
                counter.store(done, Ordering::SeqCst);
                if let Some(every) = every {
                    tokio::time::sleep(every).await;
                }
            }
            Upload {
                sent: done,
                error,
                wr,
            }
        });
        (task, sent, started)
    }

    /// Take back the write half once an upload has finished.
    fn restore(&mut self, upload: Upload) {
        self.wr = Some(upload.wr);
    }

    /// Read one whole answer (headers and a Content-Length body) within `wait`.
    async fn answer(
        &mut self,
        wait: Duration,
        sent: &AtomicUsize,
        started: Instant,
    ) -> Result<Answer, String> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some((status, head, body_at, len)) = parse_head(&self.buf)
                && self.buf.len() >= body_at + len
            {
                let body = self.buf[body_at..body_at + len].to_vec();
                self.buf.drain(..body_at + len);
                return Ok(Answer {
                    status,
                    head,
                    body,
                    sent_by_then: sent.load(Ordering::SeqCst),
                    after: started.elapsed(),
                });
            }
            match tokio::time::timeout_at(deadline, self.rd.read(&mut chunk)).await {
                Err(_) => {
                    return Err(format!(
                        "no whole answer within {wait:?}: {:?}",
                        self.text()
                    ));
                }
                Ok(Ok(0)) => {
                    return Err(format!("closed before a whole answer: {:?}", self.text()));
                }
                Ok(Err(e)) => return Err(format!("{e} before a whole answer: {:?}", self.text())),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Send a plain request with no body and read its answer.
    async fn request(&mut self, head: &str) -> Result<Answer, String> {
        let wr = self.wr.as_mut().expect("the write half");
        wr.write_all(format!("{head}\r\n").as_bytes())
            .await
            .map_err(|e| format!("writing the next request: {e}"))?;
        let none = AtomicUsize::new(0);
        self.answer(Duration::from_secs(5), &none, Instant::now())
            .await
    }

    /// How long until the server closes the connection (end of stream or reset), within `wait`.
    async fn closed_within(&mut self, wait: Duration) -> Option<Duration> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + wait;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout_at(deadline, self.rd.read(&mut chunk)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf[..self.buf.len().min(400)]).into_owned()
    }
}

/// Status, lower-cased head, where the body starts and its Content-Length.
fn parse_head(raw: &[u8]) -> Option<(u16, String, usize, usize)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Some((status, head, end + 4, len))
}

fn post_head(app: &TestApp, path: &str, token: Option<&str>, content_type: &str) -> String {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: {content_type}\r\n",
        app.port
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head
}

fn list_threads(app: &TestApp, user: &TestUser) -> String {
    format!(
        "GET /api/threads HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n",
        app.port, user.token
    )
}

/// Upload `len` bytes to `head` on a fresh kept-alive connection and read the early answer; the
/// answer must be whole and carry the contract's error body with `code`.
async fn early_answer(
    app: &TestApp,
    head: &str,
    len: usize,
    pace: Pace,
    status: u16,
    code: &str,
) -> (Conn, JoinHandle<Upload>, Answer) {
    let mut conn = Conn::open(app.port).await;
    let (upload, sent, started) = conn.start_upload(head, vec![b' '; len], pace).await;
    let answer = conn
        .answer(Duration::from_secs(5), &sent, started)
        .await
        .unwrap_or_else(|e| panic!("{head}: the early answer was not readable: {e}"));
    assert_eq!(answer.status, status, "{head}: {answer:?}");
    assert_eq!(answer.json()["error"]["code"], code, "{answer:?}");
    assert!(
        answer.json()["error"]["message"].is_string(),
        "the contract's error body: {answer:?}"
    );
    (conn, upload, answer)
}

/// The upload finishes (every byte accepted by the server), and the same connection then
/// serves the next request.
async fn drained_and_kept_alive(
    app: &TestApp,
    user: &TestUser,
    mut conn: Conn,
    upload: JoinHandle<Upload>,
    len: usize,
    what: &str,
) {
    let upload = tokio::time::timeout(Duration::from_secs(10), upload)
        .await
        .unwrap_or_else(|_| panic!("{what}: the upload never finished"))
        .unwrap();
    assert!(
        upload.error.is_none(),
        "{what}: the server refused the rest of the body: {:?}",
        upload.error
    );
    assert_eq!(upload.sent, len);
    conn.restore(upload);
    let next = conn
        .request(&list_threads(app, user))
        .await
        .unwrap_or_else(|e| panic!("{what}: no answer to the next request on the connection: {e}"));
    assert_eq!(next.status, 200, "{what}: {next:?}");
    assert!(next.json()["threads"].is_array(), "{next:?}");
}

#[tokio::test]
async fn a_3_mb_body_gets_a_readable_413_and_the_kept_alive_connection_serves_the_next_request() {
    let app = app().await;
    let alice = app.register("alice").await;
    let head = post_head(&app, "/api/threads", Some(&alice.token), "application/json");
    for round in 0..3 {
        let (conn, upload, answer) =
            early_answer(&app, &head, 3 * MB, Pace::Fast, 413, "too_large").await;
        eprintln!(
            "3 MB, round {round}: 413 after {:?}, {} bytes sent by then",
            answer.after, answer.sent_by_then
        );
        assert!(!answer.closes(), "a drainable body keeps the connection");
        drained_and_kept_alive(&app, &alice, conn, upload, 3 * MB, "3 MB").await;
    }
}

#[tokio::test]
async fn a_30_mb_body_gets_a_readable_413_before_the_connection_is_closed() {
    let app = app().await;
    let alice = app.register("alice").await;
    let head = post_head(&app, "/api/threads", Some(&alice.token), "application/json");
    for round in 0..3 {
        let (mut conn, upload, answer) =
            early_answer(&app, &head, 30 * MB, Pace::Fast, 413, "too_large").await;
        assert!(
            answer.closes(),
            "more than the drain bound announced: the answer says the connection ends {answer:?}"
        );
        assert!(
            answer.sent_by_then < 30 * MB,
            "the answer came while the client was still sending"
        );
        let closed = conn
            .closed_within(DRAIN_TIME + Duration::from_secs(3))
            .await
            .expect("the connection is closed once the drain bound is reached");
        let upload = upload.await.unwrap();
        eprintln!(
            "30 MB, round {round}: 413 after {:?} with {} bytes sent; closed {closed:?} later; \
             the client got {} bytes out ({:?})",
            answer.after,
            answer.sent_by_then,
            upload.sent,
            upload.error.as_ref().map(|e| e.kind())
        );
        assert!(
            upload.sent >= DRAIN_BYTES,
            "the server read at least the drain bound before closing ({} bytes)",
            upload.sent
        );
    }
}

#[tokio::test]
async fn a_slow_body_gets_its_413_at_once_and_the_connection_is_kept_when_it_ends_within_the_drain_time()
 {
    let app = app().await;
    let alice = app.register("alice").await;
    let head = post_head(&app, "/api/threads", Some(&alice.token), "application/json");
    // 1.5 MB in 64 KiB pieces every 40 ms: about a second.
    let pace = Pace::Slow {
        chunk: 64 * 1024,
        every: Duration::from_millis(40),
    };
    let len = 3 * MB / 2;
    let (conn, upload, answer) = early_answer(&app, &head, len, pace, 413, "too_large").await;
    eprintln!(
        "slow 1.5 MB: 413 after {:?}, {} bytes sent by then",
        answer.after, answer.sent_by_then
    );
    assert!(
        answer.after < Duration::from_millis(500) && answer.sent_by_then < len / 2,
        "the answer does not wait for the body: {answer:?}"
    );
    drained_and_kept_alive(&app, &alice, conn, upload, len, "slow 1.5 MB").await;
}

#[tokio::test]
async fn a_slow_body_past_the_drain_time_gets_its_413_first_and_the_connection_closes_after_the_drain_time()
 {
    let app = app().await;
    let alice = app.register("alice").await;
    let head = post_head(&app, "/api/threads", Some(&alice.token), "application/json");
    // 3 MB in 32 KiB pieces every 50 ms: about 4.6 s, more than the drain time.
    let pace = Pace::Slow {
        chunk: 32 * 1024,
        every: Duration::from_millis(50),
    };
    let (mut conn, upload, answer) =
        early_answer(&app, &head, 3 * MB, pace, 413, "too_large").await;
    assert!(answer.after < Duration::from_millis(500), "{answer:?}");
    let closed = conn
        .closed_within(DRAIN_TIME + Duration::from_secs(3))
        .await
        .expect("a body still coming after the drain time gets the connection closed");
    eprintln!(
        "slow 3 MB: 413 after {:?}; connection closed {closed:?} after the answer",
        answer.after
    );
    assert!(
        closed + Duration::from_millis(200) >= DRAIN_TIME,
        "the server kept reading for the drain time before closing ({closed:?})"
    );
    upload.abort();
}

#[tokio::test]
async fn a_401_and_a_415_with_3_mb_bodies_and_a_429_with_a_body_are_readable_and_keep_the_connection()
 {
    let app = spawn_app_with(|s| {
        s.server.early_answer_drain_bytes = DRAIN_BYTES;
        s.server.early_answer_drain_ms = DRAIN_TIME.as_millis() as u64;
        s.limits.thread_rate_per_min = 1;
        s.limits.thread_burst = 1;
    })
    .await;
    let alice = app.register("alice").await;

    let no_token = post_head(&app, "/api/threads", None, "application/json");
    let (conn, upload, answer) =
        early_answer(&app, &no_token, 3 * MB, Pace::Fast, 401, "unauthorized").await;
    eprintln!(
        "401: after {:?}, {} bytes sent",
        answer.after, answer.sent_by_then
    );
    drained_and_kept_alive(&app, &alice, conn, upload, 3 * MB, "401").await;

    let text = post_head(&app, "/api/threads", Some(&alice.token), "text/plain");
    let (conn, upload, answer) =
        early_answer(&app, &text, 3 * MB, Pace::Fast, 415, "unsupported_type").await;
    eprintln!(
        "415: after {:?}, {} bytes sent",
        answer.after, answer.sent_by_then
    );
    drained_and_kept_alive(&app, &alice, conn, upload, 3 * MB, "415").await;

    // The one thread of the minute, then the limit. A thread-creation 429 is decided once the
    // body has been read and parsed (a malformed body is a 400 and takes nothing from the
    // limit), so a body up to 1 MiB is read whole before the 429 and there is nothing left to
    // drain; a larger body is refused by its announced size first (413, drained as above).
    app.create_thread(&alice, "the only one this minute").await;
    let json = post_head(&app, "/api/threads", Some(&alice.token), "application/json");
    let body = padded_object(r#"{"title":"one too many""#, 900_000);
    let mut conn = Conn::open(app.port).await;
    let (upload, sent, started) = conn.start_upload(&json, body, Pace::Fast).await;
    let answer = conn
        .answer(Duration::from_secs(5), &sent, started)
        .await
        .unwrap();
    assert_eq!(answer.status, 429, "{answer:?}");
    assert_eq!(answer.json()["error"]["code"], "rate_limited");
    assert!(answer.head.contains("\r\nretry-after:"), "{answer:?}");
    eprintln!(
        "429: after {:?}, {} bytes sent",
        answer.after, answer.sent_by_then
    );
    drained_and_kept_alive(&app, &alice, conn, upload, 900_000, "429").await;
    let (conn, upload, _) = early_answer(&app, &json, 3 * MB, Pace::Fast, 413, "too_large").await;
    drained_and_kept_alive(&app, &alice, conn, upload, 3 * MB, "413 on a limited route").await;
}

/// A JSON object of exactly `size` bytes: `prefix` (an unclosed object), spaces, `}`.
fn padded_object(prefix: &str, size: usize) -> Vec<u8> {
    let mut v = prefix.as_bytes().to_vec();
    v.resize(size - 1, b' ');
    v.push(b'}');
    v
}
