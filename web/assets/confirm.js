// A button that acts on its second click: the first arms it (its label asks to confirm), and it
// disarms by itself after a few seconds, so a stray click or tap deletes nothing.

/**
 * Wires `button` to run `action()` on a second click within `armedForMs`. The button reads
 * `armedLabel` while armed and is disabled while the action runs; `action` may be async.
 */
export function onSecondClick(button, action, { armedLabel = 'Delete for good?', armedForMs = 4000 } = {}) {
  const label = button.textContent;
  let disarm = null;
  const reset = () => {
    clearTimeout(disarm);
    delete button.dataset.armed;
    button.textContent = label;
  };
  button.addEventListener('click', async () => {
    if (!button.dataset.armed) {
      button.dataset.armed = 'true';
      button.textContent = armedLabel;
      disarm = setTimeout(reset, armedForMs);
      return;
    }
    reset();
    button.disabled = true;
    try {
      await action();
    } finally {
      button.disabled = false;
    }
  });
}
