//! The admin bodies of connections and personas, parsed and checked field by field: every
//! problem is reported at once, as one 422 `validation` naming the fields.

use serde_json::{Map, Value};

use crate::{error::ApiError, http::json::Fields};

/// The kinds of provider a connection may speak.
pub const KINDS: [&str; 4] = ["openai", "anthropic", "gemini", "ollama"];

/// A nullable field: absent (`None`), `null` or `""` (`Some(None)`), or a value.
type Change<T> = Option<Option<T>>;

/// A connection's fields; on create, `name` and `kind` are required.
pub struct ConnectionFields {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub base_url: Change<String>,
    pub api_key: Change<String>,
}

impl ConnectionFields {
    pub fn parse(body: &Map<String, Value>, create: bool) -> Result<Self, ApiError> {
        let mut f = Fields::new(body);
        let name = text(&mut f, "name", create, 64);
        let kind = text(&mut f, "kind", create, 32);
        if let Some(k) = &kind
            && !KINDS.contains(&k.as_str())
        {
            f.reject(
                "kind",
                "must be \"openai\", \"anthropic\", \"gemini\" or \"ollama\"",
            );
        }
        let base_url = nullable(&mut f, body, "base_url", 500);
        if let Some(Some(u)) = &base_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            f.reject("base_url", "must be an http:// or https:// URL");
        }
        let api_key = nullable(&mut f, body, "api_key", 4096);
        f.finish()?;
        Ok(Self {
            name,
            kind,
            base_url,
            api_key,
        })
    }
}

/// A persona's fields; on create, `name` and `model` are required.
pub struct AgentFields {
    pub id: Option<String>,
    pub name: Option<String>,
    pub colour: Change<String>,
    pub system_prompt: Option<String>,
    pub connection_id: Change<String>,
    pub model: Option<String>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<i64>,
    pub fallback_model: Change<String>,
    pub fallback_agent: Change<String>,
    pub enabled: Option<bool>,
}

impl AgentFields {
    pub fn parse(body: &Map<String, Value>, create: bool) -> Result<Self, ApiError> {
        let mut f = Fields::new(body);
        let id = if create {
            text(&mut f, "id", false, 64)
        } else {
            if body.contains_key("id") {
                f.reject("id", "cannot be changed");
            }
            None
        };
        if let Some(id) = &id
            && !is_agent_id(id)
        {
            f.reject(
                "id",
                "must be 1-64 of a-z, 0-9, '-' and '_', starting with a letter or digit",
            );
        }
        let name = text(&mut f, "name", create, 64);
        if create && id.is_none() && name.as_deref().is_some_and(|n| slug(n).is_empty()) {
            f.reject("name", "needs a letter or digit (the id is made from it)");
        }
        let colour = nullable(&mut f, body, "colour", 7);
        if let Some(Some(c)) = &colour
            && !is_colour(c)
        {
            f.reject("colour", "must be a colour like #3a7bd5");
        }
        let system_prompt = match body.get("system_prompt") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().chars().count() <= 16_000 => {
                Some(s.trim().to_string())
            }
            Some(Value::String(_)) => {
                f.reject("system_prompt", "must be at most 16000 characters");
                None
            }
            Some(_) => {
                f.reject("system_prompt", "must be a string");
                None
            }
        };
        let connection_id = nullable(&mut f, body, "connection_id", 128);
        let model = text(&mut f, "model", create, 200);
        let fallback_model = nullable(&mut f, body, "fallback_model", 200);
        let fallback_agent = nullable(&mut f, body, "fallback_agent", 64);
        let temperature = number(&mut f, body, "temperature", 0.0, 2.0);
        let max_tokens = number(&mut f, body, "max_tokens", 1.0, 200_000.0).map(|n| n as i64);
        if let Some(Value::Number(n)) = body.get("max_tokens")
            && !n.is_i64()
        {
            f.reject("max_tokens", "must be a whole number from 1 to 200000");
        }
        let enabled = match body.get("enabled") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                f.reject("enabled", "must be true or false");
                None
            }
        };
        f.finish()?;
        Ok(Self {
            id,
            name,
            colour,
            system_prompt,
            connection_id,
            model,
            temperature,
            max_tokens,
            fallback_model,
            fallback_agent,
            enabled,
        })
    }
}

/// A trimmed text of 1 to `max` characters; required when `required`.
fn text(f: &mut Fields<'_>, name: &str, required: bool, max: usize) -> Option<String> {
    let value = if required {
        f.string(name)
    } else {
        f.opt_string(name)
    }?;
    let trimmed = value.trim();
    let n = trimmed.chars().count();
    if n == 0 || n > max {
        f.reject(name, format!("must be 1 to {max} characters"));
        return None;
    }
    Some(trimmed.to_string())
}

/// A nullable text of at most `max` characters: `null` and `""` clear it.
fn nullable(
    f: &mut Fields<'_>,
    body: &Map<String, Value>,
    name: &str,
    max: usize,
) -> Change<String> {
    match body.get(name) {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => {
            let t = s.trim();
            if t.chars().count() > max {
                f.reject(name, format!("must be at most {max} characters"));
                None
            } else {
                Some((!t.is_empty()).then(|| t.to_string()))
            }
        }
        Some(_) => {
            f.reject(name, "must be a string or null");
            None
        }
    }
}

/// An optional number within `[min, max]`.
fn number(
    f: &mut Fields<'_>,
    body: &Map<String, Value>,
    name: &str,
    min: f64,
    max: f64,
) -> Option<f64> {
    match body.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if (min..=max).contains(&v) => Some(v),
            _ => {
                f.reject(name, format!("must be a number from {min} to {max}"));
                None
            }
        },
        Some(_) => {
            f.reject(name, format!("must be a number from {min} to {max}"));
            None
        }
    }
}

/// `a-z0-9`, `-` and `_`, 1 to 64, starting with a letter or digit.
pub fn is_agent_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
}

fn is_colour(c: &str) -> bool {
    c.len() == 7 && c.starts_with('#') && c[1..].chars().all(|c| c.is_ascii_hexdigit())
}

/// An id made from a name: lower case ASCII letters and digits, other runs become one `-`.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-');
    out.chars().take(64).collect::<String>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_made_from_names() {
        assert_eq!(slug("The Oracle!"), "the-oracle");
        assert_eq!(slug("  Ünïcode 42 "), "n-code-42");
        assert!(is_agent_id(&slug("The Oracle!")));
        assert!(!is_agent_id("-x"));
        assert!(is_colour("#3a7BD5"));
        assert!(!is_colour("red"));
    }
}
