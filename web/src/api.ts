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
  const data = parseJson(await res.text());
  if (!res.ok) throw failure(path, res.status, data, res.headers.get('Retry-After'));
  return data as T;
}

/** The ApiError of a non-2xx answer (its `{"error":{...}}` body parsed as `data`); a 401 outside
 *  the auth routes also tells the page that the session has ended. */
function failure(path: string, status: number, data: unknown, retryAfter: string | null): ApiError {
  const err = (data as ApiErrorBody | undefined)?.error;
  const ra = Number(retryAfter);
  const e = new ApiError(
    status,
    err?.code ?? `http_${status}`,
    err?.message || fallbackText(status),
    err?.fields,
    Number.isFinite(ra) && ra > 0 ? ra : undefined,
  );
  const isAuthRoute = path.startsWith('/api/auth/');
  if (status === 401 && !isAuthRoute && onUnauthorized) onUnauthorized();
  return e;
}

function parseJson(text: string): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * Sends `file` as the field `file` of a `multipart/form-data` POST (a document upload), with
 * the session cookie like `api`. `progress` hears the bytes sent so far (XMLHttpRequest: fetch
 * reports no upload progress). The answer's JSON, or an ApiError as `api` throws.
 */
export function uploadFile<T>(path: string, file: File, progress: (sent: number, total: number) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    xhr.withCredentials = true;
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.onprogress = (e) => progress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onload = () => {
      const data = parseJson(xhr.responseText);
      if (xhr.status >= 200 && xhr.status < 300) resolve(data as T);
      else reject(failure(path, xhr.status, data, xhr.getResponseHeader('Retry-After')));
    };
    xhr.onerror = () => reject(new ApiError(0, 'network', t('http.network')));
    const form = new FormData();
    form.append('file', file, file.name);
    xhr.send(form);
  });
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
