// Copying a secret shown once: the Clipboard API where the page is a secure context,
// else selecting the text so the user can copy it by hand.

/** Copies the value of `input` and says so on `button` for a moment. */
export async function copyToClipboard(input, button) {
  const original = button.textContent;
  try {
    await navigator.clipboard.writeText(input.value);
    button.textContent = 'Copied';
  } catch {
    input.focus();
    input.select();
    button.textContent = 'Press Ctrl+C';
  }
  setTimeout(() => {
    button.textContent = original;
  }, 2000);
}
