// What the browser test files share: one server and one headless Chromium per file (started in
// `before`, stopped in `after`), pages in fresh contexts that record script errors and CSP
// violations, screenshots, sign-in, and the axe-core accessibility check.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';

import { chromium } from 'playwright-core';

import { startServer } from './server.js';

export const ADMIN = { email: 'admin@example.com', password: 'admin-harbour-lantern-42' };
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 375, height: 812 };

/** axe-core's browser build, injected into pages by path. */
const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

/**
 * Starts a server (with `settings` over its environment) and a browser for this test file; the
 * returned object gets `server`, `browser`, `shots` and `contexts` once `before` has run.
 */
export function useBrowser(settings = {}) {
  const env = { contexts: [] };
  let profileDir;
  before(async () => {
    env.shots = process.env.SCREENSHOT_DIR || (await mkdtemp(join(tmpdir(), 'switchboard-screens-')));
    await mkdir(env.shots, { recursive: true });
    env.server = await startServer({ adminEmail: ADMIN.email, adminPassword: ADMIN.password, settings });
    profileDir = await mkdtemp(join(tmpdir(), 'switchboard-chromium-'));
    // launch() refuses --user-data-dir (that is launchPersistentContext, which allows a single
    // context, and the tests need several with their own cookies). It creates a fresh profile
    // dir itself, under TMPDIR: here a mkdtemp dir, removed at the end.
    const savedTmpdir = process.env.TMPDIR;
    process.env.TMPDIR = profileDir;
    try {
      env.browser = await chromium.launch({
        executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
        headless: true,
        args: [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
      });
    } finally {
      if (savedTmpdir === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = savedTmpdir;
    }
    console.log(`server ${env.server.baseUrl} (log ${env.server.logPath}); screenshots in ${env.shots}`);
  });
  after(async () => {
    await env.browser?.close().catch(() => {});
    await env.server?.stop();
    if (process.exitCode && env.server) console.log(`server log kept at ${env.server.logPath}`);
    else await env.server?.cleanup();
    if (profileDir) await rm(profileDir, { recursive: true, force: true });
  });
  return env;
}

/**
 * A fresh browser context (own cookies) in the dark scheme, with a page whose script errors and
 * CSP violations are collected in `page.problems`. `bypassCSP` only for the accessibility check,
 * which injects axe-core's script.
 */
export async function newPage(env, viewport = DESKTOP, { bypassCSP = false, colorScheme = 'dark' } = {}) {
  const context = await env.browser.newContext({
    baseURL: env.server.baseUrl,
    viewport,
    colorScheme,
    deviceScaleFactor: 1,
    isMobile: viewport.width < 600,
    hasTouch: viewport.width < 600,
    acceptDownloads: true,
    bypassCSP,
  });
  context.setDefaultTimeout(15_000);
  env.contexts.push(context);
  return watch(await context.newPage());
}

/** Collects a page's script errors and CSP violations in `page.problems`. */
export function watch(page) {
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    // A CSP violation is reported on the console; any would mean a page breaks under the policy.
    if (/Content Security Policy/i.test(message.text())) problems.push(`CSP: ${message.text()}`);
  });
  page.problems = problems;
  return page;
}

export async function shoot(env, page, name, fullPage = true) {
  await page.screenshot({ path: join(env.shots, `${name}.png`), fullPage, animations: 'disabled' });
}

export function assertNoProblems(page) {
  assert.deepEqual(page.problems, [], `no script errors or CSP violations on ${page.url()}`);
}

export async function login(page, { email, password }, next) {
  await page.goto(next ? `/login?next=${encodeURIComponent(next)}` : '/login');
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('#login-submit');
}

/** Waits until an input shows `value` (pages fill their forms after fetching). */
export async function waitValue(page, selector, value) {
  await page.waitForFunction(([sel, expected]) => document.querySelector(sel)?.value === expected, [selector, value]);
}

export async function waitLive(page, selector) {
  await page.waitForSelector(`${selector}[data-state="open"]`);
}

/** How many pixels of the canvas in `selector` are not transparent: 0 for a chart never drawn. */
export async function inkedPixels(page, selector) {
  return page.$eval(selector, (canvas) => {
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    let inked = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) inked += 1;
    return inked;
  });
}

/**
 * Runs axe-core on the page (WCAG 2.x A and AA and best practices) and returns its violations;
 * the caller fails on serious and critical ones.
 */
export async function axeViolations(page) {
  await page.addScriptTag({ path: AXE });
  return page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const result = await axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      targets: v.nodes.slice(0, 5).map((n) => n.target.join(' ')),
    }));
  });
}

/** Calls the API from the test (outside the browser); the parsed body, or throws with the status. */
export async function rest(env, method, path, { token, body } = {}) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(`${env.server.baseUrl}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}
