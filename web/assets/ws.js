// The WebSocket client of the pages: a single-use ticket from POST /api/ws-ticket, then
// /ws?ticket=…; frames go to listeners by `type`; lost connections come back with jittered
// exponential backoff; a revoked session (session.revoked, close 4001) leaves for the login page.

import { api, ApiError, goToLogin } from './api.js';

const REVOKED = 4001;
const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 30_000;

/**
 * The delay before reconnect attempt `attempt` (0-based): exponential with "full jitter" in its
 * upper half, so a server restart is not met by every browser at the same instant.
 */
export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** attempt);
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** One realtime connection that keeps itself open. */
export class Realtime {
  constructor() {
    this.listeners = new Map();
    this.socket = null;
    this.attempt = 0;
    this.nextId = 1;
    // Copies of a request's frames reach the user's other tabs with its `reply_to` (docs/API.md §5):
    // ids unique to this tab keep another tab's frames from answering this tab's requests.
    this.tab = Math.random().toString(36).slice(2, 8);
    this.pending = new Map();
    this.stopped = false;
    this.state = 'idle';
    this.heartbeat = null;
    this.lastHeard = 0;
    this.reconnectTimer = null;
  }

  /** Calls `fn(frame)` for frames of `type` (`*` for all); also `open`/`status` events. */
  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    return () => this.listeners.get(type).delete(fn);
  }

  emit(type, value) {
    for (const fn of this.listeners.get(type) || []) {
      try {
        fn(value);
      } catch (error) {
        console.error(error);
      }
    }
  }

  setState(state, detail) {
    this.state = state;
    this.emit('status', { state, ...detail });
  }

  /** Opens the connection (and reopens it after every loss until `stop`). */
  async connect() {
    if (this.stopped) return;
    clearTimeout(this.reconnectTimer);
    this.setState('connecting');
    let ticket;
    try {
      ({ ticket } = await api('POST', '/api/ws-ticket'));
    } catch (error) {
      // A 401 that a refresh could not cure, or a disabled account, has already left the page.
      if (error instanceof ApiError && (error.status === 401 || error.code === 'account_disabled')) return;
      this.scheduleReconnect();
      return;
    }
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(`${scheme}//${location.host}/ws?ticket=${encodeURIComponent(ticket)}`);
    this.socket = socket;
    socket.addEventListener('message', (event) => this.receive(event));
    socket.addEventListener('close', (event) => this.closed(socket, event));
  }

  receive(event) {
    this.lastHeard = Date.now();
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    if (frame.type === 'hello') {
      this.attempt = 0;
      this.startHeartbeat(frame.heartbeat_ms || 20_000);
      this.setState('open');
    }
    if (frame.type === 'session.revoked') {
      this.stop();
      goToLogin(frame.reason || 'revoked');
    }
    if (frame.reply_to && this.pending.has(frame.reply_to)) {
      const { resolve, reject, timer } = this.pending.get(frame.reply_to);
      this.pending.delete(frame.reply_to);
      clearTimeout(timer);
      if (frame.type === 'error') reject(frame);
      else resolve(frame);
    }
    this.emit(frame.type, frame);
    this.emit('*', frame);
  }

  closed(socket, event) {
    if (socket !== this.socket) return;
    this.socket = null;
    clearInterval(this.heartbeat);
    for (const { reject, timer } of this.pending.values()) {
      clearTimeout(timer);
      reject({ type: 'error', code: 'disconnected', message: 'The connection was lost.' });
    }
    this.pending.clear();
    if (event.code === REVOKED) {
      this.stop();
      goToLogin('revoked');
      return;
    }
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    if (this.stopped) return;
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.setState('offline', { retryInMs: delay });
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  /** Pings at the server's heartbeat; a connection silent for 2.5 beats is dropped and reopened. */
  startHeartbeat(intervalMs) {
    clearInterval(this.heartbeat);
    this.lastHeard = Date.now();
    this.heartbeat = setInterval(() => {
      if (!this.socket) return;
      if (Date.now() - this.lastHeard > intervalMs * 2.5) {
        this.socket.close(4000, 'heartbeat lost');
        return;
      }
      this.send({ type: 'ping' });
    }, intervalMs);
  }

  /** Sends a frame now; false when the connection is not open. */
  send(frame) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN || this.state !== 'open') return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  /**
   * Sends a frame with an `id` and resolves with the frame that answers it (`reply_to`);
   * rejects with the error frame, or a `disconnected` one.
   */
  request(frame, timeoutMs = 15_000) {
    const id = `${this.tab}-${this.nextId++}`;
    return new Promise((resolve, reject) => {
      if (!this.send({ ...frame, id })) {
        reject({ type: 'error', code: 'disconnected', message: 'Not connected. Reconnecting…' });
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject({ type: 'error', code: 'timeout', message: 'The server did not answer in time.' });
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
    });
  }

  /** Closes for good (leaving the page, revoked session). */
  stop() {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.heartbeat);
    if (this.socket) this.socket.close(1000, 'bye');
  }
}

/** Shows the connection state in a `.pill` element. */
export function bindStatusPill(realtime, pill) {
  const text = pill.querySelector('[data-role="text"]') || pill;
  realtime.on('status', ({ state, retryInMs }) => {
    pill.classList.remove('online', 'connecting', 'offline');
    pill.dataset.state = state;
    if (state === 'open') {
      pill.classList.add('online');
      text.textContent = 'Live';
    } else if (state === 'connecting') {
      pill.classList.add('connecting');
      text.textContent = 'Connecting…';
    } else {
      pill.classList.add('offline');
      text.textContent = `Offline, retrying in ${Math.ceil((retryInMs || 0) / 1000)} s`;
    }
  });
}
