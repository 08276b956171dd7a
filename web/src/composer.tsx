// The composer of the open thread: the message, Enter to send (Shift+Enter for a new line), and
// what it asks of the agents: none, one, several at once, or a debate (2-4 agents, rounds, an
// optional mediator) with the message as its topic; and files for the thread's documents (the
// Attach button, or files pasted into the message).
import { useEffect, useRef, useState } from 'preact/hooks';
import { type Ask, MAX_DEBATERS, MAX_PARALLEL, MAX_ROUNDS } from './ask';
import { AttachButton, pastedFiles, uploadAll } from './attach';
import type { Chat } from './chat';
import { t } from './i18n';
import type { Agent, Thread } from './types';

const SEVERAL = '__several';
const DEBATE = '__debate';

export function Composer({ chat, thread }: { chat: Chat; thread: Thread }) {
  const [text, setText] = useState('');
  const [agent, setAgent] = useState('');
  const [picked, setPicked] = useState<string[]>([]);
  const [rounds, setRounds] = useState(2);
  const [mediator, setMediator] = useState('');
  const [error, setError] = useState<string | null>(null);
  const ref = useRef<HTMLTextAreaElement>(null);

  useEffect(() => {
    ref.current?.focus();
  }, [thread.id]);

  const ask = (): Ask | string => {
    if (agent === SEVERAL) {
      if (picked.length < 1) return t('composer.pickSeveral');
      return { agents: picked };
    }
    if (agent === DEBATE) {
      if (picked.length < 2) return t('debate.pickAgents');
      return { debate: { agents: picked, rounds, ...(mediator ? { mediator } : {}) } };
    }
    return agent ? { agent } : {};
  };

  const send = () => {
    const a = ask();
    const err = typeof a === 'string' ? a : chat.send(text, a);
    setError(err);
    if (!err) setText('');
    ref.current?.focus();
  };

  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key === 'Escape') {
      // Esc stops what runs in this thread: whole debates, and the other answers one by one.
      const running = [...chat.streams.values()].filter((s) => s.thread === thread.id);
      if (running.length === 0) return;
      e.preventDefault();
      for (const id of new Set(running.map((s) => s.debate_id).filter((d): d is string => !!d))) chat.cancelDebate(id);
      for (const s of running) if (!s.debate_id) chat.cancelStream(s.stream_id);
      return;
    }
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      send();
    }
  };

  const sorted = [...chat.agents].sort(
    (a, b) => Number(thread.agents.includes(b.id)) - Number(thread.agents.includes(a.id)),
  );
  const name = (a: Agent) => (thread.agents.includes(a.id) ? a.name : t('composer.notInThread', { name: a.name }));
  const max = agent === DEBATE ? MAX_DEBATERS : MAX_PARALLEL;
  const toggle = (id: string, on: boolean) =>
    setPicked((p) => (on ? [...p.filter((x) => x !== id), id].slice(0, max) : p.filter((x) => x !== id)));
  const multi = agent === SEVERAL || agent === DEBATE;

  return (
    <form
      class="composer"
      onSubmit={(e) => {
        e.preventDefault();
        send();
      }}
    >
      <label for="composer-input" class="sr-only">
        {agent === DEBATE ? t('debate.topic') : t('composer.label')}
      </label>
      <textarea
        id="composer-input"
        ref={ref}
        data-testid="composer"
        rows={2}
        placeholder={agent === DEBATE ? t('debate.topicPlaceholder') : t('composer.placeholder')}
        value={text}
        onInput={(e) => setText(e.currentTarget.value)}
        onKeyDown={onKeyDown}
        onPaste={(e) => {
          // Pasted files go to the thread's documents; pasted text stays text.
          const files = pastedFiles(e.clipboardData);
          if (files.length === 0) return;
          e.preventDefault();
          uploadAll(chat, thread.id, files);
        }}
        aria-invalid={error ? 'true' : undefined}
        aria-describedby={error ? 'composer-error' : undefined}
      />
      {multi && (
        <fieldset class="agent-chips" data-testid="agent-chips">
          <legend>{agent === DEBATE ? t('debate.agents', { max }) : t('composer.several', { max })}</legend>
          {sorted.map((a) => (
            <label key={a.id} class="chip">
              <input
                type="checkbox"
                data-testid="agent-chip"
                value={a.id}
                checked={picked.includes(a.id)}
                disabled={!picked.includes(a.id) && picked.length >= max}
                onChange={(e) => toggle(a.id, e.currentTarget.checked)}
              />
              <span>{name(a)}</span>
              {agent === DEBATE && picked.includes(a.id) && <small class="muted"> {picked.indexOf(a.id) + 1}</small>}
            </label>
          ))}
          {agent === DEBATE && (
            <span class="debate-options">
              <label>
                {t('debate.rounds')}{' '}
                <input
                  type="number"
                  data-testid="debate-rounds"
                  min={1}
                  max={MAX_ROUNDS}
                  value={rounds}
                  onInput={(e) => setRounds(Math.min(MAX_ROUNDS, Math.max(1, Number(e.currentTarget.value) || 1)))}
                />
              </label>
              <label>
                {t('debate.mediator')}{' '}
                <select data-testid="debate-mediator" value={mediator} onChange={(e) => setMediator(e.currentTarget.value)}>
                  <option value="">{t('debate.noMediator')}</option>
                  {sorted.map((a) => (
                    <option key={a.id} value={a.id}>
                      {a.name}
                    </option>
                  ))}
                </select>
              </label>
            </span>
          )}
        </fieldset>
      )}
      <div class="composer-actions">
        <AttachButton chat={chat} thread={thread} />
        {sorted.length > 0 && (
          <label class="agent-pick">
            <span>{t('composer.ask')}</span>
            <select
              data-testid="composer-agent"
              value={agent}
              onChange={(e) => {
                setAgent(e.currentTarget.value);
                setError(null);
              }}
            >
              <option value="">{t('composer.noAgent')}</option>
              {sorted.map((a) => (
                <option key={a.id} value={a.id}>
                  {name(a)}
                </option>
              ))}
              <option value={SEVERAL}>{t('composer.severalOption')}</option>
              <option value={DEBATE}>{t('debate.option')}</option>
            </select>
          </label>
        )}
        <button type="submit" class="primary" data-testid="send">
          {agent === DEBATE ? t('debate.start') : t('composer.send')}
        </button>
      </div>
      {error && (
        <p id="composer-error" class="form-error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}
