//! Documents for the tests, made by the tests: a PDF with known text on known pages (with
//! `lopdf`), a DOCX (a zip of WordprocessingML), a zip bomb, garbage; and the upload and
//! wait-for-extraction helpers.

use std::{io::Write, time::Duration};

use lopdf::{
    Document, Object, Stream,
    content::{Content, Operation},
    dictionary,
};
use serde_json::Value;

use super::{TestApp, TestUser};

/// A PDF whose page `i` shows the lines `pages[i]`.
pub fn pdf(pages: &[&[&str]]) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Helvetica",
        "Encoding" => "WinAnsiEncoding",
    });
    let resources_id = doc.add_object(dictionary! {
        "Font" => dictionary! { "F1" => font_id },
    });
    let mut kids = Vec::new();
    for lines in pages {
        let mut operations = vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 12.into()]),
            Operation::new("TL", vec![16.into()]),
            Operation::new("Td", vec![60.into(), 760.into()]),
        ];
        for line in lines.iter() {
            operations.push(Operation::new("Tj", vec![Object::string_literal(*line)]));
            operations.push(Operation::new("T*", vec![]));
        }
        operations.push(Operation::new("ET", vec![]));
        let content = Content { operations };
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "Contents" => content_id,
        });
        kids.push(page_id.into());
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => count,
            "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! {
        "Type" => "Catalog",
        "Pages" => pages_id,
    });
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

/// [`pdf`], encrypted with the user password `password` (RC4, 128 bits).
pub fn encrypted_pdf(pages: &[&[&str]], password: &str) -> Vec<u8> {
    let mut doc = Document::load_mem(&pdf(pages)).unwrap();
    // Encryption keys are derived from the file's ID.
    let id = Object::string_literal(b"0123456789abcdef".to_vec());
    doc.trailer.set("ID", Object::Array(vec![id.clone(), id]));
    let version = lopdf::EncryptionVersion::V2 {
        document: &doc,
        owner_password: "owner secret",
        user_password: password,
        key_length: 128,
        permissions: lopdf::Permissions::all(),
    };
    let state = lopdf::EncryptionState::try_from(version).unwrap();
    doc.encrypt(&state).unwrap();
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

/// A DOCX of paragraphs; `Some(style)` paragraphs are styled (`Heading1`, `Title`).
pub fn docx(paragraphs: &[(Option<&str>, &str)]) -> Vec<u8> {
    let mut body = String::new();
    for (style, text) in paragraphs {
        body.push_str("<w:p>");
        if let Some(s) = style {
            body.push_str(&format!("<w:pPr><w:pStyle w:val=\"{s}\"/></w:pPr>"));
        }
        body.push_str(&format!(
            "<w:r><w:t xml:space=\"preserve\">{}</w:t></w:r></w:p>",
            text.replace('&', "&amp;").replace('<', "&lt;")
        ));
    }
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
         <w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\">\
         <w:body>{body}</w:body></w:document>"
    );
    zip_of(&[
        ("[Content_Types].xml", CONTENT_TYPES.as_bytes().to_vec()),
        ("word/document.xml", xml.into_bytes()),
    ])
}

const CONTENT_TYPES: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
    <Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">\
    <Override PartName=\"/word/document.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml\"/>\
    </Types>";

fn zip_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in files {
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    out.into_inner()
}

/// A DOCX whose `word/document.xml` unzips to `mib` MiB (of one repeated paragraph), a few
/// hundred KiB zipped.
pub fn zip_bomb_docx(mib: usize) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    zip.start_file("word/document.xml", options).unwrap();
    zip.write_all(b"<w:document xmlns:w=\"w\"><w:body>")
        .unwrap();
    let block = "<w:p><w:r><w:t>bomb</w:t></w:r></w:p>".repeat(1024 * 1024 / 37);
    for _ in 0..mib {
        zip.write_all(block.as_bytes()).unwrap();
    }
    zip.write_all(b"</w:body></w:document>").unwrap();
    zip.finish().unwrap();
    out.into_inner()
}

/// Upload `bytes` as `name` to `thread`.
pub async fn upload(
    app: &TestApp,
    user: &TestUser,
    thread: &str,
    name: &str,
    bytes: Vec<u8>,
) -> reqwest::Response {
    upload_at(&app.http, &app.address, &user.token, thread, name, bytes).await
}

/// Upload `bytes` as `name` to `thread` of the server at `base`.
pub async fn upload_at(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    thread: &str,
    name: &str,
    bytes: Vec<u8>,
) -> reqwest::Response {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_string());
    let form = reqwest::multipart::Form::new().part("file", part);
    http.post(format!("{base}/api/threads/{thread}/documents"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .expect("upload request")
}

/// Upload and expect 201; the document's id.
pub async fn uploaded(
    app: &TestApp,
    user: &TestUser,
    thread: &str,
    name: &str,
    bytes: Vec<u8>,
) -> String {
    let r = upload(app, user, thread, name, bytes).await;
    assert_eq!(r.status(), 201, "upload {name}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "processing", "{v}");
    assert_eq!(v["name"], name, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// Until the document is no longer `processing` (at most 90 s: a loaded machine runs the
/// extraction child slowly); the document.
pub async fn settled_at(base: &str, token: &str, thread: &str, doc: &str) -> Value {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let r = http
            .get(format!("{base}/api/threads/{thread}/documents/{doc}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        if v["status"] != "processing" {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "document {doc} still processing: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn settled(app: &TestApp, user: &TestUser, thread: &str, doc: &str) -> Value {
    settled_at(&app.address, &user.token, thread, doc).await
}

/// The passages a search of the thread's documents finds for `q`, as `user`.
pub async fn passages(app: &TestApp, user: &TestUser, thread: &str, q: &str) -> Vec<Value> {
    let r = app
        .get(
            &format!("/api/threads/{thread}/documents/search?q={}", percent(q)),
            Some(&user.token),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["passages"].as_array().unwrap().clone()
}

pub fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// In-process servers run the built `emergence` binary as their extraction child (their own
/// executable is the test binary).
pub fn use_built_extractor(s: &mut emergence::Settings) {
    s.documents.extractor = Some(super::process::BUILT.into());
}

/// Next frame of `kind` about `thread` (waiting up to 90 s: extraction runs in a child process
/// that a loaded machine starts slowly).
pub async fn next_frame(
    ws: &mut super::WsClient,
    kind: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "no {kind} frame in time");
        match ws.recv_within(left).await {
            Some(v) if v["type"] == kind && pred(&v) => return v,
            Some(_) => {}
            None => panic!("the socket ended or no {kind} frame came in time"),
        }
    }
}
