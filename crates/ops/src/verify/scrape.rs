//! The few metrics verify reads from `/metrics` (rate-limited answers, 429s, `db_up`,
//! reconnections), parsed from the Prometheus text exposition.

use emergence_client::{Error, Url, metrics::samples};

use super::Ctx;

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
    for sample in samples(text) {
        match sample.name {
            "rate_limited_total" => s.rate_limited += sample.value,
            "http_requests_total" if sample.has_label("status", "429") => {
                s.http_429 += sample.value
            }
            "db_up" => {
                s.db_up = sample.value;
                saw_db_up = true;
            }
            "db_reconnect_attempts_total" => s.reconnect_attempts += sample.value,
            "db_reconnect_success_total" => s.reconnect_success += sample.value,
            _ => {}
        }
    }
    if saw_db_up {
        Ok(s)
    } else {
        Err("no Emergence metrics (db_up) in the answer".into())
    }
}

pub(super) async fn scrape(ctx: &Ctx, url: &Url) -> Result<Scrape, String> {
    match ctx.api.metrics_text(Some(url)).await {
        Ok(text) => parse_metrics(&text),
        Err(Error::Status { status, .. }) => {
            ctx.count_status(status);
            Err(format!("HTTP {}", status.as_u16()))
        }
        Err(e) => Err(e.to_string()),
    }
}
