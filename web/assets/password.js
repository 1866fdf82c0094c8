// The change-password form of the profile: the rules shown as the new password is typed (length,
// not a common password — the server's own list, fetched once — and typed twice alike), then
// POST /api/me/password; every session ends, so the page goes to the login screen, which says why.

import { api, clearFormErrors, goToLogin, showFormErrors } from './api.js';

let common = null;

/** The server's list of refused passwords, lower-cased, loaded on first use. */
function commonPasswords() {
  if (!common) {
    common = fetch('/assets/common-passwords.txt')
      .then((response) => (response.ok ? response.text() : ''))
      .then((text) => new Set(text.split('\n').map((line) => line.trim()).filter(Boolean)))
      .catch(() => new Set());
  }
  return common;
}

function mark(id, ok) {
  const rule = document.getElementById(id);
  if (ok === null) delete rule.dataset.ok;
  else rule.dataset.ok = String(ok);
}

/** Wires the form `form` (with `new_password`, `confirm_password`, `current_password`). */
export function initPasswordForm(form, alertEl) {
  const fresh = form.elements.new_password;
  const again = form.elements.confirm_password;
  let checked = 0;
  async function check() {
    const value = fresh.value;
    const turn = ++checked;
    const length = [...value].length;
    mark('rule-length', value ? length >= 8 && length <= 128 : null);
    mark('rule-match', again.value ? again.value === value : null);
    const list = await commonPasswords();
    if (turn !== checked) return;
    mark('rule-common', value && list.size ? !list.has(value.toLowerCase()) : null);
  }
  fresh.addEventListener('focus', commonPasswords, { once: true });
  fresh.addEventListener('input', check);
  again.addEventListener('input', check);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFormErrors(form, alertEl);
    if (fresh.value !== again.value) {
      showFormErrors(form, alertEl, { code: 'validation_failed', fields: { new_password: ['was not typed the same twice'] } });
      return;
    }
    const submit = form.querySelector('button[type="submit"]');
    submit.disabled = true;
    try {
      await api('POST', '/api/me/password', { current_password: form.elements.current_password.value, new_password: fresh.value });
      // Every session has ended, this one too: the login page says so.
      goToLogin('password_changed');
    } catch (error) {
      showFormErrors(form, alertEl, error);
      submit.disabled = false;
    }
  });
}
