// The UI's translation catalogue, one file per language (en.ts, fr.ts), indexed here by language.
// English is the reference: `Key` is its keys, and every other language must have exactly those
// keys (its type says so). The agents' failure sentences are generated from the server
// (../agentErrors.ts).
import { en } from './en';
import type { Key } from './en';
import { fr } from './fr';

export const LANGS = ['en', 'fr'] as const;
export type Lang = (typeof LANGS)[number];

export type { Key } from './en';

export const CATALOGUE: Record<Lang, Record<Key, string>> = { en, fr };
