// The open thread's members & settings panel: the members with their role (the owner removes
// members and hands the thread over, a member leaves), the thread's agents (owner), export links
// (JSON, Markdown) and delete (owner, after a confirmation). The member list stays live through
// `members_updated` frames (directory.ts).
import { useEffect, useState } from 'preact/hooks';
import { errorText } from '../api';
import type { Chat } from '../chat';
import type { MemberView } from '../contract';
import { t } from '../i18n';
import type { Thread, User } from '../types';

interface Props {
  chat: Chat;
  thread: Thread;
  me: User;
}

/** Runs an action; its failure is shown under the section. */
function useRun() {
  const [error, setError] = useState<string | null>(null);
  const run = async (op: () => Promise<unknown>): Promise<boolean> => {
    setError(null);
    try {
      await op();
      return true;
    } catch (e) {
      setError(errorText(e));
      return false;
    }
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

export function ThreadTools({ chat, thread, me }: Props) {
  const isOwner = thread.owner_id === me.id;
  return (
    <div class="thread-tools" data-testid="thread-tools">
      <Members chat={chat} thread={thread} me={me} />
      <Agents chat={chat} thread={thread} isOwner={isOwner} />
      <section class="card" aria-labelledby="export-h">
        <h3 id="export-h">{t('export.heading')}</h3>
        <p class="row">
          <a data-testid="export-json" href={`/api/threads/${encodeURIComponent(thread.id)}/export?format=json`} download={`${fileName(thread.title)}.json`}>
            {t('export.json')}
          </a>
          <a data-testid="export-md" href={`/api/threads/${encodeURIComponent(thread.id)}/export?format=md`} download={`${fileName(thread.title)}.md`}>
            {t('export.md')}
          </a>
        </p>
      </section>
      {isOwner && <Delete chat={chat} thread={thread} />}
    </div>
  );
}

/** A file name from a title: letters, digits, dashes. */
function fileName(title: string): string {
  const base = title.normalize('NFKD').replace(/[^\w-]+/g, '-').replace(/^-+|-+$/g, '');
  return base.slice(0, 60) || 'thread';
}

function Members({ chat, thread, me }: Props) {
  const members: MemberView[] | undefined = chat.members.get(thread.id);
  const { error, run } = useRun();
  const [confirm, setConfirm] = useState<{ kind: 'owner' | 'leave'; member: MemberView } | null>(null);
  useEffect(() => {
    void run(() => chat.loadMembers(thread.id));
  }, [thread.id]);
  const isOwner = thread.owner_id === me.id;

  const act = async () => {
    if (!confirm) return;
    const { kind, member } = confirm;
    setConfirm(null);
    if (kind === 'owner') await run(() => chat.patchThread(thread.id, { owner_id: member.user_id }));
    else await run(() => chat.removeMember(thread.id, member.user_id));
  };

  return (
    <section class="card" aria-labelledby="members-h">
      <h3 id="members-h">{t('members.heading')}</h3>
      <ul class="members" data-testid="members">
        {(members ?? []).map((m) => (
          <li key={m.user_id} data-testid="member" data-username={m.username} data-role={m.role}>
            <span>
              {m.username} {m.user_id === me.id && <span class="muted">{t('members.you')}</span>}
            </span>
            <span class="badge">{m.role === 'owner' ? t('members.owner') : t('members.member')}</span>
            {isOwner && m.role !== 'owner' && (
              <>
                <button type="button" data-testid="member-remove" onClick={() => void run(() => chat.removeMember(thread.id, m.user_id))}>
                  {t('members.remove')}
                </button>
                <button type="button" data-testid="member-make-owner" onClick={() => setConfirm({ kind: 'owner', member: m })}>
                  {t('members.makeOwner')}
                </button>
              </>
            )}
            {!isOwner && m.user_id === me.id && (
              <button type="button" data-testid="member-leave" onClick={() => setConfirm({ kind: 'leave', member: m })}>
                {t('members.leave')}
              </button>
            )}
          </li>
        ))}
      </ul>
      {confirm && (
        <div class="confirm" role="alertdialog" aria-labelledby="member-confirm-text">
          <p id="member-confirm-text">
            {confirm.kind === 'owner'
              ? t('members.confirmOwner', { name: confirm.member.username })
              : t('members.confirmLeave', { title: thread.title })}
          </p>
          <button type="button" class="primary" data-testid="member-confirm" onClick={() => void act()}>
            {t('members.confirm')}
          </button>
          <button type="button" onClick={() => setConfirm(null)}>
            {t('thread.cancel')}
          </button>
        </div>
      )}
      <ErrorLine error={error} />
    </section>
  );
}

function Agents({ chat, thread, isOwner }: { chat: Chat; thread: Thread; isOwner: boolean }) {
  const [picked, setPicked] = useState<string[]>(thread.agents);
  const [saved, setSaved] = useState(false);
  const { error, run } = useRun();
  // Another member's change arrives as `thread_updated`: show it.
  useEffect(() => setPicked(thread.agents), [thread.agents.join(',')]);
  if (chat.agents.length === 0)
    return (
      <section class="card" aria-labelledby="agents-h">
        <h3 id="agents-h">{t('agents.heading')}</h3>
        <p class="muted">{t('agents.none')}</p>
      </section>
    );
  const toggle = (id: string, on: boolean) => {
    setSaved(false);
    setPicked((p) => (on ? [...p.filter((x) => x !== id), id] : p.filter((x) => x !== id)));
  };
  const save = async () => {
    setSaved(false);
    if (await run(() => chat.patchThread(thread.id, { agents: picked }))) setSaved(true);
  };
  return (
    <section class="card" aria-labelledby="agents-h">
      <h3 id="agents-h">{t('agents.heading')}</h3>
      <fieldset class="agents" disabled={!isOwner}>
        <legend class="sr-only">{t('agents.heading')}</legend>
        {chat.agents.map((a) => (
          <label key={a.id} class="check">
            <input
              type="checkbox"
              data-testid="thread-agent"
              value={a.id}
              checked={picked.includes(a.id)}
              onChange={(e) => toggle(a.id, e.currentTarget.checked)}
            />
            <span>{a.name}</span>
          </label>
        ))}
      </fieldset>
      {isOwner && (
        <button type="button" data-testid="agents-save" onClick={() => void save()}>
          {t('agents.save')}
        </button>
      )}
      {saved && (
        <p class="form-ok" role="status">
          {t('agents.saved')}
        </p>
      )}
      <ErrorLine error={error} />
    </section>
  );
}

function Delete({ chat, thread }: { chat: Chat; thread: Thread }) {
  const [asking, setAsking] = useState(false);
  const { error, run } = useRun();
  return (
    <section class="card danger" aria-label={t('delete.button')}>
      {!asking ? (
        <button type="button" data-testid="delete-thread" onClick={() => setAsking(true)}>
          {t('delete.button')}
        </button>
      ) : (
        <div class="confirm" role="alertdialog" aria-labelledby="delete-confirm-text">
          <p id="delete-confirm-text">{t('delete.confirm', { title: thread.title })}</p>
          <button type="button" class="primary danger" data-testid="delete-confirm" onClick={() => void run(() => chat.deleteThread(thread.id))}>
            {t('delete.yes')}
          </button>
          <button type="button" onClick={() => setAsking(false)}>
            {t('thread.cancel')}
          </button>
        </div>
      )}
      <ErrorLine error={error} />
    </section>
  );
}
