//! How the server reaches PostgreSQL (a pooler or not) and how thread events travel between
//! instances (sharded fan-out): two modes the operator picks.

use serde::{Deserialize, de::DeserializeOwned};

/// A mode from its name as the settings file spells it (the enum's serde names), so each
/// name is written once and the file and the environment accept the same ones.
pub(super) fn from_name<T: DeserializeOwned>(name: &str) -> Result<T, String> {
    T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(name))
        .map_err(|e| e.to_string())
}

/// A connection pooler in front of PostgreSQL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooler {
    /// Connections go to PostgreSQL itself (or through a session-mode pooler).
    #[default]
    None,
    /// A transaction-mode pooler (PgBouncer `pool_mode = transaction`): a server connection
    /// is ours only for the length of one transaction, so every statement runs inside an
    /// explicit transaction, as an unnamed prepared statement, with no session settings.
    Transaction,
}

impl std::str::FromStr for Pooler {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Ok(Pooler::None);
        }
        from_name(s).map_err(|e| format!("{s:?} is not a pooler mode ({e})"))
    }
}

/// How thread events travel between instances: see [`super::BrokerSettings::sharding`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sharding {
    #[default]
    On,
    Dual,
    Off,
}

impl std::str::FromStr for Sharding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        from_name(s).map_err(|e| format!("{s:?} is not a sharding mode ({e})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_accepts_exactly_the_names_of_the_settings_file() {
        assert_eq!("none".parse(), Ok(Pooler::None));
        assert_eq!("".parse(), Ok(Pooler::None));
        assert_eq!("transaction".parse(), Ok(Pooler::Transaction));
        assert_eq!("on".parse(), Ok(Sharding::On));
        assert_eq!("dual".parse(), Ok(Sharding::Dual));
        assert_eq!("off".parse(), Ok(Sharding::Off));
        let refused = "sharded".parse::<Sharding>().unwrap_err();
        assert!(
            refused.contains("\"sharded\" is not a sharding mode") && refused.contains("`dual`"),
            "{refused}"
        );
        assert!("Transaction".parse::<Pooler>().is_err());
    }
}
