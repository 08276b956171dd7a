//! Static files: path traversal on asset routes gets 404, never a file.

use crate::support::spawn_app;

use super::raw::*;

#[tokio::test]
async fn path_traversal_on_asset_routes_gets_404_and_never_a_file() {
    let app = spawn_app().await;
    let shell = app.get("/", None).await.bytes().await.unwrap().to_vec();
    let under_assets = [
        "/assets/../Cargo.toml",
        "/assets/../../Cargo.toml",
        "/assets/..%2fCargo.toml",
        "/assets/..%2f..%2fetc%2fpasswd",
        "/assets/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/assets/%2e%2e/Cargo.toml",
        "/assets/%2e%2e/%2e%2e/etc/passwd",
        "/assets/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/assets/%252e%252e%252fCargo.toml",
        "/assets/..%5c..%5cCargo.toml",
        "/assets/....//....//etc/passwd",
        "/assets/.%2e/.%2e/Cargo.toml",
        "/assets/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
        "/assets//etc/passwd",
        "/assets/%2fetc%2fpasswd",
        "/assets/index.html/../../src/main.rs",
        "/assets/./../Cargo.toml",
        "/assets/Cargo.toml%00.js",
        "/assets/..;/Cargo.toml",
        "/assets/../web/dist/index.html",
        "/assets/",
    ];
    for path in under_assets {
        for method in ["GET", "HEAD"] {
            let r = raw_http(
                app.port,
                format!(
                    "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                    app.port
                )
                .into_bytes(),
            )
            .await;
            assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
            if method == "GET" {
                assert_eq!(r.json()["error"]["code"], "not_found", "{path}");
            }
            assert_no_file(&r.body, path);
        }
    }
    // Absolute-form request targets are routed by their path, too.
    let r = raw_http(
        app.port,
        format!(
            "GET http://127.0.0.1:{0}/assets/../Cargo.toml HTTP/1.1\r\nHost: 127.0.0.1:{0}\r\nConnection: close\r\n\r\n",
            app.port
        )
        .into_bytes(),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_no_file(&r.body, "absolute form");
    // Elsewhere: a JSON 404 or the UI shell, never a file from disk.
    for path in [
        "/../Cargo.toml",
        "/..%2fCargo.toml",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/favicon.svg/../../Cargo.toml",
        "/favicon.ico%2f..%2f..%2fCargo.toml",
        "/api/../Cargo.toml",
        "/api/..%2f..%2fetc%2fpasswd",
        "/ws/../Cargo.toml",
        "//etc/passwd",
        "/src/main.rs",
        "/Cargo.toml",
        "/.env",
        "/.git/config",
        "/web/dist/index.html",
    ] {
        let r = raw_http(
            app.port,
            format!(
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                app.port
            )
            .into_bytes(),
        )
        .await;
        assert_no_file(&r.body, path);
        match r.status {
            404 => assert_eq!(r.json()["error"]["code"], "not_found", "{path}"),
            200 => assert_eq!(r.body, shell, "{path}: 200 only for the UI shell"),
            400 => {} // refused by the HTTP parser itself
            other => panic!("{path}: {other} {}", r.text()),
        }
    }
    // Real embedded files still work.
    for path in emergence::assets::embedded_paths()
        .into_iter()
        .filter(|p| p.starts_with("/assets/") || p.starts_with("/favicon"))
    {
        let r = app.get(path, None).await;
        assert_eq!(r.status(), 200, "{path}");
    }
}

pub(super) fn assert_no_file(body: &[u8], what: &str) {
    let text = String::from_utf8_lossy(body);
    for marker in [
        "[package]",
        "root:x:0",
        "fn main(",
        "[core]",
        "DATABASE_URL=",
    ] {
        assert!(!text.contains(marker), "{what} leaked a file: {marker}");
    }
}
