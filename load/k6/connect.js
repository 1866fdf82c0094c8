// Authenticated connects: every iteration opens a session, waits for `hello`, and closes it.
// Trend `connect_to_hello` is the time from starting the connect to the hello, in ms; the
// `iterations` rate in k6's summary is connects per second.
// k6 run -e BASE_URL=http://127.0.0.1:8080 -e USERS=10 -e VUS=20 -e DURATION=10s load/k6/connect.js
import ws from 'k6/ws';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { authParams, registerUsers, wsUrl } from './lib.js';

const connectToHello = new Trend('connect_to_hello', true);
const hellos = new Counter('hellos');

export const options = {
  vus: Number(__ENV.VUS || 20),
  duration: __ENV.DURATION || '10s',
  setupTimeout: '300s',
};

export function setup() {
  return registerUsers(Number(__ENV.USERS || 10));
}

export default function (data) {
  const started = Date.now();
  const response = ws.connect(wsUrl(), authParams(data), (socket) => {
    socket.on('message', (text) => {
      if (JSON.parse(text).type === 'hello') {
        connectToHello.add(Date.now() - started);
        hellos.add(1);
        socket.close();
      }
    });
    // A session that never says hello is closed rather than left to hang the iteration.
    socket.setTimeout(() => socket.close(), 10000);
  });
  check(response, { 'upgraded (101)': (r) => r && r.status === 101 });
}
