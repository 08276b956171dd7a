// What users read about agents' answers, in the UI's language (i18n/): the catalogue generated
// from the server (agentErrors.ts), with the server's English sentence as the fallback for a
// class this build does not know.
import { AGENT_ERRORS, RETRYING } from './agentErrors';
import type { AgentErrorClass } from './contract';
import { formatDateTime, lang, t } from './i18n';

/** The sentence for a failed answer. */
export function failureText(errorClass: AgentErrorClass | undefined, fallback: string): string {
  return (errorClass && AGENT_ERRORS[lang()][errorClass]) || fallback;
}

/** "Retrying in N s…" */
export function retryText(seconds: number): string {
  return RETRYING[lang()].replace('{n}', String(seconds));
}

/** The sentence for a spent usage budget, with when it resets (`null` for other codes). */
export function budgetText(code: string, resetsAt: string | undefined): string | null {
  if (code !== 'budget_exceeded') return null;
  return t('bud.exceeded', { time: resetsAt ? formatDateTime(resetsAt) : '' });
}
