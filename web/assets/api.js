// The REST client of the pages: JSON in and out, the CSRF header on unsafe methods, and one
// cookie refresh on a 401 before giving up and sending the user to the login page.

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** A failed API call, with the server's `{error, code, fields}` body. */
export class ApiError extends Error {
  constructor(status, body, retryAfterSeconds) {
    super((body && body.error) || `Request failed (${status})`);
    this.status = status;
    this.code = (body && body.code) || 'network_error';
    this.fields = (body && body.fields) || {};
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** The value of a cookie readable by script (only `sb_csrf` is). */
export function cookie(name) {
  for (const part of document.cookie.split(';')) {
    const [key, ...rest] = part.trim().split('=');
    if (key === name) return decodeURIComponent(rest.join('='));
  }
  return '';
}

/** The login page URL that brings the user back here afterwards. */
export function loginUrl(reason) {
  const params = new URLSearchParams({ next: location.pathname + location.search });
  if (reason) params.set('reason', reason);
  return `/login?${params}`;
}

/** Leaves for the login page (once, however many callers notice the lost session). */
let leaving = false;
export function goToLogin(reason) {
  if (leaving) return;
  leaving = true;
  location.assign(loginUrl(reason));
}

/**
 * Signs out on purpose: the server then revokes this session's sockets too, and their
 * `session.revoked` must not start a second navigation with a "you were signed out" notice.
 */
export async function logout() {
  leaving = true;
  try {
    await api('POST', '/api/logout', undefined, { auth: false });
  } catch {
    // Signed out already, or the server is away: the login page is the right place either way.
  }
  location.assign('/login');
}

/**
 * Only paths on this origin are accepted as `next`, so the login page cannot be an open
 * redirect. The URL parser decides (it drops tabs and newlines, so "/\t/evil.example" would
 * otherwise become "//evil.example").
 */
export function safeNext(value, fallback = '/profile') {
  if (typeof value !== 'string' || !value.startsWith('/')) return fallback;
  let url;
  try {
    url = new URL(value, location.origin);
  } catch {
    return fallback;
  }
  if (url.origin !== location.origin) return fallback;
  return url.pathname + url.search + url.hash;
}

let refreshing = null;

/**
 * Exchanges the refresh cookie for new cookies. Calls in one tab share one request. Tabs need
 * no lock: the server answers the same refresh token presented again within a few seconds of
 * its rotation with the same new token (docs/API.md §3), so two tabs refreshing at once both succeed.
 */
export function refreshSession() {
  if (!refreshing) {
    const run = async () => {
      const csrf = cookie('sb_csrf');
      if (!csrf) return false;
      try {
        // keepalive: if the page is left mid-request, the browser still stores the rotated
        // cookies; otherwise the next page would present the spent token, which counts as reuse.
        const response = await fetch('/api/token/refresh', {
          method: 'POST',
          credentials: 'same-origin',
          keepalive: true,
          headers: { 'X-CSRF-Token': csrf, Accept: 'application/json' },
        });
        return response.ok;
      } catch {
        return false;
      }
    };
    refreshing = run().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/**
 * Calls the API. Resolves with the parsed body (or null for 204); rejects with an ApiError.
 * With `auth: false` (login, register, password reset) a 401 is just an answer, not a lost session.
 */
export async function api(method, path, body, { auth = true } = {}) {
  const send = () => {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (UNSAFE.has(method)) {
      const csrf = cookie('sb_csrf');
      if (csrf) headers['X-CSRF-Token'] = csrf;
    }
    return fetch(path, {
      method,
      headers,
      credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  };
  let response;
  try {
    response = await send();
    if (response.status === 401 && auth) {
      if (await refreshSession()) response = await send();
      if (response.status === 401) {
        goToLogin();
        throw new ApiError(401, await readBody(response));
      }
    }
  } catch (error) {
    if (error instanceof ApiError) throw error;
    throw new ApiError(0, { error: 'The server cannot be reached. Check your connection.', code: 'network_error' });
  }
  const data = await readBody(response);
  if (!response.ok) {
    const retry = Number(response.headers.get('Retry-After')) || undefined;
    if (auth && response.status === 403 && data && data.code === 'account_disabled') goToLogin('account_disabled');
    throw new ApiError(response.status, data, retry);
  }
  return data;
}

async function readBody(response) {
  if (response.status === 204) return null;
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { error: `Unexpected answer (${response.status})`, code: 'bad_response' };
  }
}

/** Shows a form's errors: `fields` next to their inputs (by `name`), the sentence in `alertEl`. */
export function showFormErrors(form, alertEl, error) {
  clearFormErrors(form, alertEl);
  let placed = false;
  for (const [field, problems] of Object.entries(error.fields || {})) {
    const slot = form.querySelector(`[data-error-for="${field}"]`);
    const input = form.querySelector(`[name="${field}"]`);
    if (input) input.setAttribute('aria-invalid', 'true');
    if (slot) {
      slot.textContent = `${label(field)} ${problems.join('; ')}`;
      placed = true;
    }
  }
  if (alertEl && (!placed || error.code !== 'validation_failed')) {
    alertEl.className = 'alert error';
    alertEl.textContent = describe(error);
  }
}

/** Removes the errors `showFormErrors` placed. */
export function clearFormErrors(form, alertEl) {
  for (const slot of form.querySelectorAll('[data-error-for]')) slot.textContent = '';
  for (const input of form.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
  if (alertEl) alertEl.textContent = '';
}

/** A sentence for an error, with the wait for rate limits. */
export function describe(error) {
  if (error.code === 'rate_limited' && error.retryAfterSeconds) {
    return `Too many attempts. Try again in ${error.retryAfterSeconds} s.`;
  }
  return error.message;
}

function label(field) {
  const words = field.replace(/_/g, ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** Shows a sentence in an alert element with a tone: error, success, warning or info. */
export function showAlert(el, tone, text) {
  el.className = `alert ${tone}`;
  el.textContent = text;
}

/** Formats an RFC 3339 time for people, in their locale. */
export function formatTime(value) {
  if (!value) return '—';
  const date = new Date(value);
  return date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/** A compact time for table cells. */
export function formatShortTime(value) {
  if (!value) return '—';
  return new Date(value).toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

/** "3 min ago"-style age of an RFC 3339 time. */
export function formatAge(value, now = Date.now()) {
  const seconds = Math.max(0, Math.round((now - new Date(value).getTime()) / 1000));
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} days`;
}

/** Creates an element with text and attributes (no HTML parsing, so no injection). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') node.textContent = value;
    else if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}
