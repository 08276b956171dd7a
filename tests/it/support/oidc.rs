//! A real OpenID provider for the single sign-on tests: the npm `oidc-provider` package (OpenID
//! Certified) run by `web/e2e/oidc-provider.mjs` on loopback (its clients are described there),
//! and a tiny browser (no redirects followed on its own, one cookie jar) that walks a sign-in
//! through the server and the provider as Chromium would.

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    time::Duration,
};

use tokio::io::{AsyncBufReadExt, BufReader};

use super::TestApp;

/// The provider process, stopped when dropped.
pub struct TestOp {
    pub issuer: String,
    child: Child,
}

impl Drop for TestOp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestOp {
    /// Start the provider on `port`, with redirect URIs for each of `apps` (base URLs).
    pub async fn start(port: u16, apps: &[&str]) -> TestOp {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/web/e2e/oidc-provider.mjs");
        let mut child = Command::new("node")
            .arg(script)
            .arg("--port")
            .arg(port.to_string())
            .arg("--app")
            .arg(apps.join(","))
            .stdout(Stdio::piped())
            .stderr(if std::env::var("TEST_LOG").is_ok() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("node runs web/e2e/oidc-provider.mjs (npm ci in web/ installs it)");
        let stdout = child.stdout.take().unwrap();
        let mut lines =
            BufReader::new(tokio::process::ChildStdout::from_std(stdout).unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(issuer) = line.strip_prefix("ready ") {
                    return Some(issuer.to_string());
                }
            }
            None
        })
        .await;
        let issuer = ready
            .ok()
            .flatten()
            .expect("the OpenID provider starts (is web/node_modules installed?)");
        // Keep reading what it prints: a closed pipe would kill it at its next line.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        TestOp { issuer, child }
    }
}

/// The settings of the two providers the test provider serves: `test` (the real client) and
/// `wrongaud` (whose id_tokens name another audience).
pub fn providers(issuer: &str) -> Vec<emergence::settings::OidcProvider> {
    let p = |name: &str, id: &str, secret: &str| emergence::settings::OidcProvider {
        name: name.into(),
        label: Some(format!("Test {name}")),
        issuer: issuer.into(),
        client_id: id.into(),
        client_secret: Some(emergence::settings::Secret::new(secret)),
        client_secret_env: None,
        scopes: vec!["openid".into(), "email".into(), "profile".into()],
        allow_http: false,
    };
    vec![
        p("test", "emergence", "emergence-secret"),
        p("wrongaud", "emergence-wrongaud", "wrongaud-secret"),
    ]
}

/// A browser: one cookie jar, redirects followed by hand.
pub struct Browser {
    http: reqwest::Client,
    jar: HashMap<String, String>,
}

/// How a sign-in ended.
#[derive(Debug)]
pub struct Flow {
    /// The provider's redirect back to the server (replayable).
    pub callback_url: Option<String>,
    /// `Ok(hand-over code)` or `Err(reason)` from `/#/sso/<code>` or `/#/sso-error/<reason>`.
    pub outcome: Result<String, String>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            jar: HashMap::new(),
        }
    }

    pub fn forget(&mut self, cookie: &str) {
        self.jar.remove(cookie);
    }

    /// GET `url` with the jar's cookies; keeps the cookies it sets; returns the status and the
    /// absolute `Location`.
    pub async fn get(&mut self, url: &str) -> (u16, Option<String>) {
        let cookies = self
            .jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut req = self.http.get(url);
        if !cookies.is_empty() {
            req = req.header("cookie", cookies);
        }
        let resp = req.send().await.expect("request");
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            let (k, val) = pair.split_once('=').unwrap();
            if val.is_empty() || v.contains("Max-Age=0") || v.contains("expires=Thu, 01 Jan 1970") {
                self.jar.remove(k.trim());
            } else {
                self.jar.insert(k.trim().to_string(), val.to_string());
            }
        }
        let location = resp.headers().get("location").map(|l| {
            let l = l.to_str().unwrap();
            reqwest::Url::parse(url)
                .unwrap()
                .join(l)
                .unwrap()
                .to_string()
        });
        (resp.status().as_u16(), location)
    }

    /// Follow a redirect chain from `url` until it lands on `app` again (the callback, then
    /// the web UI's fragment), signing in as `login` at the provider.
    pub async fn sign_in_from(&mut self, url: &str, login: &str) -> Flow {
        let mut url = format!("{url}&login_hint={login}");
        let mut callback_url = None;
        for _ in 0..12 {
            let (status, location) = self.get(&url).await;
            let Some(next) = location else {
                panic!("{url} answered {status} without a redirect");
            };
            if let Some((_, rest)) = next.split_once("/#/sso/") {
                return Flow {
                    callback_url,
                    outcome: Ok(rest.to_string()),
                };
            }
            if let Some((_, rest)) = next.split_once("/#/sso-error/") {
                return Flow {
                    callback_url,
                    outcome: Err(rest.to_string()),
                };
            }
            if next.contains("/auth/oidc/") && next.contains("/callback") {
                callback_url = Some(next.clone());
            }
            url = next;
        }
        panic!("the sign-in did not come back to the server");
    }

    /// Start at `/auth/oidc/{provider}/start` and sign in as `login`.
    pub async fn sign_in(
        &mut self,
        base: &str,
        provider: &str,
        login: &str,
        invite: Option<&str>,
    ) -> Flow {
        let mut start = format!("{base}/auth/oidc/{provider}/start");
        if let Some(i) = invite {
            start.push_str(&format!("?invite={i}"));
        }
        let (status, location) = self.get(&start).await;
        assert_eq!(status, 303, "start redirects");
        let location = location.unwrap();
        if let Some(reason) = location.strip_prefix(&format!("{base}/#/sso-error/")) {
            return Flow {
                callback_url: None,
                outcome: Err(reason.to_string()),
            };
        }
        self.sign_in_from(&location, login).await
    }
}

/// `POST /api/auth/oidc/exchange`.
pub async fn exchange(app: &TestApp, code: &str) -> reqwest::Response {
    exchange_at(&app.address, code).await
}

/// `POST /api/auth/oidc/exchange` at `base`.
pub async fn exchange_at(base: &str, code: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/api/auth/oidc/exchange"))
        .json(&serde_json::json!({ "code": code }))
        .send()
        .await
        .unwrap()
}
