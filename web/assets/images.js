// /images: a prompt and a size with the price and the balance before sending; `image.generate`
// over the WebSocket; every `image.created` (from this tab or another) lands at the top of the
// gallery, which pages back through GET /api/images, opens full size, downloads and deletes.

import { api, el, formatTime, showAlert } from './api.js';
import { onSecondClick } from './confirm.js';
import { cooldown, clearNotice } from './cooldown.js';
import { imagePrice, loadModels } from './models.js';
import { initShell } from './shell.js';
import { Realtime, bindStatusPill } from './ws.js';

const PAGE = 24;

const form = document.getElementById('generate-form');
const prompt = document.getElementById('prompt');
const size = document.getElementById('size');
const generate = document.getElementById('generate');
const notice = document.getElementById('generate-notice');
const status = document.getElementById('generate-status');
const priceEl = document.getElementById('price');
const balanceEl = document.getElementById('balance');
const gallery = document.getElementById('gallery');
const galleryError = document.getElementById('gallery-error');
const more = document.getElementById('gallery-more');
const viewer = document.getElementById('viewer');

const realtime = new Realtime();
/** The default image model (GET /api/models); its prices decide what the chosen size costs. */
let model = null;
let price = null;
let balance = null;
let sending = false;
const wait = cooldown(notice, (s) => `You are generating images too fast. You can generate again in ${s} s.`, () => updateButton());
let before = null;

function showMoney() {
  const [width, height] = size.value.split('x').map(Number);
  price = model ? imagePrice(model, width, height) : null;
  priceEl.textContent = price === null ? '—' : `${price.toLocaleString()} credits`;
  balanceEl.textContent = balance === null ? '—' : balance.toLocaleString();
  balanceEl.dataset.value = String(balance ?? '');
  const short = price !== null && balance !== null && balance < price;
  balanceEl.classList.toggle('amount-negative', short);
  balanceEl.title = short ? 'Not enough credits for an image' : '';
}

function updateButton() {
  generate.disabled = sending || realtime.state !== 'open' || wait.active() || !prompt.value.trim();
}

/** An error frame in words, with the wait for rate limits. */
function showError(frame) {
  notice.dataset.code = frame.code;
  if (frame.code === 'insufficient_credits') {
    showAlert(notice, 'warning', `Not enough credits: an image costs ${price ?? 'more than'} credits and your balance is ${balance ?? 'lower'}. Ask an administrator for more credits.`);
  } else if (frame.code === 'rate_limited') {
    wait.start(frame.retry_after_ms || 1000);
  } else if (frame.code === 'unavailable') {
    showAlert(notice, 'error', 'The image generator is unavailable right now; your credits were refunded. Try again in a moment.');
  } else if (frame.code === 'disconnected') {
    showAlert(notice, 'warning', 'Not connected right now. Reconnecting… nothing was charged.');
  } else if (frame.code === 'timeout') {
    showAlert(notice, 'warning', 'The server did not answer in time. The image will still appear here if it was made.');
  } else {
    showAlert(notice, 'error', frame.message || 'Something went wrong.');
  }
}

function contentUrl(image) {
  return `/api/images/${encodeURIComponent(image.id)}/content`;
}

function fileName(image) {
  const words = image.prompt.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 40);
  return `${words || 'image'}-${image.id.slice(0, 8)}.png`;
}

/** One gallery card: a lazy thumbnail that opens full size, the prompt, download and delete. */
function card(image) {
  const thumb = el(
    'button',
    { type: 'button', class: 'thumb', 'aria-label': `Open full size: ${image.prompt}` },
    el('img', { src: contentUrl(image), alt: image.prompt, loading: 'lazy', decoding: 'async', width: image.width, height: image.height }),
  );
  thumb.addEventListener('click', () => openViewer(image));
  const download = el('a', { class: 'button small', href: contentUrl(image), download: fileName(image), text: 'Download' });
  const remove = el('button', { type: 'button', class: 'small danger delete-image', text: 'Delete' });
  onSecondClick(remove, async () => {
    try {
      await api('DELETE', `/api/images/${encodeURIComponent(image.id)}`);
      dropCard(image.id);
    } catch (error) {
      if (error.status === 404) dropCard(image.id);
      else showAlert(galleryError, 'error', `Could not delete the image: ${error.message}`);
    }
  });
  return el(
    'li',
    { class: 'gallery-item', dataset: { imageId: image.id } },
    thumb,
    el('p', { class: 'gallery-prompt', text: image.prompt, title: image.prompt }),
    el('p', { class: 'small muted', text: `${image.width} × ${image.height} · ${formatTime(image.created_at)}` }),
    el('div', { class: 'gallery-actions' }, download, remove),
  );
}

function countShown() {
  const n = gallery.children.length;
  document.getElementById('gallery-count').textContent = n ? `${n} shown` : '';
  document.getElementById('gallery-empty').hidden = n > 0;
}

function dropCard(id) {
  gallery.querySelector(`[data-image-id="${CSS.escape(id)}"]`)?.remove();
  countShown();
}

/** Adds a new image at the top (once, however many tabs announce it). */
function addNewest(image) {
  if (gallery.querySelector(`[data-image-id="${CSS.escape(image.id)}"]`)) return;
  gallery.prepend(card(image));
  countShown();
}

async function loadPage(reset) {
  const params = new URLSearchParams({ limit: String(PAGE) });
  if (!reset && before) params.set('before', before);
  more.disabled = true;
  try {
    const images = await api('GET', `/api/images?${params}`);
    if (reset) gallery.replaceChildren();
    for (const image of images) {
      if (!gallery.querySelector(`[data-image-id="${CSS.escape(image.id)}"]`)) gallery.append(card(image));
    }
    before = images.length ? images[images.length - 1].id : before;
    more.hidden = images.length < PAGE;
    galleryError.textContent = '';
    countShown();
  } catch (error) {
    showAlert(galleryError, 'error', `Could not load your images: ${error.message}`);
  } finally {
    more.disabled = false;
  }
}

function openViewer(image) {
  const img = document.getElementById('viewer-image');
  img.src = contentUrl(image);
  img.alt = image.prompt;
  document.getElementById('viewer-prompt').textContent = image.prompt;
  const download = document.getElementById('viewer-download');
  download.href = contentUrl(image);
  download.download = fileName(image);
  viewer.showModal();
}

document.getElementById('viewer-close').addEventListener('click', () => viewer.close());
viewer.addEventListener('click', (event) => {
  if (event.target === viewer) viewer.close();
});

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const text = prompt.value.trim();
  if (!text || sending) return;
  clearNotice(notice);
  const [width, height] = size.value.split('x').map(Number);
  sending = true;
  updateButton();
  status.className = 'status';
  status.textContent = 'Drawing…';
  try {
    const created = await realtime.request({ type: 'image.generate', prompt: text, width, height }, 60_000);
    addNewest(created.image);
    status.textContent = 'Done.';
  } catch (error) {
    status.textContent = '';
    showError(error);
  } finally {
    sending = false;
    updateButton();
  }
});

prompt.addEventListener('input', () => {
  document.getElementById('prompt-count').textContent = prompt.value.length.toLocaleString();
  updateButton();
});
prompt.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) form.requestSubmit();
});
more.addEventListener('click', () => loadPage(false));

let connections = 0;
realtime.on('hello', (frame) => {
  // After a reconnect, catch up with images made elsewhere while the socket was away.
  connections += 1;
  if (connections > 1) loadPage(true);
  balance = frame.credits;
  showMoney();
  if (notice.dataset.code === 'disconnected') clearNotice(notice);
});
realtime.on('status', updateButton);
realtime.on('credits', (frame) => {
  balance = frame.credits;
  showMoney();
});
realtime.on('credits.updated', (frame) => {
  balance = frame.credits;
  showMoney();
});
realtime.on('image.created', (frame) => {
  balance = frame.credits;
  showMoney();
  addNewest(frame.image);
});

size.addEventListener('change', showMoney);

/** Offers the sizes the default image model has prices for, keeping the chosen one when it can. */
async function loadPrices() {
  try {
    const models = await loadModels();
    model = models.image[0] || null;
  } catch {
    model = null;
  }
  if (model && model.prices) {
    const wanted = size.value;
    const sizes = Object.keys(model.prices);
    size.replaceChildren(...sizes.map((s) => el('option', { value: s, text: s.replace('x', ' × ') })));
    size.value = sizes.includes(wanted) ? wanted : model.default_size;
  } else if (model) {
    size.value = model.default_size;
  }
  showMoney();
}

bindStatusPill(realtime, document.getElementById('conn-status'));
loadPrices();
await initShell();
loadPage(true);
realtime.connect();
