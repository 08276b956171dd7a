// The translation catalogue in use: English or French, first from the reader's choice (kept in
// localStorage), else from the browser's languages; every string the UI shows goes through `t`.
// Dates, numbers and durations are formatted with `Intl` in the same language.
import { useEffect, useState } from 'preact/hooks';
import { CATALOGUE, LANGS } from './catalogue';
import type { Key, Lang } from './catalogue';

export type { Key, Lang } from './catalogue';
export { LANGS } from './catalogue';

const STORAGE_KEY = 'emergence.lang';

function isLang(v: unknown): v is Lang {
  return typeof v === 'string' && (LANGS as readonly string[]).includes(v);
}

/** The browser's preference: French for French readers, English for everyone else. */
export function browserLang(): Lang {
  const langs = typeof navigator === 'undefined' ? [] : (navigator.languages ?? [navigator.language]);
  for (const l of langs) {
    const base = l?.toLowerCase().split('-')[0];
    if (isLang(base)) return base;
  }
  return 'en';
}

function stored(): Lang | null {
  try {
    const v = localStorage.getItem(STORAGE_KEY);
    return isLang(v) ? v : null;
  } catch {
    return null;
  }
}

let current: Lang = stored() ?? browserLang();
const listeners = new Set<() => void>();
if (typeof document !== 'undefined') document.documentElement.lang = current;

/** The language of the UI. */
export function lang(): Lang {
  return current;
}

/** Switches the UI's language and remembers the choice on this browser. */
export function setLang(next: Lang): void {
  if (!isLang(next) || next === current) return;
  current = next;
  try {
    localStorage.setItem(STORAGE_KEY, next);
  } catch {
    /* storage unavailable: the choice lasts until the page is closed */
  }
  document.documentElement.lang = next;
  for (const fn of listeners) fn();
}

/** Re-renders the calling component when the language changes; returns the language. */
export function useLang(): Lang {
  const [l, set] = useState(current);
  useEffect(() => {
    const fn = () => set(current);
    listeners.add(fn);
    return () => {
      listeners.delete(fn);
    };
  }, []);
  return l;
}

export type Params = Record<string, string | number>;

/** The sentence `key` in the UI's language, `{name}` placeholders filled (numbers localised). */
export function t(key: Key, params?: Params): string {
  const text: string = CATALOGUE[current][key] ?? CATALOGUE.en[key] ?? key;
  if (!params) return text;
  return text.replace(/\{(\w+)\}/g, (all, name: string) => {
    const v = params[name];
    if (v === undefined) return all;
    return typeof v === 'number' ? formatNumber(v) : v;
  });
}

/** Keys that have a `.one` and an `.other` form. */
type PluralBase = { [K in Key]: K extends `${infer B}.one` ? (`${B}.other` extends Key ? B : never) : never }[Key];

/** The plural form of `base` for `n` (`{n}` filled in). */
export function tn(base: PluralBase, n: number, params?: Params): string {
  const rule = new Intl.PluralRules(current).select(n);
  const key = (rule === 'one' ? `${base}.one` : `${base}.other`) as Key;
  return t(key, { n, ...params });
}

/** A number in the UI's language (`12 345` / `12,345`). */
export function formatNumber(n: number): string {
  return new Intl.NumberFormat(current).format(n);
}

/** A duration in seconds, one decimal under a minute (`2.4 s` / `2,4 s`). */
export function formatDuration(ms: number): string {
  const s = ms / 1000;
  if (s < 60) {
    return new Intl.NumberFormat(current, { style: 'unit', unit: 'second', maximumFractionDigits: 1 }).format(s);
  }
  const m = Math.floor(s / 60);
  const rest = Math.round(s - m * 60);
  const fmt = (v: number, unit: string) => new Intl.NumberFormat(current, { style: 'unit', unit }).format(v);
  return `${fmt(m, 'minute')} ${fmt(rest, 'second')}`;
}

/** A message's time: the hour today, else the date and hour. */
export function formatTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay
    ? d.toLocaleTimeString(current, { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleString(current, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

/** The full date and time, for a tooltip. */
export function formatDateTime(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleString(current, { dateStyle: 'full', timeStyle: 'medium' });
}
