// Usage and budgets in the accounts pages (same lazy chunk): my usage this month and my budget
// on "My account"; everyone's usage (a per-day bar chart drawn as inline SVG, a per agent and
// model table, CSV download) and the budgets (the default and per-user overrides) on the Admin
// page. The server checks every admin route itself.
import { useEffect, useState } from 'preact/hooks';
import { api, errorText } from './api';
import type {
  AdminAccountView,
  BudgetLimits,
  BudgetPeriod,
  BudgetSettingsView,
  MyBudget,
  UsageReport,
  UsageRow,
} from './contract';
import { formatDateTime, formatNumber, lang, t } from './i18n';

function money(n: number, currency: string): string {
  try {
    return new Intl.NumberFormat(lang(), { style: 'currency', currency, maximumFractionDigits: 4 }).format(n);
  } catch {
    return `${n.toFixed(4)} ${currency}`;
  }
}

/** Every day from `from` to `to` (inclusive), `YYYY-MM-DD`. */
function days(from: string, to: string): string[] {
  const out: string[] = [];
  const end = Date.parse(`${to}T00:00:00Z`);
  for (let d = Date.parse(`${from}T00:00:00Z`); d <= end && out.length < 400; d += 86_400_000) {
    out.push(new Date(d).toISOString().slice(0, 10));
  }
  return out;
}

/** Tokens per day as bars: one per day of the report, empty days included. */
export function DayChart({ report }: { report: UsageReport }) {
  const byDay = new Map(report.rows.map((r) => [r.day ?? '', r.total_tokens]));
  const all = days(report.from, report.to);
  const max = Math.max(1, ...all.map((d) => byDay.get(d) ?? 0));
  const [w, h, gap] = [Math.max(6, Math.floor(560 / Math.max(1, all.length))), 120, 2];
  return (
    <svg class="usage-chart" data-testid="usage-chart" role="img" width={all.length * w} height={h + 16}
      viewBox={`0 0 ${all.length * w} ${h + 16}`} aria-label={t('use.chartLabel', { from: report.from, to: report.to })}>
      {all.map((d, i) => {
        const v = byDay.get(d) ?? 0;
        const bh = Math.round((v / max) * h);
        return (
          <rect key={d} data-day={d} data-tokens={v} x={i * w} y={h - bh} width={w - gap} height={bh} class="usage-bar">
            <title>{`${d}: ${formatNumber(v)}`}</title>
          </rect>
        );
      })}
      <text x="0" y={h + 13} class="usage-axis">{report.from}</text>
      <text x={all.length * w} y={h + 13} text-anchor="end" class="usage-axis">{report.to}</text>
    </svg>
  );
}

function UsageTable({ rows, currency }: { rows: UsageRow[]; currency: string }) {
  if (rows.length === 0) return <p>{t('use.empty')}</p>;
  return (
    <table data-testid="usage-table">
      <thead>
        <tr>
          <th>{t('use.agent')}</th>
          <th>{t('use.model')}</th>
          <th>{t('use.answers')}</th>
          <th>{t('use.prompt')}</th>
          <th>{t('use.completion')}</th>
          <th>{t('use.cost')}</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((r) => (
          <tr key={`${r.agent}/${r.model}`} data-testid={`usage-${r.agent}-${r.model}`}>
            <td>{r.agent}</td>
            <td>{r.model}</td>
            <td>{formatNumber(r.answers)}</td>
            <td>{formatNumber(r.prompt_tokens)}</td>
            <td>{formatNumber(r.completion_tokens)}</td>
            <td>{money(r.cost, currency)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** The Admin page's usage: this month per day and per agent and model, and its CSV. */
export function AdminUsage() {
  const [byDay, setByDay] = useState<UsageReport | null>(null);
  const [byAgent, setByAgent] = useState<UsageReport | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    api<UsageReport>('GET', '/api/admin/usage?group=day').then(setByDay, (e) => setError(errorText(e)));
    api<UsageReport>('GET', '/api/admin/usage?group=agent,model').then(setByAgent, (e) => setError(errorText(e)));
  }, []);
  return (
    <section class="card" aria-labelledby="usage-h" data-testid="admin-usage">
      <h2 id="usage-h">{t('use.title')}</h2>
      {byDay && (
        <>
          <p data-testid="usage-summary">
            {t('use.summary', {
              answers: formatNumber(byDay.total.answers),
              tokens: formatNumber(byDay.total.total_tokens),
              cost: money(byDay.total.cost, byDay.currency),
            })}
          </p>
          <h3>{t('use.perDay')}</h3>
          <DayChart report={byDay} />
        </>
      )}
      {byAgent && (
        <>
          <h3>{t('use.perAgent')}</h3>
          <UsageTable rows={byAgent.rows} currency={byAgent.currency} />
          <a href="/api/admin/usage?group=day,agent,model,user&format=csv" download data-testid="usage-csv">
            {t('use.csv')}
          </a>
        </>
      )}
      {error && <p class="form-error" role="alert">{error}</p>}
    </section>
  );
}

function PeriodLine({ label, p }: { label: string; p: BudgetPeriod }) {
  return (
    <li>
      <strong>{label}</strong>{' '}
      {p.limit === undefined
        ? t('bud.unlimited', { used: formatNumber(p.used) })
        : t('bud.left', {
            left: formatNumber(p.remaining ?? 0),
            limit: formatNumber(p.limit),
            time: formatDateTime(p.resets_at),
          })}
    </li>
  );
}

/** "My account": my usage this month and what is left of my budget. */
export function MyUsage() {
  const [report, setReport] = useState<UsageReport | null>(null);
  const [budget, setBudget] = useState<MyBudget | null>(null);
  useEffect(() => {
    void api<UsageReport>('GET', '/api/usage?group=agent,model').then(setReport, () => setReport(null));
    void api<MyBudget>('GET', '/api/me/budget').then(setBudget, () => setBudget(null));
  }, []);
  return (
    <section class="card" aria-labelledby="my-usage-h" data-testid="my-usage">
      <h2 id="my-usage-h">{t('use.myMonth')}</h2>
      {report && (
        <>
          <p data-testid="my-usage-summary">
            {t('use.summary', {
              answers: formatNumber(report.total.answers),
              tokens: formatNumber(report.total.total_tokens),
              cost: money(report.total.cost, report.currency),
            })}
          </p>
          <UsageTable rows={report.rows} currency={report.currency} />
        </>
      )}
      {budget && (
        <>
          <h3>{t('bud.mine')}</h3>
          <ul data-testid="my-budget">
            <PeriodLine label={t('bud.daily')} p={budget.daily} />
            <PeriodLine label={t('bud.monthly')} p={budget.monthly} />
          </ul>
        </>
      )}
    </section>
  );
}

function toLimit(v: string): number | null {
  const n = Number.parseInt(v, 10);
  return Number.isFinite(n) && n > 0 ? n : null;
}

/** Two number inputs (empty: no limit / the default) and a save button. */
function LimitsForm({ id, value, placeholder, onSave }: {
  id: string;
  value: BudgetLimits;
  placeholder: string;
  onSave: (l: BudgetLimits) => Promise<void>;
}) {
  const [daily, setDaily] = useState(value.daily_tokens?.toString() ?? '');
  const [monthly, setMonthly] = useState(value.monthly_tokens?.toString() ?? '');
  useEffect(() => {
    setDaily(value.daily_tokens?.toString() ?? '');
    setMonthly(value.monthly_tokens?.toString() ?? '');
  }, [value.daily_tokens, value.monthly_tokens]);
  const submit = (e: Event) => {
    e.preventDefault();
    void onSave({ daily_tokens: toLimit(daily), monthly_tokens: toLimit(monthly) });
  };
  return (
    <form class="row" onSubmit={submit} data-testid={`budget-${id}`}>
      <input type="number" min={1} aria-label={t('bud.dailyTokens')} placeholder={`${t('bud.dailyTokens')} (${placeholder})`}
        data-testid="daily" value={daily} onInput={(e) => setDaily(e.currentTarget.value)} />
      <input type="number" min={1} aria-label={t('bud.monthlyTokens')} placeholder={`${t('bud.monthlyTokens')} (${placeholder})`}
        data-testid="monthly" value={monthly} onInput={(e) => setMonthly(e.currentTarget.value)} />
      <button type="submit" data-testid="save">{t('bud.save')}</button>
    </form>
  );
}

/** The Admin page's budgets: the default, and each user's own limits. */
export function AdminBudgets({ users }: { users: AdminAccountView[] }) {
  const [view, setView] = useState<BudgetSettingsView | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState(false);
  const reload = () => void api<BudgetSettingsView>('GET', '/api/admin/budgets').then(setView, (e) => setError(errorText(e)));
  useEffect(reload, []);
  const save = (path: string, method: string, body?: BudgetLimits) => async () => {
    setError(null);
    setSaved(false);
    try {
      await api(method, path, body);
      setSaved(true);
    } catch (e) {
      setError(errorText(e));
    }
    reload();
  };
  if (!view) return null;
  const own = new Map(view.overrides.map((o) => [o.user_id, o]));
  return (
    <section class="card" aria-labelledby="budgets-h" data-testid="admin-budgets">
      <h2 id="budgets-h">{t('bud.title')}</h2>
      <h3>{t('bud.default')}</h3>
      <LimitsForm id="default" value={view.default} placeholder={t('bud.none')}
        onSave={(l) => save('/api/admin/budgets', 'PUT', l)()} />
      <h3>{t('bud.override')}</h3>
      <table>
        <tbody>
          {users.map((u) => {
            const o = own.get(u.id);
            const value = { daily_tokens: o?.daily_tokens ?? null, monthly_tokens: o?.monthly_tokens ?? null };
            return (
              <tr key={u.id} data-testid={`budget-user-${u.username}`}>
                <td>{u.username}</td>
                <td>
                  <LimitsForm id={u.username} value={value} placeholder={t('bud.inherit')}
                    onSave={(l) => save(`/api/admin/budgets/${u.id}`, 'PUT', l)()} />
                </td>
                <td>
                  {o && (
                    <button type="button" onClick={() => void save(`/api/admin/budgets/${u.id}`, 'DELETE')()}>
                      {t('bud.remove')}
                    </button>
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {saved && <p role="status" data-testid="budget-saved">{t('bud.saved')}</p>}
      {error && <p class="form-error" role="alert">{error}</p>}
    </section>
  );
}
