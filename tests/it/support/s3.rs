//! A real S3-compatible server for the bucket storage of documents: moto's `moto_server` (from
//! PyPI, installed into tests/tools/.venv by scripts/test-tools), started on a free loopback port.
//! The tests read the bucket through its S3 API (ListObjectsV2), not through the server.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::process::free_port;

pub struct MotoS3 {
    pub endpoint: String,
    child: Child,
}

impl MotoS3 {
    pub async fn start() -> MotoS3 {
        let bin =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tools/.venv/bin/moto_server");
        assert!(
            bin.exists(),
            "{} is missing: run scripts/test-tools (scripts/test does)",
            bin.display()
        );
        let port = free_port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if http.get(&endpoint).send().await.is_ok() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "moto_server did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        MotoS3 { endpoint, child }
    }

    /// Create `bucket` (S3 CreateBucket).
    pub async fn create_bucket(&self, bucket: &str) {
        let r = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "create bucket: {}", r.status());
    }

    /// The keys under `prefix` in `bucket` (S3 ListObjectsV2).
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let body = reqwest::Client::new()
            .get(format!("{}/{bucket}", self.endpoint))
            .query(&[("list-type", "2"), ("prefix", prefix)])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        body.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    /// Settings pointing documents at `s3://{bucket}/{prefix}` on this server.
    pub fn configure(&self, s: &mut emergence::Settings, bucket: &str, prefix: &str) {
        s.documents.storage = Some(format!("s3://{bucket}/{prefix}"));
        for (k, v) in [
            ("endpoint", self.endpoint.as_str()),
            ("allow_http", "true"),
            ("region", "us-east-1"),
            ("access_key_id", "emergence-test"),
            ("secret_access_key", "emergence-test-secret"),
        ] {
            s.documents
                .storage_options
                .insert(k.to_string(), v.to_string());
        }
    }
}

impl Drop for MotoS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
