// "My account" (usage and budget, password, sessions, API tokens) and the Admin page (users:
// approve, disable, role, reset link, sessions; invites; agents and connections; usage; budgets). Loaded on demand (its own chunk): the chat screen's first
// load does not carry it. The server checks every admin route itself; hiding the page from
// non-admins is only a convenience.
import { useEffect, useState } from 'preact/hooks';
import { api, errorText } from './api';
import type {
  AccountList,
  AdminAccountView,
  ApiTokenList,
  CreatedApiToken,
  CreatedLink,
  InviteList,
  SessionList,
} from './contract';
import { formatDateTime, t } from './i18n';
import { AdminPersonas } from './personas';
import { AdminBudgets, AdminUsage, MyUsage } from './usage';
import type { Chat } from './chat';
import { MemoryPanel } from './memories';

/** Runs `op`, then `reload`; a failure is shown in `setError`. */
function useAction(reload: () => void) {
  const [error, setError] = useState<string | null>(null);
  const run = async (op: () => Promise<unknown>) => {
    setError(null);
    try {
      await op();
    } catch (e) {
      setError(errorText(e));
    }
    reload();
  };
  return { error, run };
}

function ErrorLine({ error }: { error: string | null }) {
  return error ? (
    <p class="form-error" role="alert">
      {error}
    </p>
  ) : null;
}

function Sessions({ path, revokeBase }: { path: string; revokeBase: string | null }) {
  const [list, setList] = useState<SessionList | null>(null);
  const reload = () => void api<SessionList>('GET', path).then(setList, () => setList(null));
  useEffect(reload, [path]);
  const { error, run } = useAction(reload);
  return (
    <section class="card" aria-labelledby="sessions-h">
      <h2 id="sessions-h">{t('acc.sessions')}</h2>
      <ul data-testid="sessions">
        {list?.sessions.map((s) => (
          <li key={s.id}>
            {t('acc.since', { time: formatDateTime(s.created_at) })}
            {s.current ? ` · ${t('acc.thisSession')}` : ''}
            {revokeBase && !s.current && (
              <button type="button" onClick={() => void run(() => api('DELETE', `${revokeBase}/${s.id}`))}>
                {t('acc.revoke')}
              </button>
            )}
          </li>
        ))}
      </ul>
      <ErrorLine error={error} />
    </section>
  );
}

function PasswordForm() {
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [done, setDone] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setDone(false);
    try {
      await api('POST', '/api/me/password', { current, new: next });
      setDone(true);
      setCurrent('');
      setNext('');
    } catch (err) {
      setError(errorText(err));
    }
  };
  return (
    <form class="card" onSubmit={(e) => void submit(e)} aria-labelledby="pw-h">
      <h2 id="pw-h">{t('acc.password')}</h2>
      <label for="pw-current">{t('acc.current')}</label>
      <input id="pw-current" data-testid="pw-current" type="password" autocomplete="current-password" required
        value={current} onInput={(e) => setCurrent(e.currentTarget.value)} />
      <label for="pw-new">{t('acc.new')}</label>
      <input id="pw-new" data-testid="pw-new" type="password" autocomplete="new-password" required minLength={8}
        maxLength={256} value={next} onInput={(e) => setNext(e.currentTarget.value)} />
      <button type="submit" class="primary" data-testid="pw-submit">
        {t('acc.change')}
      </button>
      {done && (
        <p role="status" data-testid="pw-done">
          {t('acc.changed')}
        </p>
      )}
      <ErrorLine error={error} />
    </form>
  );
}

function Tokens() {
  const [list, setList] = useState<ApiTokenList | null>(null);
  const [name, setName] = useState('');
  const [scope, setScope] = useState<'read' | 'chat'>('read');
  const [shown, setShown] = useState<string | null>(null);
  const reload = () => void api<ApiTokenList>('GET', '/api/me/tokens').then(setList, () => setList(null));
  useEffect(reload, []);
  const { error, run } = useAction(reload);
  const create = (e: Event) => {
    e.preventDefault();
    void run(async () => {
      const created = await api<CreatedApiToken>('POST', '/api/me/tokens', { name, scope });
      setShown(created.token);
      setName('');
    });
  };
  return (
    <section class="card" aria-labelledby="tokens-h">
      <h2 id="tokens-h">{t('acc.tokens')}</h2>
      <form class="row" onSubmit={create}>
        <input aria-label={t('acc.tokenName')} placeholder={t('acc.tokenName')} data-testid="token-name" required
          maxLength={64} value={name} onInput={(e) => setName(e.currentTarget.value)} />
        <select aria-label={t('acc.scope')} data-testid="token-scope" value={scope}
          onChange={(e) => setScope(e.currentTarget.value === 'chat' ? 'chat' : 'read')}>
          <option value="read">{t('acc.scopeRead')}</option>
          <option value="chat">{t('acc.scopeChat')}</option>
        </select>
        <button type="submit" data-testid="token-create">
          {t('acc.create')}
        </button>
      </form>
      {shown && (
        <p role="status">
          {t('acc.shownOnce')} <code data-testid="token-shown">{shown}</code>
        </p>
      )}
      <ul data-testid="tokens">
        {list?.tokens.length === 0 && <li>{t('acc.none')}</li>}
        {list?.tokens.map((tk) => (
          <li key={tk.id}>
            {tk.name} · {tk.scope === 'chat' ? t('acc.scopeChat') : t('acc.scopeRead')}
            <button type="button" onClick={() => void run(() => api('DELETE', `/api/me/tokens/${tk.id}`))}>
              {t('acc.delete')}
            </button>
          </li>
        ))}
      </ul>
      <ErrorLine error={error} />
    </section>
  );
}

export function AccountPage({ chat }: { chat?: Chat }) {
  return (
    <div class="accounts-page" data-testid="account-page">
      <h1>{t('top.account')}</h1>
      <MemoryPanel chat={chat} />
      <MyUsage />
      <PasswordForm />
      <Sessions path="/api/me/sessions" revokeBase="/api/me/sessions" />
      <Tokens />
    </div>
  );
}

function UserRow({ u, run, onLink }: { u: AdminAccountView; run: (op: () => Promise<unknown>) => Promise<void>; onLink: (l: string) => void }) {
  const path = `/api/admin/users/${u.id}`;
  const patch = (body: object) => () => run(() => api('PATCH', path, body));
  return (
    <tr data-testid={`user-${u.username}`}>
      <td>{u.username}</td>
      <td>{u.role}</td>
      <td data-testid="status">{u.status}</td>
      <td class="row">
        {u.status === 'pending' && (
          <button type="button" data-testid="approve" onClick={() => void run(() => api('POST', `${path}/approve`))}>
            {t('adm.approve')}
          </button>
        )}
        {u.status === 'disabled' ? (
          <button type="button" onClick={() => void patch({ status: 'active' })()}>{t('adm.enable')}</button>
        ) : (
          <button type="button" data-testid="disable" onClick={() => void patch({ status: 'disabled' })()}>
            {t('adm.disable')}
          </button>
        )}
        <button type="button" onClick={() => void patch({ role: u.role === 'admin' ? 'user' : 'admin' })()}>
          {u.role === 'admin' ? t('adm.makeUser') : t('adm.makeAdmin')}
        </button>
        <button type="button" data-testid="reset" onClick={() => void run(async () => {
          const l = await api<CreatedLink>('POST', `${path}/reset`);
          onLink(`${location.origin}/#${l.path}`);
        })}>
          {t('adm.reset')}
        </button>
        <button type="button" onClick={() => void run(() => api('DELETE', `${path}/sessions`))}>
          {t('adm.endSessions')}
        </button>
      </td>
    </tr>
  );
}

export function AdminPage() {
  const [users, setUsers] = useState<AccountList | null>(null);
  const [invites, setInvites] = useState<InviteList | null>(null);
  const [link, setLink] = useState<string | null>(null);
  const reload = () => {
    void api<AccountList>('GET', '/api/admin/users').then(setUsers, () => setUsers(null));
    void api<InviteList>('GET', '/api/admin/invites').then(setInvites, () => setInvites(null));
  };
  useEffect(reload, []);
  const { error, run } = useAction(reload);
  return (
    <div class="accounts-page" data-testid="admin-page">
      <h1>{t('top.admin')}</h1>
      <section class="card" aria-labelledby="users-h">
        <h2 id="users-h">{t('adm.users')}</h2>
        <table>
          <thead>
            <tr>
              <th>{t('adm.user')}</th>
              <th>{t('adm.role')}</th>
              <th>{t('adm.status')}</th>
              <th>{t('adm.actions')}</th>
            </tr>
          </thead>
          <tbody>
            {users?.users.map((u) => <UserRow key={u.id} u={u} run={run} onLink={setLink} />)}
          </tbody>
        </table>
      </section>
      <section class="card" aria-labelledby="invites-h">
        <h2 id="invites-h">{t('adm.invites')}</h2>
        <button type="button" data-testid="new-invite" onClick={() => void run(async () => {
          const l = await api<CreatedLink>('POST', '/api/admin/invites');
          setLink(`${location.origin}/#${l.path}`);
        })}>
          {t('adm.newInvite')}
        </button>
        <ul data-testid="invites">
          {invites?.invites.length === 0 && <li>{t('acc.none')}</li>}
          {invites?.invites.map((i) => (
            <li key={i.id}>
              {t('adm.expires', { time: formatDateTime(i.expires_at) })}
              <button type="button" onClick={() => void run(() => api('DELETE', `/api/admin/invites/${i.id}`))}>
                {t('acc.delete')}
              </button>
            </li>
          ))}
        </ul>
      </section>
      <AdminPersonas />
      <AdminUsage />
      {users && <AdminBudgets users={users.users} />}
      {link && (
        <p role="status" class="card">
          {t('adm.link')} <code data-testid="link">{link}</code>
        </p>
      )}
      <ErrorLine error={error} />
    </div>
  );
}
