// The connection indicator in the top bar: connected, degraded (database down) or reconnecting
// with a countdown and "Retry now".
import { useEffect, useState } from 'preact/hooks';
import type { Chat } from './chat';
import { t } from './i18n';

export function ConnStatus({ chat }: { chat: Chat }) {
  const state = chat.indicator();
  const [, tick] = useState(0);
  const retryAt = chat.socket.phase === 'waiting' ? chat.socket.retryAt : null;
  useEffect(() => {
    if (retryAt === null) return;
    const timer = setInterval(() => tick((n) => n + 1), 250);
    return () => clearInterval(timer);
  }, [retryAt]);

  let label: string;
  let countdown: string | null = null;
  if (state === 'connected') label = t('conn.connected');
  else if (state === 'degraded') label = t('conn.degraded');
  else {
    label = t('conn.reconnecting');
    if (retryAt !== null) countdown = t('conn.in', { n: Math.max(0, Math.ceil((retryAt - Date.now()) / 1000)) });
    else countdown = '…';
  }
  return (
    <div class="conn" data-testid="conn-status" data-state={state}>
      <span class="dot" aria-hidden="true" />
      <span role="status" aria-live="polite">
        {label}
      </span>
      {countdown && (
        <span class="countdown" aria-hidden="true" data-testid="conn-countdown">
          {countdown}
        </span>
      )}
      {retryAt !== null && (
        <button type="button" class="link" onClick={() => chat.socket.retryNow()}>
          {t('conn.retryNow')}
        </button>
      )}
    </div>
  );
}
