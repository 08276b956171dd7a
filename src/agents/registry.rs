//! The live agent registry: the agents of the settings file, then the personas admins defined
//! in the database (issue #18), with their provider connections and opened keys. A settings
//! agent wins over a stored persona with the same id or name; disabled personas are left out.
//!
//! Every instance keeps its registry current by polling one number (`agents_version`, bumped
//! by every change) each [`POLL`]; the instance that made a change rebuilds at once. A change
//! therefore reaches every instance within about a second, without a restart.

use std::{
    collections::HashSet,
    sync::{Arc, RwLock},
    time::Duration,
};

use tokio_util::sync::CancellationToken;

use super::{
    AgentSettings,
    jobs::Agents,
    secrets::{KeyCipher, Sealed},
};
use crate::{
    auth::Auth,
    db::personas::{ConnectionRow, PersonaSnapshot},
    settings::Secret,
};

/// How often each instance checks the version.
pub const POLL: Duration = Duration::from_secs(1);

/// Where an agent is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Settings,
    Database,
}

/// A stored provider connection, its key opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub id: String,
    /// `openai`, `anthropic`, `gemini` or `ollama`.
    pub kind: String,
    pub base_url: Option<String>,
    pub key: Option<Secret>,
}

/// One agent any message may ask.
#[derive(Debug, Clone)]
pub struct Persona {
    pub settings: AgentSettings,
    pub connection: Option<Arc<Connection>>,
    pub source: Source,
}

/// The agents as they are now.
#[derive(Debug, Default)]
pub struct Registry {
    /// The stored version this was built from (`-1`: settings only).
    pub version: i64,
    /// Whether stored keys could be opened (the signing key was known).
    pub keys_opened: bool,
    pub agents: Vec<Persona>,
}

impl Registry {
    /// The settings agents alone (before the database has been read).
    pub fn from_settings(configured: &[AgentSettings]) -> Self {
        Registry {
            version: -1,
            keys_opened: false,
            agents: configured
                .iter()
                .map(|a| Persona {
                    settings: a.clone(),
                    connection: None,
                    source: Source::Settings,
                })
                .collect(),
        }
    }

    /// The settings agents, then the enabled stored personas whose id and name they leave free.
    pub fn build(
        configured: &[AgentSettings],
        snapshot: &PersonaSnapshot,
        cipher: Option<&KeyCipher>,
    ) -> Self {
        let mut registry = Self::from_settings(configured);
        registry.version = snapshot.version;
        registry.keys_opened = cipher.is_some();
        let mut ids: HashSet<String> = configured.iter().map(|a| a.id.clone()).collect();
        let mut names: HashSet<String> = configured.iter().map(|a| a.name.to_lowercase()).collect();
        for row in snapshot.agents.iter().filter(|a| a.enabled) {
            if !ids.insert(row.id.clone()) || !names.insert(row.name_key()) {
                continue;
            }
            let connection = row.connection_id.as_ref().and_then(|id| {
                let c = snapshot.connections.iter().find(|c| &c.id == id)?;
                Some(Arc::new(open_connection(c, cipher)))
            });
            let provider = connection
                .as_ref()
                .map_or_else(|| "local".to_string(), |c| c.kind.clone());
            registry.agents.push(Persona {
                settings: AgentSettings {
                    id: row.id.clone(),
                    name: row.name.clone(),
                    system_prompt: row.system_prompt.clone(),
                    provider,
                    model: row.model.clone(),
                    temperature: row.temperature_milli as f32 / 1000.0,
                    max_tokens: row.max_tokens.clamp(1, u32::MAX as i64) as u32,
                    fallback_model: row.fallback_model.clone(),
                    fallback_agent: row.fallback_agent.clone(),
                    colour: row.colour.clone(),
                    context_tokens: None,
                },
                connection,
                source: Source::Database,
            });
        }
        registry
    }
}

/// A connection with its key opened (`None` when it has none or it does not open).
pub fn open_connection(row: &ConnectionRow, cipher: Option<&KeyCipher>) -> Connection {
    let key = match (cipher, &row.key_cipher, &row.key_nonce) {
        (Some(cipher), Some(c), Some(n)) => cipher.open(
            &row.id,
            &Sealed {
                cipher: c.clone(),
                nonce: n.clone(),
            },
        ),
        _ => None,
    };
    Connection {
        id: row.id.clone(),
        kind: row.kind.clone(),
        base_url: row.base_url.clone(),
        key,
    }
}

/// The registry slot `Agents` reads from.
pub type Slot = RwLock<Arc<Registry>>;

impl Agents {
    /// The agents as they are now.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The HTTP client provider calls go through.
    pub fn http(&self) -> &reqwest::Client {
        self.providers.http()
    }

    /// Read the stored personas and rebuild the registry from them and the settings.
    pub async fn reload(&self, auth: &Auth) -> Result<(), crate::db::StoreError> {
        let snapshot = self.db.run(|s| async move { s.personas().await }).await?;
        let cipher = auth.key().map(|k| KeyCipher::new(&k));
        let registry = Registry::build(&self.configured, &snapshot, cipher.as_ref());
        *self.registry.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(registry);
        self.register_metric_labels();
        Ok(())
    }

    /// Keep the registry current until `stop`: check the version every [`POLL`], rebuild when it
    /// moved (or when the signing key became known, so stored keys can be opened).
    pub fn watch_personas(self: &Arc<Self>, auth: Arc<Auth>, stop: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                if me.db.is_up() {
                    let current = me.registry();
                    match me
                        .db
                        .run(|s| async move { s.personas_version().await })
                        .await
                    {
                        Ok(v) if v != current.version || current.keys_opened != auth.has_key() => {
                            if let Err(e) = me.reload(&auth).await {
                                tracing::warn!(error = %e, "could not reload the agents");
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::debug!(error = %e, "could not read the agents' version"),
                    }
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
        });
    }
}
