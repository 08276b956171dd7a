//! `GET /api/search`: full-text search over every thread the caller can read, with the
//! database's own engine (docs/search.md). This module checks the request and turns the words
//! into each engine's query; `db::sql::search` runs it, with the caller's memberships joined
//! inside the query so that no hit from another thread ever leaves the database.

use std::collections::HashMap;

use axum::{
    Json, Router,
    extract::{Query, State},
    routing::get,
};
use rust_stemmers::{Algorithm, Stemmer};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    auth::CurrentUser,
    contract::{
        AuthorView,
        threads::{SearchHitView, SearchParams, SearchResults},
    },
    db::{lifecycle::SearchQuery, rfc3339},
    domain::Username,
    error::ApiError,
    state::AppState,
};

/// Longest query, in characters.
const MAX_QUERY_CHARS: usize = 200;
/// Words of a query beyond this many are ignored.
const MAX_WORDS: usize = 16;
/// Hits per page: default and most.
const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;
/// Deepest page.
const MAX_OFFSET: i64 = 10_000;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/search", get(search))
}

/// The words of a query: runs of letters and digits, lower-cased.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_WORDS)
        .map(str::to_lowercase)
        .collect()
}

/// The FTS5 `MATCH` expression for the words: every word must match, as itself (English forms
/// through the index's Porter stemmer) or by the prefix of its French Snowball stem (French
/// forms: "mangeait" finds "manger", "mangé"). Words are letters and digits only, so quoting
/// them is enough to keep FTS5 syntax out.
pub fn fts5_expression(words: &[String]) -> String {
    let french = Stemmer::create(Algorithm::French);
    words
        .iter()
        .map(|w| {
            let stem = french.stem(w);
            if stem.chars().count() >= 3 && stem.as_ref() != w.as_str() {
                format!("(\"{w}\" OR \"{stem}\"*)")
            } else {
                format!("\"{w}\"")
            }
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn time_param(q: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    q.get(name)
        .map(|v| {
            OffsetDateTime::parse(v, &Rfc3339)
                .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                .map_err(|_| ApiError::field(name, "must be an RFC 3339 time"))
        })
        .transpose()
}

fn int_param(
    q: &HashMap<String, String>,
    name: &str,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, ApiError> {
    let Some(v) = q.get(name) else {
        return Ok(default);
    };
    v.parse::<i64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            ApiError::field(
                name,
                format!(
                    "must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )
        })
}

/// Search the messages of every thread the caller is a member of (archived ones included).
#[utoipa::path(
    get,
    path = "/api/search",
    operation_id = "search",
    tag = "threads",
    params(SearchParams),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Hits, best first", body = SearchResults),
        (status = 422, response = crate::error::responses::Validation),
    )
)]
pub(crate) async fn search(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<SearchResults>, ApiError> {
    let text = q.get("q").map(|t| t.trim()).unwrap_or_default();
    if text.is_empty() {
        return Err(ApiError::field("q", "is required"));
    }
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::field(
            "q",
            format!("must be at most {MAX_QUERY_CHARS} characters"),
        ));
    }
    let limit = int_param(&q, "limit", DEFAULT_LIMIT, 1..=MAX_LIMIT)?;
    let offset = int_param(&q, "offset", 0, 0..=MAX_OFFSET)?;
    let (from, to) = (time_param(&q, "from")?, time_param(&q, "to")?);
    let empty = || {
        Ok(Json(SearchResults {
            hits: Vec::new(),
            next_offset: None,
        }))
    };
    let words = words(text);
    if words.is_empty() {
        return empty();
    }
    // An author is named by username; one that does not exist wrote nothing.
    let author = match q.get("author").filter(|a| !a.is_empty()) {
        None => None,
        Some(name) => {
            let Ok(key) = Username::parse(name).map(|u| u.key()) else {
                return empty();
            };
            match state
                .db
                .run(|s| async move { s.user_by_key(&key).await })
                .await?
            {
                Some(u) => Some(u.id),
                None => return empty(),
            }
        }
    };
    let query = SearchQuery {
        text: words.join(" "),
        fts5: fts5_expression(&words),
        user_id: user.id().to_string(),
        thread: q.get("thread").filter(|t| !t.is_empty()).cloned(),
        author,
        agent: q.get("agent").filter(|a| !a.is_empty()).cloned(),
        from,
        to,
        limit,
        offset,
    };
    let hits = state
        .db
        .run(|s| async move { s.search(&query).await })
        .await?;
    let next_offset = (hits.len() as i64 == limit).then_some(offset + limit);
    Ok(Json(SearchResults {
        hits: hits
            .into_iter()
            .map(|h| SearchHitView {
                thread: h.message.thread_id,
                thread_title: h.thread_title,
                message_id: h.message.id,
                seq: h.message.seq,
                snippet: h.snippet,
                author: AuthorView {
                    kind: h.message.author.kind,
                    id: h.message.author.id,
                    name: h.message.author.name,
                },
                created_at: rfc3339(h.message.created_at),
            })
            .collect(),
        next_offset,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_letters_and_digits_lower_cased() {
        assert_eq!(
            words("Héllo, \"world\"* OR x-1"),
            ["héllo", "world", "or", "x", "1"]
        );
    }

    #[test]
    fn french_words_also_match_by_the_prefix_of_their_stem() {
        let e = fts5_expression(&words("mangeait pommes"));
        assert_eq!(
            e,
            "(\"mangeait\" OR \"mang\"*) AND (\"pommes\" OR \"pomm\"*)"
        );
        assert_eq!(fts5_expression(&words("the")), "\"the\"");
    }
}
