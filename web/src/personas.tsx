// The Admin page's agents and provider connections (issue #18): create, edit, disable and
// delete personas and the connections they call; the model picker reads the connection's own
// model list. A key is write-only: the page sends it and only ever sees "has a key" and its last
// 4 characters. Agents of the settings file are listed read-only (they win).
import { useEffect, useState } from 'preact/hooks';
import { api, errorText } from './api';
import type { AdminAgentList, AdminAgentView, ConnectionList, ConnectionView, ModelList } from './contract';
import { t } from './i18n';

const KINDS = ['openai', 'anthropic', 'gemini', 'ollama'] as const;

function useRun(reload: () => void) {
  const [error, setError] = useState<string | null>(null);
  const run = async (op: () => Promise<unknown>): Promise<boolean> => {
    setError(null);
    let ok = true;
    try {
      await op();
    } catch (e) {
      setError(errorText(e));
      ok = false;
    }
    reload();
    return ok;
  };
  return { error, run };
}

function Alert({ error }: { error: string | null }) {
  return error ? (
    <p class="form-error" role="alert">
      {error}
    </p>
  ) : null;
}

function keyLabel(c: ConnectionView): string {
  if (c.key_status === 'unreadable') return t('per.keyUnreadable');
  if (!c.has_key) return t('per.noKey');
  return c.key_hint ? t('per.keyHint', { hint: c.key_hint }) : t('per.hasKey');
}

function ConnectionForm({ onDone, editing }: { onDone: () => void; editing: ConnectionView | null }) {
  const [name, setName] = useState(editing?.name ?? '');
  const [kind, setKind] = useState<string>(editing?.kind ?? 'openai');
  const [baseUrl, setBaseUrl] = useState(editing?.base_url ?? '');
  const [key, setKey] = useState('');
  const { error, run } = useRun(() => {});
  const submit = (e: Event) => {
    e.preventDefault();
    const body: Record<string, unknown> = { name, kind, base_url: baseUrl || null };
    // Write-only: an empty field keeps the stored key.
    if (key) body.api_key = key;
    void run(() =>
      editing ? api('PATCH', `/api/admin/connections/${editing.id}`, body) : api('POST', '/api/admin/connections', body),
    ).then((ok) => {
      if (ok) {
        setKey('');
        if (!editing) {
          setName('');
          setBaseUrl('');
        }
        onDone();
      }
    });
  };
  return (
    <form class="stack" data-testid="connection-form" onSubmit={submit}>
      <label for="conn-name">{t('per.name')}</label>
      <input id="conn-name" data-testid="conn-name" required maxLength={64} value={name}
        onInput={(e) => setName(e.currentTarget.value)} />
      <label for="conn-kind">{t('per.kind')}</label>
      <select id="conn-kind" data-testid="conn-kind" value={kind} onChange={(e) => setKind(e.currentTarget.value)}>
        {KINDS.map((k) => (
          <option key={k} value={k}>{k}</option>
        ))}
      </select>
      <label for="conn-url">{t('per.baseUrl')}</label>
      <input id="conn-url" data-testid="conn-url" type="url" maxLength={500} placeholder="https://…" value={baseUrl}
        onInput={(e) => setBaseUrl(e.currentTarget.value)} />
      <label for="conn-key">{t('per.apiKey')}</label>
      <input id="conn-key" data-testid="conn-key" type="password" autocomplete="off" maxLength={4096} value={key}
        placeholder={editing ? t('per.keyKeep') : ''} onInput={(e) => setKey(e.currentTarget.value)} />
      <p class="hint">{t('per.keyWriteOnly')}</p>
      <button type="submit" class="primary" data-testid="conn-save">
        {editing ? t('per.save') : t('per.addConnection')}
      </button>
      <Alert error={error} />
    </form>
  );
}

type AgentDraft = {
  name: string;
  colour: string;
  system_prompt: string;
  connection_id: string;
  model: string;
  temperature: string;
  max_tokens: string;
  fallback_model: string;
  fallback_agent: string;
};

function draftOf(a: AdminAgentView | null): AgentDraft {
  return {
    name: a?.name ?? '',
    colour: a?.colour ?? '#3a7bd5',
    system_prompt: a?.system_prompt ?? '',
    connection_id: a?.connection_id ?? '',
    model: a?.model ?? '',
    temperature: String(a?.temperature ?? 0.7),
    max_tokens: String(a?.max_tokens ?? 1024),
    fallback_model: a?.fallback_model ?? '',
    fallback_agent: a?.fallback_agent ?? '',
  };
}

function AgentForm({ connections, agents, editing, onDone }: {
  connections: ConnectionView[];
  /** Every agent, for the fallback agent picker. */
  agents: AdminAgentView[];
  editing: AdminAgentView | null;
  onDone: () => void;
}) {
  const [d, setD] = useState<AgentDraft>(draftOf(editing));
  const [models, setModels] = useState<string[]>([]);
  const { error, run } = useRun(() => {});
  const set = (k: keyof AgentDraft) => (e: { currentTarget: { value: string } }) =>
    setD({ ...d, [k]: e.currentTarget.value });
  useEffect(() => {
    setModels([]);
    if (!d.connection_id) return;
    void api<ModelList>('GET', `/api/admin/connections/${d.connection_id}/models`).then(
      (l) => setModels(l.models),
      () => setModels([]),
    );
  }, [d.connection_id]);
  const submit = (e: Event) => {
    e.preventDefault();
    const body = {
      name: d.name,
      colour: d.colour || null,
      system_prompt: d.system_prompt,
      connection_id: d.connection_id || null,
      model: d.model,
      temperature: Number(d.temperature),
      max_tokens: Number(d.max_tokens),
      fallback_model: d.fallback_model || null,
      fallback_agent: d.fallback_agent || null,
    };
    void run(() =>
      editing ? api('PATCH', `/api/admin/agents/${editing.id}`, body) : api('POST', '/api/admin/agents', body),
    ).then((ok) => {
      if (ok) {
        if (!editing) setD(draftOf(null));
        onDone();
      }
    });
  };
  return (
    <form class="stack" data-testid="agent-form" onSubmit={submit}>
      <label for="agent-name">{t('per.name')}</label>
      <input id="agent-name" data-testid="agent-name" required maxLength={64} value={d.name} onInput={set('name')} />
      <label for="agent-colour">{t('per.colour')}</label>
      <input id="agent-colour" data-testid="agent-colour" type="color" value={d.colour} onInput={set('colour')} />
      <label for="agent-prompt">{t('per.prompt')}</label>
      <textarea id="agent-prompt" data-testid="agent-prompt" rows={3} maxLength={16000} value={d.system_prompt}
        onInput={set('system_prompt')} />
      <label for="agent-conn">{t('per.connection')}</label>
      <select id="agent-conn" data-testid="agent-conn" value={d.connection_id} onChange={set('connection_id')}>
        <option value="">{t('per.localProvider')}</option>
        {connections.map((c) => (
          <option key={c.id} value={c.id}>{c.name} ({c.kind})</option>
        ))}
      </select>
      <label for="agent-model">{t('per.model')}</label>
      <input id="agent-model" data-testid="agent-model" required maxLength={200} list="agent-models" value={d.model}
        onInput={set('model')} />
      <datalist id="agent-models">
        {models.map((m) => (
          <option key={m} value={m} />
        ))}
      </datalist>
      {models.length > 0 && (
        <p class="hint" data-testid="agent-models-hint">{t('per.modelsFound', { n: String(models.length) })}</p>
      )}
      <label for="agent-temp">{t('per.temperature')}</label>
      <input id="agent-temp" data-testid="agent-temp" type="number" min={0} max={2} step={0.1} value={d.temperature}
        onInput={set('temperature')} />
      <label for="agent-max">{t('per.maxTokens')}</label>
      <input id="agent-max" data-testid="agent-max" type="number" min={1} max={200000} step={1} value={d.max_tokens}
        onInput={set('max_tokens')} />
      <label for="agent-fallback">{t('per.fallback')}</label>
      <input id="agent-fallback" data-testid="agent-fallback" maxLength={200} list="agent-models"
        value={d.fallback_model} onInput={set('fallback_model')} />
      <label for="agent-fallback-agent">{t('per.fallbackAgent')}</label>
      <select id="agent-fallback-agent" data-testid="agent-fallback-agent" value={d.fallback_agent}
        onChange={set('fallback_agent')}>
        <option value="">{t('per.noFallbackAgent')}</option>
        {agents
          .filter((a) => a.id !== editing?.id)
          .map((a) => (
            <option key={`${a.source}-${a.id}`} value={a.id}>{a.name} ({a.provider} · {a.model})</option>
          ))}
      </select>
      <p class="hint">{t('per.fallbackAgentHint')}</p>
      <button type="submit" class="primary" data-testid="agent-save">
        {editing ? t('per.save') : t('per.addAgent')}
      </button>
      <Alert error={error} />
    </form>
  );
}

/** The agents and connections sections of the Admin page. */
export function AdminPersonas() {
  const [connections, setConnections] = useState<ConnectionView[]>([]);
  const [agents, setAgents] = useState<AdminAgentView[]>([]);
  const [editConn, setEditConn] = useState<ConnectionView | null>(null);
  const [editAgent, setEditAgent] = useState<AdminAgentView | null>(null);
  const reload = () => {
    void api<ConnectionList>('GET', '/api/admin/connections').then((l) => setConnections(l.connections), () => {});
    void api<AdminAgentList>('GET', '/api/admin/agents').then((l) => setAgents(l.agents), () => {});
  };
  useEffect(reload, []);
  const { error, run } = useRun(reload);
  return (
    <>
      <section class="card" aria-labelledby="agents-h" data-testid="admin-agents">
        <h2 id="agents-h">{t('per.agents')}</h2>
        <p class="hint">{t('per.settingsNote')}</p>
        <table>
          <thead>
            <tr>
              <th>{t('per.name')}</th>
              <th>{t('per.model')}</th>
              <th>{t('per.state')}</th>
              <th>{t('adm.actions')}</th>
            </tr>
          </thead>
          <tbody>
            {agents.map((a) => (
              <tr key={`${a.source}-${a.id}`} data-testid={`agent-row-${a.id}`}>
                <td>
                  <span class="agent-swatch" style={{ background: a.colour ?? 'transparent' }} aria-hidden="true" />
                  {a.name}
                </td>
                <td>{a.provider} · {a.model}</td>
                <td data-testid="agent-state">
                  {a.source === 'settings'
                    ? t('per.fromSettings')
                    : !a.enabled
                      ? t('per.disabled')
                      : a.active
                        ? t('per.active')
                        : t('per.shadowed')}
                </td>
                <td class="row">
                  {a.source === 'database' && (
                    <>
                      <button type="button" onClick={() => setEditAgent(a)}>{t('per.edit')}</button>
                      <button type="button" data-testid="agent-toggle" onClick={() =>
                        void run(() => api('PATCH', `/api/admin/agents/${a.id}`, { enabled: !a.enabled }))}>
                        {a.enabled ? t('adm.disable') : t('adm.enable')}
                      </button>
                      <button type="button" onClick={() => void run(() => api('DELETE', `/api/admin/agents/${a.id}`))}>
                        {t('per.delete')}
                      </button>
                    </>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        <h3>{editAgent ? t('per.editAgent', { name: editAgent.name }) : t('per.newAgent')}</h3>
        <AgentForm key={editAgent?.id ?? 'new'} connections={connections} agents={agents} editing={editAgent}
          onDone={() => { setEditAgent(null); reload(); }} />
      </section>
      <section class="card" aria-labelledby="conns-h" data-testid="admin-connections">
        <h2 id="conns-h">{t('per.connections')}</h2>
        <ul data-testid="connections">
          {connections.length === 0 && <li>{t('acc.none')}</li>}
          {connections.map((c) => (
            <li key={c.id} data-testid={`conn-${c.name}`}>
              {c.name} · {c.kind}{c.base_url ? ` · ${c.base_url}` : ''} · <span data-testid="conn-key-state">{keyLabel(c)}</span>
              <button type="button" onClick={() => setEditConn(c)}>{t('per.edit')}</button>
              <button type="button" onClick={() => void run(() => api('DELETE', `/api/admin/connections/${c.id}`))}>
                {t('per.delete')}
              </button>
            </li>
          ))}
        </ul>
        <h3>{editConn ? t('per.editConnection', { name: editConn.name }) : t('per.newConnection')}</h3>
        <ConnectionForm key={editConn?.id ?? 'new'} editing={editConn} onDone={() => { setEditConn(null); reload(); }} />
        <Alert error={error} />
      </section>
    </>
  );
}
