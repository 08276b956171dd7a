// One message of a thread: a stored message, one of this user's pending sends, or an agent's
// live answer, with its author (agents: an avatar in the agent's colour and the model), its place
// in a debate, the answer's tokens and duration on hover, a marker with the reason of an
// incomplete answer, the model's reasoning folded above the answer, a marker when older turns
// were summarised for it, and the sources of an answer that cites the thread's documents.
import { useEffect, useState } from 'preact/hooks';
import { failureText } from './agentText';
import type { Chat } from './chat';
import { Citations } from './citations';
import { copyText } from './clipboard';
import { formatDuration, formatNumber, formatTime, t } from './i18n';
import type { Key } from './i18n';
import { Markdown } from './markdown/Markdown';
import { RetryNotice } from './retryNotice';
import type { LiveStream, Message, PendingSend, User } from './types';
import type { DebateRole } from './contract';

/** A stable hue per agent id, for its avatar and the edge of its answers. */
export function agentHue(id: string): number {
  let h = 0;
  for (let i = 0; i < id.length; i++) h = (h * 31 + id.charCodeAt(i)) >>> 0;
  return h % 360;
}

/** The ink (black or white) with the better WCAG contrast on `hex` (`#rrggbb`). */
export function inkOn(hex: string): string {
  const lin = (i: number) => {
    const c = parseInt(hex.slice(i, i + 2), 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  const l = 0.2126 * lin(1) + 0.7152 * lin(3) + 0.0722 * lin(5);
  return (l + 0.05) / 0.05 > 1.05 / (l + 0.05) ? '#000' : '#fff';
}

/** CSS variables of an agent's look: its colour when it has one, else a stable hue of its id. */
export function agentStyle(id: string, colour?: string): Record<string, string> {
  const style: Record<string, string> = { '--agent-hue': String(agentHue(id)) };
  if (colour && /^#[0-9a-fA-F]{6}$/.test(colour)) {
    style['--agent-colour'] = colour;
    style['--agent-ink'] = inkOn(colour);
  }
  return style;
}

/** The agent's initial on its colour (the article's `agentStyle` variables). */
function Avatar({ name }: { name: string }) {
  return (
    <span class="avatar" aria-hidden="true">
      {[...name][0]?.toUpperCase() ?? '?'}
    </span>
  );
}

/** "Round 2" or "Synthesis" on a debate turn. */
function Place({ round, role }: { round?: number; role?: DebateRole }) {
  if (role === 'synthesis')
    return (
      <span class="tag place synthesis" data-testid="debate-place">
        {t('debate.synthesis')}
      </span>
    );
  if (role === 'turn' && round)
    return (
      <span class="tag place" data-testid="debate-place">
        {t('debate.round', { n: round })}
      </span>
    );
  return null;
}

/** The answer's model, tokens and duration: the model shown, the rest on hover. */
function Stats({ m }: { m: Message }) {
  const parts: string[] = [];
  if (m.model) parts.push(t('stats.model', { model: m.model }));
  if (m.prompt_tokens !== undefined || m.completion_tokens !== undefined)
    parts.push(
      t('stats.tokens', {
        prompt: formatNumber(m.prompt_tokens ?? 0),
        completion: formatNumber(m.completion_tokens ?? 0),
      }),
    );
  if (m.duration_ms !== undefined) parts.push(t('stats.duration', { duration: formatDuration(m.duration_ms) }));
  if (parts.length === 0) return null;
  return (
    <small class="muted stats" data-testid="answer-stats" title={parts.join(' · ')} tabIndex={0} aria-label={parts.join(' · ')}>
      {m.model ?? parts[0]}
    </small>
  );
}

/** The model's reasoning, folded (collapsed by default), above the answer; live while streaming. */
function Reasoning({ text, live }: { text?: string; live: boolean }) {
  if (!text) return null;
  return (
    <details class="reasoning" data-testid="reasoning">
      <summary>{live ? t('msg.reasoningLive') : t('msg.reasoning')}</summary>
      <div class="reasoning-text" data-testid="reasoning-text">
        {text}
      </div>
    </details>
  );
}

/** "Earlier messages summarised": the summary an answer saw in place of older turns, folded. */
function SummaryMarker({ m }: { m: Message }) {
  const s = m.context_summary;
  if (!s) return null;
  return (
    <details class="context-summary" data-testid="context-summary" data-through={String(s.through_seq)}>
      <summary>{t('msg.summaryMarker', { n: s.through_seq })}</summary>
      <p class="muted">{s.body}</p>
    </details>
  );
}

/** "Copy" in a message's header: the message as Markdown, as it was written. */
function CopyMarkdown({ text }: { text: string }) {
  const [label, setLabel] = useState<Key>('msg.copy');
  useEffect(() => {
    if (label === 'msg.copy') return;
    const timer = setTimeout(() => setLabel('msg.copy'), 1500);
    return () => clearTimeout(timer);
  }, [label]);
  return (
    <button
      type="button"
      class="link copy-md"
      data-testid="copy-markdown"
      title={t('msg.copyTitle')}
      aria-label={t('msg.copyTitle')}
      onClick={() => void copyText(text).then((ok) => setLabel(ok ? 'msg.copied' : 'msg.copyFailed'))}
    >
      {t(label)}
    </button>
  );
}

/** Where a message stands among the versions of its answer. */
export interface VersionPlace {
  /** The id every version shares (the first version's). */
  group: string;
  /** 0-based index of the version shown, among `total`. */
  index: number;
  total: number;
}

/** "‹ 2 / 3 ›": switch between the versions of an answer. */
function VersionNav({ v, chat }: { v: VersionPlace; chat: Chat }) {
  const go = (i: number) => chat.versions.pick(v.group, i);
  return (
    <span class="versions" role="group" aria-label={t('msg.versions')} data-testid="versions">
      <button type="button" class="link" aria-label={t('msg.versionPrev')} data-testid="version-prev" disabled={v.index === 0} onClick={() => go(v.index - 1)}>
        ‹
      </button>
      <span data-testid="version-label">{t('msg.version', { n: v.index + 1, total: v.total })}</span>
      <button type="button" class="link" aria-label={t('msg.versionNext')} data-testid="version-next" disabled={v.index >= v.total - 1} onClick={() => go(v.index + 1)}>
        ›
      </button>
    </span>
  );
}

interface ItemProps {
  /** A stored message… */
  m?: Message;
  /** …or an agent's answer being written. */
  s?: LiveStream;
  own: boolean;
  chat: Chat;
  /** The versions of this answer, when it has several. */
  versions?: VersionPlace;
}

/**
 * One message, or one live answer. A single component for both, so that the answer keeps its
 * element (and its Markdown view) when its stream ends and the stored message takes its place.
 */
export function MessageItem({ m, s, own, chat, versions }: ItemProps) {
  if (s) {
    return (
      <article
        class="msg agent streaming"
        data-testid="stream"
        data-stream-id={s.stream_id}
        data-agent={s.agent.id}
        aria-busy="true"
        style={agentStyle(s.agent.id, chat.agents.find((a) => a.id === s.agent.id)?.colour)}
      >
        <header class="msg-meta">
          <Avatar name={s.agent.name} />
          <span class="author">{s.agent.name}</span>
          <span class="ai-badge">{t('msg.agent')}</span>
          <Place round={s.round} role={s.role} />
          {versions && versions.total > 1 && <VersionNav v={versions} chat={chat} />}
          {s.agent.model && (
            <small class="muted" data-testid="stream-model" title={t('msg.modelTitle')}>
              {s.agent.model}
            </small>
          )}
          {s.retryUntil ? <RetryNotice until={s.retryUntil} /> : <span class="tag">{t('msg.typing')}</span>}
          <button type="button" class="link" data-testid="stream-stop" onClick={() => chat.cancelStream(s.stream_id)}>
            {t('msg.stop')}
          </button>
          <CopyMarkdown text={s.text} />
        </header>
        <Reasoning text={s.reasoning} live={true} />
        <Markdown text={s.text} />
      </article>
    );
  }
  if (!m) return null;
  const agent = m.author.kind === 'agent';
  const kind = agent ? ' agent' : own ? ' own' : '';
  const incomplete = m.status === 'incomplete';
  // Any agent answer but a debate's turns (the later turns answered the turn as it was).
  const regenerable = agent && !m.debate && !m.local;
  const cites = agent ? (m.citations ?? []) : [];
  const openCite = (n: number) => {
    const c = cites.find((x) => x.n === n);
    if (c) chat.documents.openCitation(m.thread_id, c);
  };
  return (
    <article
      class={`msg${kind}${incomplete ? ' incomplete' : ''}`}
      data-testid="message"
      data-seq={String(m.seq)}
      data-state={own ? 'sent' : undefined}
      data-author={m.author.name}
      data-agent={agent ? m.author.id : undefined}
      style={agent ? agentStyle(m.author.id, chat.agents.find((a) => a.id === m.author.id)?.colour) : undefined}
    >
      <header class="msg-meta">
        {agent && <Avatar name={m.author.name} />}
        <span class="author">{m.author.name}</span>
        {agent && <span class="ai-badge">{t('msg.agent')}</span>}
        {m.debate && <Place round={m.debate.round ?? undefined} role={m.debate.role} />}
        {versions && versions.total > 1 && <VersionNav v={versions} chat={chat} />}
        {agent && <Stats m={m} />}
        <time dateTime={m.created_at}>{formatTime(m.created_at)}</time>
        {incomplete && (
          <span class="tag warn" data-testid="incomplete" title={m.error_class ? failureText(m.error_class, '') : undefined}>
            {m.error_class
              ? t('msg.incompleteWhy', { reason: failureText(m.error_class, m.error_class) })
              : t('msg.incomplete')}
          </span>
        )}
        <CopyMarkdown text={m.body} />
        {regenerable && (
          <button type="button" class="link" data-testid="regenerate" title={t('msg.regenerateTitle')} onClick={() => chat.versions.regenerate(m.thread_id, m)}>
            {t('msg.regenerate')}
          </button>
        )}
        {regenerable && chat.agents.some((a) => a.id !== m.author.id) && (
          <select
            class="regen-agent"
            data-testid="regenerate-with"
            aria-label={t('msg.regenerateWith')}
            value=""
            onChange={(e) => {
              const agent = e.currentTarget.value;
              e.currentTarget.value = '';
              if (agent) chat.versions.regenerate(m.thread_id, m, agent);
            }}
          >
            <option value="">{t('msg.regenerateWith')}</option>
            {chat.agents
              .filter((a) => a.id !== m.author.id)
              .map((a) => (
                <option key={a.id} value={a.id}>
                  {a.name}
                </option>
              ))}
          </select>
        )}
      </header>
      <SummaryMarker m={m} />
      <Reasoning text={m.reasoning} live={false} />
      <Markdown text={m.body} cites={cites.map((c) => c.n)} onCite={openCite} />
      {cites.length > 0 && <Citations chat={chat} thread={m.thread_id} list={cites} />}
    </article>
  );
}

const STATE_LABEL: Record<PendingSend['state'], Key> = {
  sending: 'msg.sending',
  queued: 'msg.queued',
  failed: 'msg.failed',
};

export function PendingItem({ p, me, chat }: { p: PendingSend; me: User; chat: Chat }) {
  return (
    <article class={`msg own pending ${p.state}`} data-testid="message" data-state={p.state} data-client-id={p.client_id}>
      <header class="msg-meta">
        <span class="author">{me.username}</span>
        <span class={`tag${p.state === 'failed' ? ' error' : ''}`}>{t(STATE_LABEL[p.state])}</span>
        <CopyMarkdown text={p.body} />
      </header>
      <Markdown text={p.body} />
      {p.state === 'failed' && (
        <div class="row small">
          <span class="field-error">{p.error}</span>
          <button type="button" class="link" onClick={() => chat.retryFailed(p.client_id)}>
            {t('msg.retry')}
          </button>
          <button type="button" class="link" onClick={() => chat.discardFailed(p.client_id)}>
            {t('msg.discard')}
          </button>
        </div>
      )}
    </article>
  );
}
