//! One scrape of `/metrics`, read with the client crate's parser (the one the operator tools
//! use), so the tests and the tools agree on what a sample is: every sample keyed
//! `name{labels}` exactly as exported.

use std::collections::BTreeMap;

use emergence_client::metrics::samples;

use super::TestApp;

/// Every sample of one `/metrics` scrape, keyed `name{labels}` exactly as exported.
#[derive(Debug, Clone, Default)]
pub struct Scrape(pub BTreeMap<String, f64>);

impl Scrape {
    pub async fn of(app: &TestApp) -> Scrape {
        Scrape::parse(&app.get("/metrics", None).await.text().await.unwrap())
    }

    pub async fn at(http: &reqwest::Client, port: u16) -> Scrape {
        let text = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        Scrape::parse(&text)
    }

    pub fn parse(text: &str) -> Scrape {
        Scrape(
            samples(text)
                .map(|s| {
                    let key = if s.labels.is_empty() {
                        s.name.to_string()
                    } else {
                        format!("{}{{{}}}", s.name, s.labels)
                    };
                    (key, s.value)
                })
                .collect(),
        )
    }

    /// The sample's value; panics when it is not exported.
    pub fn get(&self, key: &str) -> f64 {
        *self
            .0
            .get(key)
            .unwrap_or_else(|| panic!("{key} is not exported"))
    }

    /// The sum of the samples whose key starts with `prefix`: a metric's name sums all its
    /// label sets, `name{labels}` one of them.
    pub fn sum_prefixed(&self, prefix: &str) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    }

    /// The sum of the samples of `name` whose labels hold every `label="value"` of `with`.
    pub fn sum(&self, name: &str, with: &[&str]) -> f64 {
        self.0
            .iter()
            .filter(|(key, _)| {
                key.split('{').next() == Some(name) && with.iter().all(|l| key.contains(l))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// The samples that differ from `before` (a sample absent before counts from 0), among
    /// those whose key starts with `prefix`.
    pub fn moved_since(&self, before: &Scrape, prefix: &str) -> BTreeMap<String, f64> {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, v)| {
                let d = v - before.0.get(k).copied().unwrap_or(0.0);
                (d != 0.0).then(|| (k.clone(), d))
            })
            .collect()
    }
}

/// `{key: delta}` for exact comparisons with `moved_since`.
pub fn deltas(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}
