// /register: creates the account, signs in with it, and shows the API key this one time.

import { api, clearFormErrors, safeNext, showFormErrors } from './api.js';
import { copyToClipboard } from './clipboard.js';

const form = document.getElementById('register-form');
const alertEl = document.getElementById('register-error');
const submit = document.getElementById('register-submit');
const next = safeNext(new URLSearchParams(location.search).get('next'));

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearFormErrors(form, alertEl);
  const body = {
    email: form.elements.email.value.trim(),
    password: form.elements.password.value,
    first_name: form.elements.first_name.value.trim(),
    last_name: form.elements.last_name.value.trim(),
  };
  submit.disabled = true;
  submit.textContent = 'Creating your account…';
  let created;
  try {
    created = await api('POST', '/api/register', body, { auth: false });
  } catch (error) {
    showFormErrors(form, alertEl, error);
    submit.disabled = false;
    submit.textContent = 'Create account';
    return;
  }
  const doneText = document.getElementById('register-done-text');
  const continueLink = document.getElementById('register-continue');
  continueLink.setAttribute('href', next);
  try {
    await api('POST', '/api/login', { email: body.email, password: body.password }, { auth: false });
  } catch (error) {
    // The account exists; only the automatic sign-in failed (a rate limit, say).
    doneText.textContent = `Your account is ready, but signing in failed (${error.message}). Sign in by hand.`;
    continueLink.setAttribute('href', `/login?next=${encodeURIComponent(next)}`);
    continueLink.textContent = 'Sign in';
  }
  document.getElementById('register-card').hidden = true;
  document.getElementById('register-done').hidden = false;
  document.getElementById('register-api-key').value = created.api_key;
});

document.getElementById('register-copy-key').addEventListener('click', (event) => {
  copyToClipboard(document.getElementById('register-api-key'), event.currentTarget);
});
