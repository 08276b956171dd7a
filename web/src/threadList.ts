// Pure helpers (no DOM, no network) for the lists of threads: where a changed thread goes (pinned
// first, archived ones in their own list), what a `thread_updated` frame changes, what the search
// box keeps, and how a search snippet is cut into plain and highlighted parts.
import type { Thread } from './types';

/** The lists after a thread changed (a PATCH answer): archived ones leave the main list. */
export function placeThread(
  threads: Thread[],
  archived: Thread[] | null,
  th: Thread,
): { threads: Thread[]; archived: Thread[] | null } {
  const at = threads.findIndex((x) => x.id === th.id);
  const rest = threads.filter((x) => x.id !== th.id);
  const archivedRest = archived ? archived.filter((x) => x.id !== th.id) : null;
  // Not fetched yet: the archived list starts with this one (the section refetches when opened).
  if (th.archived) return { threads: rest, archived: [th, ...(archivedRest ?? [])] };
  const list = at >= 0 ? [...rest.slice(0, at), th, ...rest.slice(at)] : [th, ...rest];
  // Pinned first (the order of GET /api/threads), the rest keeping their order.
  return { threads: [...list.filter((x) => x.pinned), ...list.filter((x) => !x.pinned)], archived: archivedRest };
}

/** Title, owner and agents from a `thread_updated` frame; the caller's own flags stay. */
export function applyUpdate(
  list: Thread[],
  f: { thread: string; title: string; owner_id: string; agents: string[] },
): Thread[] {
  if (!list.some((x) => x.id === f.thread)) return list;
  return list.map((x) => (x.id === f.thread ? { ...x, title: f.title, owner_id: f.owner_id, agents: f.agents } : x));
}

/** The threads whose title contains every word of the filter, ignoring case and accents. */
export function filterThreads(list: Thread[], filter: string): Thread[] {
  const words = fold(filter).split(/\s+/).filter(Boolean);
  if (words.length === 0) return list;
  return list.filter((x) => {
    const title = fold(x.title);
    return words.every((w) => title.includes(w));
  });
}

function fold(s: string): string {
  return s.normalize('NFD').replace(/[\u0300-\u036f]/g, '').toLowerCase();
}

/** Start and end of a highlighted word in a search snippet (docs/protocol.md, `GET /api/search`). */
const MARK_START = '\ue000';
const MARK_END = '\ue001';

/** A snippet as text parts, `mark` on the matched words; the text is never parsed as markup. */
export function snippetParts(snippet: string): { text: string; mark: boolean }[] {
  const parts: { text: string; mark: boolean }[] = [];
  let mark = false;
  let text = '';
  for (const ch of snippet) {
    if (ch === MARK_START || ch === MARK_END) {
      if (text) parts.push({ text, mark });
      text = '';
      mark = ch === MARK_START;
    } else text += ch;
  }
  if (text) parts.push({ text, mark });
  return parts;
}
