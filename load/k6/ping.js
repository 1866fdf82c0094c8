// Ping round trips: each VU holds one session for SESSION_SECONDS and sends `ping` again as soon
// as each `pong` arrives (no pause: saturation). Trend `ping_rtt` is the round trip in ms
// (Date.now() resolution, so sub-millisecond trips show as 0 or 1).
// k6 run -e BASE_URL=http://127.0.0.1:8080 -e USERS=10 -e VUS=50 -e DURATION=10s load/k6/ping.js
import ws from 'k6/ws';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { authParams, registerUsers, wsUrl } from './lib.js';

const pingRtt = new Trend('ping_rtt', true);
const pongs = new Counter('pongs');
const errorFrames = new Counter('error_frames');
const sessionMs = Number(__ENV.SESSION_SECONDS || 5) * 1000;

export const options = {
  vus: Number(__ENV.VUS || 50),
  duration: __ENV.DURATION || '10s',
  setupTimeout: '300s',
};

export function setup() {
  return registerUsers(Number(__ENV.USERS || 10));
}

export default function (data) {
  const response = ws.connect(wsUrl(), authParams(data), (socket) => {
    let sentAt = 0;
    const ping = () => {
      sentAt = Date.now();
      socket.send('{"type":"ping"}');
    };
    socket.on('message', (text) => {
      const frame = JSON.parse(text);
      if (frame.type === 'hello') {
        ping();
      } else if (frame.type === 'pong') {
        pingRtt.add(Date.now() - sentAt);
        pongs.add(1);
        ping();
      } else if (frame.type === 'error') {
        errorFrames.add(1, { code: frame.code });
        ping();
      }
    });
    socket.setTimeout(() => socket.close(), sessionMs);
  });
  check(response, { 'upgraded (101)': (r) => r && r.status === 101 });
}
