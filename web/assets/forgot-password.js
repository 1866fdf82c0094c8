// /forgot-password: asks for a reset mail; the answer never says whether the account exists.

import { api, clearFormErrors, showAlert, showFormErrors } from './api.js';

const form = document.getElementById('forgot-form');
const alertEl = document.getElementById('forgot-error');
const result = document.getElementById('forgot-result');
const submit = document.getElementById('forgot-submit');

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearFormErrors(form, alertEl);
  result.textContent = '';
  submit.disabled = true;
  try {
    await api('POST', '/api/password/forgot', { email: form.elements.email.value.trim() }, { auth: false });
    showAlert(result, 'success', 'If the account exists, a link is on its way. It works for 30 minutes.');
    form.reset();
  } catch (error) {
    showFormErrors(form, alertEl, error);
  } finally {
    submit.disabled = false;
  }
});
