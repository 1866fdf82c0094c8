// Starts the real `switchboard` binary for the browser tests: a free loopback port, a fresh data
// directory, a configured admin, generous rate limits; stopped by PID when the tests end.

import { spawn } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The binary under test: SWITCHBOARD_BIN, else the debug build in the cargo target dir. */
export function serverBinary() {
  if (process.env.SWITCHBOARD_BIN) return process.env.SWITCHBOARD_BIN;
  const target = process.env.CARGO_TARGET_DIR || join(repo, 'target');
  return join(target, 'debug', 'switchboard');
}

/**
 * A running server (`settings`: environment variables over the defaults): its base URL, data directory, log file, `stop()`, and `restart()` (same
 * port and data, as after a deploy).
 */
export async function startServer({ adminEmail, adminPassword, settings = {} }) {
  const binary = serverBinary();
  if (!existsSync(binary)) {
    throw new Error(`${binary} does not exist: run \`cargo build --bin switchboard\` or set SWITCHBOARD_BIN`);
  }
  const dataDir = await mkdtemp(join(tmpdir(), 'switchboard-browser-'));
  const logPath = join(dataDir, 'server.log');
  const log = createWriteStream(logPath);
  const env = { ...process.env };
  // Nothing from the caller's environment may point the server elsewhere.
  for (const name of ['MONGODB_URI', 'SMTP_URL', 'ASSISTANT_URL', 'IMAGE_URL', 'SWITCHBOARD_PUBLIC_URL', 'JWT_SECRET']) {
    delete env[name];
  }
  Object.assign(env, {
    SWITCHBOARD_DATA_DIR: dataDir,
    SWITCHBOARD_ADMIN_EMAIL: adminEmail,
    SWITCHBOARD_ADMIN_PASSWORD: adminPassword,
    SWITCHBOARD_LOG_FORMAT: 'text',
    RATE_LIMIT_PER_MINUTE: '100000',
    WS_RATE_LIMIT_PER_MINUTE: '100000',
    RUST_LOG: 'info',
  }, settings);

  let child;
  const killOnExit = () => {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  };
  process.on('exit', killOnExit);

  /** Starts the binary on `bind`; resolves with the URL it logs once listening. */
  async function launch(bind) {
    child = spawn(binary, [], { env: { ...env, SWITCHBOARD_BIND: bind }, stdio: ['ignore', 'pipe', 'pipe'] });
    const url = await new Promise((resolveUrl, reject) => {
      let seen = '';
      const timer = setTimeout(() => reject(new Error(`the server did not start within 30 s; log: ${logPath}\n${seen}`)), 30_000);
      const watch = (chunk) => {
        log.write(chunk);
        seen += chunk.toString();
        // The server logs the URL it listens on (port 0 becomes a real port).
        const match = seen.match(/listening.*?http:\/\/127\.0\.0\.1:(\d+)/);
        if (match) {
          clearTimeout(timer);
          resolveUrl(`http://127.0.0.1:${match[1]}`);
        }
      };
      child.stdout.on('data', watch);
      child.stderr.on('data', watch);
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the server exited with ${code} before listening:\n${seen}`));
      });
    });
    child.removeAllListeners('exit');
    child.stdout.removeAllListeners('data');
    child.stderr.removeAllListeners('data');
    child.stdout.on('data', (chunk) => log.write(chunk));
    child.stderr.on('data', (chunk) => log.write(chunk));
    return url;
  }

  /** SIGTERM (graceful: sockets close with 1001), SIGKILL after 10 s. */
  async function terminate() {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((done) => child.once('exit', done));
    process.kill(child.pid, 'SIGTERM');
    const timeout = new Promise((done) => setTimeout(() => done('timeout'), 10_000));
    if ((await Promise.race([exited, timeout])) === 'timeout') {
      process.kill(child.pid, 'SIGKILL');
      await exited;
    }
  }

  const baseUrl = await launch('127.0.0.1:0');
  return {
    baseUrl,
    dataDir,
    logPath,
    async restart() {
      await terminate();
      await launch(baseUrl.replace('http://', ''));
    },
    async stop() {
      await terminate();
      process.off('exit', killOnExit);
    },
    cleanup: () => rm(dataDir, { recursive: true, force: true }),
  };
}

/** The newest reset link mailed to `email` (the server writes mail to `<data-dir>/outbox/`). */
export async function resetLinkFor(dataDir, email, timeoutMs = 10_000) {
  const outbox = join(dataDir, 'outbox');
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const names = existsSync(outbox) ? (await readdir(outbox)).filter((n) => n.endsWith('.eml')).sort().reverse() : [];
    for (const name of names) {
      const mail = await readFile(join(outbox, name), 'utf8');
      if (!mail.includes(`To: ${email}`)) continue;
      const link = mail.match(/https?:\/\/\S+\/reset-password\?token=[A-Za-z0-9_\-.~%]+/);
      if (link) return link[0];
    }
    await new Promise((done) => setTimeout(done, 100));
  }
  throw new Error(`no reset mail for ${email} in ${outbox}`);
}
