// Renaming and deleting the open chat on /chat, over REST (PATCH and DELETE /api/chats/{id}):
// an inline title field, and a delete that asks once more before it removes the chat and its
// messages for good.

import { api, showAlert } from './api.js';
import { onSecondClick } from './confirm.js';

/**
 * Wires the chat head's Rename and Delete. `current()` is the open chat (or null); `renamed(chat)`
 * and `deleted(id)` let the page update its list.
 */
export function initChatActions({ current, renamed, deleted, notice }) {
  const title = document.getElementById('chat-title');
  const actions = document.getElementById('chat-actions');
  const form = document.getElementById('rename-form');
  const input = document.getElementById('rename-input');
  const remove = document.getElementById('delete-chat');

  function closeRename() {
    form.hidden = true;
    title.hidden = false;
    actions.hidden = !current();
  }

  document.getElementById('rename-chat').addEventListener('click', () => {
    const chat = current();
    if (!chat) return;
    input.value = chat.title;
    title.hidden = true;
    actions.hidden = true;
    form.hidden = false;
    input.focus();
    input.select();
  });
  document.getElementById('rename-cancel').addEventListener('click', closeRename);
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') closeRename();
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const chat = current();
    const value = input.value.trim();
    if (!chat) return closeRename();
    if (!value) {
      showAlert(notice, 'error', 'A chat title needs at least one character.');
      return;
    }
    try {
      renamed(await api('PATCH', `/api/chats/${encodeURIComponent(chat.id)}`, { title: value }));
      closeRename();
    } catch (error) {
      const problem = error.fields && error.fields.title ? `The title ${error.fields.title.join('; ')}.` : error.message;
      showAlert(notice, 'error', `Could not rename the chat: ${problem}`);
    }
  });

  onSecondClick(remove, async () => {
    const chat = current();
    if (!chat) return;
    try {
      await api('DELETE', `/api/chats/${encodeURIComponent(chat.id)}`);
      deleted(chat.id);
    } catch (error) {
      if (error.status === 404) deleted(chat.id);
      else showAlert(notice, 'error', `Could not delete the chat: ${error.message}`);
    }
  });

  return { refresh: closeRename };
}
