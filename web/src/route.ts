// The open thread in the page's address (`#/t/<thread id>`), so a reload reopens it.

export function threadFromHash(hash: string): string | null {
  const m = /^#\/t\/([^/]+)$/.exec(hash);
  if (!m) return null;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return null;
  }
}

export function setHash(hash: string): void {
  try {
    history.replaceState(history.state, '', `${location.pathname}${location.search}${hash}`);
  } catch {
    /* not fatal */
  }
}
