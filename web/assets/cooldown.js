// The wait after a `rate_limited` answer, shown in a notice: says how long is left, counts down
// every 250 ms, clears the notice when the wait is over, and calls `changed` on each tick so the
// page keeps its button disabled meanwhile.
import { showAlert } from './api.js';

/** Clears a notice and what it said. */
export function clearNotice(notice) {
  notice.className = 'alert';
  notice.textContent = '';
  delete notice.dataset.code;
}

/**
 * A countdown in `notice`; `sentence(seconds)` words the wait, `changed()` runs on each tick.
 * `start(ms)` begins (or restarts) a wait; `active()` says whether one is running.
 */
export function cooldown(notice, sentence, changed) {
  let until = 0;
  let timer = null;
  const tick = () => {
    const left = until - Date.now();
    if (left <= 0) {
      clearInterval(timer);
      if (notice.dataset.code === 'rate_limited') clearNotice(notice);
      changed();
      return;
    }
    showAlert(notice, 'warning', sentence(Math.ceil(left / 1000)));
    notice.dataset.code = 'rate_limited';
    changed();
  };
  return {
    start(ms) {
      until = Date.now() + ms;
      clearInterval(timer);
      tick();
      timer = setInterval(tick, 250);
    },
    active: () => Date.now() < until,
  };
}
