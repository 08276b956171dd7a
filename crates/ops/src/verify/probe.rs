//! Who verify probes as, best first: the operator's session token (checked with `GET /api/me`,
//! which like the WebSocket handshake needs no database), then the probe account (a login,
//! which needs the database), and only as the last resort throwaway users registered for the run.
//! What verify logged in or registered itself is logged out at the end.

use emergence_client::{
    Error, StatusCode,
    contract::{
        accounts::Status,
        http::{Credentials, NewAccount},
    },
};

use super::{CLIENTS_PER_USER, Ctx, Options, ProbeUser};
use crate::Secret;

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
    /// What a typed call's error says about `what` (a refusal's 429 is counted).
    pub(super) fn of(ctx: &Ctx, what: &str, e: &Error) -> Refused {
        ctx.count_error(e);
        Refused {
            why: format!("{what}: {e}"),
            unavailable: e.status() == Some(StatusCode::SERVICE_UNAVAILABLE),
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
    match ctx.api.with_token(token.expose()).me().await {
        Ok(me) => TokenCheck::Valid(me.username),
        Err(e) if e.status() == Some(StatusCode::UNAUTHORIZED) => {
            TokenCheck::Refused(format!("HTTP 401 {}", e.api_error()))
        }
        Err(e @ Error::Transport(_)) => TokenCheck::Valid(format!("unchecked: {e}")),
        Err(e) => {
            ctx.count_error(&e);
            TokenCheck::Valid("unknown".to_string())
        }
    }
}

async fn login(ctx: &Ctx, user: &ProbeUser) -> Result<String, Refused> {
    let what = format!("logging in the probe user {}", user.username);
    let credentials = Credentials {
        username: user.username.clone(),
        password: user.password.expose().to_string(),
    };
    match ctx.api.login(&credentials).await {
        Ok(session) => Ok(session.token),
        Err(e) => Err(Refused::of(ctx, &what, &e)),
    }
}

async fn register(ctx: &Ctx) -> Result<Identity, Refused> {
    let what = "registering a probe user";
    let username = format!(
        "verify-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let account = NewAccount {
        username: username.clone(),
        password: uuid::Uuid::new_v4().simple().to_string(),
        invite: None,
    };
    match ctx.api.register(&account).await {
        // Registration is `approval` on that server: a pending probe user can do nothing.
        Ok(session) if session.user.status == Status::Pending => Err(Refused {
            why: format!(
                "{what}: the server's registration mode keeps new accounts pending approval; \
                 give verify a token (EMERGENCE_VERIFY_TOKEN) or a probe user"
            ),
            unavailable: false,
        }),
        Ok(session) => Ok(Identity {
            token: session.token,
            username: Some(username),
            ours: true,
        }),
        Err(e) => Err(Refused::of(ctx, what, &e)),
    }
}

/// End the sessions verify opened itself.
pub(super) async fn log_out(ctx: &Ctx, identities: &Identities) {
    for id in identities.list.iter().filter(|i| i.ours) {
        if let Err(e) = ctx.api.with_token(&id.token).logout().await {
            ctx.count_error(&e);
        }
    }
}
