// The open thread: its header (title with inline rename, pin, archive, adding a member, the
// members & settings panel), its messages and the composer.
import { useState } from 'preact/hooks';
import type { JSX } from 'preact';
import { errorText, toFormError } from './api';
import type { Chat } from './chat';
import { Composer } from './composer';
import { t } from './i18n';
import { useTools } from './lazyTools';
import { MessageList } from './messages';
import type { Thread, ThreadPatch, User } from './types';

export function ThreadPane({ chat, thread, me }: { chat: Chat; thread: Thread; me: User }) {
  const agentNames = thread.agents.map((id) => chat.agents.find((a) => a.id === id)?.name ?? id);
  const [manage, setManage] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const tools = useTools(manage);
  const isOwner = thread.owner_id === me.id;

  const change = async (patch: ThreadPatch) => {
    setError(null);
    try {
      await chat.patchThread(thread.id, patch);
    } catch (e) {
      setError(t('thread.failed', { error: errorText(e) }));
    }
  };

  return (
    <section class="thread" aria-labelledby="thread-title">
      <header class="thread-head">
        <div class="thread-head-main">
          <ThreadTitle thread={thread} canRename={isOwner} onRename={(title) => change({ title })} />
          {agentNames.length > 0 && <p class="muted small">{t('thread.agents', { names: agentNames.join(', ') })}</p>}
          {thread.archived && <p class="muted small">{t('thread.archivedNote')}</p>}
          <div class="thread-actions">
            <button type="button" data-testid="toggle-pin" onClick={() => void change({ pinned: !thread.pinned })}>
              {thread.pinned ? t('thread.unpin') : t('thread.pin')}
            </button>
            <button type="button" data-testid="toggle-archive" onClick={() => void change({ archived: !thread.archived })}>
              {thread.archived ? t('thread.unarchive') : t('thread.archive')}
            </button>
            <button type="button" data-testid="toggle-manage" aria-expanded={manage ? 'true' : 'false'} onClick={() => setManage(!manage)}>
              {manage ? t('thread.closeManage') : t('thread.manage')}
            </button>
          </div>
          {error && (
            <p class="form-error" role="alert" data-testid="thread-error">
              {error}
            </p>
          )}
        </div>
        <AddMemberForm chat={chat} thread={thread} />
      </header>
      {manage && (tools ? <tools.ThreadTools chat={chat} thread={thread} me={me} /> : <p class="muted">{t('tools.loading')}</p>)}
      <MessageList chat={chat} thread={thread} me={me} />
      <Composer chat={chat} thread={thread} />
    </section>
  );
}

/** The title; the owner can rename it in place (Enter saves, Escape cancels). */
function ThreadTitle({ thread, canRename, onRename }: { thread: Thread; canRename: boolean; onRename: (title: string) => Promise<void> }) {
  const [editing, setEditing] = useState<string | null>(null);
  if (editing === null)
    return (
      <div class="row">
        <h2 id="thread-title" class="thread-name">
          {thread.title}
        </h2>
        {canRename && (
          <button type="button" class="link" data-testid="rename" onClick={() => setEditing(thread.title)}>
            {t('thread.rename')}
          </button>
        )}
      </div>
    );
  const save = async (e: JSX.TargetedEvent<HTMLFormElement, Event>) => {
    e.preventDefault();
    const title = editing.trim();
    if (title && title !== thread.title) await onRename(title);
    setEditing(null);
  };
  return (
    <form class="row rename" onSubmit={save}>
      <h2 id="thread-title" class="sr-only">
        {thread.title}
      </h2>
      <label for="rename-title" class="sr-only">
        {t('thread.renameLabel')}
      </label>
      <input
        id="rename-title"
        data-testid="rename-title"
        maxLength={200}
        value={editing}
        autoFocus
        onInput={(e) => setEditing(e.currentTarget.value)}
        onKeyDown={(e) => {
          if (e.key === 'Escape') setEditing(null);
        }}
      />
      <button type="submit" class="primary" data-testid="rename-save">
        {t('thread.save')}
      </button>
      <button type="button" onClick={() => setEditing(null)}>
        {t('thread.cancel')}
      </button>
    </form>
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
      setStatus({ ok: true, text: t('member.added', { name: username }) });
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
        {t('member.label')}
      </label>
      <input
        id="member-username"
        data-testid="member-username"
        placeholder={t('member.placeholder')}
        autocomplete="off"
        autocapitalize="none"
        spellcheck={false}
        maxLength={32}
        value={name}
        onInput={(e) => setName(e.currentTarget.value)}
      />
      <button type="submit" data-testid="add-member" disabled={busy}>
        {t('member.add')}
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
