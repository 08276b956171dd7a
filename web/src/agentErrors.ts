// Generated from src/agents/errors.rs by `UPDATE_CONTRACT=1 cargo test --lib agent_errors`.
// Do not edit: CI fails when this file differs from the Rust catalogue.

import type { AgentErrorClass } from './contract';

export type Lang = 'en' | 'fr';

/** What the user reads for each class of agent failure. */
export const AGENT_ERRORS: Record<Lang, Record<AgentErrorClass, string>> = {
  en: {
    rate_limited: "The model's provider is limiting requests. Try again in a moment.",
    unavailable: "The model's provider is unavailable right now.",
    model_not_found: "This agent's model was not found at its provider.",
    context_too_long: "The conversation is too long for this agent's model.",
    content_filter: "The provider's content filter refused this answer.",
    timed_out: "The model took too long to answer.",
    misconfigured: "This agent's provider is not set up correctly; an administrator can see why in the server log.",
    bad_request: "The model's provider refused this request.",
    bad_response: "The model's provider sent an answer that could not be read.",
    connection_lost: "The connection to the model's provider was lost mid-answer.",
    cancelled: "The answer was cancelled.",
    interrupted: "The answer was interrupted: the server restarted.",
  },
  fr: {
    rate_limited: "Le fournisseur du modèle limite les requêtes. Réessayez dans un instant.",
    unavailable: "Le fournisseur du modèle est indisponible pour le moment.",
    model_not_found: "Le modèle de cet agent est introuvable chez son fournisseur.",
    context_too_long: "La conversation est trop longue pour le modèle de cet agent.",
    content_filter: "Le filtre de contenu du fournisseur a refusé cette réponse.",
    timed_out: "Le modèle a mis trop de temps à répondre.",
    misconfigured: "Le fournisseur de cet agent est mal configuré ; un administrateur en trouvera la raison dans le journal du serveur.",
    bad_request: "Le fournisseur du modèle a refusé cette demande.",
    bad_response: "Le fournisseur du modèle a envoyé une réponse illisible.",
    connection_lost: "La connexion au fournisseur du modèle a été perdue en cours de réponse.",
    cancelled: "La réponse a été annulée.",
    interrupted: "La réponse a été interrompue : le serveur a redémarré.",
  },
};

/** "Retrying in N s" (`{n}`: the seconds). */
export const RETRYING: Record<Lang, string> = { en: "Retrying in {n} s…", fr: "Nouvel essai dans {n} s…" };
