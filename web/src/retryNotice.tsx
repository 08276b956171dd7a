// A running agent answer's retry notice: while a failed try waits to be retried, "retrying in
// N s" counting down (shown in the answer's header by messages.tsx).
import { useEffect, useState } from 'preact/hooks';
import { retryText } from './agentText';

/** Whole seconds left until `until` (ms since the epoch), at least 1 while it is ahead. */
function secondsLeft(until: number): number {
  return Math.max(0, Math.ceil((until - Date.now()) / 1000));
}

/** "Retrying in N s" on a live answer while a failed try waits to be retried. */
export function RetryNotice({ until }: { until: number }) {
  const [left, setLeft] = useState(secondsLeft(until));
  useEffect(() => {
    setLeft(secondsLeft(until));
    const timer = setInterval(() => setLeft(secondsLeft(until)), 250);
    return () => clearInterval(timer);
  }, [until]);
  if (left <= 0) return null;
  return (
    <span class="tag warn" data-testid="stream-retry" role="status">
      {retryText(left)}
    </span>
  );
}
