// The frame of every signed-in page: who is signed in, the Admin link for admins, and logout.

import { api, logout as signOut } from './api.js';

/** Loads the current user, fills the top bar and wires the logout button; resolves with the user. */
export async function initShell() {
  const logout = document.getElementById('logout');
  logout.addEventListener('click', () => {
    logout.disabled = true;
    signOut();
  });
  for (const link of document.querySelectorAll('.nav a')) {
    if (link.getAttribute('href') === location.pathname) link.setAttribute('aria-current', 'page');
  }
  let me;
  try {
    me = await api('GET', '/api/me');
  } catch (error) {
    // A lost session has already left for the login page; anything else is said on the page.
    const alert = document.createElement('div');
    alert.className = 'alert error';
    alert.setAttribute('role', 'alert');
    alert.textContent = `Could not load your account: ${error.message} Reload the page to try again.`;
    document.querySelector('main, .chat-layout')?.prepend(alert);
    throw error;
  }
  document.getElementById('whoami').textContent = me.email;
  document.getElementById('nav-admin').hidden = me.role !== 'admin';
  return me;
}
