//! Accounts and access (issue #15): the first admin, registration modes, approval, invites,
//! admin routes, reset links, sessions, password changes and API tokens. Every scenario runs on
//! SQLite and on PostgreSQL; the multi-instance ones (revocation within 5 s everywhere) are in
//! `accounts_cluster.rs`.

use std::time::Duration;

use emergence::db::accounts::Registration;
use serde_json::json;

use crate::{
    on_both,
    support::accounts::{
        PASSWORD, app, app_in, call, code, delete_as, get_as, invite, login, try_register, user_of,
        ws_first,
    },
};

async fn first_account_is_an_active_admin_whatever_the_mode(pg: bool) {
    for mode in [
        Registration::Closed,
        Registration::Invite,
        Registration::Approval,
    ] {
        let app = app_in(pg, mode).await;
        let (status, v) =
            try_register(&app, json!({"username": "Root", "password": PASSWORD})).await;
        assert_eq!(status, 201, "{mode:?}: {v}");
        assert_eq!(v["user"]["role"], "admin", "{mode:?}");
        assert_eq!(v["user"]["status"], "active", "{mode:?}");
        let root = user_of(&v, "Root");
        let (status, me) = get_as(&app, &root.token, "/api/me").await;
        assert_eq!(status, 200);
        assert_eq!(
            (me["role"].as_str(), me["status"].as_str()),
            (Some("admin"), Some("active"))
        );
        // The second account is not an admin, whatever it asks for.
        let (status, v) = try_register(
            &app,
            json!({"username": "second", "password": PASSWORD, "role": "admin", "status": "active"}),
        )
        .await;
        match mode {
            Registration::Closed => {
                assert_eq!((status, code(&v)), (403, "registration_closed"), "{v}");
                // Same answer for a taken username: no enumeration.
                let (status, v) =
                    try_register(&app, json!({"username": "root", "password": PASSWORD})).await;
                assert_eq!((status, code(&v)), (403, "registration_closed"), "{v}");
            }
            Registration::Invite => {
                assert_eq!((status, code(&v)), (403, "invite_invalid"), "{v}");
                let (status, v) =
                    try_register(&app, json!({"username": "root", "password": PASSWORD})).await;
                assert_eq!((status, code(&v)), (403, "invite_invalid"), "{v}");
            }
            _ => {
                assert_eq!(status, 201, "{v}");
                assert_eq!(v["user"]["role"], "user", "a forged role is ignored");
                assert_eq!(v["user"]["status"], "pending", "a forged status is ignored");
            }
        }
    }
}
on_both!(
    first_account_is_an_active_admin_whatever_the_mode,
    first_account_is_admin_in_every_mode_on_sqlite,
    first_account_is_admin_in_every_mode_on_postgres
);

async fn open_mode_makes_active_users(pg: bool) {
    let app = app_in(pg, Registration::Open).await;
    app.register("admin").await;
    let bob = app.register("bob").await;
    let (_, me) = get_as(&app, &bob.token, "/api/me").await;
    assert_eq!(
        (me["role"].as_str(), me["status"].as_str()),
        (Some("user"), Some("active"))
    );
    let (status, _) = get_as(&app, &bob.token, "/api/threads").await;
    assert_eq!(status, 200);
}
on_both!(
    open_mode_makes_active_users,
    open_mode_makes_active_users_on_sqlite,
    open_mode_makes_active_users_on_postgres
);

async fn pending_users_wait_until_an_admin_approves_them(pg: bool) {
    let app = app_in(pg, Registration::Approval).await;
    let admin = app.register("admin").await;
    let (status, v) = try_register(&app, json!({"username": "bob", "password": PASSWORD})).await;
    assert_eq!(status, 201);
    assert_eq!(v["user"]["status"], "pending");
    let bob = user_of(&v, "bob");
    // Only /api/me (and logout) answer a pending account.
    let (status, me) = get_as(&app, &bob.token, "/api/me").await;
    assert_eq!((status, me["status"].as_str()), (200, Some("pending")));
    for (method, path) in [
        (reqwest::Method::GET, "/api/threads"),
        (reqwest::Method::GET, "/api/agents"),
        (reqwest::Method::POST, "/api/threads"),
    ] {
        let body = Some(json!({"title": "t"}));
        let (status, v) = call(&app, method.clone(), path, &bob.token, body).await;
        assert_eq!(
            (status, code(&v)),
            (403, "pending_approval"),
            "{method} {path}"
        );
    }
    let (first, close, _) = ws_first(&app, &bob.token).await;
    assert_eq!(first["type"], "error");
    assert_eq!(first["code"], "pending_approval");
    assert_eq!(close, Some(4403));
    // Logging in again still gives a pending session.
    let (status, v) = login(&app, "bob", PASSWORD).await;
    assert_eq!(
        (status, v["user"]["status"].as_str()),
        (200, Some("pending"))
    );
    // The admin sees and approves it; the same token works at once.
    let (_, users) = get_as(&app, &admin.token, "/api/admin/users").await;
    let listed: Vec<(&str, &str)> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["username"].as_str().unwrap(),
                u["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, [("admin", "active"), ("bob", "pending")]);
    let path = format!("/api/admin/users/{}/approve", bob.id);
    let (status, v) = call(&app, reqwest::Method::POST, &path, &admin.token, None).await;
    assert_eq!((status, v["status"].as_str()), (200, Some("active")), "{v}");
    let (status, _) = get_as(&app, &bob.token, "/api/threads").await;
    assert_eq!(status, 200);
    let (first, _, _) = ws_first(&app, &bob.token).await;
    assert_eq!(first["type"], "welcome", "{first}");
    // Sent back to pending after that: a new sign-in waits again (nothing remembered wrongly).
    let path = format!("/api/admin/users/{}", bob.id);
    let body = Some(json!({"status": "pending"}));
    assert_eq!(
        call(&app, reqwest::Method::PATCH, &path, &admin.token, body)
            .await
            .0,
        200
    );
    let (_, v) = login(&app, "bob", PASSWORD).await;
    let again = user_of(&v, "bob");
    let (status, v) = get_as(&app, &again.token, "/api/threads").await;
    assert_eq!((status, code(&v)), (403, "pending_approval"));
    let (_, close, _) = ws_first(&app, &again.token).await;
    assert_eq!(close, Some(4403));
}
on_both!(
    pending_users_wait_until_an_admin_approves_them,
    pending_users_wait_for_approval_on_sqlite,
    pending_users_wait_for_approval_on_postgres
);

async fn invites_are_single_use_revocable_and_expire(pg: bool) {
    let app = app(pg, |s| {
        s.auth.registration = Registration::Invite;
        s.limits.failed_logins_per_user = 100;
    })
    .await;
    let admin = app.register("admin").await;
    let inv = invite(&app, &admin).await;
    let secret = inv["token"].as_str().unwrap();
    assert_eq!(inv["path"], format!("/invite/{secret}"));
    let (_, list) = get_as(&app, &admin.token, "/api/admin/invites").await;
    assert_eq!(list["invites"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(secret), "the secret is not kept");
    // A taken username does not burn the invite.
    let (status, _) = try_register(
        &app,
        json!({"username": "ADMIN", "password": PASSWORD, "invite": secret}),
    )
    .await;
    assert_eq!(status, 409);
    let (status, v) = try_register(
        &app,
        json!({"username": "carol", "password": PASSWORD, "invite": secret}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["user"]["status"], "active");
    let (status, v) = try_register(
        &app,
        json!({"username": "dave", "password": PASSWORD, "invite": secret}),
    )
    .await;
    assert_eq!((status, code(&v)), (403, "invite_invalid"), "reuse: {v}");
    let (_, list) = get_as(&app, &admin.token, "/api/admin/invites").await;
    assert_eq!(
        list["invites"].as_array().unwrap().len(),
        0,
        "used invites are not open"
    );
    // Revoked.
    let inv = invite(&app, &admin).await;
    let path = format!("/api/admin/invites/{}", inv["id"].as_str().unwrap());
    let (status, _) = delete_as(&app, &admin.token, &path).await;
    assert_eq!(status, 204);
    let (status, v) = try_register(
        &app,
        json!({"username": "dave", "password": PASSWORD, "invite": inv["token"]}),
    )
    .await;
    assert_eq!((status, code(&v)), (403, "invite_invalid"), "revoked: {v}");
    // Expired.
    let short = self::app(pg, |s| {
        s.auth.registration = Registration::Invite;
        s.auth.invite_ttl_secs = 1;
    })
    .await;
    let admin = short.register("admin").await;
    let inv = invite(&short, &admin).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (status, v) = try_register(
        &short,
        json!({"username": "erin", "password": PASSWORD, "invite": inv["token"]}),
    )
    .await;
    assert_eq!((status, code(&v)), (403, "invite_invalid"), "expired: {v}");
}
on_both!(
    invites_are_single_use_revocable_and_expire,
    invites_are_single_use_and_expire_on_sqlite,
    invites_are_single_use_and_expire_on_postgres
);

async fn the_last_active_admin_cannot_be_demoted_or_disabled(pg: bool) {
    let app = app_in(pg, Registration::Open).await;
    let admin = app.register("admin").await;
    let bob = app.register("bob").await;
    let me = format!("/api/admin/users/{}", admin.id);
    for body in [json!({"role": "user"}), json!({"status": "disabled"})] {
        let (status, v) = call(&app, reqwest::Method::PATCH, &me, &admin.token, Some(body)).await;
        assert_eq!((status, code(&v)), (409, "conflict"), "{v}");
    }
    let (status, v) = call(
        &app,
        reqwest::Method::PATCH,
        &me,
        &admin.token,
        Some(json!({"role": "boss"})),
    )
    .await;
    assert_eq!((status, code(&v)), (422, "validation"), "{v}");
    let bob_path = format!("/api/admin/users/{}", bob.id);
    let (status, v) = call(
        &app,
        reqwest::Method::PATCH,
        &bob_path,
        &admin.token,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!((status, v["role"].as_str()), (200, Some("admin")), "{v}");
    // Now there is another admin: the first may step down, and loses admin routes at once.
    let (status, _) = call(
        &app,
        reqwest::Method::PATCH,
        &me,
        &admin.token,
        Some(json!({"role": "user"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = get_as(&app, &admin.token, "/api/admin/users").await;
    assert_eq!((status, code(&v)), (403, "forbidden"));
    let (status, _) = call(
        &app,
        reqwest::Method::PATCH,
        "/api/admin/users/nobody",
        &bob.token,
        Some(json!({"role": "user"})),
    )
    .await;
    assert_eq!(status, 404);
}
on_both!(
    the_last_active_admin_cannot_be_demoted_or_disabled,
    last_admin_stays_on_sqlite,
    last_admin_stays_on_postgres
);

async fn disabled_users_are_signed_out_and_cannot_sign_in(pg: bool) {
    let app = app_in(pg, Registration::Open).await;
    let admin = app.register("admin").await;
    let bob = app.register("bob").await;
    let thread = app.create_thread(&bob, "bob's").await;
    let mut ws = app.ws(&bob).await;
    ws.subscribe(&thread, None).await;
    ws.send_message(&thread, "c1", "still here later").await;
    ws.recv_type("ack").await;
    let path = format!("/api/admin/users/{}", bob.id);
    let (status, v) = call(
        &app,
        reqwest::Method::PATCH,
        &path,
        &admin.token,
        Some(json!({"status": "disabled"})),
    )
    .await;
    assert_eq!((status, v["status"].as_str()), (200, Some("disabled")));
    let started = std::time::Instant::now();
    assert_eq!(ws.close_code().await, Some(4401));
    assert!(started.elapsed() < Duration::from_secs(5));
    let (status, _) = get_as(&app, &bob.token, "/api/threads").await;
    assert_eq!(status, 401);
    let (status, v) = login(&app, "bob", PASSWORD).await;
    assert_eq!((status, code(&v)), (403, "forbidden"), "{v}");
    // A wrong password says what it says for anyone.
    let (status, _) = login(&app, "bob", "wrong password!").await;
    assert_eq!(status, 401);
    // The messages stay; enabling lets bob back in.
    let (status, _) = call(
        &app,
        reqwest::Method::PATCH,
        &path,
        &admin.token,
        Some(json!({"status": "active"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = login(&app, "bob", PASSWORD).await;
    assert_eq!(status, 200);
    let bob = user_of(&v, "bob");
    let bodies: Vec<String> = app
        .messages(&bob, &thread, "")
        .await
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(bodies, ["still here later"]);
    // Sent back to pending: the active session ends; signing in again gives a pending one.
    let (status, _) = call(
        &app,
        reqwest::Method::PATCH,
        &path,
        &admin.token,
        Some(json!({"status": "pending"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = get_as(&app, &bob.token, "/api/threads").await;
    assert_eq!(status, 401);
    let (status, v) = login(&app, "bob", PASSWORD).await;
    assert_eq!(
        (status, v["user"]["status"].as_str()),
        (200, Some("pending"))
    );
    let pending = user_of(&v, "bob");
    let (status, v) = get_as(&app, &pending.token, "/api/threads").await;
    assert_eq!((status, code(&v)), (403, "pending_approval"));
}
on_both!(
    disabled_users_are_signed_out_and_cannot_sign_in,
    disabled_users_are_signed_out_on_sqlite,
    disabled_users_are_signed_out_on_postgres
);

async fn a_reset_link_sets_the_password_once_and_ends_every_session(pg: bool) {
    let app = app_in(pg, Registration::Open).await;
    let admin = app.register("admin").await;
    let bob = app.register("bob").await;
    let path = format!("/api/admin/users/{}/reset", bob.id);
    let (status, link) = call(&app, reqwest::Method::POST, &path, &admin.token, None).await;
    assert_eq!(status, 201, "{link}");
    let secret = link["token"].as_str().unwrap();
    assert_eq!(link["path"], format!("/reset/{secret}"));
    let reset = |password: &'static str| {
        app.post(
            "/api/auth/reset",
            None,
            json!({"token": secret, "password": password}),
        )
    };
    assert_eq!(reset("short").await.status(), 422);
    assert_eq!(reset("a brand new password").await.status(), 204);
    let again = reset("another new password").await;
    assert_eq!(again.status(), 403, "single use");
    let (status, _) = get_as(&app, &bob.token, "/api/threads").await;
    assert_eq!(status, 401, "the old session ended");
    assert_eq!(login(&app, "bob", PASSWORD).await.0, 401);
    assert_eq!(login(&app, "bob", "a brand new password").await.0, 200);
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        "/api/admin/users/nope/reset",
        &admin.token,
        None,
    )
    .await;
    assert_eq!(status, 404);
}
on_both!(
    a_reset_link_sets_the_password_once_and_ends_every_session,
    reset_links_on_sqlite,
    reset_links_on_postgres
);
