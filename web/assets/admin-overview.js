// The admin overview on /admin: users, who is online, nodes, today's credits and sign-ups, and a
// chart of the last 30 days (credits stacked, sign-ups as a line), from GET /api/admin/overview.

import { api, showAlert } from './api.js';
import { dailyChart } from './charts.js';

const FIGURES = [
  ['ov-users', (o) => o.users],
  ['ov-active', (o) => o.active_users],
  ['ov-sessions', (o) => o.ws_sessions],
  ['ov-nodes', (o) => o.nodes],
  ['ov-chat', (o) => o.credits_used_today.chat],
  ['ov-image', (o) => o.credits_used_today.image],
  ['ov-signups', (o) => o.signups_today],
];

let chart = null;

/** Loads the overview and draws it; errors are said in the card. */
export async function loadOverview() {
  const error = document.getElementById('overview-error');
  try {
    const overview = await api('GET', '/api/admin/overview');
    for (const [id, pick] of FIGURES) {
      const node = document.getElementById(id);
      node.textContent = Number(pick(overview)).toLocaleString();
      node.dataset.value = String(pick(overview));
    }
    chart?.destroy();
    chart = dailyChart(document.getElementById('overview-chart'), overview.days, {
      stack: [
        { key: 'chat', label: 'Chat', color: '--accent' },
        { key: 'image', label: 'Images', color: '--warning' },
      ],
      line: { key: 'signups', label: 'Sign-ups', color: '--success' },
    });
    error.textContent = '';
  } catch (failure) {
    showAlert(error, 'error', `Could not load the overview: ${failure.message}`);
  }
}
