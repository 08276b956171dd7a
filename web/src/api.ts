import { t } from './i18n';
import type { Key } from './i18n';
import type { ApiErrorBody } from './types';

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public fields?: Record<string, string>,
    public retryAfter?: number,
  ) {
    super(message);
  }
}

let onUnauthorized: (() => void) | null = null;

export function setUnauthorizedHandler(fn: (() => void) | null): void {
  onUnauthorized = fn;
}

/** HTTP statuses with a sentence of their own when the answer carries no message. */
const FALLBACK = new Set([400, 401, 403, 404, 409, 413, 422, 429, 503]);

function fallbackText(status: number): string {
  return FALLBACK.has(status) ? t(`http.${status}` as Key) : t('http.other', { n: String(status) });
}

/**
 * Calls the JSON API. The browser authenticates with the HttpOnly session cookie
 * (`emergence_session`, set by register/login, cleared by logout), which a same-origin fetch
 * sends by itself: the page never sees or stores the token. A JSON body is always sent as
 * `Content-Type: application/json`. Non-2xx answers become an ApiError carrying the server's
 * `{"error":{"code","message","fields"}}`.
 */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'network', t('http.network'));
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let data: unknown = undefined;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = undefined;
    }
  }
  if (!res.ok) {
    const err = (data as ApiErrorBody | undefined)?.error;
    const ra = Number(res.headers.get('Retry-After'));
    const e = new ApiError(
      res.status,
      err?.code ?? `http_${res.status}`,
      err?.message || fallbackText(res.status),
      err?.fields,
      Number.isFinite(ra) && ra > 0 ? ra : undefined,
    );
    const isAuthRoute = path.startsWith('/api/auth/');
    if (res.status === 401 && !isAuthRoute && onUnauthorized) onUnauthorized();
    throw e;
  }
  return data as T;
}

export function errorText(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}

export interface FormError {
  message: string;
  fields?: Record<string, string>;
}

export function toFormError(e: unknown): FormError {
  if (e instanceof ApiError) return { message: e.message, fields: e.fields };
  return { message: errorText(e) };
}
