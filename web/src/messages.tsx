// The messages of the open thread: stored messages, this user's pending sends and the agents'
// live answers, every body rendered as Markdown (markdown/). A live answer and the message it
// becomes share one key, so when the stream ends the same element (and its rendered blocks)
// stays on screen: nothing is rendered again and nothing moves.
import { useEffect, useLayoutEffect, useRef } from 'preact/hooks';
import type { VNode } from 'preact';
import type { Chat } from './chat';
import { DebateBlock } from './debateBlock';
import { type Entry, debateOver, layout } from './groups';
import { t } from './i18n';
import { MessageItem, PendingItem } from './messageItem';
import type { LiveStream, Thread, User } from './types';
import { foldVersions, versionGroup } from './versions';
import './messages.css';

/** The key of an agent's answer, live or stored: the same for both. */
const answerKey = (streamId: string) => `a${streamId}`;

export function MessageList({ chat, thread, me }: { chat: Chat; thread: Thread; me: User }) {
  const view = chat.views.get(thread.id);
  const messages = view?.messages ?? [];
  const shown = new Set(messages.map((m) => m.client_id));
  const pending = [...chat.outbox, ...chat.failed]
    .filter((p) => p.thread === thread.id && !shown.has(p.client_id))
    .sort((a, b) => a.created_at.localeCompare(b.created_at));
  const streams = [...chat.streams.values()].filter((s) => s.thread === thread.id);
  // Each answer once, in its first version's place: the version picked, or a new one streaming.
  const { shown: firsts, groups } = foldVersions(messages);
  const answers = new Set(firsts.map(versionGroup));
  const liveVersions = new Map<string, LiveStream>();
  for (const s of streams) if (s.version_of && answers.has(s.version_of)) liveVersions.set(s.version_of, s);
  const notices = chat.notices.filter((n) => n.thread === thread.id || n.thread === null);

  const ref = useRef<HTMLDivElement>(null);
  const logRef = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  const prev = useRef<{ first: number; height: number }>({ first: 0, height: 0 });
  /** The message a search hit opened, kept in view while the page around it settles. */
  const anchor = useRef<HTMLElement | null>(null);

  const onScroll = () => {
    const el = ref.current;
    if (el) stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
  };

  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    const first = messages.length > 0 ? messages[0].seq : 0;
    if (stick.current) el.scrollTop = el.scrollHeight;
    else if (prev.current.first && first < prev.current.first) {
      // Earlier messages were prepended: keep the visible ones in place.
      el.scrollTop += el.scrollHeight - prev.current.height;
    }
    prev.current = { first, height: el.scrollHeight };
  });

  // A search hit: once its message is on screen, centre it and mark it for a moment.
  useLayoutEffect(() => {
    const focus = chat.focus;
    const el = ref.current;
    if (!focus || focus.thread !== thread.id || !el) return;
    const target = el.querySelector<HTMLElement>(`[data-testid="message"][data-seq="${focus.seq}"]`);
    if (!target) return;
    chat.focus = null;
    stick.current = false;
    target.scrollIntoView({ block: 'center' });
    prev.current = { first: messages.length > 0 ? messages[0].seq : 0, height: el.scrollHeight };
    target.setAttribute('data-focused', 'true');
    // Bodies above it still grow as their Markdown is drawn: keep it centred until the reader
    // scrolls, or for a few seconds.
    anchor.current = target;
    setTimeout(() => {
      target.removeAttribute('data-focused');
      if (anchor.current === target) anchor.current = null;
    }, 4000);
  });
  const release = () => {
    anchor.current = null;
  };

  // Answers grow between renders (the Markdown views draw on animation frames): stay at the
  // bottom while the reader is there.
  useEffect(() => {
    const el = ref.current;
    const log = logRef.current;
    if (!el || !log || typeof ResizeObserver === 'undefined') return;
    const observer = new ResizeObserver(() => {
      if (anchor.current?.isConnected) anchor.current.scrollIntoView({ block: 'center' });
      else if (stick.current) el.scrollTop = el.scrollHeight;
      prev.current.height = el.scrollHeight;
    });
    observer.observe(log);
    return () => observer.disconnect();
  }, []);

  return (
    <div class="messages" ref={ref} onScroll={onScroll} onWheel={release} onTouchStart={release} onKeyDown={release}>
      {view && !view.complete && messages.length > 0 && (
        <div class="load-older">
          <button type="button" class="link" disabled={view.loadingOlder} onClick={() => void chat.loadOlder(thread.id)}>
            {view.loadingOlder ? t('msgs.loading') : t('msgs.loadOlder')}
          </button>
        </div>
      )}
      {view?.loading && !view.loaded && <p class="muted center">{t('msgs.loadingAll')}</p>}
      {view?.error && (
        <p class="form-error center" role="alert">
          {view.error}{' '}
          <button type="button" class="link" onClick={() => void chat.loadHistory(thread.id)}>
            {t('msgs.tryAgain')}
          </button>
        </p>
      )}
      {view?.loaded && messages.length === 0 && pending.length === 0 && streams.length === 0 && (
        <p class="muted center">{t('msgs.empty')}</p>
      )}
      <div
        role="log"
        aria-live="polite"
        aria-busy={streams.length > 0 ? 'true' : undefined}
        aria-label={t('msgs.logLabel', { title: thread.title })}
        class="log"
        ref={logRef}
      >
        {/* Keys only match among siblings of the same array: a live answer and its stored
            message are in the same block (the same debate, or the same run of answers). */}
        {layout<VNode>([
          ...firsts.map((first): Entry<VNode> => {
            const group = versionGroup(first);
            const versions = groups.get(group) ?? [first];
            const live = liveVersions.get(group);
            if (live) {
              const key = answerKey(live.stream_id);
              const place = { group, index: versions.length, total: versions.length + 1 };
              return { key, agent: true, item: <MessageItem key={key} s={live} own={false} chat={chat} versions={place} /> };
            }
            const index = chat.versions.index(group, versions.length);
            const m = versions[index];
            const stream = chat.answerStreams.get(m.id);
            const key = stream ? answerKey(stream) : `s${m.seq}`;
            return {
              key,
              debate: m.debate?.id,
              agent: m.author.kind === 'agent',
              item: (
                <MessageItem
                  key={key}
                  m={m}
                  own={m.author.kind === 'user' && m.author.id === me.id}
                  chat={chat}
                  versions={{ group, index, total: versions.length }}
                />
              ),
            };
          }),
          ...pending.map((p): Entry<VNode> => ({
            key: `p${p.client_id}`,
            agent: false,
            item: <PendingItem key={`p${p.client_id}`} p={p} me={me} chat={chat} />,
          })),
          ...streams.filter((s) => !s.version_of || !liveVersions.has(s.version_of)).map((s): Entry<VNode> => ({
            key: answerKey(s.stream_id),
            debate: s.debate_id,
            agent: true,
            item: <MessageItem key={answerKey(s.stream_id)} s={s} own={false} chat={chat} />,
          })),
        ]).map((b) => {
          if (b.kind === 'one') return b.entry.item;
          const items = b.entries.map((e) => e.item);
          if (b.kind === 'parallel')
            return (
              <div key={b.key} class="parallel" data-testid="parallel" role="group" aria-label={t('parallel.label')}>
                {items}
              </div>
            );
          const topic = messages.find((m) => m.debate?.id === b.id && m.debate.role === 'topic');
          // Under way while a turn streams, and between two turns (stoppable there too).
          const running =
            streams.some((s) => s.debate_id === b.id) || (chat.betweenTurns.has(b.id) && !debateOver(topic, messages));
          return (
            <DebateBlock key={b.key} id={b.id} topic={topic} running={running} chat={chat}>
              {items}
            </DebateBlock>
          );
        })}
      </div>
      {notices.map((n) => (
        <div class="notice-line" role="status" key={n.id}>
          <span>{n.text}</span>
          <button type="button" class="link" aria-label={t('msgs.dismissNotice')} onClick={() => chat.dismissNotice(n.id)}>
            {t('msgs.dismiss')}
          </button>
        </div>
      ))}
    </div>
  );
}

