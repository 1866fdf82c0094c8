// Login sessions as a table, shared by the profile page (the user's own) and the admin page
// (a user's): the device told from its user agent, the IP, when it started and was last used,
// its open sockets, "this browser", and a button that ends it.

import { el, formatShortTime, formatTime } from './api.js';

const BROWSERS = [
  [/Edg\//, 'Edge'],
  [/OPR\/|Opera/, 'Opera'],
  [/Firefox\//, 'Firefox'],
  [/HeadlessChrome\//, 'Headless Chrome'],
  [/Chrome\/|Chromium\//, 'Chrome'],
  [/Safari\//, 'Safari'],
  [/curl\//, 'curl'],
];
const SYSTEMS = [
  [/iPhone|iPad|iPod/, 'iOS'],
  [/Android/, 'Android'],
  [/Windows/, 'Windows'],
  [/Mac OS X|Macintosh/, 'macOS'],
  [/CrOS/, 'ChromeOS'],
  [/Linux/, 'Linux'],
];

/** "Firefox on Linux" from a user agent; the raw text when nothing is recognised. */
export function describeDevice(userAgent) {
  if (!userAgent) return 'Unknown device';
  const browser = BROWSERS.find(([re]) => re.test(userAgent))?.[1];
  const system = SYSTEMS.find(([re]) => re.test(userAgent))?.[1];
  if (browser && system) return `${browser} on ${system}`;
  return browser || system || userAgent.slice(0, 60);
}

/**
 * Fills `tbody` with one row per session of a sessions answer (`{sessions, api_key_sockets}`),
 * and one for the sockets opened with the API key, which belong to no session.
 * `onEnd(session, button)` is called by each session row's button, labelled `endLabel`.
 */
export function renderSessions(tbody, { sessions, api_key_sockets: apiKeySockets }, { onEnd, endLabel = 'Sign out' }) {
  const keyRow = apiKeySockets > 0
    ? [el(
      'tr',
      { dataset: { apiKey: 'true', sockets: String(apiKeySockets) } },
      el('td', { text: 'API key' }),
      el('td', { class: 'hide-narrow', text: '—' }),
      el('td', { colspan: 2, class: 'small', text: 'Regenerate the key to close these.' }),
      el('td', { class: 'num', text: String(apiKeySockets) }),
      el('td'),
    )]
    : [];
  if (sessions.length === 0 && keyRow.length === 0) {
    tbody.replaceChildren(el('tr', { class: 'empty-row' }, el('td', { colspan: 6, text: 'No live sessions.' })));
    return;
  }
  tbody.replaceChildren(
    ...keyRow,
    ...sessions.map((session) => {
      const end = el('button', { type: 'button', class: 'small danger end-session', text: session.current ? 'Sign out here' : endLabel });
      end.addEventListener('click', () => onEnd(session, end));
      const device = el('td', { title: session.user_agent || '' }, el('span', { class: 'device', text: describeDevice(session.user_agent) }));
      if (session.current) device.append(el('span', { class: 'badge', text: 'This browser' }));
      return el(
        'tr',
        { dataset: { sessionId: session.id, current: String(session.current), sockets: String(session.sockets) } },
        device,
        el('td', { class: 'hide-narrow mono small', text: session.ip || '—' }),
        el('td', { class: 'nowrap', text: formatShortTime(session.created_at), title: formatTime(session.created_at) }),
        el('td', { class: 'nowrap', text: formatShortTime(session.last_used_at), title: formatTime(session.last_used_at) }),
        el('td', { class: 'num', text: String(session.sockets) }),
        el('td', { class: 'num' }, end),
      );
    }),
  );
}
