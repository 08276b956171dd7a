//! Single sign-on with OpenID Connect (issue #15), against a real OpenID provider process (the
//! npm `oidc-provider` package on loopback, `support/oidc.rs`): accounts linked by (issuer,
//! subject) and never by name, the registration mode applied to new SSO users, single-use
//! `state` and hand-over codes, replayed codes and tokens for another audience refused, the
//! password switch, and a sign-in started on one instance and finished on another. Each on
//! SQLite and PostgreSQL.

use emergence::{Settings, db::accounts::Registration};
use serde_json::{Value, json};

use crate::{
    on_both,
    support::accounts::{app, call, get_as, invite, login, try_register},
    support::{
        TestApp, TestDb,
        oidc::{Browser, TestOp, exchange, providers},
        process::free_port,
    },
};

/// A server whose providers are a test provider on `op_port` (started afterwards).
async fn sso_app(pg: bool, op_port: u16, configure: impl FnOnce(&mut Settings)) -> TestApp {
    app(pg, |s| {
        s.auth.oidc = providers(&format!("http://127.0.0.1:{op_port}"));
        configure(s);
    })
    .await
}

/// Sign in as `login` and exchange the hand-over code: the session's JSON.
async fn sso_session(app: &TestApp, login: &str) -> Value {
    let flow = Browser::new()
        .sign_in(&app.address, "test", login, None)
        .await;
    let code = flow.outcome.expect("signed in");
    let r = exchange(app, &code).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn identities_link_accounts_by_issuer_and_subject(pg: bool) {
    let op_port = free_port();
    let app = sso_app(pg, op_port, |_| {}).await;
    let _op = TestOp::start(op_port, &[&app.address]).await;
    // The first account (the admin) and a password user called bob.
    let admin = app.register("admin").await;
    let bob = app.register("bob").await;

    // A new user: an account is created and signed in, like a password login answers.
    let mut browser = Browser::new();
    let flow = browser.sign_in(&app.address, "test", "alice", None).await;
    let code = flow.outcome.clone().expect("signed in");
    let r = exchange(&app, &code).await;
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("emergence_session=") && cookie.contains("HttpOnly"));
    let alice: Value = r.json().await.unwrap();
    assert_eq!(alice["user"]["username"], "alice");
    assert_eq!(alice["user"]["role"], "user");
    assert_eq!(alice["user"]["status"], "active");
    let token = alice["token"].as_str().unwrap();
    let (status, me) = get_as(&app, token, "/api/me").await;
    assert_eq!((status, &me["id"]), (200, &alice["user"]["id"]));

    // The hand-over code is single use.
    let again = exchange(&app, &code).await;
    assert_eq!(again.status(), 401);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    // The provider's redirect, replayed (same state, same code): the state is spent.
    let replay = flow.callback_url.expect("came back through the callback");
    let (status, location) = browser.get(&replay).await;
    assert_eq!(status, 303);
    assert!(
        location
            .unwrap()
            .ends_with("/#/sso-error/sso_state_invalid")
    );

    // A returning user gets the same account.
    let back = sso_session(&app, "alice").await;
    assert_eq!(back["user"]["id"], alice["user"]["id"]);

    // Subject "bob" is not the password user bob: linking is by (issuer, subject) only.
    let sso_bob = sso_session(&app, "bob").await;
    assert_ne!(sso_bob["user"]["id"].as_str().unwrap(), bob.id);
    assert_eq!(sso_bob["user"]["username"], "bob-2");
    // Nor is any other name: "Alice" at another subject is another account.
    let (_, users) = get_as(&app, &admin.token, "/api/admin/users").await;
    let names: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "bob", "alice", "bob-2"]);
}
on_both!(
    identities_link_accounts_by_issuer_and_subject,
    sso_links_by_issuer_and_subject_on_sqlite,
    sso_links_by_issuer_and_subject_on_postgres
);

async fn forged_states_replayed_codes_and_foreign_tokens_are_refused(pg: bool) {
    let op_port = free_port();
    let app = sso_app(pg, op_port, |_| {}).await;
    let _op = TestOp::start(op_port, &[&app.address]).await;
    app.register("admin").await;

    // A state nobody issued.
    let mut browser = Browser::new();
    let (_, location) = browser
        .get(&format!(
            "{}/auth/oidc/test/callback?code=abc&state=forged",
            app.address
        ))
        .await;
    assert!(
        location
            .unwrap()
            .ends_with("/#/sso-error/sso_state_invalid")
    );

    // A real flow finished in another browser (no binding cookie): refused, and spent.
    let mut starter = Browser::new();
    let (_, auth_url) = starter
        .get(&format!("{}/auth/oidc/test/start", app.address))
        .await;
    let mut other = Browser::new();
    let flow = other.sign_in_from(&auth_url.unwrap(), "mallory").await;
    assert_eq!(flow.outcome, Err("sso_state_invalid".into()));

    // A code used once, presented again with a fresh state: the provider refuses it.
    let mut browser = Browser::new();
    let first = browser.sign_in(&app.address, "test", "carol", None).await;
    assert!(first.outcome.is_ok());
    let used = reqwest::Url::parse(&first.callback_url.unwrap()).unwrap();
    let old_code = used
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    let (_, auth_url) = browser
        .get(&format!("{}/auth/oidc/test/start", app.address))
        .await;
    let auth_url = reqwest::Url::parse(&auth_url.unwrap()).unwrap();
    let state = auth_url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .to_string();
    let (_, location) = browser
        .get(&format!(
            "{}/auth/oidc/test/callback?code={old_code}&state={state}",
            app.address
        ))
        .await;
    assert!(
        location
            .as_deref()
            .unwrap()
            .ends_with("/#/sso-error/sso_failed"),
        "{location:?}"
    );

    // An id_token for another audience (signed by the provider itself): refused.
    let flow = Browser::new()
        .sign_in(&app.address, "wrongaud", "dave", None)
        .await;
    assert_eq!(flow.outcome, Err("sso_token_invalid".into()));
    // ... and nobody was created for it.
    assert_eq!(login(&app, "dave", "whatever-password").await.0, 401);

    // The user cancels at the provider.
    let mut browser = Browser::new();
    let (_, auth_url) = browser
        .get(&format!("{}/auth/oidc/test/start", app.address))
        .await;
    let auth_url = reqwest::Url::parse(&auth_url.unwrap()).unwrap();
    let state = auth_url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .to_string();
    let (_, location) = browser
        .get(&format!(
            "{}/auth/oidc/test/callback?error=access_denied&state={state}",
            app.address
        ))
        .await;
    assert!(location.unwrap().ends_with("/#/sso-error/sso_cancelled"));

    // An unknown provider.
    let (_, location) = Browser::new()
        .get(&format!("{}/auth/oidc/nope/start", app.address))
        .await;
    assert!(
        location
            .unwrap()
            .ends_with("/#/sso-error/sso_unknown_provider")
    );
}
on_both!(
    forged_states_replayed_codes_and_foreign_tokens_are_refused,
    sso_refuses_forged_state_replayed_code_and_wrong_audience_on_sqlite,
    sso_refuses_forged_state_replayed_code_and_wrong_audience_on_postgres
);

async fn new_sso_users_follow_the_registration_mode(pg: bool) {
    let op_port = free_port();
    let app = sso_app(pg, op_port, |s| {
        s.auth.registration = Registration::Invite;
    })
    .await;
    let _op = TestOp::start(op_port, &[&app.address]).await;
    let admin = app.register("admin").await;
    // invite: no invite, no account; an invite carried through the provider, one account.
    let flow = Browser::new()
        .sign_in(&app.address, "test", "erin", None)
        .await;
    assert_eq!(flow.outcome, Err("invite_invalid".into()));
    let inv = invite(&app, &admin).await;
    let secret = inv["token"].as_str().unwrap();
    let flow = Browser::new()
        .sign_in(&app.address, "test", "erin", Some(secret))
        .await;
    let r = exchange(&app, &flow.outcome.expect("invited")).await;
    let erin: Value = r.json().await.unwrap();
    assert_eq!(erin["user"]["status"], "active");
    let flow = Browser::new()
        .sign_in(&app.address, "test", "frank", Some(secret))
        .await;
    assert_eq!(flow.outcome, Err("invite_invalid".into()), "single use");
    // ... and erin, now linked, comes back without one.
    let back = sso_session(&app, "erin").await;
    assert_eq!(back["user"]["id"], erin["user"]["id"]);
    // A disabled account cannot sign in through its provider either.
    let id = erin["user"]["id"].as_str().unwrap();
    let (status, _) = call(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/admin/users/{id}"),
        &admin.token,
        Some(json!({"status": "disabled"})),
    )
    .await;
    assert_eq!(status, 200);
    let flow = Browser::new()
        .sign_in(&app.address, "test", "erin", None)
        .await;
    assert_eq!(flow.outcome, Err("account_disabled".into()));
}
on_both!(
    new_sso_users_follow_the_registration_mode,
    sso_users_follow_the_invite_mode_on_sqlite,
    sso_users_follow_the_invite_mode_on_postgres
);

async fn approval_and_closed_modes_apply_to_sso(pg: bool) {
    let op_port = free_port();
    let app = sso_app(pg, op_port, |s| {
        s.auth.registration = Registration::Approval
    })
    .await;
    let _op = TestOp::start(op_port, &[&app.address]).await;
    app.register("admin").await;
    let grace = sso_session(&app, "grace").await;
    assert_eq!(grace["user"]["status"], "pending");
    let token = grace["token"].as_str().unwrap();
    let (status, v) = get_as(&app, token, "/api/threads").await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (403, &json!("pending_approval"))
    );
    drop(app);

    let op_port = free_port();
    let app = sso_app(pg, op_port, |s| s.auth.registration = Registration::Closed).await;
    let _op = TestOp::start(op_port, &[&app.address]).await;
    // The first account is the admin in every mode, through SSO too.
    let first = sso_session(&app, "heidi").await;
    assert_eq!(first["user"]["role"], "admin");
    let flow = Browser::new()
        .sign_in(&app.address, "test", "ivan", None)
        .await;
    assert_eq!(flow.outcome, Err("registration_closed".into()));
}
on_both!(
    approval_and_closed_modes_apply_to_sso,
    sso_users_follow_approval_and_closed_on_sqlite,
    sso_users_follow_approval_and_closed_on_postgres
);

/// SSO-only: password sign-in and sign-up refused with a contract code; the options say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_login_off_leaves_only_single_sign_on() {
    let op_port = free_port();
    let app = sso_app(false, op_port, |s| s.auth.password_login = false).await;
    let _op = TestOp::start(op_port, &[&app.address]).await;
    let (status, v) = try_register(
        &app,
        json!({"username": "judy", "password": "correct horse battery"}),
    )
    .await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (403, &json!("password_login_disabled"))
    );
    let (status, v) = login(&app, "judy", "correct horse battery").await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (403, &json!("password_login_disabled"))
    );
    let options: Value = app
        .get("/api/auth/options", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        options,
        json!({
            "password_login": false,
            "registration": "open",
            "providers": [
                {"name": "test", "label": "Test test", "start_url": "/auth/oidc/test/start"},
                {"name": "wrongaud", "label": "Test wrongaud", "start_url": "/auth/oidc/wrongaud/start"},
            ]
        })
    );
    let judy = sso_session(&app, "judy").await;
    assert_eq!(judy["user"]["role"], "admin");
}

/// Started on one instance, finished on another: the flow and the hand-over live in PostgreSQL.
/// Instance b names a as the public URL, so the provider sends the browser back to a.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_started_on_one_instance_finishes_on_another() {
    let op_port = free_port();
    let a = sso_app(true, op_port, |_| {}).await;
    let mut s = crate::support::test_settings(&a.database_url);
    s.auth.oidc = providers(&format!("http://127.0.0.1:{op_port}"));
    s.auth.public_url = Some(a.address.clone());
    let b = crate::support::start(s, TestDb::Shared(a.database_url.clone()), true).await;
    let _op = TestOp::start(op_port, &[&a.address]).await;
    let flow = Browser::new()
        .sign_in(&b.address, "test", "kim", None)
        .await;
    // The hand-over comes from a (the callback), as `/#/sso/<code>` on a.
    assert!(flow.callback_url.unwrap().starts_with(&a.address));
    let code = flow.outcome.expect("a finishes what b started");
    let r = exchange(&b, &code).await;
    assert_eq!(r.status(), 200, "and b accepts a's hand-over");
    let kim: Value = r.json().await.unwrap();
    assert_eq!(kim["user"]["username"], "kim");
}
