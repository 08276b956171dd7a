//! Reading `GET /metrics`: the samples of a Prometheus text exposition, enough for the operator
//! tools to add up a counter across its label sets.

/// One sample line: `name{labels} value [timestamp]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    /// The raw text between the braces (empty without labels).
    pub labels: &'a str,
    pub value: f64,
}

impl Sample<'_> {
    /// Whether the sample has the label `name="value"`.
    pub fn has_label(&self, name: &str, value: &str) -> bool {
        self.labels.contains(&format!("{name}=\"{value}\""))
    }
}

/// Every sample of the exposition, skipping comments, blank and unreadable lines.
pub fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines().map(str::trim).filter_map(sample)
}

/// `name{labels} value [timestamp]` -> its sample.
fn sample(line: &str) -> Option<Sample<'_>> {
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            (&line[..open], &line[open + 1..close], &line[close + 1..])
        }
        None => {
            let space = line.find(' ')?;
            (&line[..space], "", &line[space..])
        }
    };
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some(Sample {
        name: name.trim(),
        labels,
        value,
    })
}

/// The sum of a metric's samples over all its label sets (0 when absent).
pub fn sum(text: &str, name: &str) -> f64 {
    samples(text)
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_with_and_without_labels() {
        let text = "# HELP db_up Whether the database answers.\n# TYPE db_up gauge\ndb_up 1\n\
                    http_requests_total{route=\"/a\",status=\"429\"} 3 1700000000\n\
                    http_requests_total{route=\"/b\",status=\"200\"} 4\nbroken line\n";
        let all: Vec<_> = samples(text).collect();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].name, "db_up");
        assert_eq!(all[0].value, 1.0);
        assert!(all[1].has_label("status", "429"));
        assert!(!all[2].has_label("status", "429"));
        assert_eq!(sum(text, "http_requests_total"), 7.0);
        assert_eq!(sum(text, "absent_total"), 0.0);
    }
}
