// /chat: the user's chats over the WebSocket — list, history, send, and the assistant's reply
// growing in one bubble as `chat.delta` frames arrive (rendered as sanitised Markdown), settled by
// `chat.done`, which shows what it cost; a model picker with each model's price; a Stop button
// while a reply of this chat streams; rename and delete over REST; a banner while the socket is
// reconnecting.

import { el, showAlert } from './api.js';
import { initChatActions } from './chat-actions.js';
import { renderMarkdown } from './markdown.js';
import { cooldown, clearNotice } from './cooldown.js';
import { chatPrice, loadModels, replyCost } from './models.js';
import { initShell } from './shell.js';
import { Realtime, bindStatusPill } from './ws.js';

const list = document.getElementById('chat-list');
const listEmpty = document.getElementById('chat-list-empty');
const messages = document.getElementById('messages');
const title = document.getElementById('chat-title');
const form = document.getElementById('send-form');
const input = document.getElementById('message-input');
const sendButton = document.getElementById('send');
const notice = document.getElementById('chat-notice');
const creditsLeft = document.getElementById('credits-left');
const picker = document.getElementById('model-picker');
const modelPrice = document.getElementById('model-price');
const stopButton = document.getElementById('stop');

const realtime = new Realtime();
const chats = new Map();
let currentChatId = null;
let sending = false;
const wait = cooldown(notice, (s) => `You are sending messages too fast. You can send again in ${s} s.`, () => updateSendState());
/** The text of replies still streaming, by message id. */
const drafts = new Map();
/** Replies running (`chat.started`, not yet `chat.done`): message id → chat id. */
const running = new Map();
/** The chat models the user may pick, by id. */
const models = new Map();

function setCredits(credits) {
  creditsLeft.textContent = Number(credits).toLocaleString();
  creditsLeft.dataset.value = String(credits);
}

/** A clear sentence for each error a chat request can meet. */
function showError(frame) {
  notice.dataset.code = frame.code;
  if (frame.code === 'insufficient_credits') {
    const needs = frame.needed !== undefined ? ` (it holds ${frame.needed} until the reply ends; your balance is ${frame.balance})` : '';
    showAlert(notice, 'warning', `You are out of credits: this message costs more than your balance${needs}. Ask an administrator for more credits, or pick a cheaper model.`);
  } else if (frame.code === 'unavailable') {
    showAlert(notice, 'error', 'The assistant failed to answer; nothing was charged. Try again in a moment.');
  } else if (frame.code === 'rate_limited') {
    wait.start(frame.retry_after_ms || 1000);
  } else if (frame.code === 'disconnected') {
    showAlert(notice, 'warning', 'Not connected right now. Reconnecting… your message was not sent.');
  } else {
    showAlert(notice, 'error', frame.message || 'Something went wrong.');
  }
}

function updateSendState() {
  sendButton.disabled = sending || realtime.state !== 'open' || wait.active() || !input.value.trim();
}

function renderList() {
  const ordered = [...chats.values()].sort((a, b) => b.updated_at.localeCompare(a.updated_at));
  list.replaceChildren(
    ...ordered.map((chat) => {
      const button = el('button', {
        type: 'button',
        title: chat.title,
        text: chat.title,
        'aria-current': chat.id === currentChatId ? 'true' : 'false',
        dataset: { chatId: chat.id },
      });
      button.addEventListener('click', () => selectChat(chat.id));
      return el('li', {}, button);
    }),
  );
  listEmpty.hidden = chats.size > 0;
}

function rememberChat(chat) {
  chats.set(chat.id, chat);
  renderList();
}

function placeholder(text) {
  messages.replaceChildren(el('p', { class: 'placeholder', text }));
}

function nearBottom() {
  return messages.scrollHeight - messages.scrollTop - messages.clientHeight < 80;
}

function scrollDown(force) {
  if (force || nearBottom()) messages.scrollTop = messages.scrollHeight;
}

/** The bubble of a message, created on first sight (deltas can arrive before anything else). */
function bubbleFor(messageId, role) {
  let bubble = messages.querySelector(`[data-message-id="${CSS.escape(messageId)}"]`);
  if (!bubble) {
    messages.querySelector('.placeholder')?.remove();
    bubble = el('div', { class: `bubble ${role}`, dataset: { messageId, role } });
    messages.append(bubble);
  }
  return bubble;
}

/** Shows a message's text: the assistant's as Markdown, the user's as typed. */
function fill(bubble, role, text) {
  if (role === 'assistant') {
    bubble.classList.add('markdown');
    bubble.innerHTML = renderMarkdown(text);
  } else {
    bubble.textContent = text;
  }
}

function showMessage(message) {
  const stick = nearBottom();
  const bubble = bubbleFor(message.id, message.role);
  drafts.delete(message.id);
  fill(bubble, message.role, message.content);
  if (message.role === 'assistant' && message.status === 'streaming') {
    // A reply still running elsewhere: its text so far, the rest follows.
    bubble.classList.add('streaming');
    return scrollDown(stick);
  }
  // What the reply cost sits under its bubble, apart from the reply's own text.
  const cost = message.role === 'assistant' ? replyCost(message) : '';
  messages.querySelector(`[data-cost-for="${CSS.escape(message.id)}"]`)?.remove();
  if (cost) bubble.after(el('p', { class: 'reply-cost small muted', text: cost, dataset: { costFor: message.id, testid: 'reply-cost' } }));
  bubble.classList.remove('streaming');
  bubble.dataset.done = 'true';
  bubble.dataset.status = message.status || 'complete';
  scrollDown(stick);
}

/** The Stop button shows while a reply of the open chat runs. */
function updateStop() {
  const mine = [...running].find(([, chatId]) => chatId === currentChatId);
  stopButton.hidden = !mine;
  stopButton.dataset.messageId = mine ? mine[0] : '';
}

function showModelPrice() {
  const model = models.get(picker.value);
  modelPrice.textContent = model ? chatPrice(model) : '';
}

async function loadPicker() {
  try {
    const catalogue = await loadModels();
    models.clear();
    for (const model of catalogue.chat) models.set(model.id, model);
    picker.replaceChildren(...catalogue.chat.map((m) => el('option', { value: m.id, text: m.name })));
    const remembered = localStorage.getItem('chat-model');
    if (remembered && models.has(remembered)) picker.value = remembered;
  } catch (error) {
    showError(error);
  }
  showModelPrice();
}

async function selectChat(chatId) {
  currentChatId = chatId;
  history.replaceState(null, '', `#${chatId}`);
  const chat = chats.get(chatId);
  title.textContent = chat ? chat.title : 'Chat';
  chatActions.refresh();
  renderList();
  updateStop();
  placeholder('Loading…');
  try {
    const frame = await realtime.request({ type: 'chat.history', chat_id: chatId, limit: 100 });
    if (frame.chat_id !== currentChatId) return;
    if (frame.messages.length === 0) placeholder('No messages yet. Say hello!');
    else messages.replaceChildren();
    for (const message of frame.messages) showMessage(message);
    scrollDown(true);
  } catch (error) {
    if (error.code === 'not_found') {
      chats.delete(chatId);
      currentChatId = null;
      renderList();
      placeholder('That chat does not exist. Pick another one.');
    } else {
      showError(error);
    }
  }
  input.focus();
}

async function createChat(title) {
  const frame = await realtime.request(title ? { type: 'chat.create', title } : { type: 'chat.create' });
  rememberChat(frame.chat);
  await selectChat(frame.chat.id);
  return frame.chat.id;
}

function titleFrom(content) {
  const line = content.split('\n')[0].trim();
  return line.length > 60 ? `${line.slice(0, 59)}…` : line;
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const content = input.value.trim();
  if (!content || sending) return;
  clearNotice(notice);
  sending = true;
  updateSendState();
  try {
    // Writing without a chat starts one, titled after the first words.
    const chatId = currentChatId || (await createChat(titleFrom(content)));
    // Resolves with the stored user message; the reply follows as chat.delta / chat.done.
    await realtime.request({ type: 'chat.send', chat_id: chatId, content, model: picker.value || undefined });
    input.value = '';
    input.rows = 1;
  } catch (error) {
    showError(error);
  } finally {
    sending = false;
    updateSendState();
    input.focus();
  }
});

input.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});
input.addEventListener('input', () => {
  input.rows = Math.min(6, Math.max(1, input.value.split('\n').length));
  updateSendState();
});

document.getElementById('new-chat').addEventListener('click', async () => {
  clearNotice(notice);
  try {
    await createChat(null);
  } catch (error) {
    showError(error);
  }
});

realtime.on('hello', async (frame) => {
  setCredits(frame.credits);
  // Replies running when this socket opened (another tab's, or before a reload).
  running.clear();
  for (const generation of frame.generations || []) {
    if (generation.kind === 'chat') running.set(generation.message_id, generation.chat_id);
  }
  updateStop();
  if (notice.dataset.code === 'disconnected') clearNotice(notice);
  try {
    const answer = await realtime.request({ type: 'chat.list' });
    chats.clear();
    for (const chat of answer.chats) chats.set(chat.id, chat);
    renderList();
    const wanted = currentChatId || decodeURIComponent(location.hash.slice(1));
    if (wanted && chats.has(wanted)) await selectChat(wanted);
    else if (chats.size > 0 && !currentChatId) await selectChat(list.querySelector('button').dataset.chatId);
    else if (chats.size === 0) placeholder('No chats yet. Write a message to start one.');
  } catch (error) {
    showError(error);
  }
});
realtime.on('status', updateSendState);
realtime.on('credits', (frame) => setCredits(frame.credits));
realtime.on('credits.updated', (frame) => setCredits(frame.credits));
realtime.on('chat.created', (frame) => rememberChat(frame.chat));
realtime.on('chat.message', (frame) => {
  const chat = chats.get(frame.chat_id);
  if (chat) rememberChat({ ...chat, updated_at: frame.message.created_at });
  if (frame.chat_id === currentChatId) showMessage(frame.message);
});
realtime.on('chat.delta', (frame) => {
  if (frame.chat_id !== currentChatId) return;
  const stick = nearBottom();
  const bubble = bubbleFor(frame.message_id, 'assistant');
  if (bubble.dataset.done) return;
  bubble.classList.add('streaming');
  const text = (drafts.get(frame.message_id) || '') + frame.delta;
  drafts.set(frame.message_id, text);
  fill(bubble, 'assistant', text);
  scrollDown(stick);
});
realtime.on('chat.started', (frame) => {
  running.set(frame.message_id, frame.chat_id);
  setCredits(frame.credits);
  updateStop();
});
realtime.on('chat.done', (frame) => {
  running.delete(frame.message.id);
  setCredits(frame.credits);
  if (frame.chat_id === currentChatId) showMessage(frame.message);
  updateStop();
});

stopButton.addEventListener('click', () => {
  const messageId = stopButton.dataset.messageId;
  // The reply's own chat.done (status stopped) follows, for every tab.
  if (messageId) realtime.send({ type: 'chat.stop', message_id: messageId });
});
picker.addEventListener('change', () => {
  localStorage.setItem('chat-model', picker.value);
  showModelPrice();
});

const chatActions = initChatActions({
  current: () => (currentChatId ? chats.get(currentChatId) || null : null),
  renamed: (chat) => {
    rememberChat(chat);
    if (chat.id === currentChatId) title.textContent = chat.title;
  },
  deleted: (chatId) => {
    chats.delete(chatId);
    if (chatId === currentChatId) {
      currentChatId = null;
      history.replaceState(null, '', location.pathname);
      title.textContent = 'Chat';
      placeholder('The chat was deleted. Pick another one, or write to start a new one.');
    }
    chatActions.refresh();
    renderList();
  },
  notice,
});

// Once the socket has been open, losing it is said plainly above the messages until it is back.
const banner = document.getElementById('reconnect-banner');
let wasOpen = false;
realtime.on('status', ({ state, retryInMs }) => {
  if (state === 'open') {
    wasOpen = true;
    banner.hidden = true;
    return;
  }
  if (!wasOpen) return;
  banner.hidden = false;
  banner.dataset.state = state;
  banner.textContent =
    state === 'connecting'
      ? 'Reconnecting… Messages can be sent again once the connection is back.'
      : `The connection was lost. Reconnecting in ${Math.ceil((retryInMs || 0) / 1000)} s… Messages can be sent again once it is back.`;
});

bindStatusPill(realtime, document.getElementById('conn-status'));
loadPicker();
await initShell();
realtime.connect();
