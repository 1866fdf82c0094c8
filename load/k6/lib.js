// Shared by the k6 scripts: registering load users over REST in setup(), and picking a user's
// token and the WebSocket URL in each VU. BASE_URL (default http://127.0.0.1:8080) and USERS set
// where and how many; the server needs raised registration and login limits (load/README.md).
import http from 'k6/http';

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/$/, '');
export const PASSWORD = 'violet-harbour-lantern-42';

// The /ws URL of the server.
export function wsUrl() {
  return BASE_URL.replace(/^http/, 'ws') + '/ws';
}

// Registers `count` fresh users, logs each in, and returns their access tokens for the VUs.
export function registerUsers(count) {
  const tokens = [];
  const headers = { 'Content-Type': 'application/json' };
  for (let n = 0; n < count; n++) {
    const email = `k6-${Date.now()}-${n}-${Math.floor(Math.random() * 1e9)}@example.com`;
    const body = { email, password: PASSWORD, first_name: 'K6', last_name: 'Load' };
    const registered = http.post(`${BASE_URL}/api/register`, JSON.stringify(body), { headers });
    if (registered.status !== 201) {
      throw new Error(`registration answered ${registered.status}: ${registered.body}`);
    }
    const login = http.post(`${BASE_URL}/api/login`, JSON.stringify({ email, password: PASSWORD }), { headers });
    if (login.status !== 200) {
      throw new Error(`login answered ${login.status}: ${login.body}`);
    }
    tokens.push(login.json('access_token'));
  }
  return { tokens };
}

// The bearer header of this VU's user (VUs are spread over the users round robin).
export function authParams(data) {
  const token = data.tokens[__VU % data.tokens.length];
  return { headers: { Authorization: `Bearer ${token}` } };
}
