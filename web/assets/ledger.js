// The credit ledger table, shared by the profile page and the admin's per-user view. A metered
// generation is two entries (a hold, then its settle, same `ref`): the table shows them as one
// line with what it cost, its model and tokens; a hold not settled yet shows as running.

import { el, formatShortTime, formatTime } from './api.js';

const SERVICE_LABELS = { chat: 'Chat', image: 'Image', grant: 'Grant', refund: 'Refund' };

/** One table row for a ledger entry, or for a generation: its settle with its hold (null while the hold is not on the page). */
export function ledgerRow(entry, hold = null) {
  const settled = entry.kind === 'settle';
  const amountValue = settled ? (hold ? hold.amount + entry.amount : null) : entry.amount;
  const amountClass = amountValue === null || amountValue < 0 ? 'num amount-negative' : 'num amount-positive';
  let amount = amountValue === null ? '…' : amountValue > 0 ? `+${amountValue}` : String(amountValue);
  if (entry.kind === 'hold') amount = `${amount} held`;
  const label = SERVICE_LABELS[entry.service_type] || entry.service_type;
  return el(
    'tr',
    { dataset: { entryId: entry.id, service: entry.service_type, kind: entry.kind || '' } },
    el('td', { class: 'nowrap', text: formatShortTime(entry.created_at), title: formatTime(entry.created_at) }),
    el('td', { text: entry.model ? `${label} · ${entry.model}` : label }),
    el('td', { class: amountClass, text: amount }),
    el('td', { class: 'num', text: entry.balance_after.toLocaleString() }),
    el('td', { class: 'hide-narrow small muted', title: entry.ref || undefined, text: detail(entry) }),
  );
}

/** Tokens of a settled generation, "running" for an open hold, else the reference. */
function detail(entry) {
  if (entry.kind === 'hold') return 'running';
  if (entry.kind === 'settle' && entry.usage) {
    const { input_tokens: input, output_tokens: output, estimated } = entry.usage;
    return `${input.toLocaleString()} in / ${output.toLocaleString()} out tokens${estimated ? ' (estimated)' : ''}`;
  }
  return reference(entry);
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
  /** Settles shown whose hold has not been read yet (it is older: on this page or a later one). */
  const awaitingHold = new Map();
  async function load(reset) {
    if (loading) await loading;
    loading = (async () => {
      try {
        const page = await fetchPage(reset ? null : before);
        if (reset) {
          rows.replaceChildren();
          shown = 0;
          awaitingHold.clear();
        }
        for (const entry of page.entries) {
          const settle = entry.kind === 'hold' ? awaitingHold.get(entry.ref) : undefined;
          if (settle) {
            // The generation's line is already there: complete it with what was charged.
            awaitingHold.delete(entry.ref);
            settle.row.replaceWith(ledgerRow(settle.entry, entry));
            continue;
          }
          const row = ledgerRow(entry);
          if (entry.kind === 'settle') awaitingHold.set(entry.ref, { entry, row });
          rows.append(row);
          shown += 1;
        }
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
