// The browser session: the HttpOnly `emergence_session` cookie (set by register/login, cleared by
// logout) is the only credential the UI uses. The page never stores or sees the token; it only
// caches who the user is (id and name, not secret) so a reload can skip the login screen.
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, api, errorText, setUnauthorizedHandler, toFormError } from './api';
import type { FormError } from './api';
import { t } from './i18n';
import { LangPicker } from './i18n/LangPicker';
import { SsoButtons, signInChoices, ssoErrorFromLink, useSsoHandover } from './sso';
import type { AuthResponse, User } from './types';

/** The cached user (id and username): a hint that a session cookie may exist, never a credential. */
const USER_KEY = 'emergence.user';
/** Where earlier versions kept the bearer token. Removed on load and never written again. */
const LEGACY_TOKEN_KEY = 'emergence.token';

function parseUser(raw: string | null): User | null {
  if (!raw) return null;
  try {
    const u = JSON.parse(raw) as Partial<User> | null;
    return u && typeof u.id === 'string' && typeof u.username === 'string' ? { id: u.id, username: u.username } : null;
  } catch {
    return null;
  }
}

function readCachedUser(): User | null {
  try {
    return parseUser(localStorage.getItem(USER_KEY));
  } catch {
    return null;
  }
}

function writeCachedUser(u: User | null): void {
  try {
    if (u) localStorage.setItem(USER_KEY, JSON.stringify({ id: u.id, username: u.username }));
    else localStorage.removeItem(USER_KEY);
  } catch {
    /* storage unavailable: the next load shows the login screen */
  }
}

/** Deletes a token left by an earlier version; says whether there was one. */
function dropLegacyToken(): boolean {
  let found = false;
  for (const area of ['localStorage', 'sessionStorage'] as const) {
    try {
      const s = window[area];
      if (s.getItem(LEGACY_TOKEN_KEY) !== null) found = true;
      s.removeItem(LEGACY_TOKEN_KEY);
    } catch {
      /* storage unavailable */
    }
  }
  return found;
}

export type Session =
  | { state: 'checking' }
  | { state: 'out'; notice: string | null }
  | { state: 'in'; user: User };

export interface SessionControl {
  session: Session;
  /** Register/login answered: the server has set the cookie. */
  loggedIn(user: User): void;
  /** The session is over (logout, 401, close 4401): show the login screen. */
  ended(notice: string | null): void;
  /** Ask the server again who the cookie belongs to (it may have changed in another tab). */
  recheck(): void;
}

/**
 * Whether the page is logged in, as the server sees the cookie. On load, `GET /api/me` decides
 * when this browser may have a session (a cached user, or a token left by an earlier version);
 * a browser that never logged in goes straight to the login screen without asking, which keeps
 * an anonymous first load free of API requests.
 */
export function useSession(): SessionControl {
  const boot = useRef<{ cached: User | null; probe: boolean } | null>(null);
  if (!boot.current) {
    const legacy = dropLegacyToken();
    const cached = readCachedUser();
    boot.current = { cached, probe: legacy || cached !== null };
  }
  const [session, setSession] = useState<Session>(() =>
    boot.current!.probe ? { state: 'checking' } : { state: 'out', notice: null },
  );
  // Bumped on every decision, so that a late answer of an older probe is ignored.
  const gen = useRef(0);
  const current = useRef(session);
  current.current = session;

  const ended = (notice: string | null) => {
    gen.current += 1;
    writeCachedUser(null);
    setSession({ state: 'out', notice });
  };

  const loggedIn = (user: User) => {
    gen.current += 1;
    writeCachedUser(user);
    setSession({ state: 'in', user: { id: user.id, username: user.username, role: user.role, status: user.status } });
  };

  /** `fallback`: the user to stay logged in as when the server cannot be asked (offline, 5xx). */
  const probe = (fallback: User | null) => {
    const mine = ++gen.current;
    setSession({ state: 'checking' });
    api<User>('GET', '/api/me')
      .then((user) => {
        if (gen.current === mine) loggedIn(user);
      })
      .catch((e) => {
        if (gen.current !== mine) return;
        if (e instanceof ApiError && e.status === 401) ended(t('auth.ended'));
        // The socket and the next request will tell; a 401 or close 4401 then ends the session.
        else if (fallback) setSession({ state: 'in', user: fallback });
        else setSession({ state: 'out', notice: errorText(e) });
      });
  };

  const recheck = () => probe(readCachedUser());

  useEffect(() => {
    setUnauthorizedHandler(() => {
      if (current.current.state !== 'out') ended(t('auth.ended'));
    });
    if (boot.current!.probe) probe(boot.current!.cached);
    // Another tab logged in or out: follow it (the cookie is shared by all tabs).
    const onStorage = (e: StorageEvent) => {
      if (e.key !== USER_KEY && e.key !== null) return;
      const s = current.current;
      const next = parseUser(e.newValue);
      if (s.state === 'in' ? next?.id !== s.user.id : s.state === 'out' && next !== null) recheck();
    };
    window.addEventListener('storage', onStorage);
    return () => {
      setUnauthorizedHandler(null);
      window.removeEventListener('storage', onStorage);
    };
  }, []);

  return { session, loggedIn, ended, recheck };
}

/** Shown while `GET /api/me` is in flight: nothing visible, so no flash of the login screen. */
export function CheckingScreen() {
  return (
    <main class="center-screen" aria-busy="true">
      <p class="sr-only" role="status">
        {t('auth.loading')}
      </p>
    </main>
  );
}

// ---- Login --------------------------------------------------------------------------------------

/** The secret of an invite link (`/#/invite/<secret>`), if the page was opened with one. */
export function inviteFromLink(): string | null {
  const m = /^#\/invite\/([A-Za-z0-9_-]+)$/.exec(location.hash);
  return m ? m[1] : null;
}

/** The secret of a password-reset link (`/#/reset/<secret>`), if the page was opened with one. */
export function resetFromLink(): string | null {
  const m = /^#\/reset\/([A-Za-z0-9_-]+)$/.exec(location.hash);
  return m ? m[1] : null;
}

/** Set a new password with an admin's reset link; then log in with it. */
function ResetForm({ token }: { token: string }) {
  const [password, setPassword] = useState('');
  const [done, setDone] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    try {
      await api<void>('POST', '/api/auth/reset', { token, password });
      setDone(true);
      history.replaceState(null, '', location.pathname);
    } catch (err) {
      setError(errorText(err));
    }
  };
  return done ? (
    <p class="notice" role="status" data-testid="reset-done">
      {t('auth.resetDone')}
    </p>
  ) : (
    <form class="card auth-form" onSubmit={(e) => void submit(e)} data-testid="reset-form">
      <label for="reset-password">{t('acc.new')}</label>
      <input id="reset-password" data-testid="reset-password" type="password" autocomplete="new-password" required
        minLength={8} maxLength={256} value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
      <button type="submit" class="primary" data-testid="reset-submit">
        {t('auth.resetSet')}
      </button>
      {error && (
        <p class="form-error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}

/** A pending account: nothing but waiting until an admin approves it. */
export function PendingScreen({ onCheck, onLogout }: { onCheck: () => void; onLogout: () => void }) {
  return (
    <main class="center-screen">
      <div class="card auth-form" data-testid="pending">
        <h1 class="brand-large">Emergence</h1>
        <p role="status">{t('auth.pending')}</p>
        <div class="row">
          <button type="button" class="primary" data-testid="pending-check" onClick={onCheck}>
            {t('auth.pendingCheck')}
          </button>
          <button type="button" onClick={onLogout}>
            {t('top.logout')}
          </button>
        </div>
      </div>
    </main>
  );
}

export function LoginScreen({ notice, onAuth }: { notice: string | null; onAuth: (user: User) => void }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState<null | 'login' | 'register'>(null);
  const [error, setError] = useState<FormError | null>(null);
  const formRef = useRef<HTMLFormElement>(null);
  // An invite link opened in this tab changes only the hash: show its notice.
  const [, setHash] = useState(location.hash);
  useEffect(() => {
    const onHash = () => setHash(location.hash);
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);

  const reset = resetFromLink();
  const [choices] = useState(signInChoices);
  const [ssoError] = useState(ssoErrorFromLink);
  useEffect(() => {
    if (ssoError) history.replaceState(null, '', location.pathname);
  }, []);
  const handover = useSsoHandover(onAuth);
  const submit = async (kind: 'login' | 'register') => {
    if (busy) return;
    if (formRef.current && !formRef.current.reportValidity()) return;
    setBusy(kind);
    setError(null);
    try {
      // The answer also carries the token (for scripts); the browser keeps only the user and
      // relies on the HttpOnly cookie set by the same answer.
      const invite = inviteFromLink();
      const body = kind === 'register' && invite ? { username: username.trim(), password, invite } : { username: username.trim(), password };
      const r = await api<AuthResponse>('POST', `/api/auth/${kind}`, body);
      if (invite && kind === 'register') history.replaceState(null, '', location.pathname);
      onAuth(r.user);
    } catch (e) {
      setError(toFormError(e));
      setBusy(null);
    }
  };

  const fieldError = (name: string) => error?.fields?.[name];

  return (
    <main class="center-screen">
      {reset && <ResetForm token={reset} />}
      <form
        ref={formRef}
        class="card auth-form"
        aria-labelledby="auth-title"
        onSubmit={(e) => {
          e.preventDefault();
          void submit('login');
        }}
        noValidate={false}
      >
        <div class="row spread">
          <h1 id="auth-title" class="brand-large">
            Emergence
          </h1>
          <LangPicker />
        </div>
        <p class="muted">{t('auth.tagline')}</p>
        {inviteFromLink() && (
          <p class="notice" data-testid="invite-notice">
            {choices.password_login ? t('auth.invited') : t('sso.invited')}
          </p>
        )}
        {notice && (
          <p class="notice" role="status">
            {notice}
          </p>
        )}
        {handover.busy && (
          <p class="notice" role="status" data-testid="sso-busy">
            {t('sso.signingIn')}
          </p>
        )}
        {(ssoError ?? handover.error) && (
          <p class="form-error" role="alert" data-testid="sso-error">
            {ssoError ?? handover.error}
          </p>
        )}
        <SsoButtons providers={choices.providers} invite={inviteFromLink()} />
        {choices.password_login && choices.providers.length > 0 && <p class="muted sso-or">{t('sso.or')}</p>}
        {choices.password_login && passwordFields()}
      </form>
    </main>
  );

  function passwordFields() {
    return (
      <>
        <label for="username">{t('auth.username')}</label>
        <input
          id="username"
          name="username"
          data-testid="username"
          autocomplete="username"
          autocapitalize="none"
          spellcheck={false}
          required
          maxLength={32}
          value={username}
          onInput={(e) => setUsername(e.currentTarget.value)}
          aria-invalid={fieldError('username') ? 'true' : undefined}
          aria-describedby="username-hint"
        />
        <small id="username-hint" class={fieldError('username') ? 'field-error' : 'muted'}>
          {fieldError('username') ?? t('auth.usernameHint')}
        </small>
        <label for="password">{t('auth.password')}</label>
        <input
          id="password"
          name="password"
          type="password"
          data-testid="password"
          autocomplete="current-password"
          required
          maxLength={256}
          value={password}
          onInput={(e) => setPassword(e.currentTarget.value)}
          aria-invalid={fieldError('password') ? 'true' : undefined}
          aria-describedby="password-hint"
        />
        <small id="password-hint" class={fieldError('password') ? 'field-error' : 'muted'}>
          {fieldError('password') ?? t('auth.passwordHint')}
        </small>
        {error && (
          <p class="form-error" role="alert" data-testid="auth-error">
            {error.message}
          </p>
        )}
        <div class="row">
          <button type="submit" class="primary" data-testid="login" disabled={busy !== null}>
            {busy === 'login' ? t('auth.loggingIn') : t('auth.login')}
          </button>
          <button type="button" data-testid="register" disabled={busy !== null} onClick={() => void submit('register')}>
            {busy === 'register' ? t('auth.registering') : t('auth.register')}
          </button>
        </div>
      </>
    );
  }
}
