//! The one catalogue of what users read when an agent's answer fails or waits: a short, stable
//! sentence per [`AgentErrorClass`], in English and French. The server sends the English one
//! in `stream_error.message` (never upstream text: no URL, no object repr, no gateway name);
//! the web UI shows the sentence of the reader's language from `web/src/agentErrors.ts`, which
//! the unit test `agent_errors_ts_is_current` generates from this table
//! (`UPDATE_CONTRACT=1 cargo test --lib agent_errors` rewrites it). `docs/agents.md` lists
//! every sentence, and the test `docs_list_every_message` keeps it so.

use crate::contract::{AgentErrorClass, ErrorCode};

/// Every class, in the order the docs and the generated file list them.
pub const CLASSES: [AgentErrorClass; 12] = [
    AgentErrorClass::RateLimited,
    AgentErrorClass::Unavailable,
    AgentErrorClass::ModelNotFound,
    AgentErrorClass::ContextTooLong,
    AgentErrorClass::ContentFilter,
    AgentErrorClass::TimedOut,
    AgentErrorClass::Misconfigured,
    AgentErrorClass::BadRequest,
    AgentErrorClass::BadResponse,
    AgentErrorClass::ConnectionLost,
    AgentErrorClass::Cancelled,
    AgentErrorClass::Interrupted,
];

/// "Retrying in N s", with `{n}` standing for the seconds: English, French.
pub const RETRYING: (&str, &str) = ("Retrying in {n} s…", "Nouvel essai dans {n} s…");

/// A failure of the provider call (not a stop asked by a member or by the instance): the
/// classes of `llm_errors_total`.
pub fn is_provider_failure(class: AgentErrorClass) -> bool {
    !matches!(
        class,
        AgentErrorClass::Cancelled | AgentErrorClass::Interrupted
    )
}

/// The class as it appears on the wire and in logs.
pub fn class_str(class: AgentErrorClass) -> &'static str {
    use AgentErrorClass::*;
    match class {
        RateLimited => "rate_limited",
        Unavailable => "unavailable",
        ModelNotFound => "model_not_found",
        ContextTooLong => "context_too_long",
        ContentFilter => "content_filter",
        TimedOut => "timed_out",
        Misconfigured => "misconfigured",
        BadRequest => "bad_request",
        BadResponse => "bad_response",
        ConnectionLost => "connection_lost",
        Cancelled => "cancelled",
        Interrupted => "interrupted",
    }
}

/// The `stream_error` code of a class (the contract's codes stay as they were).
pub fn code(class: AgentErrorClass) -> ErrorCode {
    match class {
        AgentErrorClass::RateLimited => ErrorCode::RateLimited,
        AgentErrorClass::TimedOut => ErrorCode::Timeout,
        AgentErrorClass::Cancelled => ErrorCode::Cancelled,
        AgentErrorClass::Interrupted => ErrorCode::Interrupted,
        _ => ErrorCode::ProviderError,
    }
}

/// What the user reads: (English, French).
pub fn message(class: AgentErrorClass) -> (&'static str, &'static str) {
    use AgentErrorClass::*;
    match class {
        RateLimited => (
            "The model's provider is limiting requests. Try again in a moment.",
            "Le fournisseur du modèle limite les requêtes. Réessayez dans un instant.",
        ),
        Unavailable => (
            "The model's provider is unavailable right now.",
            "Le fournisseur du modèle est indisponible pour le moment.",
        ),
        ModelNotFound => (
            "This agent's model was not found at its provider.",
            "Le modèle de cet agent est introuvable chez son fournisseur.",
        ),
        ContextTooLong => (
            "The conversation is too long for this agent's model.",
            "La conversation est trop longue pour le modèle de cet agent.",
        ),
        ContentFilter => (
            "The provider's content filter refused this answer.",
            "Le filtre de contenu du fournisseur a refusé cette réponse.",
        ),
        TimedOut => (
            "The model took too long to answer.",
            "Le modèle a mis trop de temps à répondre.",
        ),
        Misconfigured => (
            "This agent's provider is not set up correctly; an administrator can see why in the server log.",
            "Le fournisseur de cet agent est mal configuré ; un administrateur en trouvera la raison dans le journal du serveur.",
        ),
        BadRequest => (
            "The model's provider refused this request.",
            "Le fournisseur du modèle a refusé cette demande.",
        ),
        BadResponse => (
            "The model's provider sent an answer that could not be read.",
            "Le fournisseur du modèle a envoyé une réponse illisible.",
        ),
        ConnectionLost => (
            "The connection to the model's provider was lost mid-answer.",
            "La connexion au fournisseur du modèle a été perdue en cours de réponse.",
        ),
        Cancelled => ("The answer was cancelled.", "La réponse a été annulée."),
        Interrupted => (
            "The answer was interrupted: the server restarted.",
            "La réponse a été interrompue : le serveur a redémarré.",
        ),
    }
}

/// The English sentence sent in `stream_error.message`.
pub fn english(class: AgentErrorClass) -> &'static str {
    message(class).0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/web/src/agentErrors.ts");
    const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/agents.md");

    fn js(s: &str) -> String {
        serde_json::to_string(s).unwrap()
    }

    /// The catalogue as TypeScript, for the web UI.
    fn typescript() -> String {
        let mut out = String::from(
            "// Generated from src/agents/errors.rs by `UPDATE_CONTRACT=1 cargo test --lib agent_errors`.\n\
             // Do not edit: CI fails when this file differs from the Rust catalogue.\n\n\
             import type { AgentErrorClass } from './contract';\n\n\
             export type Lang = 'en' | 'fr';\n\n\
             /** What the user reads for each class of agent failure. */\n\
             export const AGENT_ERRORS: Record<Lang, Record<AgentErrorClass, string>> = {\n",
        );
        for (lang, pick) in [("en", 0usize), ("fr", 1usize)] {
            out.push_str(&format!("  {lang}: {{\n"));
            for class in CLASSES {
                let m = message(class);
                let text = if pick == 0 { m.0 } else { m.1 };
                out.push_str(&format!("    {}: {},\n", class_str(class), js(text)));
            }
            out.push_str("  },\n");
        }
        out.push_str("};\n\n/** \"Retrying in N s\" (`{n}`: the seconds). */\n");
        out.push_str(&format!(
            "export const RETRYING: Record<Lang, string> = {{ en: {}, fr: {} }};\n",
            js(RETRYING.0),
            js(RETRYING.1)
        ));
        out
    }

    #[test]
    fn agent_errors_ts_is_current() {
        let generated = typescript();
        if std::env::var("UPDATE_CONTRACT").is_ok_and(|v| v == "1") {
            std::fs::write(TS_FILE, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(TS_FILE).unwrap_or_default();
        assert!(
            checked_in == generated,
            "web/src/agentErrors.ts differs from src/agents/errors.rs: run \
             `UPDATE_CONTRACT=1 cargo test --lib agent_errors` and commit the result"
        );
    }

    #[test]
    fn docs_list_every_message() {
        let docs = std::fs::read_to_string(DOCS).unwrap();
        for class in CLASSES {
            let (en, fr) = message(class);
            for text in [class_str(class), en, fr] {
                assert!(docs.contains(text), "docs/agents.md lacks {text:?}");
            }
        }
        assert!(docs.contains(RETRYING.0) && docs.contains(RETRYING.1));
    }

    #[test]
    fn classes_serialise_as_their_names_and_messages_are_short() {
        for class in CLASSES {
            assert_eq!(
                serde_json::to_value(class).unwrap(),
                serde_json::Value::String(class_str(class).into())
            );
            let (en, fr) = message(class);
            assert!(
                en.chars().count() <= 120 && fr.chars().count() <= 130,
                "{en}"
            );
        }
    }
}
