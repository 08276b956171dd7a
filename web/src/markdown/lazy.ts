// A chunk of code loaded on first use (a dynamic import, which Vite emits as its own file): the
// highlighter and the math typesetter are fetched only when a message needs them, so a page
// without code or math never loads them.

export class Lazy<T> {
  private value: T | null = null;
  private loading = false;
  private failed = false;
  private readonly listeners = new Set<() => void>();

  constructor(private readonly load: () => Promise<T>) {}

  /** The loaded value, or null: then loading starts (once), and listeners run when it is there. */
  get(): T | null {
    if (this.value === null) this.start();
    return this.value;
  }

  /** Calls `fn` whenever a load completes; returns the unsubscribe function. */
  onReady(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private start(): void {
    if (this.loading || this.failed) return;
    this.loading = true;
    this.load()
      .then((value) => {
        this.value = value;
        for (const fn of [...this.listeners]) fn();
      })
      .catch(() => {
        this.failed = true; // the text stays as it is; nothing else depends on it
      })
      .finally(() => {
        this.loading = false;
      });
  }
}
