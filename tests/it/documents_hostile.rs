//! Hostile documents: a zip bomb, garbage named `.pdf`, a PDF without text, a password-protected
//! PDF, a huge single line.
//! Each ends `failed` with a reason a user can act on (or, for the line, `indexed` in bounded
//! passages) while the real server binary keeps answering and its own peak memory stays small:
//! the file is parsed only in the extraction child, whose address space is limited (the last
//! test shows the limit stops a child that would need more).

use std::{
    io::Write,
    process::{Command, Stdio},
};

use serde_json::Value;

use crate::support::{
    documents::{encrypted_pdf, pdf, settled_at, upload_at, zip_bomb_docx},
    process::{BUILT, spawn_ready_on_sqlite},
};

/// Peak resident memory of a process (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[tokio::test]
async fn malicious_files_fail_with_a_reason_while_the_server_stays_up_and_small() {
    let server = spawn_ready_on_sqlite().await;
    let base = format!("http://127.0.0.1:{}", server.port);
    let http = reqwest::Client::new();
    let token = crate::support::process::register(&http, &base, "alice").await;
    let thread = crate::support::process::create_thread(
        &http,
        &base,
        &token,
        serde_json::json!({"title": "hostile"}),
    )
    .await;
    let bomb_mib = 200;
    let line: Vec<u8> = "x".repeat(8 * 1024 * 1024).into_bytes();
    let mut garbage = b"%PDF-1.7\n".to_vec();
    garbage.extend((0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let files: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("bomb.docx", zip_bomb_docx(bomb_mib), Some("zip bomb")),
        ("garbage.pdf", garbage, Some("could not be read")),
        ("scan.pdf", pdf(&[&[], &[]]), Some("no text layer")),
        (
            "locked.pdf",
            encrypted_pdf(&[&["A secret page."]], "hunter2"),
            Some("encrypted (password-protected)"),
        ),
        ("line.txt", line, None),
    ];
    let mut ids = Vec::new();
    for (name, bytes, _) in &files {
        let r = upload_at(&http, &base, &token, &thread, name, bytes.clone()).await;
        assert_eq!(r.status(), 201, "{name}");
        let v: Value = r.json().await.unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    for ((name, _, reason), id) in files.iter().zip(&ids) {
        let doc = settled_at(&base, &token, &thread, id).await;
        match reason {
            Some(reason) => {
                assert_eq!(doc["status"], "failed", "{name}: {doc}");
                let error = doc["error"].as_str().unwrap_or_default();
                assert!(error.contains(reason), "{name}: {error}");
            }
            None => assert_eq!(doc["status"], "indexed", "{name}: {doc}"),
        }
    }
    // The single line became bounded passages.
    let chunks: Value = http
        .get(format!(
            "{base}/api/threads/{thread}/documents/{}/chunks?limit=500",
            ids[4]
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chunks = chunks["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 500);
    assert!(
        chunks
            .iter()
            .all(|c| c["text"].as_str().unwrap().chars().count() <= 1200)
    );
    // Still serving, and the failures are counted by reason.
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in ["too_large", "corrupt", "no_text", "encrypted"] {
        let line = format!("document_extraction_failures_total{{reason=\"{reason}\"}} 1");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    // The server never held the bomb's 200 MiB unzipped (a debug build idles at 40-80 MiB).
    let peak_mib = peak_rss_kib(server.pid()) / 1024;
    eprintln!("the server's peak RSS: {peak_mib} MiB");
    assert!(
        peak_mib < bomb_mib as u64 * 3 / 4,
        "the server's peak RSS was {peak_mib} MiB"
    );
}

/// Run the extraction child on `input` with an address space of `memory_mb`; its output.
fn run_child(input: &[u8], memory_mb: u64) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(BUILT)
        .args(["extract", "--kind", "txt", "--max-bytes", "200000000"])
        .args(["--memory-mb", &memory_mb.to_string(), "--cpu-secs", "60"])
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The child may stop reading (killed by its limit): a broken pipe is part of the test.
    let _ = stdin.write_all(input);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn the_extraction_child_cannot_grow_past_its_memory_limit() {
    let small = b"A small file reads fine under the limit.".to_vec();
    let (status, out) = run_child(&small, 256);
    assert!(status.success(), "{status:?}");
    assert!(out.contains("\"done\""), "{out}");
    // 96 MiB of text cannot even be read into 256 MiB of address space together with the
    // passages made of it: the allocation fails and the child dies without an answer.
    let big = "word ".repeat(96 * 1024 * 1024 / 5).into_bytes();
    let (status, out) = run_child(&big, 256);
    assert!(!status.success(), "{status:?}");
    assert!(!out.contains("\"done\""));
}
