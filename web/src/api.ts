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

const FALLBACK: Record<number, string> = {
  400: 'The request was not understood.',
  401: 'Please log in again.',
  403: 'You are not allowed to do that.',
  404: 'Not found.',
  409: 'That conflicts with existing data.',
  413: 'That is too large.',
  422: 'Some fields are not valid.',
  429: 'Too many requests. Please wait a moment.',
  503: 'The service is temporarily unavailable.',
};

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
    throw new ApiError(0, 'network', 'Cannot reach the server. Check your connection.');
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
      err?.message || FALLBACK[res.status] || `Request failed (${res.status}).`,
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
