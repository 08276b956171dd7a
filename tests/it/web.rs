//! Delivery of the embedded web UI and admission control: caching, encodings, 304s, security
//! headers, the SPA fallback, rate-limit answers, and 503 (never 429) on overload.

use serde_json::{Value, json};

use crate::support::{spawn_app, spawn_app_with};

/// The asset URLs index.html references.
fn referenced(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            let url = part.split('"').next().unwrap();
            if url.starts_with('/') {
                out.push(url.to_string());
            }
        }
    }
    out
}

#[tokio::test]
async fn the_page_is_index_plus_one_script_one_stylesheet_and_a_favicon() {
    let app = spawn_app().await;
    let r = app
        .http
        .get(app.url("/"))
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["cache-control"], "no-cache");
    assert!(h.contains_key("etag"));
    assert_eq!(h["content-encoding"], "br");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'")
            && csp.contains("frame-ancestors 'none'")
            && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h.contains_key("referrer-policy"));
    // reqwest does not decode brotli here: ask for identity to read the HTML.
    let html = app
        .http
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("<script type=\"module\">"),
        "no inline script"
    );
    let urls = referenced(&html);
    let scripts: Vec<_> = urls.iter().filter(|u| u.ends_with(".js")).collect();
    let styles: Vec<_> = urls.iter().filter(|u| u.ends_with(".css")).collect();
    assert_eq!((scripts.len(), styles.len()), (1, 1), "{urls:?}");
    assert!(
        urls.len() <= 3,
        "index + at most one JS, one CSS and the favicon: {urls:?}"
    );
    for url in &urls {
        let r = app
            .http
            .get(app.url(url))
            .header("accept-encoding", "gzip, br")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{url}");
        if url.starts_with("/assets/") {
            assert_eq!(
                r.headers()["cache-control"],
                "public, max-age=31536000, immutable"
            );
            assert_eq!(r.headers()["content-encoding"], "br");
        }
    }
    // The first-load JS budget: 60 KB brotli.
    let js = app
        .http
        .get(app.url(scripts[0]))
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(js.len() <= 60 * 1024, "JS is {} bytes brotli", js.len());
}

#[tokio::test]
async fn the_lazy_chunks_are_hashed_immutable_compressed_and_not_on_the_page() {
    let app = spawn_app().await;
    let html = app
        .http
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lazy: Vec<_> = emergence::assets::embedded_paths()
        .into_iter()
        .filter(|p| p.ends_with(".js") && !p.starts_with("/assets/index-"))
        .collect();
    for name in ["languages", "mathml", "accounts", "tools"] {
        assert_eq!(
            lazy.iter()
                .filter(|p| p.starts_with(&format!("/assets/{name}-")))
                .count(),
            1,
            "one {name} chunk in {lazy:?}"
        );
    }
    for path in &lazy {
        assert!(!html.contains(path), "the page references {path}");
        let r = app
            .http
            .get(app.url(path))
            .header("accept-encoding", "br")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(
            r.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(r.headers()["content-encoding"], "br");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/javascript")
        );
    }
}

#[tokio::test]
async fn encodings_are_negotiated_and_revalidation_answers_304() {
    let app = spawn_app().await;
    let html = app
        .http
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let js = referenced(&html)
        .into_iter()
        .find(|u| u.ends_with(".js"))
        .unwrap();
    let get = |enc: &'static str| {
        let (http, url) = (app.http.clone(), app.url(&js));
        async move {
            http.get(url)
                .header("accept-encoding", enc)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(get("gzip").await.headers()["content-encoding"], "gzip");
    assert_eq!(
        get("br;q=0, gzip").await.headers()["content-encoding"],
        "gzip"
    );
    assert!(
        get("identity")
            .await
            .headers()
            .get("content-encoding")
            .is_none()
    );
    let plain = get("identity").await;
    assert_eq!(plain.headers()["vary"], "Accept-Encoding");
    let etag = plain.headers()["etag"].clone();
    let r = app
        .http
        .get(app.url(&js))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert!(r.bytes().await.unwrap().is_empty());
    let index = app.http.get(app.url("/")).send().await.unwrap();
    let etag = index.headers()["etag"].clone();
    assert_eq!(
        app.http
            .get(app.url("/"))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap()
            .status(),
        304
    );
}

#[tokio::test]
async fn unknown_assets_are_404_and_app_routes_fall_back_to_the_shell() {
    let app = spawn_app().await;
    for path in [
        "/assets/nope.js",
        "/assets/../Cargo.toml",
        "/assets/%2e%2e/Cargo.toml",
        "/api/unknown",
    ] {
        let r = app.get(path, None).await;
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "not_found"
        );
    }
    let r = app.get("/threads/some-thread", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-cache");
    assert!(r.text().await.unwrap().contains("<div"));
}

#[tokio::test]
async fn two_hundred_reloads_from_one_ip_never_meet_a_429() {
    let app = spawn_app().await; // production limits
    let html = app
        .http
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut urls = referenced(&html);
    urls.extend([
        "/".to_string(),
        "/healthz".into(),
        "/readyz".into(),
        "/metrics".into(),
    ]);
    for _ in 0..200 {
        for url in &urls {
            let status = app.http.get(app.url(url)).send().await.unwrap().status();
            assert!(status.is_success(), "{url}: {status}");
        }
    }
    assert_eq!(app.metric("rate_limited_total").await, 0.0);
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_and_ratelimit_headers() {
    // Bursts as by default, refilled slowly: on a loaded machine one argon2 check can take a
    // second, and the default refill (1/s) would hand out a token per attempt.
    let app = spawn_app_with(|s| s.limits.auth_rate_per_min = 1).await;
    let mut limited = None;
    for i in 0..40 {
        let r = app
            .post(
                "/api/auth/login",
                None,
                json!({"username": format!("nobody{i}"), "password": "wrong password"}),
            )
            .await;
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status(), 401);
    }
    let r = limited.expect("login attempts are limited per IP (burst 20)");
    let h = r.headers().clone();
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert!(h.contains_key("ratelimit-policy") && h.contains_key("ratelimit"));
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "rate_limited"
    );
    assert!(app.metric("rate_limited_total{scope=\"auth\"}").await >= 1.0);
    // Sends: bursts of 100 (default), refilled at 1/s so that a slow machine does not refill
    // the bucket while the 130 sends are made.
    let app = spawn_app_with(|s| s.limits.send_rate_per_sec = 1).await;
    let alice = app.register("alice").await;
    let thread = app.create_thread(&alice, "limits").await;
    let mut codes = Vec::new();
    for i in 0..130 {
        let r = app
            .post(
                &format!("/api/threads/{thread}/messages"),
                Some(&alice.token),
                json!({"client_id": format!("m{i}"), "body": "x"}),
            )
            .await;
        codes.push(r.status().as_u16());
    }
    assert!(codes.iter().filter(|c| **c == 201).count() >= 100);
    assert!(codes.contains(&429));
}

#[tokio::test]
async fn failed_logins_per_username_are_limited() {
    let app = spawn_app_with(|s| s.limits.auth_rate_per_min = 0).await;
    app.register("target").await;
    for _ in 0..10 {
        let r = app
            .post(
                "/api/auth/login",
                None,
                json!({"username": "target", "password": "wrong password"}),
            )
            .await;
        assert_eq!(r.status(), 401);
    }
    let r = app
        .post(
            "/api/auth/login",
            None,
            json!({"username": "target", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(
        r.status(),
        429,
        "the 11th attempt within 15 minutes is refused, even with the right password"
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_limits_apply_to_the_forwarded_client_ip() {
    let app = spawn_app_with(|s| {
        s.limits.trusted_proxies = 1;
        s.limits.auth_rate_per_min = 1; // no refill while the burst is spent, however slow
    })
    .await;
    let n = std::sync::atomic::AtomicUsize::new(0);
    let login = |ip: &'static str| {
        let (http, url) = (app.http.clone(), app.url("/api/auth/login"));
        // A different username each time: only the per-IP limit is in play.
        let user = format!(
            "nobody{}",
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        async move {
            http.post(url)
                .header("x-forwarded-for", format!("203.0.113.9, {ip}"))
                .json(&json!({"username": user, "password": "wrong password"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let mut saw_429 = false;
    for _ in 0..25 {
        saw_429 |= login("198.51.100.1").await == 429;
    }
    assert!(saw_429);
    assert_eq!(
        login("198.51.100.2").await,
        401,
        "another client behind the same proxy is not limited"
    );
}

#[tokio::test]
async fn overload_answers_503_with_retry_after_never_429_and_assets_still_load() {
    let app = spawn_app_with(|s| s.server.max_inflight_requests = 0).await;
    let r = app
        .post(
            "/api/auth/register",
            None,
            json!({"username": "x", "password": "y"}),
        )
        .await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "unavailable"
    );
    assert_eq!(app.get("/", None).await.status(), 200);
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    assert!(app.metric("overload_rejections_total").await >= 1.0);
    assert_eq!(app.metric("rate_limited_total").await, 0.0);
}

#[tokio::test]
async fn a_cdn_base_url_rewrites_the_shell_and_the_export_writes_the_hashed_files() {
    let app =
        spawn_app_with(|s| s.web.asset_base_url = Some("https://cdn.example.com/emergence".into()))
            .await;
    let r = app.get("/", None).await;
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("https://cdn.example.com"), "{csp}");
    let html = r.text().await.unwrap();
    assert!(
        html.contains("https://cdn.example.com/emergence/assets/"),
        "{html}"
    );
    let dir = std::env::temp_dir().join(format!("emergence-cdn-{}", uuid::Uuid::new_v4()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_emergence"))
        .args(["assets", "export"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let files: Vec<String> = std::fs::read_dir(dir.join("assets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    for url in referenced(&html).iter().filter(|u| u.contains("/assets/")) {
        let name = url.rsplit('/').next().unwrap();
        assert!(files.contains(&name.to_string()), "{name} exported");
        assert!(files.contains(&format!("{name}.br")));
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The hashed files go out with `sendfile` from a sealed in-memory copy (src/http/zerocopy.rs),
/// their headers with `MSG_MORE`: on one keep-alive connection with every request pipelined,
/// each answer must still be exactly its file, in every encoding, with a HEAD in between.
#[tokio::test]
async fn hashed_files_arrive_byte_for_byte_in_every_encoding_on_one_pipelined_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let html = app.get("/", None).await.text().await.unwrap();
    let dir = std::env::temp_dir().join(format!("emergence-zc-{}", uuid::Uuid::new_v4()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_emergence"))
        .args(["assets", "export"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    // (path, method, accept-encoding, expected content-encoding, expected body)
    type Ask = (
        String,
        &'static str,
        &'static str,
        Option<&'static str>,
        Vec<u8>,
    );
    let mut asks: Vec<Ask> = Vec::new();
    for url in referenced(&html)
        .iter()
        .filter(|u| u.starts_with("/assets/"))
    {
        let file = dir.join(url.trim_start_matches('/'));
        let plain = std::fs::read(&file).unwrap();
        let br = std::fs::read(format!("{}.br", file.display())).unwrap();
        let gz = std::fs::read(format!("{}.gz", file.display())).unwrap();
        asks.push((url.clone(), "GET", "br, gzip", Some("br"), br));
        asks.push((url.clone(), "HEAD", "br", Some("br"), Vec::new()));
        asks.push((url.clone(), "GET", "identity", None, plain));
        asks.push((url.clone(), "GET", "gzip", Some("gzip"), gz));
    }
    assert!(asks.len() >= 8, "at least a script and a stylesheet");
    assert!(
        asks.iter().any(|a| a.4.len() > 16 << 10),
        "one body large enough for several segments"
    );
    let mut requests = String::new();
    for (path, method, enc, _, _) in &asks {
        requests.push_str(&format!(
            "{method} {path} HTTP/1.1\r\nhost: t\r\naccept-encoding: {enc}\r\n\r\n"
        ));
    }
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    conn.write_all(requests.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    for (path, method, _, encoding, body) in &asks {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 65536];
            let n = conn.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "connection closed before the answer to {method} {path}"
            );
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..end].to_vec())
            .unwrap()
            .to_lowercase();
        buf.drain(..end);
        assert!(head.starts_with("http/1.1 200"), "{method} {path}: {head}");
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string))
        };
        assert_eq!(header("content-encoding").as_deref(), *encoding, "{head}");
        if *method == "HEAD" {
            continue;
        }
        let len: usize = header("content-length").unwrap().parse().unwrap();
        assert_eq!(len, body.len(), "{method} {path} {encoding:?}");
        while buf.len() < len {
            let mut chunk = [0u8; 65536];
            let n = conn.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed inside the body of {path}");
            buf.extend_from_slice(&chunk[..n]);
        }
        let got: Vec<u8> = buf.drain(..len).collect();
        assert!(
            got == *body,
            "{path} {encoding:?}: the bytes served are the file's"
        );
    }
    assert!(buf.is_empty(), "nothing after the last answer");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn websocket_connection_floods_get_503_before_the_upgrade() {
    // One user floods here, so the per-user cap on open sockets (its own test in
    // security_limits.rs) is off: this test is about the per-address connection rate.
    let app = spawn_app_with(|s| s.limits.ws_per_user = 0).await;
    let alice = app.register("alice").await;
    let mut refused = None;
    let mut open = Vec::new();
    for _ in 0..130 {
        match crate::support::WsClient::connect(&format!("{}?token={}", app.ws_url(), alice.token))
            .await
        {
            Ok(ws) => open.push(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                refused = Some(resp);
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let resp = refused.expect("past a burst of 100 per IP, upgrades are refused");
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert!(open.len() >= 100);
    assert!(app.metric("rate_limited_total{scope=\"ws_connect\"}").await >= 1.0);
    assert!(
        app.metric("ws_connections_total{outcome=\"rejected\"}")
            .await
            >= 1.0
    );
}
