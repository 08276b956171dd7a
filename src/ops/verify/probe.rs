//! Who verify probes as, best first: the operator's session token (checked with `GET /api/me`,
//! which like the WebSocket handshake needs no database), then the probe account (a login,
//! which needs the database), and only as the last resort throwaway users registered for the run.
//! What verify logged in or registered itself is logged out at the end.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{CLIENTS_PER_USER, Ctx, Options, ProbeUser, api_error, error_chain};
use crate::settings::Secret;

/// One identity the WebSocket clients use.
pub(super) struct Identity {
    pub token: String,
    /// Known when verify registered it: added to the thread by name.
    pub username: Option<String>,
    /// Logged in or registered by verify: logged out at the end, and its token may go in URLs
    /// (the browser's way) since it is revoked right after.
    pub ours: bool,
}

/// How the probe got its identities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Token,
    ProbeUser,
    Registered,
}

/// The identities of one run, and what to tell the operator about them.
pub(super) struct Identities {
    pub list: Vec<Identity>,
    pub kind: Kind,
    pub notes: Vec<String>,
}

/// Something the probe could not do, and whether the answer was a 503 (which, with the database
/// down, blames the database rather than the row).
#[derive(Debug, Clone)]
pub(super) struct Refused {
    pub why: String,
    pub unavailable: bool,
}

impl Refused {
    pub(super) fn new(what: &str, status: StatusCode, body: &Value) -> Refused {
        Refused {
            why: format!("{what}: HTTP {} {}", status.as_u16(), api_error(body)),
            unavailable: status == StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub(super) fn failed(what: &str, e: &reqwest::Error) -> Refused {
        Refused {
            why: format!("{what}: {}", error_chain(e)),
            unavailable: false,
        }
    }
}

/// The token, else the probe account, else registered users (one per [`CLIENTS_PER_USER`]).
pub(super) async fn identities(ctx: &Ctx, opts: &Options) -> Result<Identities, Refused> {
    let mut notes = Vec::new();
    if let Some(token) = &opts.token {
        match check_token(ctx, token).await {
            TokenCheck::Valid(name) => {
                return Ok(Identities {
                    list: vec![Identity {
                        token: token.expose().to_string(),
                        username: None,
                        ours: false,
                    }],
                    kind: Kind::Token,
                    notes: vec![format!("probe identity: the given token (user {name})")],
                });
            }
            TokenCheck::Refused(why) if opts.probe_user.is_none() => {
                return Err(Refused {
                    why: format!("the probe token was refused ({why}): expired or revoked"),
                    unavailable: false,
                });
            }
            TokenCheck::Refused(why) => {
                notes.push(format!(
                    "the probe token was refused ({why}); logged in as the probe user instead"
                ));
            }
        }
    }
    if let Some(user) = &opts.probe_user {
        let token = login(ctx, user).await?;
        notes.push(format!("probe identity: probe user {}", user.username));
        return Ok(Identities {
            list: vec![Identity {
                token,
                username: Some(user.username.clone()),
                ours: true,
            }],
            kind: Kind::ProbeUser,
            notes,
        });
    }
    let users = opts.ws_clients.div_ceil(CLIENTS_PER_USER).max(1);
    let mut list = Vec::with_capacity(users);
    for _ in 0..users {
        list.push(register(ctx).await?);
    }
    notes.push(format!(
        "probe identity: {users} user(s) registered for this run (give --token or --probe-user \
         to measure WebSockets during a database outage)"
    ));
    Ok(Identities {
        list,
        kind: Kind::Registered,
        notes,
    })
}

enum TokenCheck {
    /// The username it belongs to.
    Valid(String),
    Refused(String),
}

/// `GET /api/me` answers from the token alone. Anything but a 401 leaves the decision to the
/// WebSocket handshake.
async fn check_token(ctx: &Ctx, token: &Secret) -> TokenCheck {
    let req = ctx.http.get(ctx.url("/api/me")).bearer_auth(token.expose());
    let r = match ctx.send(req).await {
        Ok(r) => r,
        Err(e) => return TokenCheck::Valid(format!("unchecked: {}", error_chain(&e))),
    };
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if status == StatusCode::UNAUTHORIZED {
        return TokenCheck::Refused(format!("HTTP 401 {}", api_error(&body)));
    }
    TokenCheck::Valid(body["username"].as_str().unwrap_or("unknown").to_string())
}

async fn login(ctx: &Ctx, user: &ProbeUser) -> Result<String, Refused> {
    let what = format!("logging in the probe user {}", user.username);
    let req = ctx
        .http
        .post(ctx.url("/api/auth/login"))
        .json(&json!({"username": user.username, "password": user.password.expose()}));
    let r = ctx
        .send(req)
        .await
        .map_err(|e| Refused::failed(&what, &e))?;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    match body["token"].as_str().filter(|_| status == StatusCode::OK) {
        Some(token) => Ok(token.to_string()),
        None => Err(Refused::new(&what, status, &body)),
    }
}

async fn register(ctx: &Ctx) -> Result<Identity, Refused> {
    let what = "registering a probe user";
    let username = format!(
        "verify-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let password = uuid::Uuid::new_v4().simple().to_string();
    let req = ctx
        .http
        .post(ctx.url("/api/auth/register"))
        .json(&json!({"username": username, "password": password}));
    let r = ctx.send(req).await.map_err(|e| Refused::failed(what, &e))?;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    match body["token"]
        .as_str()
        .filter(|_| status == StatusCode::CREATED)
    {
        Some(token) => Ok(Identity {
            token: token.to_string(),
            username: Some(username),
            ours: true,
        }),
        None => Err(Refused::new(what, status, &body)),
    }
}

/// End the sessions verify opened itself.
pub(super) async fn log_out(ctx: &Ctx, identities: &Identities) {
    for id in identities.list.iter().filter(|i| i.ours) {
        let req = ctx
            .http
            .post(ctx.url("/api/auth/logout"))
            .bearer_auth(&id.token);
        let _ = ctx.send(req).await;
    }
}
