//! The HTTP API: one method per route of `docs/protocol.md`, typed with the contract's bodies.
//! [`Client::request`] gives the raw request for callers that check the wire itself (the tests,
//! verify's web-UI rows).

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    Error,
    contract::{
        ErrorBody, MessageView, UserView,
        http::{
            AgentList, Credentials, HistoryQuery, MessageList, NewAccount, NewMember, NewThread,
            PostMessage, QueuedMessage, Readiness, Session, ThreadList, ThreadView,
        },
    },
};

/// A client of one Emergence deployment, optionally signed in with a session token.
#[derive(Debug, Clone)]
pub struct Client {
    base: Url,
    http: reqwest::Client,
    token: Option<String>,
}

/// What `POST /api/threads/{id}/messages` did with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    /// 201: stored now.
    Created(MessageView),
    /// 200: stored before, under the same `client_id`.
    Existing(MessageView),
    /// 202: the database is down; the message is queued.
    Queued(QueuedMessage),
}

impl Client {
    /// A client of the deployment at `base` (its origin; paths are joined to it), with a 30 s
    /// timeout per request and pooled connections reused only while idle for under 2 s.
    pub fn new(base: Url) -> Result<Client, Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            // The server closes a connection idle for 5 s (`server.header_read_timeout_ms`):
            // never reuse one idle that long.
            .pool_idle_timeout(Duration::from_secs(2))
            .build()?;
        Ok(Client::with_http(base, http))
    }

    /// A client that sends through `http` (its own timeouts, user agent, protocol choice).
    pub fn with_http(base: Url, http: reqwest::Client) -> Client {
        Client {
            base,
            http,
            token: None,
        }
    }

    /// The same client, signed in with `token` (sent as `Authorization: Bearer`).
    pub fn with_token(&self, token: impl Into<String>) -> Client {
        Client {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    /// The session token, if signed in.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The deployment's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The underlying HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `path` (with its query, if any) on the deployment.
    pub fn url(&self, path: &str) -> Url {
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }

    /// A raw request to `path`, with the bearer token when signed in.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self.http.request(method, self.url(path));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// `POST /api/auth/register` (201).
    pub async fn register(&self, account: &NewAccount) -> Result<Session, Error> {
        let r = self.post("/api/auth/register", account).await?;
        decode(expect(r, StatusCode::CREATED).await?).await
    }

    /// `POST /api/auth/login` (200).
    pub async fn login(&self, credentials: &Credentials) -> Result<Session, Error> {
        let r = self.post("/api/auth/login", credentials).await?;
        decode(expect(r, StatusCode::OK).await?).await
    }

    /// `POST /api/auth/logout` (204): revokes this client's session.
    pub async fn logout(&self) -> Result<(), Error> {
        let r = self
            .request(Method::POST, "/api/auth/logout")
            .send()
            .await?;
        expect(r, StatusCode::NO_CONTENT).await.map(drop)
    }

    /// `GET /api/me`: answered from the token alone (no database).
    pub async fn me(&self) -> Result<UserView, Error> {
        self.get_json("/api/me").await
    }

    /// `GET /api/agents`.
    pub async fn agents(&self) -> Result<AgentList, Error> {
        self.get_json("/api/agents").await
    }

    /// `POST /api/threads` (201).
    pub async fn create_thread(&self, thread: &NewThread) -> Result<ThreadView, Error> {
        let r = self.post("/api/threads", thread).await?;
        decode(expect(r, StatusCode::CREATED).await?).await
    }

    /// `GET /api/threads`: the caller's threads, most recent activity first.
    pub async fn threads(&self) -> Result<ThreadList, Error> {
        self.get_json("/api/threads").await
    }

    /// `GET /api/threads/{id}`.
    pub async fn thread(&self, id: &str) -> Result<ThreadView, Error> {
        self.get_json(&format!("/api/threads/{id}")).await
    }

    /// `POST /api/threads/{id}/members` (204, owner only).
    pub async fn add_member(&self, thread: &str, member: &NewMember) -> Result<(), Error> {
        let r = self
            .post(&format!("/api/threads/{thread}/members"), member)
            .await?;
        expect(r, StatusCode::NO_CONTENT).await.map(drop)
    }

    /// `GET /api/threads/{id}/messages`: a page of the history, in ascending `seq`.
    pub async fn messages(&self, thread: &str, page: &HistoryQuery) -> Result<MessageList, Error> {
        let r = self
            .request(Method::GET, &format!("/api/threads/{thread}/messages"))
            .query(page)
            .send()
            .await?;
        decode(expect(r, StatusCode::OK).await?).await
    }

    /// `POST /api/threads/{id}/messages`: stored (201), stored before (200) or queued (202).
    pub async fn post_message(&self, thread: &str, message: &PostMessage) -> Result<Posted, Error> {
        let r = self
            .post(&format!("/api/threads/{thread}/messages"), message)
            .await?;
        match r.status() {
            StatusCode::CREATED => Ok(Posted::Created(decode(r).await?)),
            StatusCode::OK => Ok(Posted::Existing(decode(r).await?)),
            StatusCode::ACCEPTED => Ok(Posted::Queued(decode(r).await?)),
            _ => Err(refusal(r).await),
        }
    }

    /// `GET /healthz`: whether the process is alive (200 `{"status":"ok"}`).
    pub async fn healthz(&self) -> Result<Response, Error> {
        Ok(self.request(Method::GET, "/healthz").send().await?)
    }

    /// `GET /readyz`: 200 (ready, degraded) or 503 (starting, draining), both with a body.
    pub async fn readyz(&self) -> Result<(StatusCode, Readiness), Error> {
        let r = self.request(Method::GET, "/readyz").send().await?;
        let status = r.status();
        match status {
            StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE => Ok((status, decode(r).await?)),
            _ => Err(refusal(r).await),
        }
    }

    /// The Prometheus text at `url` (`/metrics` of the deployment when `None`).
    pub async fn metrics_text(&self, url: Option<&Url>) -> Result<String, Error> {
        let url = url.cloned().unwrap_or_else(|| self.url("/metrics"));
        let r = expect(self.http.get(url).send().await?, StatusCode::OK).await?;
        Ok(r.text().await?)
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        let r = self.request(Method::GET, path).send().await?;
        decode(expect(r, StatusCode::OK).await?).await
    }

    async fn post(&self, path: &str, body: &impl Serialize) -> Result<Response, Error> {
        Ok(self.request(Method::POST, path).json(body).send().await?)
    }
}

/// The answer when it has the `want` status, else the refusal it is.
async fn expect(r: Response, want: StatusCode) -> Result<Response, Error> {
    if r.status() == want {
        Ok(r)
    } else {
        Err(refusal(r).await)
    }
}

/// An answer the call did not expect, with the contract's error body when it has one.
pub(crate) async fn refusal(r: Response) -> Error {
    let status = r.status();
    let raw = r.text().await.unwrap_or_default();
    let body = serde_json::from_str::<ErrorBody>(&raw).ok();
    Error::Status { status, body, raw }
}

async fn decode<T: DeserializeOwned>(r: Response) -> Result<T, Error> {
    let bytes = r.bytes().await?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
}
