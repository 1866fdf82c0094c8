// /admin: the overview with its 30-day chart, users (search, role and active toggles, credit
// grants, per-user sessions and ledger) and a live presence panel fed by `presence.subscribe`
// over the WebSocket.

import { api, clearFormErrors, el, formatAge, formatTime, showAlert, showFormErrors } from './api.js';
import { loadOverview } from './admin-overview.js';
import { pagedLedger } from './ledger.js';
import { renderSessions } from './sessions.js';
import { initShell } from './shell.js';
import { Realtime, bindStatusPill } from './ws.js';

const PAGE_SIZE = 20;

const rows = document.getElementById('users-rows');
const usersError = document.getElementById('users-error');
const searchInput = document.getElementById('user-search');
const detail = document.getElementById('user-detail');
const grantForm = document.getElementById('grant-form');
const grantError = document.getElementById('grant-error');
const grantStatus = document.getElementById('grant-status');

let me = null;
let query = '';
let offset = 0;
let total = 0;
let selectedId = null;
/** user_id → {user_id, email, sessions, connected_since}. */
const online = new Map();

// ---------- users ----------

async function loadUsers() {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(offset) });
  if (query) params.set('q', query);
  try {
    const page = await api('GET', `/api/admin/users?${params}`);
    total = page.total;
    usersError.textContent = '';
    rows.replaceChildren(...page.users.map(userRow));
    if (page.users.length === 0) {
      rows.append(el('tr', { class: 'empty-row' }, el('td', { colspan: 5, text: query ? 'No user matches.' : 'No users yet.' })));
    }
    document.getElementById('users-total').textContent = `${total} ${total === 1 ? 'user' : 'users'}${query ? ' found' : ''}`;
    const last = Math.min(offset + page.users.length, total);
    document.getElementById('users-range').textContent = total ? `${offset + 1}–${last} of ${total}` : '';
    document.getElementById('users-prev').disabled = offset === 0;
    document.getElementById('users-next').disabled = last >= total;
  } catch (error) {
    showAlert(usersError, 'error', `Could not load users: ${error.message}`);
  }
}

function userRow(user) {
  const self = user.id === me.id;
  const role = el(
    'select',
    { class: 'role-select', 'aria-label': `Role of ${user.email}`, disabled: self, title: self ? 'You cannot change your own role' : undefined },
    el('option', { value: 'user', text: 'User' }),
    el('option', { value: 'admin', text: 'Admin' }),
  );
  role.value = user.role;
  role.addEventListener('change', () => patchUser(user.id, { role: role.value }, () => (role.value = user.role)));

  const active = el('input', { type: 'checkbox', class: 'active-toggle', disabled: self, 'aria-label': `${user.email} is active` });
  active.checked = user.active;
  active.addEventListener('change', () => patchUser(user.id, { active: active.checked }, () => (active.checked = user.active)));

  const manage = el('button', { type: 'button', class: 'small manage-user', text: 'Manage' });
  manage.addEventListener('click', () => openDetail(user.id));

  const dot = el('span', { class: `dot${online.has(user.id) ? ' online' : ''}`, title: online.has(user.id) ? 'Online' : 'Offline' });
  const name = `${user.first_name} ${user.last_name}`.trim();
  return el(
    'tr',
    { class: user.id === selectedId ? 'selected' : '', dataset: { userId: user.id, email: user.email, active: String(user.active) } },
    el('td', {}, el('div', { class: 'presence-email' }, dot, ' ', user.email), el('div', { class: 'small muted', text: name })),
    el('td', {}, role),
    el('td', {}, el('label', { class: 'switch' }, active, el('span', { class: 'small', text: user.active ? 'Active' : 'Off' }))),
    el('td', { class: 'num user-credits', text: user.credits.toLocaleString() }),
    el('td', { class: 'num' }, manage),
  );
}

/** Replaces a user's row with fresh data (after a change). */
function refreshRow(user) {
  const old = rows.querySelector(`tr[data-user-id="${CSS.escape(user.id)}"]`);
  if (old) old.replaceWith(userRow(user));
}

async function patchUser(id, change, revert) {
  usersError.textContent = '';
  try {
    const user = await api('PATCH', `/api/admin/users/${encodeURIComponent(id)}`, change);
    refreshRow(user);
    const what = 'role' in change ? `is now ${user.role === 'admin' ? 'an admin' : 'a user'}` : user.active ? 'is active again' : 'is deactivated and signed out';
    showAlert(usersError, 'success', `${user.email} ${what}.`);
    if (id === selectedId) openDetail(id);
  } catch (error) {
    revert();
    showAlert(usersError, 'error', error.message);
  }
}

function markOnline() {
  for (const row of rows.querySelectorAll('tr[data-user-id]')) {
    const dot = row.querySelector('.dot');
    const isOnline = online.has(row.dataset.userId);
    dot.classList.toggle('online', isOnline);
    dot.title = isOnline ? 'Online' : 'Offline';
  }
}

let searchTimer = null;
searchInput.addEventListener('input', () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => search(searchInput.value.trim()), 300);
});
document.getElementById('user-search-form').addEventListener('submit', (event) => {
  event.preventDefault();
  clearTimeout(searchTimer);
  search(searchInput.value.trim());
});
function search(q) {
  query = q;
  offset = 0;
  loadUsers();
}
document.getElementById('users-prev').addEventListener('click', () => {
  offset = Math.max(0, offset - PAGE_SIZE);
  loadUsers();
});
document.getElementById('users-next').addEventListener('click', () => {
  offset += PAGE_SIZE;
  loadUsers();
});

// ---------- one user ----------

const ledger = pagedLedger({
  rows: document.getElementById('admin-usage-rows'),
  more: document.getElementById('admin-usage-more'),
  count: document.getElementById('admin-usage-count'),
  fetchPage: (before) => {
    const params = new URLSearchParams({ limit: '20' });
    if (before) params.set('before', before);
    return api('GET', `/api/admin/users/${encodeURIComponent(selectedId)}/usage?${params}`);
  },
  onError: (error) => showAlert(grantError, 'error', `Could not load the credit history: ${error.message}`),
});

async function openDetail(id) {
  const changed = id !== selectedId;
  selectedId = id;
  for (const row of rows.querySelectorAll('tr[data-user-id]')) row.classList.toggle('selected', row.dataset.userId === id);
  if (changed) {
    clearFormErrors(grantForm, grantError);
    grantStatus.textContent = '';
    grantForm.reset();
    document.getElementById('detail-sessions-notice').textContent = '';
    document.getElementById('detail-sessions-rows').replaceChildren();
  }
  try {
    const user = await api('GET', `/api/admin/users/${encodeURIComponent(id)}`);
    detail.hidden = false;
    detail.dataset.userId = user.id;
    document.getElementById('detail-email').textContent = user.email;
    document.getElementById('detail-name').textContent =
      `${user.first_name} ${user.last_name} · ${user.role} · ${user.active ? 'active' : 'deactivated'} · joined ${formatTime(user.created_at)} · last login ${formatTime(user.last_login)}`;
    document.getElementById('detail-credits').textContent = user.stats.credits.toLocaleString();
    document.getElementById('detail-held').textContent = user.credits_held.toLocaleString();
    document.getElementById('detail-spent').textContent = user.spent_today.toLocaleString();
    document.getElementById('detail-chats').textContent = user.stats.total_chats.toLocaleString();
    document.getElementById('detail-images').textContent = user.stats.total_images.toLocaleString();
    await Promise.all([ledger.load(true), loadUserSessions(user.id)]);
    if (changed) detail.scrollIntoView({ behavior: 'smooth', block: 'nearest' });
  } catch (error) {
    showAlert(usersError, 'error', `Could not open the user: ${error.message}`);
  }
}

const sessionsNotice = document.getElementById('detail-sessions-notice');

async function loadUserSessions(id) {
  try {
    const answer = await api('GET', `/api/admin/users/${encodeURIComponent(id)}/sessions`);
    if (id !== selectedId) return;
    renderSessions(document.getElementById('detail-sessions-rows'), answer, { onEnd: endUserSession, endLabel: 'End session' });
  } catch (error) {
    showAlert(sessionsNotice, 'error', `Could not load the sessions: ${error.message}`);
  }
}

async function endUserSession(session, button) {
  const id = selectedId;
  button.disabled = true;
  try {
    await api('DELETE', `/api/admin/users/${encodeURIComponent(id)}/sessions/${encodeURIComponent(session.id)}`);
    showAlert(sessionsNotice, 'success', 'The session ended; its sockets are closed.');
  } catch (error) {
    if (error.status !== 404) showAlert(sessionsNotice, 'error', `Could not end the session: ${error.message}`);
  }
  loadUserSessions(id);
}

document.getElementById('detail-close').addEventListener('click', () => {
  detail.hidden = true;
  selectedId = null;
  for (const row of rows.querySelectorAll('tr.selected')) row.classList.remove('selected');
});

grantForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearFormErrors(grantForm, grantError);
  grantStatus.textContent = '';
  const amount = Number(grantForm.elements.amount.value);
  const reason = grantForm.elements.reason.value.trim();
  if (!Number.isInteger(amount) || amount === 0) {
    showFormErrors(grantForm, grantError, { code: 'validation_failed', fields: { amount: ['must be a whole number other than 0'] } });
    return;
  }
  const submit = document.getElementById('grant-submit');
  submit.disabled = true;
  try {
    const user = await api('POST', `/api/admin/users/${encodeURIComponent(selectedId)}/credits`, { amount, reason });
    grantStatus.className = 'status';
    grantStatus.textContent = `${amount > 0 ? 'Granted' : 'Took'} ${Math.abs(amount)} credits. Balance: ${user.credits}.`;
    grantForm.reset();
    refreshRow(user);
    await openDetail(user.id);
  } catch (error) {
    showFormErrors(grantForm, grantError, error);
  } finally {
    submit.disabled = false;
  }
});

// ---------- presence ----------

const presenceList = document.getElementById('presence-list');

function renderPresence() {
  const users = [...online.values()].sort((a, b) => a.connected_since.localeCompare(b.connected_since));
  presenceList.replaceChildren(
    ...users.map((entry) =>
      el(
        'li',
        { dataset: { userId: entry.user_id, email: entry.email, sessions: String(entry.sessions) } },
        el('span', { class: 'dot online' }),
        el('span', { class: 'presence-email', text: entry.email, title: entry.email }),
        el('span', { class: 'pill presence-sessions', text: `${entry.sessions} ${entry.sessions === 1 ? 'session' : 'sessions'}` }),
        el('span', { class: 'presence-since', text: `since ${formatTime(entry.connected_since)} (${formatAge(entry.connected_since)})` }),
      ),
    ),
  );
  const sessions = users.reduce((sum, entry) => sum + entry.sessions, 0);
  document.getElementById('presence-summary').textContent =
    `${users.length} ${users.length === 1 ? 'user' : 'users'} online · ${sessions} ${sessions === 1 ? 'session' : 'sessions'}`;
  document.getElementById('presence-empty').hidden = users.length > 0;
  markOnline();
}

const realtime = new Realtime();
bindStatusPill(realtime, document.getElementById('presence-status'));
realtime.on('hello', async () => {
  try {
    // Every (re)connection subscribes again and starts from a fresh snapshot.
    await realtime.request({ type: 'presence.subscribe' });
  } catch (error) {
    document.getElementById('presence-summary').textContent = `Presence is unavailable: ${error.message}`;
  }
});
realtime.on('presence.snapshot', (frame) => {
  online.clear();
  for (const entry of frame.users) online.set(entry.user_id, entry);
  renderPresence();
});
realtime.on('presence.joined', (frame) => {
  online.set(frame.user_id, {
    user_id: frame.user_id,
    email: frame.email,
    sessions: frame.sessions,
    connected_since: frame.connected_since,
  });
  renderPresence();
});
realtime.on('presence.left', (frame) => {
  online.delete(frame.user_id);
  renderPresence();
});
realtime.on('presence.sessions', (frame) => {
  const entry = online.get(frame.user_id);
  if (entry) {
    entry.sessions = frame.sessions;
    renderPresence();
  }
});
// The "since … (5 min)" ages move on by themselves.
setInterval(renderPresence, 15_000);

me = await initShell();
loadUsers();
loadOverview();
setInterval(loadOverview, 30_000);
realtime.connect();
