// /profile: names, the API key (regenerate, shown once), usage figures that follow the
// WebSocket (credits from `credits.updated`, chat and image counts refreshed on `chat.done` and
// `image.created`, the ledger and the 30-day chart reloaded after every balance change), the
// live login sessions (sign one out, or every other), and the password change.

import { api, clearFormErrors, logout, showAlert, showFormErrors } from './api.js';
import { dailyChart } from './charts.js';
import { copyToClipboard } from './clipboard.js';
import { pagedLedger } from './ledger.js';
import { initPasswordForm } from './password.js';
import { renderSessions } from './sessions.js';
import { initShell } from './shell.js';
import { Realtime, bindStatusPill } from './ws.js';

const USAGE_PAGE = 20;

const form = document.getElementById('profile-form');
const formError = document.getElementById('profile-error');
const status = document.getElementById('profile-status');
const saveButton = document.getElementById('save-profile');

function showUser(user) {
  form.elements.first_name.value = user.first_name;
  form.elements.last_name.value = user.last_name;
  document.getElementById('email').value = user.email;
  // A password change, a reset or signing out everywhere else voids the key.
  document.getElementById('api-key').value = user.api_key_prefix ? `${user.api_key_prefix}…` : 'none: regenerate to get one';
  setFigure('stat-credits', user.credits);
}

function setFigure(id, value) {
  const node = document.getElementById(id);
  const text = Number(value).toLocaleString();
  if (node.textContent === text) return;
  node.textContent = text;
  node.dataset.value = String(value);
  // Restart the highlight so a change catches the eye.
  node.classList.remove('flash');
  void node.offsetWidth;
  node.classList.add('flash');
}

async function loadStats() {
  try {
    const stats = await api('GET', '/api/me/stats');
    setFigure('stat-credits', stats.credits);
    setFigure('stat-chats', stats.total_chats);
    setFigure('stat-images', stats.total_images);
  } catch (error) {
    showAlert(formError, 'error', `Could not load usage: ${error.message}`);
  }
}

const ledger = pagedLedger({
  rows: document.getElementById('usage-rows'),
  more: document.getElementById('usage-more'),
  count: document.getElementById('usage-count'),
  fetchPage: (before) => {
    const params = new URLSearchParams({ limit: String(USAGE_PAGE) });
    if (before) params.set('before', before);
    return api('GET', `/api/me/usage?${params}`);
  },
  onError: (error) => showAlert(formError, 'error', `Could not load the credit history: ${error.message}`),
});

async function loadChart() {
  const chartError = document.getElementById('chart-error');
  try {
    const { days } = await api('GET', '/api/me/usage/daily?days=30');
    const container = document.getElementById('usage-chart');
    dailyChart(container, days, {
      stack: [
        { key: 'chat', label: 'Chat', color: '--accent' },
        { key: 'image', label: 'Images', color: '--warning' },
      ],
    });
    const total = days.reduce((sum, d) => sum + d.chat + d.image, 0);
    document.getElementById('chart-total').textContent = `${total.toLocaleString()} ${total === 1 ? 'credit' : 'credits'} in 30 days`;
    chartError.textContent = '';
  } catch (error) {
    showAlert(chartError, 'error', `Could not load the chart: ${error.message}`);
  }
}

// Several balance changes in a burst (a grant, then a chat) reload the ledger and chart once.
let ledgerTimer = null;
function reloadLedgerSoon() {
  clearTimeout(ledgerTimer);
  ledgerTimer = setTimeout(() => {
    ledger.load(true);
    loadChart();
  }, 250);
}

// ---------- sessions ----------

const sessionsNotice = document.getElementById('sessions-notice');

async function loadSessions() {
  try {
    const answer = await api('GET', '/api/me/sessions');
    renderSessions(document.getElementById('sessions-rows'), answer, { onEnd: endSession });
  } catch (error) {
    showAlert(sessionsNotice, 'error', `Could not load your sessions: ${error.message}`);
  }
}

async function endSession(session, button) {
  if (session.current) {
    // Ending this browser's own session is signing out.
    button.disabled = true;
    logout();
    return;
  }
  button.disabled = true;
  try {
    await api('DELETE', `/api/me/sessions/${encodeURIComponent(session.id)}`);
    showAlert(sessionsNotice, 'success', 'That session is signed out.');
  } catch (error) {
    if (error.status !== 404) showAlert(sessionsNotice, 'error', `Could not sign it out: ${error.message}`);
  }
  loadSessions();
}

document.getElementById('end-others').addEventListener('click', async (event) => {
  const button = event.currentTarget;
  button.disabled = true;
  try {
    await api('POST', '/api/me/sessions/revoke-others');
    showAlert(sessionsNotice, 'success', 'Every other session is signed out.');
  } catch (error) {
    showAlert(sessionsNotice, 'error', `Could not sign them out: ${error.message}`);
  } finally {
    button.disabled = false;
  }
  loadSessions();
});

initPasswordForm(document.getElementById('password-form'), document.getElementById('password-error'));

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearFormErrors(form, formError);
  status.textContent = '';
  saveButton.disabled = true;
  try {
    const user = await api('PUT', '/api/me', {
      first_name: form.elements.first_name.value.trim(),
      last_name: form.elements.last_name.value.trim(),
    });
    showUser(user);
    status.className = 'status';
    status.textContent = 'Saved.';
  } catch (error) {
    showFormErrors(form, formError, error);
  } finally {
    saveButton.disabled = false;
  }
});

const confirmBox = document.getElementById('regenerate-confirm-box');
const regeneratePassword = document.getElementById('regenerate-password');
document.getElementById('regenerate-key').addEventListener('click', () => {
  confirmBox.hidden = false;
  regeneratePassword.focus();
});
document.getElementById('regenerate-cancel').addEventListener('click', () => {
  confirmBox.hidden = true;
});
document.getElementById('regenerate-confirm').addEventListener('click', async (event) => {
  const button = event.currentTarget;
  button.disabled = true;
  try {
    const body = { current_password: regeneratePassword.value };
    const { api_key: key } = await api('POST', '/api/me/api-key', body);
    regeneratePassword.value = '';
    confirmBox.hidden = true;
    document.getElementById('api-key').value = `${key.slice(0, 10)}…`;
    document.getElementById('new-key').value = key;
    document.getElementById('new-key-box').hidden = false;
  } catch (error) {
    const problem = error.fields.current_password?.[0];
    showAlert(formError, 'error', `Could not regenerate the key: ${problem ? `the password ${problem}` : error.message}`);
  } finally {
    button.disabled = false;
  }
});
document.getElementById('copy-key').addEventListener('click', (event) => {
  copyToClipboard(document.getElementById('new-key'), event.currentTarget);
});

const me = await initShell();
showUser(me);
loadStats();
ledger.load(true);
loadChart();
loadSessions();
// Sockets and last uses change elsewhere; the list follows every half minute.
setInterval(loadSessions, 30_000);

const realtime = new Realtime();
bindStatusPill(realtime, document.getElementById('live-status'));
let connections = 0;
realtime.on('hello', (frame) => {
  setFigure('stat-credits', frame.credits);
  // After a reconnect, catch up with what happened while the socket was away.
  connections += 1;
  if (connections > 1) {
    loadStats();
    reloadLedgerSoon();
  }
});
realtime.on('credits.updated', (frame) => {
  setFigure('stat-credits', frame.credits);
  reloadLedgerSoon();
});
realtime.on('chat.done', loadStats);
realtime.on('image.created', loadStats);
// This page's own socket shows up in the sessions list once it is open.
realtime.on('hello', () => setTimeout(loadSessions, 100));
realtime.connect();
