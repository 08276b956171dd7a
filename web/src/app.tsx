// The page: the login screen, or the chat screen (top bar, thread list, open thread).
import { useEffect, useMemo, useState } from 'preact/hooks';
import { ApiError, api, errorText } from './api';
import { CheckingScreen, LoginScreen, PendingScreen, useSession } from './auth';
import { Chat } from './chat';
import { t, useLang } from './i18n';
import { LangPicker } from './i18n/LangPicker';
import { NewThreadForm, ThreadList } from './sidebar';
import { ThreadPane } from './thread';
import { ConnStatus } from './topbar';
import { useTools } from './lazyTools';
import type { User } from './types';

/** Re-renders the component whenever the store changes. */
export function useStore(chat: Chat): void {
  const [, bump] = useState(0);
  useEffect(() => chat.subscribe(() => bump((n) => n + 1)), [chat]);
}

export function App() {
  // Every component below re-renders when the language changes.
  useLang();
  const { session, loggedIn, ended, recheck } = useSession();
  if (session.state === 'checking') return <CheckingScreen />;
  if (session.state === 'out') return <LoginScreen notice={session.notice} onAuth={loggedIn} />;
  if (session.user.status === 'pending') {
    const logout = () => void api<void>('POST', '/api/auth/logout').finally(() => ended(null));
    return <PendingScreen onCheck={recheck} onLogout={logout} />;
  }
  return <ChatScreen key={session.user.id} me={session.user} onLoggedOut={ended} onUserChanged={recheck} />;
}

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
  const [page, setPage] = useState<'chat' | 'account' | 'admin' | 'search' | 'data'>('chat');
  const [query, setQuery] = useState('');
  // The account and admin pages are a chunk of their own, fetched when first opened; so are the
  // search and import / export pages (lazyTools.ts).
  const [pages, setPages] = useState<typeof import('./accounts') | null>(null);
  useEffect(() => {
    if ((page === 'account' || page === 'admin') && !pages) void import('./accounts').then(setPages);
  }, [page]);
  // Agents change live (admins edit them): the list is read again whenever the chat comes back.
  useEffect(() => {
    if (page === 'chat') void chat.loadAgents();
  }, [page]);
  const tools = useTools(page === 'search' || page === 'data');
  const [logoutError, setLogoutError] = useState<string | null>(null);

  useEffect(() => {
    chat.onUnauthorized = () => onLoggedOut(t('auth.ended'));
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
        setLogoutError(t('top.logoutFailed', { error: errorText(e) }));
        setLoggingOut(false);
        return;
      }
    }
    chat.destroy();
    onLoggedOut(null);
  };

  // An archived thread opened from its section (or from a search hit) is open too.
  const current = [...chat.threads, ...(chat.archived ?? [])].find((th) => th.id === chat.currentId) ?? null;

  const open = (id: string) => {
    chat.openThread(id);
    setSidebarOpen(false);
  };

  return (
    <div class="app">
      <header class="topbar">
        <span class="brand">Emergence</span>
        <ConnStatus chat={chat} />
        <span class="me" title={t('top.loggedInAs')}>
          {me.username}
        </span>
        <button type="button" data-testid="nav-account" onClick={() => setPage(page === 'account' ? 'chat' : 'account')}>
          {page === 'account' ? t('top.back') : t('top.account')}
        </button>
        {me.role === 'admin' && (
          <button type="button" data-testid="nav-admin" onClick={() => setPage(page === 'admin' ? 'chat' : 'admin')}>
            {page === 'admin' ? t('top.back') : t('top.admin')}
          </button>
        )}
        <LangPicker />
        <button type="button" data-testid="logout" onClick={() => void logout()} disabled={loggingOut}>
          {t('top.logout')}
        </button>
        {logoutError && (
          <span class="form-error" role="alert" data-testid="logout-error">
            {logoutError}
          </span>
        )}
      </header>
      {(page === 'account' || page === 'admin') && (
        <main class="accounts-main">{pages ? page === 'admin' ? <pages.AdminPage /> : <pages.AccountPage chat={chat} /> : null}</main>
      )}
      {(page === 'search' || page === 'data') && (
        <main class="accounts-main">
          <button type="button" class="link back" data-testid="page-back" onClick={() => setPage('chat')}>
            {t('top.back')}
          </button>
          {!tools ? (
            <p class="muted">{t('tools.loading')}</p>
          ) : page === 'search' ? (
            <tools.SearchPage chat={chat} query={query} onOpen={() => { setPage('chat'); setSidebarOpen(false); }} />
          ) : (
            <tools.DataPage chat={chat} />
          )}
        </main>
      )}
      <div class={`layout${sidebarOpen ? ' sidebar-open' : ''}${page !== 'chat' ? ' off' : ''}`}>
        <button
          type="button"
          class="sidebar-toggle"
          aria-expanded={sidebarOpen ? 'true' : 'false'}
          aria-controls="sidebar"
          onClick={() => setSidebarOpen(!sidebarOpen)}
        >
          {sidebarOpen ? t('side.hide') : t('side.show', { n: chat.threads.length })}
          {current && !sidebarOpen ? ` · ${current.title}` : ''}
        </button>
        <aside id="sidebar" class="sidebar" aria-label={t('side.threads')}>
          <NewThreadForm chat={chat} onCreated={() => setSidebarOpen(false)} />
          <ThreadList
            chat={chat}
            onOpen={open}
            onSearch={(q) => {
              setQuery(q);
              setPage('search');
            }}
            onData={() => setPage('data')}
          />
        </aside>
        <main class="chat-pane">
          {current ? (
            <ThreadPane key={current.id} chat={chat} thread={current} me={me} />
          ) : (
            <div class="empty">
              <p>{t('side.select')}</p>
              <Notices chat={chat} />
            </div>
          )}
        </main>
      </div>
    </div>
  );
}

/** Notices about no open thread (a thread deleted or left elsewhere) while none is open. */
function Notices({ chat }: { chat: Chat }) {
  return (
    <>
      {chat.notices
        .filter((n) => n.thread === null)
        .map((n) => (
          <div class="notice-line" role="status" data-testid="notice" key={n.id}>
            <span>{n.text}</span>
            <button type="button" class="link" aria-label={t('msgs.dismissNotice')} onClick={() => chat.dismissNotice(n.id)}>
              {t('msgs.dismiss')}
            </button>
          </div>
        ))}
    </>
  );
}
