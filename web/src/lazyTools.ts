// The thread tools (members panel, agents, export, delete), the documents list and viewer, the
// search page and the import / export page are a chunk of their own (`tools-<hash>.js`), fetched
// the first time one is shown, so the first load of the chat screen does not carry them.
import { useEffect, useState } from 'preact/hooks';

export type Tools = typeof import('./tools');

let loaded: Tools | null = null;
let loading: Promise<Tools> | null = null;

/** The tools module once `wanted` has been true (null until it arrives). */
export function useTools(wanted: boolean): Tools | null {
  const [tools, setTools] = useState<Tools | null>(loaded);
  useEffect(() => {
    if (!wanted || tools) return;
    loading ??= import('./tools').then((m) => (loaded = m));
    void loading.then(setTools, () => {
      loading = null; // a failed fetch (offline): the next attempt tries again
    });
  }, [wanted]);
  return tools;
}
