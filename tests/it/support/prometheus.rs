//! A real Prometheus (the Debian package's `/usr/bin/prometheus`) started by a test on a free
//! loopback port, with its data in a temporary directory. It scrapes the given instances every
//! second as `job="emergence"`, evaluates every second a copy of deploy/prometheus/alerts.yml
//! whose `for:` durations are shortened (the expressions are the project's own, unchanged), and
//! is read through its HTTP API (`/api/v1/query`, `/api/v1/alerts`).

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::process::{KillOnDrop, free_port};

pub const BINARY: &str = "/usr/bin/prometheus";

/// Every alert's `for:` in the test copy of the rules.
pub const SHORT_FOR: &str = "2s";

/// One sample of an instant query.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One alert as `/api/v1/alerts` lists it (pending or firing).
#[derive(Debug, Clone)]
pub struct Alert {
    pub name: String,
    pub state: String,
    pub labels: BTreeMap<String, String>,
}

pub struct Prometheus {
    pub port: u16,
    _process: KillOnDrop,
    dir: PathBuf,
    http: reqwest::Client,
}

/// `alerts.yml` with every `for:` set to [`SHORT_FOR`]; nothing else changes.
pub fn rules_with_short_for(rules: &str) -> String {
    let mut out = String::with_capacity(rules.len());
    let mut changed = 0;
    for line in rules.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("for:")
            && !rest.trim().is_empty()
            && !rest.contains('#')
        {
            let indent = &line[..line.len() - trimmed.len()];
            out.push_str(&format!("{indent}for: {SHORT_FOR}\n"));
            changed += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(changed >= 5, "alerts.yml has a `for:` per alert");
    out
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

impl Prometheus {
    /// Start scraping the instances listening on `targets` (127.0.0.1) and wait until each
    /// has been scraped once.
    pub async fn start(targets: &[u16]) -> Prometheus {
        assert!(
            std::path::Path::new(BINARY).exists(),
            "{BINARY} is needed (Debian package prometheus)"
        );
        let dir = std::env::temp_dir().join(format!("emergence-prom-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let rules = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/prometheus/alerts.yml"
        ))
        .unwrap();
        std::fs::write(dir.join("alerts.yml"), rules_with_short_for(&rules)).unwrap();
        let targets_yaml = targets
            .iter()
            .map(|p| format!("'127.0.0.1:{p}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: emergence\n    static_configs:\n      - targets: [{targets_yaml}]\n",
            rules = dir.join("alerts.yml").display(),
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let child = Command::new(BINARY)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(if std::env::var("TEST_LOG").is_ok() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("prometheus starts");
        let prometheus = Prometheus {
            port,
            _process: KillOnDrop(child),
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        };
        prometheus
            .wait_until("Prometheus ready", Duration::from_secs(20), async || {
                let r = prometheus
                    .http
                    .get(format!("http://127.0.0.1:{port}/-/ready"))
                    .send()
                    .await;
                r.is_ok_and(|r| r.status() == 200)
            })
            .await;
        let n = targets.len();
        prometheus
            .wait_until(
                "every instance scraped",
                Duration::from_secs(20),
                async || prometheus.value("sum(up{job=\"emergence\"})").await == Some(n as f64),
            )
            .await;
        prometheus
    }

    async fn api(&self, path: &str, params: &[(&str, String)]) -> Value {
        let r = self
            .http
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .query(params)
            .send()
            .await
            .expect("Prometheus answers");
        let v: Value = r.json().await.expect("Prometheus API JSON");
        assert_eq!(v["status"], "success", "{path} {params:?}: {v}");
        v["data"].clone()
    }

    /// An instant query now.
    pub async fn query(&self, q: &str) -> Vec<Sample> {
        self.samples(self.api("/api/v1/query", &[("query", q.into())]).await)
    }

    /// An instant query at `time` (seconds since the epoch, millisecond precision).
    pub async fn query_at(&self, q: &str, time: f64) -> Vec<Sample> {
        let params = [("query", q.into()), ("time", format!("{time:.3}"))];
        self.samples(self.api("/api/v1/query", &params).await)
    }

    fn samples(&self, data: Value) -> Vec<Sample> {
        assert_eq!(data["resultType"], "vector", "{data}");
        data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| Sample {
                labels: labels_of(&s["metric"]),
                value: s["value"][1].as_str().unwrap().parse().unwrap(),
            })
            .collect()
    }

    /// The value of a query that yields at most one sample.
    pub async fn value(&self, q: &str) -> Option<f64> {
        let samples = self.query(q).await;
        assert!(samples.len() <= 1, "{q}: {samples:?}");
        samples.first().map(|s| s.value)
    }

    /// Alerts pending or firing now.
    pub async fn alerts(&self) -> Vec<Alert> {
        let data = self.api("/api/v1/alerts", &[]).await;
        data["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let labels = labels_of(&a["labels"]);
                Alert {
                    name: labels.get("alertname").cloned().unwrap_or_default(),
                    state: a["state"].as_str().unwrap_or_default().to_string(),
                    labels,
                }
            })
            .collect()
    }

    /// Names of the alerts firing now.
    pub async fn firing(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .alerts()
            .await
            .into_iter()
            .filter(|a| a.state == "firing")
            .map(|a| a.name)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Wait (bounded) until alert `name` fires; returns how long it took.
    pub async fn wait_firing(&self, name: &str, timeout: Duration) -> Duration {
        let started = Instant::now();
        self.wait_until(&format!("{name} firing"), timeout, async || {
            self.firing().await.iter().any(|n| n == name)
        })
        .await;
        started.elapsed()
    }

    /// Poll `check` every 250 ms until it holds; panics after `timeout`, naming `what`.
    pub async fn wait_until(&self, what: &str, timeout: Duration, check: impl AsyncFn() -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if check().await {
                return;
            }
            if Instant::now() >= deadline {
                let alerts = self.alerts().await;
                panic!("{what}: not within {timeout:?}; alerts now: {alerts:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // The process is killed first (field order does not matter: this runs before fields drop).
        let _ = self._process.0.kill();
        let _ = self._process.0.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
