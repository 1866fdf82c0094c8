// /login: a returning user with a refresh cookie goes straight on; otherwise the form, with
// errors shown inline, then to `next` (a same-site path) or the profile.

import { api, clearFormErrors, cookie, refreshSession, safeNext, showAlert, showFormErrors } from './api.js';

const REASONS = {
  logout: 'You signed out on another page.',
  password_changed: 'Your password was changed. Sign in with the new one.',
  account_disabled: 'This account is disabled. Contact an administrator.',
  deactivated: 'This account is disabled. Contact an administrator.',
  role_changed: 'Your permissions changed. Sign in again.',
  refresh_token_reused: 'Your session ended for safety. Sign in again.',
  session_ended: 'This session was signed out from another device or by an administrator.',
};

const params = new URLSearchParams(location.search);
const next = safeNext(params.get('next'));
const reason = params.get('reason');
const form = document.getElementById('login-form');
const alertEl = document.getElementById('login-error');
const notice = document.getElementById('login-notice');
const submit = document.getElementById('login-submit');

if (reason) {
  notice.textContent = REASONS[reason] || 'Your session ended. Sign in again.';
} else if (params.has('next')) {
  notice.textContent = 'Sign in to continue.';
}

// An expired access cookie is not a reason to ask for the password: the refresh cookie
// (30 days) gets a new one. Not after the server ended the session, though: that would fail.
if (!reason && cookie('sb_csrf')) {
  submit.disabled = true;
  const refreshed = await refreshSession();
  if (refreshed) {
    location.replace(next);
  } else {
    submit.disabled = false;
  }
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearFormErrors(form, alertEl);
  const email = form.elements.email.value.trim();
  const password = form.elements.password.value;
  if (!email || !password) {
    showAlert(alertEl, 'error', 'Enter your email and password.');
    return;
  }
  submit.disabled = true;
  submit.textContent = 'Signing in…';
  try {
    await api('POST', '/api/login', { email, password }, { auth: false });
    location.assign(next);
  } catch (error) {
    showFormErrors(form, alertEl, error);
    form.elements.password.select();
    submit.disabled = false;
    submit.textContent = 'Sign in';
  }
});
