// A debate shown as one unit: its topic, agents, rounds and mediator in a header, each turn with
// its round, and a button that stops the whole debate while a turn runs.
import type { ComponentChildren } from 'preact';
import type { Chat } from './chat';
import { t } from './i18n';
import type { Message } from './types';

export function DebateBlock({
  id,
  topic,
  running,
  chat,
  children,
}: {
  id: string;
  topic: Message | undefined;
  running: boolean;
  chat: Chat;
  children: ComponentChildren;
}) {
  const d = topic?.debate;
  const names = (d?.agents ?? []).map((a) => chat.agents.find((x) => x.id === a)?.name ?? a).join(', ');
  const mediator = d?.mediator ? (chat.agents.find((x) => x.id === d.mediator)?.name ?? d.mediator) : null;
  const summary = d
    ? mediator
      ? t('debate.summaryMediator', { agents: names, rounds: d.rounds ?? 1, mediator })
      : t('debate.summary', { agents: names, rounds: d.rounds ?? 1 })
    : '';
  return (
    <section class="debate" data-testid="debate" data-debate-id={id} data-running={running ? 'true' : 'false'} aria-label={t('debate.title')}>
      <header class="debate-head">
        <strong>{t('debate.title')}</strong>
        {summary && <span class="muted small">{summary}</span>}
        {running ? (
          <>
            <span class="tag">{t('debate.running')}</span>
            <button type="button" class="danger" data-testid="debate-stop" onClick={() => chat.cancelDebate(id)}>
              {t('debate.stop')}
            </button>
          </>
        ) : null}
      </header>
      <div class="debate-turns">{children}</div>
    </section>
  );
}
