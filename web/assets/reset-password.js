// /reset-password?token=…: sets a new password with the mailed token.

import { api, clearFormErrors, showAlert, showFormErrors } from './api.js';

const token = new URLSearchParams(location.search).get('token') || '';
const form = document.getElementById('reset-form');
const alertEl = document.getElementById('reset-error');
const submit = document.getElementById('reset-submit');

if (!token) {
  showAlert(alertEl, 'error', 'This link has no reset token. Open the link from the mail again, or request a new one.');
  submit.disabled = true;
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearFormErrors(form, alertEl);
  const password = form.elements.new_password.value;
  if (password !== form.elements.confirm_password.value) {
    form.querySelector('[data-error-for="confirm_password"]').textContent = 'The two passwords differ.';
    form.elements.confirm_password.setAttribute('aria-invalid', 'true');
    return;
  }
  submit.disabled = true;
  try {
    await api('POST', '/api/password/reset', { token, new_password: password }, { auth: false });
    form.hidden = true;
    document.getElementById('reset-done').hidden = false;
  } catch (error) {
    if (error.code === 'invalid_token') {
      showAlert(alertEl, 'error', 'This reset link is invalid, already used or expired. Request a new one.');
    } else {
      showFormErrors(form, alertEl, error);
    }
    submit.disabled = false;
  }
});
