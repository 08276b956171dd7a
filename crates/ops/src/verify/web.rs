//! The web UI as a browser loads it: the request budget of the first load, immutable caching
//! and compression of hashed assets, `index.html` revalidation (no-cache + ETag -> 304) and the
//! Content-Security-Policy.

use std::fmt::Write as _;

use reqwest::{Response, StatusCode, Url, header};

use super::{
    ASSET_CACHING, ASSET_COMPRESSION, CSP, Ctx, INDEX_REVALIDATION, WEB_FIRST_LOAD, error_chain,
    report::Check,
};

/// What one fetch of the first load returned.
struct Fetched {
    url: Url,
    status: StatusCode,
    cache_control: String,
    encoding: Option<String>,
    content_type: String,
}

impl Fetched {
    fn hashed(&self) -> bool {
        self.url.path().contains("/assets/")
    }

    /// Text that a browser would get compressed (scripts, styles, SVG, JSON, HTML).
    fn compressible(&self) -> bool {
        let t = self.content_type.to_ascii_lowercase();
        t.starts_with("text/")
            || t.contains("javascript")
            || t.contains("json")
            || t.contains("svg")
    }

    fn label(&self) -> String {
        self.url.path().to_string()
    }
}

pub(super) fn header_str(r: &Response, name: header::HeaderName) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn fetch_like_a_browser(ctx: &Ctx, url: Url, accept: &str) -> Result<Fetched, String> {
    let r = ctx
        .send(
            ctx.http
                .get(url.clone())
                .header(header::ACCEPT, accept)
                .header(header::ACCEPT_ENCODING, "br, gzip"),
        )
        .await
        .map_err(|e| format!("{}: {}", url.path(), error_chain(&e)))?;
    let fetched = Fetched {
        url,
        status: r.status(),
        cache_control: header_str(&r, header::CACHE_CONTROL).unwrap_or_default(),
        encoding: header_str(&r, header::CONTENT_ENCODING),
        content_type: header_str(&r, header::CONTENT_TYPE).unwrap_or_default(),
    };
    // Download the body like a browser would.
    let _ = r.bytes().await;
    Ok(fetched)
}

/// The first load of the web UI, as a browser does it, and what the headers promise.
pub(super) async fn check_web_ui(ctx: &Ctx, max_requests: usize) -> Vec<Check> {
    let budget = format!("<= {max_requests} requests, all 2xx");
    let fail_all = |why: String| {
        vec![
            Check::new(WEB_FIRST_LOAD, budget.clone(), why.clone(), false),
            Check::new(
                ASSET_CACHING,
                "immutable, max-age >= 31536000",
                "not checked: no page",
                false,
            ),
            Check::new(
                ASSET_COMPRESSION,
                "br or gzip when asked",
                "not checked: no page",
                false,
            ),
            Check::new(
                INDEX_REVALIDATION,
                "no-cache + ETag, If-None-Match -> 304",
                "not checked: no page",
                false,
            ),
            Check::new(
                CSP,
                "present, frame-ancestors 'none'",
                "not checked: no page",
                false,
            ),
        ]
    };
    let page_url = ctx.url("/");
    let page = match ctx
        .send(
            ctx.http
                .get(page_url.clone())
                .header(header::ACCEPT, "text/html")
                .header(header::ACCEPT_ENCODING, "br, gzip"),
        )
        .await
    {
        Ok(r) => r,
        Err(e) => return fail_all(format!("GET /: {}", error_chain(&e))),
    };
    let page_status = page.status();
    let page_cache = header_str(&page, header::CACHE_CONTROL).unwrap_or_default();
    let etag = header_str(&page, header::ETAG);
    let csp = header_str(&page, header::CONTENT_SECURITY_POLICY);
    let page_encoding = header_str(&page, header::CONTENT_ENCODING);
    let page_body = page.bytes().await.unwrap_or_default();
    if !page_status.is_success() {
        return fail_all(format!("GET / answered {}", page_status.as_u16()));
    }
    // The probe cannot decode brotli: it reads the HTML from an uncompressed copy. This request
    // is the tool's own and is not part of the browser's budget.
    let html = if page_encoding.is_none() {
        String::from_utf8_lossy(&page_body).into_owned()
    } else {
        match ctx
            .send(
                ctx.http
                    .get(page_url.clone())
                    .header(header::ACCEPT_ENCODING, "identity"),
            )
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => return fail_all(format!("GET / (uncompressed): {}", error_chain(&e))),
        }
    };
    let refs = page_references(&html);
    let mut fetched = Vec::new();
    let mut errors = Vec::new();
    for r in &refs {
        let Ok(url) = page_url.join(&r.href) else {
            errors.push(format!("bad URL {}", r.href));
            continue;
        };
        let accept = match r.kind {
            RefKind::Script => "*/*",
            RefKind::Stylesheet => "text/css,*/*;q=0.1",
            RefKind::Icon => "image/*,*/*;q=0.8",
        };
        match fetch_like_a_browser(ctx, url, accept).await {
            Ok(f) => fetched.push(f),
            Err(e) => errors.push(e),
        }
    }
    let mut checks = Vec::new();

    // Request budget and statuses.
    let requests = 1 + refs.len();
    let scripts = refs.iter().filter(|r| r.kind == RefKind::Script).count();
    let styles = refs
        .iter()
        .filter(|r| r.kind == RefKind::Stylesheet)
        .count();
    let icons = refs.iter().filter(|r| r.kind == RefKind::Icon).count();
    let bad: Vec<String> = fetched
        .iter()
        .filter(|f| !f.status.is_success())
        .map(|f| format!("{} {}", f.label(), f.status.as_u16()))
        .chain(errors.iter().cloned())
        .collect();
    let mut value = format!(
        "{requests} requests (index.html, {scripts} script, {styles} stylesheet, {icons} icon)"
    );
    if bad.is_empty() {
        value.push_str(", all 2xx");
    } else {
        let _ = write!(value, "; failed: {}", bad.join(", "));
    }
    if scripts == 0 {
        value.push_str("; no <script src> in index.html");
    }
    checks.push(Check::new(
        WEB_FIRST_LOAD,
        budget,
        value,
        requests <= max_requests && bad.is_empty() && scripts > 0,
    ));

    // Hashed assets: cached forever, compressed when asked.
    let hashed: Vec<&Fetched> = fetched
        .iter()
        .filter(|f| f.hashed() && f.status.is_success())
        .collect();
    let not_immutable: Vec<String> = hashed
        .iter()
        .filter(|f| !immutable_for_a_year(&f.cache_control))
        .map(|f| format!("{} \"{}\"", f.label(), f.cache_control))
        .collect();
    let caching = if hashed.is_empty() {
        (String::from("no hashed /assets/ file referenced"), false)
    } else if not_immutable.is_empty() {
        (
            format!(
                "{} hashed assets: \"{}\"",
                hashed.len(),
                hashed[0].cache_control
            ),
            true,
        )
    } else {
        (
            format!("not immutable: {}", not_immutable.join(", ")),
            false,
        )
    };
    checks.push(Check::new(
        ASSET_CACHING,
        "immutable, max-age >= 31536000",
        caching.0,
        caching.1,
    ));
    let compressible: Vec<&&Fetched> = hashed.iter().filter(|f| f.compressible()).collect();
    let uncompressed: Vec<String> = compressible
        .iter()
        .filter(|f| !matches!(f.encoding.as_deref(), Some("br") | Some("gzip")))
        .map(|f| f.label())
        .collect();
    let encodings: Vec<String> = compressible
        .iter()
        .map(|f| f.encoding.clone().unwrap_or_else(|| "identity".into()))
        .collect();
    let compression = if compressible.is_empty() {
        (
            String::from("no compressible hashed asset referenced"),
            false,
        )
    } else if uncompressed.is_empty() {
        (
            format!(
                "{} text assets: {}",
                compressible.len(),
                encodings.join(", ")
            ),
            true,
        )
    } else {
        (
            format!("served uncompressed: {}", uncompressed.join(", ")),
            false,
        )
    };
    checks.push(Check::new(
        ASSET_COMPRESSION,
        "br or gzip when asked",
        compression.0,
        compression.1,
    ));

    // index.html: always revalidated, and revalidation is cheap.
    let no_cache = page_cache
        .split(',')
        .any(|d| d.trim().eq_ignore_ascii_case("no-cache"));
    let revalidation = match &etag {
        None => None,
        Some(tag) => match ctx
            .send(
                ctx.http
                    .get(page_url.clone())
                    .header(header::ACCEPT, "text/html")
                    .header(header::ACCEPT_ENCODING, "br, gzip")
                    .header(header::IF_NONE_MATCH, tag.as_str()),
            )
            .await
        {
            Ok(r) => Some(r.status().as_u16().to_string()),
            Err(e) => Some(error_chain(&e)),
        },
    };
    let value = format!(
        "Cache-Control \"{page_cache}\", ETag {}, If-None-Match -> {}",
        etag.as_deref().unwrap_or("missing"),
        revalidation.as_deref().unwrap_or("not tried")
    );
    checks.push(Check::new(
        INDEX_REVALIDATION,
        "no-cache + ETag, If-None-Match -> 304",
        value,
        no_cache && etag.is_some() && revalidation.as_deref() == Some("304"),
    ));

    let csp_ok = csp
        .as_deref()
        .is_some_and(|c| c.contains("frame-ancestors 'none'"));
    let csp_value = match &csp {
        None => "missing".to_string(),
        Some(_) if csp_ok => "present, frame-ancestors 'none'".to_string(),
        Some(c) => format!("\"{c}\""),
    };
    checks.push(Check::new(
        CSP,
        "present, frame-ancestors 'none'",
        csp_value,
        csp_ok,
    ));
    checks
}

pub(super) fn immutable_for_a_year(cache_control: &str) -> bool {
    let directives: Vec<String> = cache_control
        .split(',')
        .map(|d| d.trim().to_ascii_lowercase())
        .collect();
    let max_age = directives
        .iter()
        .find_map(|d| {
            d.strip_prefix("max-age=")?
                .trim_matches('"')
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    directives.iter().any(|d| d == "immutable") && max_age >= 31_536_000
}

/// A resource that index.html makes the browser load at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRef {
    pub kind: RefKind,
    pub href: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    Script,
    Stylesheet,
    Icon,
}

/// `<script src>`, `<link rel="stylesheet" href>` and `<link rel="icon" href>` of a page.
pub fn page_references(html: &str) -> Vec<PageRef> {
    let mut refs = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        let end = tag_end(rest);
        let tag = &rest[..end];
        rest = &rest[end..];
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        let attrs = attributes(&tag[name.len()..]);
        let attr = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        match name.as_str() {
            "script" => {
                if let Some(src) = attr("src") {
                    refs.push(PageRef {
                        kind: RefKind::Script,
                        href: src,
                    });
                }
            }
            "link" => {
                let rel = attr("rel").unwrap_or_default().to_ascii_lowercase();
                let rels: Vec<&str> = rel.split_ascii_whitespace().collect();
                let kind = if rels.contains(&"stylesheet") {
                    Some(RefKind::Stylesheet)
                } else if rels.contains(&"icon") {
                    Some(RefKind::Icon)
                } else {
                    None
                };
                if let (Some(kind), Some(href)) = (kind, attr("href")) {
                    refs.push(PageRef { kind, href });
                }
            }
            _ => {}
        }
    }
    refs
}

/// Index of the `>` closing a tag, ignoring those inside quoted attribute values.
fn tag_end(s: &str) -> usize {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return i,
            _ => {}
        }
    }
    s.len()
}

/// The attributes of a tag (names lowercased; values unquoted; bare attributes have "").
fn attributes(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == '/') {
            i += 1;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '=' && chars[i] != '/' {
            i += 1;
        }
        if start == i {
            break;
        }
        let name: String = chars[start..i]
            .iter()
            .collect::<String>()
            .to_ascii_lowercase();
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < chars.len() && chars[i] == '=' {
            i += 1;
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if i < chars.len() && (chars[i] == '"' || chars[i] == '\'') {
                let q = chars[i];
                i += 1;
                let vs = i;
                while i < chars.len() && chars[i] != q {
                    i += 1;
                }
                value = chars[vs..i].iter().collect();
                i += 1;
            } else {
                let vs = i;
                while i < chars.len() && !chars[i].is_whitespace() {
                    i += 1;
                }
                value = chars[vs..i].iter().collect();
            }
        }
        out.push((name, value));
    }
    out
}
