//! Usage reports: the stored answers' token sums (`db::usage::UsageGroup`, one per requester,
//! day, agent and model) regrouped by the dimensions asked for, priced with the settings' price
//! table, as JSON or CSV (the same rows and columns).

use std::collections::{BTreeMap, HashMap};

use time::{Date, format_description::FormatItem, macros::format_description};

use crate::{
    contract::usage::{UsageReport, UsageRow, UsageTotals},
    db::usage::UsageGroup,
    error::ApiError,
    settings::usage::PriceTable,
};

const DAY: &[FormatItem<'static>] = format_description!("[year]-[month]-[day]");
const DAY_MS: i64 = 86_400_000;
/// The longest report, in days.
pub const MAX_DAYS: i64 = 366;

/// A dimension rows may be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dimension {
    Day,
    Agent,
    Model,
    User,
}

impl Dimension {
    fn parse(s: &str) -> Option<Dimension> {
        match s {
            "day" => Some(Dimension::Day),
            "agent" => Some(Dimension::Agent),
            "model" => Some(Dimension::Model),
            "user" => Some(Dimension::User),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Day => "day",
            Dimension::Agent => "agent",
            Dimension::Model => "model",
            Dimension::User => "user",
        }
    }
}

/// What a report covers, parsed from the query string.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    /// First and last day, inclusive.
    pub from: Date,
    pub to: Date,
    pub group: Vec<Dimension>,
    pub csv: bool,
}

fn date_param(q: &HashMap<String, String>, name: &str, default: Date) -> Result<Date, ApiError> {
    match q.get(name).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => Date::parse(v, DAY).map_err(|_| ApiError::field(name, "must be YYYY-MM-DD")),
    }
}

impl ReportRequest {
    /// `from`, `to` (default: this month so far), `group` (comma-separated; `day` by default;
    /// `user` only when `may_group_by_user`), `format` (`json` or `csv`; `Accept: text/csv` too).
    pub fn parse(
        q: &HashMap<String, String>,
        accepts_csv: bool,
        today: Date,
        may_group_by_user: bool,
    ) -> Result<ReportRequest, ApiError> {
        let first_of_month = today.replace_day(1).unwrap_or(today);
        let from = date_param(q, "from", first_of_month)?;
        let to = date_param(q, "to", today)?;
        if to < from {
            return Err(ApiError::field("to", "must not be before from"));
        }
        if (to - from).whole_days() >= MAX_DAYS {
            return Err(ApiError::field(
                "to",
                format!("a report covers at most {MAX_DAYS} days"),
            ));
        }
        let mut group = Vec::new();
        for name in q
            .get("group")
            .map(String::as_str)
            .unwrap_or("day")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let allowed = if may_group_by_user {
                "day, agent, model or user"
            } else {
                "day, agent or model"
            };
            let d = Dimension::parse(name)
                .filter(|d| *d != Dimension::User || may_group_by_user)
                .ok_or_else(|| ApiError::field("group", format!("each must be {allowed}")))?;
            if !group.contains(&d) {
                group.push(d);
            }
        }
        let csv = match q.get("format").map(String::as_str) {
            None | Some("") => accepts_csv,
            Some("json") => false,
            Some("csv") => true,
            Some(_) => return Err(ApiError::field("format", "must be json or csv")),
        };
        Ok(ReportRequest {
            from,
            to,
            group,
            csv,
        })
    }

    /// `[from, to)` in milliseconds since the epoch.
    pub fn range_ms(&self) -> (i64, i64) {
        let start = |d: Date| d.midnight().assume_utc().unix_timestamp() * 1000;
        (start(self.from), start(self.to) + DAY_MS)
    }
}

fn day_string(day: i64) -> String {
    Date::from_julian_day((day + 2_440_588) as i32)
        .ok()
        .and_then(|d| d.format(DAY).ok())
        .unwrap_or_default()
}

fn add(t: &mut UsageTotals, answers: u64, prompt: u64, completion: u64, cost: f64) {
    t.answers += answers;
    t.prompt_tokens += prompt;
    t.completion_tokens += completion;
    t.total_tokens += prompt + completion;
    t.cost += cost;
}

/// Regroup and price `groups`; `usernames` names the requesters (grouped by `user`).
pub fn build(
    req: &ReportRequest,
    groups: &[UsageGroup],
    prices: &PriceTable,
    currency: &str,
    usernames: &HashMap<String, String>,
) -> UsageReport {
    type Key = (Option<i64>, Option<String>, Option<String>, Option<String>);
    let mut rows: BTreeMap<Key, UsageTotals> = BTreeMap::new();
    let mut total = UsageTotals::default();
    let has = |d: Dimension| req.group.contains(&d);
    for g in groups {
        let (prompt, completion) = (
            g.prompt_tokens.max(0) as u64,
            g.completion_tokens.max(0) as u64,
        );
        let model = g.model.clone().unwrap_or_else(|| "unknown".into());
        let cost = prices
            .get(&model)
            .map_or(0.0, |p| p.cost(prompt, completion));
        let key = (
            has(Dimension::Day).then_some(g.day),
            has(Dimension::Agent).then(|| g.agent.clone()),
            has(Dimension::Model).then(|| model.clone()),
            has(Dimension::User).then(|| g.user_id.clone()),
        );
        let answers = g.answers.max(0) as u64;
        add(
            rows.entry(key).or_default(),
            answers,
            prompt,
            completion,
            cost,
        );
        add(&mut total, answers, prompt, completion, cost);
    }
    UsageReport {
        from: req.from.format(DAY).unwrap_or_default(),
        to: req.to.format(DAY).unwrap_or_default(),
        group: req.group.iter().map(|d| d.as_str().to_string()).collect(),
        currency: currency.to_string(),
        rows: rows
            .into_iter()
            .map(|((day, agent, model, user), totals)| UsageRow {
                day: day.map(day_string),
                agent,
                model,
                username: user.as_ref().and_then(|u| usernames.get(u).cloned()),
                user_id: user,
                totals,
            })
            .collect(),
        total,
    }
}

/// The report as CSV: a column per grouped dimension, then the figures, one row per group (the
/// rows of the JSON report, in the same order); the cost with 6 decimals.
pub fn to_csv(report: &UsageReport) -> Result<String, ApiError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<&str> = Vec::new();
    for d in &report.group {
        match d.as_str() {
            "user" => header.extend(["user_id", "username"]),
            other => header.push(other),
        }
    }
    header.extend([
        "answers",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cost",
    ]);
    let fail = |e: csv::Error| ApiError::Internal(anyhow::Error::new(e));
    w.write_record(&header).map_err(fail)?;
    for r in &report.rows {
        let mut record: Vec<String> = Vec::new();
        for d in &report.group {
            let v = |o: &Option<String>| o.clone().unwrap_or_default();
            match d.as_str() {
                "day" => record.push(v(&r.day)),
                "agent" => record.push(v(&r.agent)),
                "model" => record.push(v(&r.model)),
                _ => record.extend([v(&r.user_id), v(&r.username)]),
            }
        }
        let t = &r.totals;
        record.extend([
            t.answers.to_string(),
            t.prompt_tokens.to_string(),
            t.completion_tokens.to_string(),
            t.total_tokens.to_string(),
            format!("{:.6}", t.cost),
        ]);
        w.write_record(&record).map_err(fail)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("csv: {e}")))?;
    String::from_utf8(bytes).map_err(|e| ApiError::Internal(anyhow::Error::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::usage::Price;

    fn g(user: &str, day: i64, agent: &str, model: Option<&str>, p: i64, c: i64) -> UsageGroup {
        UsageGroup {
            user_id: user.into(),
            day,
            agent: agent.into(),
            model: model.map(str::to_string),
            answers: 1,
            prompt_tokens: p,
            completion_tokens: c,
        }
    }

    #[test]
    fn rows_regroup_and_cost_is_tokens_times_price() {
        let q: HashMap<String, String> = [("group".to_string(), "agent,model".to_string())].into();
        let today = Date::from_calendar_date(2026, time::Month::November, 30).unwrap();
        let req = ReportRequest::parse(&q, false, today, false).unwrap();
        let prices: PriceTable = [(
            "m1".to_string(),
            Price {
                input_per_million: 2.0,
                output_per_million: 10.0,
            },
        )]
        .into();
        let groups = [
            g("u1", 20_000, "a", Some("m1"), 100, 10),
            g("u2", 20_001, "a", Some("m1"), 50, 5),
            g("u1", 20_001, "b", None, 7, 3),
        ];
        let r = build(&req, &groups, &prices, "USD", &HashMap::new());
        assert_eq!(r.rows.len(), 2);
        assert_eq!(r.rows[0].agent.as_deref(), Some("a"));
        assert_eq!(r.rows[0].totals.prompt_tokens, 150);
        assert!((r.rows[0].totals.cost - (150.0 * 2.0 + 15.0 * 10.0) / 1e6).abs() < 1e-12);
        assert_eq!(r.rows[1].model.as_deref(), Some("unknown"));
        assert_eq!(r.rows[1].totals.cost, 0.0);
        assert_eq!(r.total.total_tokens, 175);
        let csv = to_csv(&r).unwrap();
        assert_eq!(
            csv.lines().next(),
            Some("agent,model,answers,prompt_tokens,completion_tokens,total_tokens,cost")
        );
        assert_eq!(csv.lines().nth(1), Some("a,m1,2,150,15,165,0.000450"));
        assert_eq!(day_string(20_422), "2025-11-30");
    }

    #[test]
    fn bad_parameters_are_refused_by_field() {
        let today = Date::from_calendar_date(2026, time::Month::November, 30).unwrap();
        for (k, v) in [
            ("from", "yesterday"),
            ("group", "user"),
            ("group", "week"),
            ("format", "xml"),
            ("to", "2026-10-01"),
        ] {
            let q: HashMap<String, String> = [
                ("from".to_string(), "2026-11-01".to_string()),
                (k.to_string(), v.to_string()),
            ]
            .into();
            assert!(
                ReportRequest::parse(&q, false, today, false).is_err(),
                "{k}={v}"
            );
        }
    }
}
