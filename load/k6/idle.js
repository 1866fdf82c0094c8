// Idle sessions: each VU opens one session, times connect -> `hello` (Trend `hello_time`), and
// holds it idle for HOLD_SECONDS. Start the server first and read its RSS (load/README.md) or
// use `switchboard-load idle --server-pid`, which does the arithmetic.
// k6 run -e BASE_URL=http://127.0.0.1:8080 -e USERS=20 -e VUS=500 -e HOLD_SECONDS=10 load/k6/idle.js
import ws from 'k6/ws';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { authParams, registerUsers, wsUrl } from './lib.js';

const helloTime = new Trend('hello_time', true);
const sessionsHeld = new Counter('sessions_held');
const holdMs = Number(__ENV.HOLD_SECONDS || 10) * 1000;

export const options = {
  scenarios: {
    idle: {
      executor: 'per-vu-iterations',
      vus: Number(__ENV.VUS || 500),
      iterations: 1,
      maxDuration: `${Number(__ENV.HOLD_SECONDS || 10) + 60}s`,
    },
  },
  setupTimeout: '300s',
};

export function setup() {
  return registerUsers(Number(__ENV.USERS || 20));
}

export default function (data) {
  const started = Date.now();
  const response = ws.connect(wsUrl(), authParams(data), (socket) => {
    socket.on('message', (text) => {
      if (JSON.parse(text).type === 'hello') {
        helloTime.add(Date.now() - started);
      }
    });
    socket.setTimeout(() => {
      sessionsHeld.add(1);
      socket.close();
    }, holdMs);
  });
  check(response, { 'upgraded (101)': (r) => r && r.status === 101 });
}
