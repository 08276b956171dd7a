//! The few metrics verify reads from `/metrics` (rate-limited answers, 429s, `db_up`,
//! reconnections), parsed from the Prometheus text exposition.

use reqwest::Url;

use super::{Ctx, error_chain};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// `rate_limited_total`, all scopes.
    pub rate_limited: f64,
    /// `http_requests_total{status="429"}`, all routes.
    pub http_429: f64,
    pub db_up: f64,
    pub reconnect_attempts: f64,
    pub reconnect_success: f64,
}

/// Read the values verify needs from a Prometheus text exposition.
pub fn parse_metrics(text: &str) -> Result<Scrape, String> {
    let mut s = Scrape::default();
    let mut saw_db_up = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, labels, value)) = sample(line) else {
            continue;
        };
        match name {
            "rate_limited_total" => s.rate_limited += value,
            "http_requests_total" if labels.contains("status=\"429\"") => s.http_429 += value,
            "db_up" => {
                s.db_up = value;
                saw_db_up = true;
            }
            "db_reconnect_attempts_total" => s.reconnect_attempts += value,
            "db_reconnect_success_total" => s.reconnect_success += value,
            _ => {}
        }
    }
    if saw_db_up {
        Ok(s)
    } else {
        Err("no Emergence metrics (db_up) in the answer".into())
    }
}

/// `name{labels} value [timestamp]` -> (name, raw labels, value).
fn sample(line: &str) -> Option<(&str, &str, f64)> {
    let (series, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            (&line[..open], (&line[open + 1..close], &line[close + 1..]))
        }
        None => {
            let space = line.find(' ')?;
            (&line[..space], ("", &line[space..]))
        }
    };
    let value = rest.1.split_whitespace().next()?.parse::<f64>().ok()?;
    Some((series.trim(), rest.0, value))
}

pub(super) async fn scrape(ctx: &Ctx, url: &Url) -> Result<Scrape, String> {
    let r = ctx
        .send(ctx.http.get(url.clone()))
        .await
        .map_err(|e| error_chain(&e))?;
    let status = r.status();
    if !status.is_success() {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    let text = r.text().await.map_err(|e| error_chain(&e))?;
    parse_metrics(&text)
}
