import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { JSX } from 'preact';
import { ApiError, api, errorText, toFormError } from './api';
import type { FormError } from './api';
import { CheckingScreen, LoginScreen, useSession } from './auth';
import { Chat } from './chat';
import type { LiveStream, Message, PendingSend, Thread, User } from './types';

/** Re-renders the component whenever the store changes. */
function useStore(chat: Chat): void {
  const [, bump] = useState(0);
  useEffect(() => chat.subscribe(() => bump((n) => n + 1)), [chat]);
}

// ---- App ----------------------------------------------------------------------------------------

export function App() {
  const { session, loggedIn, ended, recheck } = useSession();
  if (session.state === 'checking') return <CheckingScreen />;
  if (session.state === 'out') return <LoginScreen notice={session.notice} onAuth={loggedIn} />;
  return <ChatScreen key={session.user.id} me={session.user} onLoggedOut={ended} onUserChanged={recheck} />;
}

// ---- Chat screen --------------------------------------------------------------------------------

interface ChatScreenProps {
  me: User;
  onLoggedOut: (why: string | null) => void;
  onUserChanged: () => void;
}

function ChatScreen({ me, onLoggedOut, onUserChanged }: ChatScreenProps) {
  const chat = useMemo(() => new Chat(me), [me.id]);
  useStore(chat);
  const [sidebarOpen, setSidebarOpen] = useState(() => !location.hash.startsWith('#/t/'));
  const [loggingOut, setLoggingOut] = useState(false);
  const [logoutError, setLogoutError] = useState<string | null>(null);

  useEffect(() => {
    chat.onUnauthorized = () => onLoggedOut('Your session has ended. Please log in again.');
    chat.onUserChanged = onUserChanged;
    chat.start();
    return () => chat.destroy();
  }, [chat]);

  const logout = async () => {
    setLoggingOut(true);
    setLogoutError(null);
    try {
      // Revokes the session and clears the HttpOnly cookie, which the page cannot do itself.
      await api<void>('POST', '/api/auth/logout');
    } catch (e) {
      // 401: already over. Otherwise the cookie may still be valid: say so and stay.
      if (!(e instanceof ApiError && e.status === 401)) {
        setLogoutError(`Could not log out: ${errorText(e)}`);
        setLoggingOut(false);
        return;
      }
    }
    chat.destroy();
    onLoggedOut(null);
  };

  const current = chat.threads.find((t) => t.id === chat.currentId) ?? null;

  const open = (id: string) => {
    chat.openThread(id);
    setSidebarOpen(false);
  };

  return (
    <div class="app">
      <header class="topbar">
        <span class="brand">Emergence</span>
        <ConnStatus chat={chat} />
        <span class="me" title="Logged in as">
          {me.username}
        </span>
        <button type="button" data-testid="logout" onClick={() => void logout()} disabled={loggingOut}>
          Log out
        </button>
        {logoutError && (
          <span class="form-error" role="alert" data-testid="logout-error">
            {logoutError}
          </span>
        )}
      </header>
      <div class={`layout${sidebarOpen ? ' sidebar-open' : ''}`}>
        <button
          type="button"
          class="sidebar-toggle"
          aria-expanded={sidebarOpen ? 'true' : 'false'}
          aria-controls="sidebar"
          onClick={() => setSidebarOpen(!sidebarOpen)}
        >
          {sidebarOpen ? 'Hide threads' : `Threads (${chat.threads.length})`}
          {current && !sidebarOpen ? ` · ${current.title}` : ''}
        </button>
        <aside id="sidebar" class="sidebar" aria-label="Threads">
          <NewThreadForm chat={chat} onCreated={() => setSidebarOpen(false)} />
          <ThreadList chat={chat} onOpen={open} />
        </aside>
        <main class="chat-pane">
          {current ? (
            <ThreadPane key={current.id} chat={chat} thread={current} me={me} />
          ) : (
            <div class="empty">
              <p>Select a thread or create a new one.</p>
            </div>
          )}
        </main>
      </div>
    </div>
  );
}

function ConnStatus({ chat }: { chat: Chat }) {
  const state = chat.indicator();
  const [, tick] = useState(0);
  const retryAt = chat.socket.phase === 'waiting' ? chat.socket.retryAt : null;
  useEffect(() => {
    if (retryAt === null) return;
    const t = setInterval(() => tick((n) => n + 1), 250);
    return () => clearInterval(t);
  }, [retryAt]);

  let label: string;
  let countdown: string | null = null;
  if (state === 'connected') label = 'Connected';
  else if (state === 'degraded') label = 'database down — messages are queued';
  else {
    label = 'Reconnecting';
    if (retryAt !== null) countdown = `in ${Math.max(0, Math.ceil((retryAt - Date.now()) / 1000))} s`;
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
          Retry now
        </button>
      )}
    </div>
  );
}

function NewThreadForm({ chat, onCreated }: { chat: Chat; onCreated: () => void }) {
  const [title, setTitle] = useState('');
  const [picked, setPicked] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<FormError | null>(null);

  const submit = async (e: JSX.TargetedEvent<HTMLFormElement, Event>) => {
    e.preventDefault();
    if (busy) return;
    if (!title.trim()) {
      setError({ message: 'Give the thread a title.' });
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await chat.createThread(title.trim(), picked.filter((id) => chat.agents.some((a) => a.id === id)));
      setTitle('');
      setPicked([]);
      onCreated();
    } catch (err) {
      setError(toFormError(err));
    } finally {
      setBusy(false);
    }
  };

  const toggle = (id: string, on: boolean) =>
    setPicked((p) => (on ? [...p.filter((x) => x !== id), id] : p.filter((x) => x !== id)));

  return (
    <form class="new-thread" onSubmit={submit} aria-labelledby="new-thread-heading">
      <h2 id="new-thread-heading" class="section-title">
        New thread
      </h2>
      <label for="new-thread-title" class="sr-only">
        Thread title
      </label>
      <input
        id="new-thread-title"
        data-testid="new-thread-title"
        placeholder="Thread title"
        maxLength={200}
        value={title}
        onInput={(e) => setTitle(e.currentTarget.value)}
        aria-invalid={error?.fields?.title ? 'true' : undefined}
      />
      {chat.agents.length > 0 && (
        <fieldset class="agents">
          <legend>Agents in this thread (optional)</legend>
          {chat.agents.map((a) => (
            <label key={a.id} class="check">
              <input
                type="checkbox"
                data-testid="agent-option"
                value={a.id}
                checked={picked.includes(a.id)}
                onChange={(e) => toggle(a.id, e.currentTarget.checked)}
              />
              <span>{a.name}</span>
              {a.model && <small class="muted"> {a.model}</small>}
            </label>
          ))}
        </fieldset>
      )}
      {error && (
        <p class="form-error" role="alert">
          {error.message}
          {error.fields && Object.entries(error.fields).map(([k, v]) => ` ${k}: ${v}.`)}
        </p>
      )}
      <button type="submit" class="primary" data-testid="create-thread" disabled={busy}>
        {busy ? 'Creating…' : 'Create thread'}
      </button>
    </form>
  );
}

function ThreadList({ chat, onOpen }: { chat: Chat; onOpen: (id: string) => void }) {
  return (
    <nav class="thread-list" aria-labelledby="threads-heading">
      <div class="row spread">
        <h2 id="threads-heading" class="section-title">
          Threads
        </h2>
        <button type="button" class="link" data-testid="refresh-threads" onClick={() => void chat.loadThreads()}>
          Refresh
        </button>
      </div>
      {chat.threadsError && (
        <p class="form-error" role="alert">
          {chat.threadsError}
        </p>
      )}
      {chat.threadsLoaded && chat.threads.length === 0 && !chat.threadsError && (
        <p class="muted">No threads yet.</p>
      )}
      <ul>
        {chat.threads.map((t) => (
          <li key={t.id}>
            <button
              type="button"
              class={`thread-item${t.id === chat.currentId ? ' current' : ''}`}
              data-testid="thread-item"
              data-thread-id={t.id}
              aria-current={t.id === chat.currentId ? 'true' : undefined}
              onClick={() => onOpen(t.id)}
            >
              <span class="thread-title">{t.title}</span>
              {t.agents.length > 0 && <span class="badge">{t.agents.length} agent{t.agents.length > 1 ? 's' : ''}</span>}
            </button>
          </li>
        ))}
      </ul>
    </nav>
  );
}

// ---- Thread pane --------------------------------------------------------------------------------

function ThreadPane({ chat, thread, me }: { chat: Chat; thread: Thread; me: User }) {
  const agentNames = thread.agents.map((id) => chat.agents.find((a) => a.id === id)?.name ?? id);
  return (
    <section class="thread" aria-labelledby="thread-title">
      <header class="thread-head">
        <div>
          <h2 id="thread-title" class="thread-name">
            {thread.title}
          </h2>
          {agentNames.length > 0 && <p class="muted small">Agents: {agentNames.join(', ')}</p>}
        </div>
        <AddMemberForm chat={chat} thread={thread} />
      </header>
      <MessageList chat={chat} thread={thread} me={me} />
      <Composer chat={chat} thread={thread} />
    </section>
  );
}

function AddMemberForm({ chat, thread }: { chat: Chat; thread: Thread }) {
  const [name, setName] = useState('');
  const [busy, setBusy] = useState(false);
  const [status, setStatus] = useState<{ ok: boolean; text: string } | null>(null);

  const submit = async (e: JSX.TargetedEvent<HTMLFormElement, Event>) => {
    e.preventDefault();
    const username = name.trim();
    if (!username || busy) return;
    setBusy(true);
    setStatus(null);
    try {
      await chat.addMember(thread.id, username);
      setStatus({ ok: true, text: `${username} was added.` });
      setName('');
    } catch (err) {
      const fe = toFormError(err);
      setStatus({ ok: false, text: fe.fields?.username ? `${fe.message} (${fe.fields.username})` : fe.message });
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="add-member" onSubmit={submit}>
      <label for="member-username" class="sr-only">
        Add a member by username
      </label>
      <input
        id="member-username"
        data-testid="member-username"
        placeholder="Add member by username"
        autocomplete="off"
        autocapitalize="none"
        spellcheck={false}
        maxLength={32}
        value={name}
        onInput={(e) => setName(e.currentTarget.value)}
      />
      <button type="submit" data-testid="add-member" disabled={busy}>
        Add
      </button>
      {status && (
        <p
          class={status.ok ? 'form-ok' : 'form-error'}
          role={status.ok ? 'status' : 'alert'}
          data-testid="member-status"
          data-ok={status.ok ? 'true' : 'false'}
        >
          {status.text}
        </p>
      )}
    </form>
  );
}

function formatTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay
    ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

function MessageList({ chat, thread, me }: { chat: Chat; thread: Thread; me: User }) {
  const view = chat.views.get(thread.id);
  const messages = view?.messages ?? [];
  const shown = new Set(messages.map((m) => m.client_id));
  const pending = [...chat.outbox, ...chat.failed]
    .filter((p) => p.thread === thread.id && !shown.has(p.client_id))
    .sort((a, b) => a.created_at.localeCompare(b.created_at));
  const streams = [...chat.streams.values()].filter((s) => s.thread === thread.id);
  const notices = chat.notices.filter((n) => n.thread === thread.id || n.thread === null);

  const ref = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  const prev = useRef<{ first: number; height: number }>({ first: 0, height: 0 });

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

  return (
    <div class="messages" ref={ref} onScroll={onScroll}>
      {view && !view.complete && messages.length > 0 && (
        <div class="load-older">
          <button type="button" class="link" disabled={view.loadingOlder} onClick={() => void chat.loadOlder(thread.id)}>
            {view.loadingOlder ? 'Loading…' : 'Load earlier messages'}
          </button>
        </div>
      )}
      {view?.loading && !view.loaded && <p class="muted center">Loading messages…</p>}
      {view?.error && (
        <p class="form-error center" role="alert">
          {view.error}{' '}
          <button type="button" class="link" onClick={() => void chat.loadHistory(thread.id)}>
            Try again
          </button>
        </p>
      )}
      {view?.loaded && messages.length === 0 && pending.length === 0 && streams.length === 0 && (
        <p class="muted center">No messages yet. Say hello!</p>
      )}
      <div role="log" aria-live="polite" aria-label={`Messages in ${thread.title}`} class="log">
        {messages.map((m) => (
          <MessageItem key={`s${m.seq}`} m={m} own={m.author.kind === 'user' && m.author.id === me.id} />
        ))}
        {pending.map((p) => (
          <PendingItem key={`p${p.client_id}`} p={p} me={me} chat={chat} />
        ))}
      </div>
      {streams.map((s) => (
        <StreamItem key={s.stream_id} s={s} chat={chat} />
      ))}
      {notices.map((n) => (
        <div class="notice-line" role="status" key={n.id}>
          <span>{n.text}</span>
          <button type="button" class="link" aria-label="Dismiss notice" onClick={() => chat.dismissNotice(n.id)}>
            Dismiss
          </button>
        </div>
      ))}
    </div>
  );
}

function MessageItem({ m, own }: { m: Message; own: boolean }) {
  const kind = m.author.kind === 'agent' ? ' agent' : own ? ' own' : '';
  return (
    <article
      class={`msg${kind}`}
      data-testid="message"
      data-seq={String(m.seq)}
      data-state={own ? 'sent' : undefined}
      data-author={m.author.name}
    >
      <header class="msg-meta">
        <span class="author">{m.author.name}</span>
        {m.author.kind === 'agent' && <span class="ai-badge">agent</span>}
        <time dateTime={m.created_at}>{formatTime(m.created_at)}</time>
        {m.status === 'incomplete' && <span class="tag warn">incomplete</span>}
      </header>
      <div class="msg-body" data-testid="message-body">
        {m.body}
      </div>
    </article>
  );
}

const STATE_LABEL: Record<PendingSend['state'], string> = {
  sending: 'Sending…',
  queued: 'Queued — will be stored when the database is back',
  failed: 'Not sent',
};

function PendingItem({ p, me, chat }: { p: PendingSend; me: User; chat: Chat }) {
  return (
    <article class={`msg own pending ${p.state}`} data-testid="message" data-state={p.state} data-client-id={p.client_id}>
      <header class="msg-meta">
        <span class="author">{me.username}</span>
        <span class={`tag${p.state === 'failed' ? ' error' : ''}`}>{STATE_LABEL[p.state]}</span>
      </header>
      <div class="msg-body" data-testid="message-body">
        {p.body}
      </div>
      {p.state === 'failed' && (
        <div class="row small">
          <span class="field-error">{p.error}</span>
          <button type="button" class="link" onClick={() => chat.retryFailed(p.client_id)}>
            Retry
          </button>
          <button type="button" class="link" onClick={() => chat.discardFailed(p.client_id)}>
            Discard
          </button>
        </div>
      )}
    </article>
  );
}

function StreamItem({ s, chat }: { s: LiveStream; chat: Chat }) {
  return (
    <article class="msg agent streaming" data-testid="stream" data-stream-id={s.stream_id} aria-busy="true">
      <header class="msg-meta">
        <span class="author">{s.agent.name}</span>
        <span class="ai-badge">agent</span>
        <span class="tag">typing…</span>
        <button type="button" class="link" onClick={() => chat.cancelStream(s.stream_id)}>
          Stop
        </button>
      </header>
      <div class="msg-body">
        {s.text}
        <span class="cursor" aria-hidden="true" />
      </div>
    </article>
  );
}

function Composer({ chat, thread }: { chat: Chat; thread: Thread }) {
  const [text, setText] = useState('');
  const [agent, setAgent] = useState('');
  const [error, setError] = useState<string | null>(null);
  const ref = useRef<HTMLTextAreaElement>(null);

  useEffect(() => {
    ref.current?.focus();
  }, [thread.id]);

  const send = () => {
    const err = chat.send(text, agent || undefined);
    setError(err);
    if (!err) setText('');
    ref.current?.focus();
  };

  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      send();
    }
  };

  const sorted = [...chat.agents].sort(
    (a, b) => Number(thread.agents.includes(b.id)) - Number(thread.agents.includes(a.id)),
  );

  return (
    <form
      class="composer"
      onSubmit={(e) => {
        e.preventDefault();
        send();
      }}
    >
      <label for="composer-input" class="sr-only">
        Message
      </label>
      <textarea
        id="composer-input"
        ref={ref}
        data-testid="composer"
        rows={2}
        placeholder="Write a message — Enter to send, Shift+Enter for a new line"
        value={text}
        onInput={(e) => setText(e.currentTarget.value)}
        onKeyDown={onKeyDown}
        aria-invalid={error ? 'true' : undefined}
        aria-describedby={error ? 'composer-error' : undefined}
      />
      <div class="composer-actions">
        {sorted.length > 0 && (
          <label class="agent-pick">
            <span>Ask</span>
            <select data-testid="composer-agent" value={agent} onChange={(e) => setAgent(e.currentTarget.value)}>
              <option value="">no agent</option>
              {sorted.map((a) => (
                <option key={a.id} value={a.id}>
                  {a.name}
                  {thread.agents.includes(a.id) ? '' : ' (not in thread)'}
                </option>
              ))}
            </select>
          </label>
        )}
        <button type="submit" class="primary" data-testid="send">
          Send
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
