// The credit ledger table, shared by the profile page and the admin's per-user view.

import { el, formatShortTime, formatTime } from './api.js';

const SERVICE_LABELS = { chat: 'Chat', image: 'Image', grant: 'Grant', refund: 'Refund' };

/** One table row for a ledger entry. */
export function ledgerRow(entry) {
  const amountClass = entry.amount >= 0 ? 'num amount-positive' : 'num amount-negative';
  const amount = entry.amount > 0 ? `+${entry.amount}` : String(entry.amount);
  return el(
    'tr',
    { dataset: { entryId: entry.id, service: entry.service_type } },
    el('td', { class: 'nowrap', text: formatShortTime(entry.created_at), title: formatTime(entry.created_at) }),
    el('td', { text: SERVICE_LABELS[entry.service_type] || entry.service_type }),
    el('td', { class: amountClass, text: amount }),
    el('td', { class: 'num', text: entry.balance_after.toLocaleString() }),
    el('td', { class: 'hide-narrow small muted', title: entry.ref || undefined, text: reference(entry) }),
  );
}

/** A grant's reason in full; ids of messages and images shortened (the full id is the tooltip). */
function reference(entry) {
  const ref = entry.ref || '';
  if (entry.service_type === 'grant' || ref.length <= 13) return ref;
  return `${ref.slice(0, 8)}…`;
}

/** The "nothing yet" row of a table with `columns` columns. */
export function emptyRow(columns, text) {
  return el('tr', { class: 'empty-row' }, el('td', { colspan: columns, text }));
}

/**
 * A paged ledger: `load(true)` starts over, `load(false)` appends the next page.
 * `fetchPage(before)` returns `{entries, next_before}`.
 */
export function pagedLedger({ rows, more, count, fetchPage, onError }) {
  let before = null;
  let shown = 0;
  let loading = null;
  async function load(reset) {
    if (loading) await loading;
    loading = (async () => {
      try {
        const page = await fetchPage(reset ? null : before);
        if (reset) {
          rows.replaceChildren();
          shown = 0;
        }
        for (const entry of page.entries) rows.append(ledgerRow(entry));
        shown += page.entries.length;
        if (shown === 0) rows.replaceChildren(emptyRow(5, 'No credit changes yet.'));
        before = page.next_before;
        more.hidden = !before;
        if (count) count.textContent = shown ? `${shown} ${shown === 1 ? 'entry' : 'entries'} shown` : '';
      } catch (error) {
        onError(error);
      }
    })();
    await loading;
    loading = null;
  }
  more.addEventListener('click', () => load(false));
  return { load };
}
