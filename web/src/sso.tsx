// Single sign-on on the sign-in page: the providers' buttons, the hand-over back from a provider
// (`/#/sso/<code>`: a single-use code in the fragment, never sent to any server by the browser,
// exchanged once by POST for the same HttpOnly session cookie a password login sets), and the
// translated reason of a refusal (`/#/sso-error/<reason>`).
import { useEffect, useState } from 'preact/hooks';
import { api, errorText } from './api';
import type { SsoProviderView } from './contract';
import { t } from './i18n';
import type { Key } from './i18n';
import type { AuthResponse, User } from './types';

export interface SignInChoices {
  password_login: boolean;
  providers: SsoProviderView[];
}

/** The server's sign-in options, written into the page as `<meta name="emergence-sign-in">`
 * when single sign-on is configured (no request needed); password only otherwise. */
export function signInChoices(): SignInChoices {
  const meta = document.querySelector<HTMLMetaElement>('meta[name="emergence-sign-in"]');
  try {
    const v = meta ? (JSON.parse(meta.content) as Partial<SignInChoices>) : {};
    return {
      password_login: v.password_login !== false,
      providers: Array.isArray(v.providers) ? v.providers : [],
    };
  } catch {
    return { password_login: true, providers: [] };
  }
}

/** The hand-over code of `/#/sso/<code>`, if the page came back from a provider with one. */
export function ssoCodeFromLink(): string | null {
  const m = /^#\/sso\/([A-Za-z0-9_-]+)$/.exec(location.hash);
  return m ? m[1] : null;
}

const REASONS = [
  'sso_state_invalid',
  'sso_failed',
  'sso_token_invalid',
  'sso_unavailable',
  'sso_cancelled',
  'sso_unknown_provider',
  'registration_closed',
  'invite_invalid',
  'account_disabled',
] as const;

/** The translated reason of `/#/sso-error/<reason>`, if the page came back with one. */
export function ssoErrorFromLink(): string | null {
  const m = /^#\/sso-error\/([a-z_]+)$/.exec(location.hash);
  if (!m) return null;
  const reason = (REASONS as readonly string[]).includes(m[1]) ? m[1] : 'unknown';
  return t(`sso.err.${reason}` as Key);
}

/** Back from a provider with a hand-over code: exchange it once, then the app is signed in. */
export function useSsoHandover(onAuth: (user: User) => void): { busy: boolean; error: string | null } {
  const [code] = useState(ssoCodeFromLink);
  const [busy, setBusy] = useState(code !== null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    if (!code) return;
    // Out of the address bar and the history at once: the code is single use anyway.
    history.replaceState(null, '', location.pathname);
    api<AuthResponse>('POST', '/api/auth/oidc/exchange', { code })
      .then((r) => onAuth(r.user))
      .catch((e) => {
        setError(e instanceof Error && 'status' in e && e.status === 401 ? t('sso.err.sso_state_invalid') : errorText(e));
        setBusy(false);
      });
  }, []);
  return { busy, error };
}

/** One button per provider; an invite link opened in this tab is carried to the sign-up. */
export function SsoButtons({ providers, invite }: { providers: SsoProviderView[]; invite: string | null }) {
  if (providers.length === 0) return null;
  return (
    <div class="sso-buttons" data-testid="sso-buttons">
      {providers.map((p) => (
        <a
          key={p.name}
          class="button primary sso-button"
          data-testid={`sso-${p.name}`}
          href={invite ? `${p.start_url}?invite=${encodeURIComponent(invite)}` : p.start_url}
        >
          {t('sso.with', { name: p.label })}
        </a>
      ))}
    </div>
  );
}
