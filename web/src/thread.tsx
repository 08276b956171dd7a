// The open thread: its header (title with inline rename, pin, archive, adding a member, the
// members & settings panel), its documents (files dropped anywhere on it are uploaded), its
// messages, the composer, and the document viewer when a source is opened.
import { useEffect, useState } from 'preact/hooks';
import type { JSX } from 'preact';
import { errorText, toFormError } from './api';
import { useFileDrop } from './attach';
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
  const docs = chat.documents;
  const viewing = docs.viewing?.thread === thread.id ? docs.viewing : null;
  // The list and the viewer are in the lazy tools chunk: fetched once there is something to show.
  const hasDocs =
    (docs.lists.get(thread.id)?.length ?? 0) > 0 || docs.uploads.some((u) => u.thread === thread.id) || docs.loadErrors.has(thread.id);
  const tools = useTools(manage || viewing !== null || hasDocs);
  useEffect(() => {
    void docs.load(thread.id);
  }, [thread.id]);
  const isOwner = thread.owner_id === me.id;
  const drop = useFileDrop(chat, thread.id);

  const change = async (patch: ThreadPatch) => {
    setError(null);
    try {
      await chat.patchThread(thread.id, patch);
    } catch (e) {
      setError(t('thread.failed', { error: errorText(e) }));
    }
  };

  return (
    <section class={`thread${drop.dragging ? ' dropping' : ''}`} aria-labelledby="thread-title" data-testid="thread" {...drop.handlers}>
      {drop.dragging && (
        <div class="drop-hint" data-testid="drop-hint" aria-hidden="true">
          {t('docs.drop')}
        </div>
      )}
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
      {hasDocs && tools && <tools.DocumentsPanel chat={chat} thread={thread} me={me} />}
      <MessageList chat={chat} thread={thread} me={me} />
      <Composer chat={chat} thread={thread} />
      {viewing && tools && <tools.DocViewer key={`${viewing.document_id}:${viewing.ord ?? ''}`} chat={chat} viewing={viewing} />}
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
