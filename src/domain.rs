//! Parsed input: newtypes that can only hold valid values (parse, don't validate). Everything
//! past the HTTP/WebSocket boundary takes these, never raw strings.

use std::fmt;

/// Unicode-whitespace trim, as the contract defines "trimmed".
fn trimmed(s: &str) -> &str {
    s.trim_matches(char::is_whitespace)
}

/// 3-32 characters of `[a-zA-Z0-9_.-]`, case preserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(s: &str) -> Result<Self, String> {
        let n = s.chars().count();
        if !(3..=32).contains(&n) {
            return Err("must be 3 to 32 characters".into());
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err("may contain only letters, digits, '_', '.' and '-'".into());
        }
        Ok(Self(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The case-insensitive key that makes usernames unique.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// 8-256 characters.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(s: &str) -> Result<Self, String> {
        let n = s.chars().count();
        if !(8..=256).contains(&n) {
            return Err("must be 8 to 256 characters".into());
        }
        Ok(Self(s.to_string()))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// A thread title: 1-200 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadTitle(String);

impl ThreadTitle {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = trimmed(s);
        let n = t.chars().count();
        if n == 0 {
            return Err("must not be empty".into());
        }
        if n > 200 {
            return Err("must be at most 200 characters".into());
        }
        if t.contains('\0') {
            return Err("must not contain NUL characters".into());
        }
        Ok(Self(t.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Largest message body, in characters after trimming.
pub const MAX_BODY_CHARS: usize = 16_384;

/// A message body: 1-16384 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBody(String);

impl MessageBody {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = trimmed(s);
        if t.is_empty() {
            return Err("must not be empty".into());
        }
        if t.contains('\0') {
            return Err("must not contain NUL characters".into());
        }
        // Count lazily: stop as soon as the limit is passed.
        if t.chars().nth(MAX_BODY_CHARS).is_some() {
            return Err(format!("must be at most {MAX_BODY_CHARS} characters"));
        }
        Ok(Self(t.to_string()))
    }
    /// For agent answers, which are produced by the server (may be empty when cut short).
    pub fn from_agent(s: String) -> Self {
        Self(s)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Whether a path or frame id could name anything: ids are server-made (UUIDs), so anything
/// long or containing control characters is simply not found, without asking the database.
pub fn plausible_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// A client-chosen idempotency key: 1-128 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId(String);

impl ClientId {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 128 {
            return Err("must be 1 to 128 printable ASCII characters".into());
        }
        if !s.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err("must be printable ASCII".into());
        }
        Ok(Self(s.to_string()))
    }
    /// A server-chosen id (agent messages).
    pub fn generate() -> Self {
        Self(format!("srv-{}", uuid::Uuid::now_v7()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_contract() {
        assert!(Username::parse("ab").is_err());
        assert!(Username::parse("abc").is_ok());
        assert!(Username::parse(&"a".repeat(32)).is_ok());
        assert!(Username::parse(&"a".repeat(33)).is_err());
        assert!(Username::parse("bad name").is_err());
        assert!(Username::parse("ok_name.x-1").is_ok());
        assert!(Username::parse("é_abc").is_err());
        assert_eq!(Username::parse("MiXed").unwrap().key(), "mixed");
    }

    #[test]
    fn bodies_are_trimmed_and_counted_in_code_points() {
        assert!(MessageBody::parse("   \n\t ").is_err());
        assert!(
            MessageBody::parse("\u{3000}").is_err(),
            "ideographic space is whitespace"
        );
        assert_eq!(MessageBody::parse("  hi  ").unwrap().as_str(), "hi");
        let exact = "é".repeat(MAX_BODY_CHARS);
        assert!(MessageBody::parse(&exact).is_ok());
        let over = "é".repeat(MAX_BODY_CHARS + 1);
        assert!(MessageBody::parse(&over).is_err());
    }

    #[test]
    fn client_ids_are_printable_ascii() {
        assert!(ClientId::parse("").is_err());
        assert!(ClientId::parse(&"x".repeat(128)).is_ok());
        assert!(ClientId::parse(&"x".repeat(129)).is_err());
        assert!(ClientId::parse("a\nb").is_err());
        assert!(ClientId::parse("caf\u{e9}").is_err());
        assert!(ClientId::parse("a b~").is_ok());
    }

    #[test]
    fn titles_are_trimmed() {
        assert!(ThreadTitle::parse("  ").is_err());
        assert_eq!(ThreadTitle::parse(" t ").unwrap().as_str(), "t");
        assert!(ThreadTitle::parse(&"t".repeat(201)).is_err());
    }
}
