// Charged chat round trips: each VU holds one session for SESSION_SECONDS, starts a chat, then
// sends `chat.send` and waits for the `chat.done` answering it (reply_to), again and again.
// Trend `chat_rtt` is chat.send -> chat.done in ms. The server needs high starting credits and
// a high WS rate limit (load/README.md).
// k6 run -e BASE_URL=http://127.0.0.1:8080 -e USERS=20 -e VUS=20 -e DURATION=10s load/k6/chat.js
import ws from 'k6/ws';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { authParams, registerUsers, wsUrl } from './lib.js';

const chatRtt = new Trend('chat_rtt', true);
const chatsDone = new Counter('chats_done');
const errorFrames = new Counter('error_frames');
const sessionMs = Number(__ENV.SESSION_SECONDS || 5) * 1000;

export const options = {
  vus: Number(__ENV.VUS || 20),
  duration: __ENV.DURATION || '10s',
  setupTimeout: '300s',
};

export function setup() {
  return registerUsers(Number(__ENV.USERS || 20));
}

export default function (data) {
  const response = ws.connect(wsUrl(), authParams(data), (socket) => {
    let chatId = null;
    let round = 0;
    let sentAt = 0;
    const send = () => {
      round += 1;
      sentAt = Date.now();
      const id = `k6-${__VU}-${__ITER}-${round}`;
      socket.send(JSON.stringify({ type: 'chat.send', id, chat_id: chatId, content: 'hello from k6' }));
      return id;
    };
    let waitingFor = null;
    // Ids are unique per VU: copies of a user's frames reach that user's other sessions too.
    const createId = `create-${__VU}-${__ITER}`;
    socket.on('message', (text) => {
      const frame = JSON.parse(text);
      if (frame.type === 'hello') {
        socket.send(JSON.stringify({ type: 'chat.create', id: createId, title: 'k6' }));
      } else if (frame.type === 'chat.created' && frame.reply_to === createId && chatId === null) {
        chatId = frame.chat.id;
        waitingFor = send();
      } else if (frame.type === 'chat.done' && frame.reply_to === waitingFor) {
        chatRtt.add(Date.now() - sentAt);
        chatsDone.add(1);
        waitingFor = send();
      } else if (frame.type === 'error' && frame.reply_to === waitingFor) {
        errorFrames.add(1, { code: frame.code });
        waitingFor = send();
      }
    });
    socket.setTimeout(() => socket.close(), sessionMs);
  });
  check(response, { 'upgraded (101)': (r) => r && r.status === 101 });
}
