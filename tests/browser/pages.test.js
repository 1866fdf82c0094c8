// Switchboard's pages in a real browser (Debian's Chromium, driven by playwright-core): one user's
// journey from registration to being signed out by an admin, with the admin watching live.
// Every page is photographed into SCREENSHOT_DIR (default: a fresh temp dir).

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';

import {
  ADMIN,
  DESKTOP,
  PHONE,
  assertNoProblems as noProblems,
  login,
  newPage as freshPage,
  shoot as shootTo,
  useBrowser,
  waitLive,
  waitValue,
} from './harness.js';
import { resetLinkFor } from './server.js';

const USER = { email: 'grace@example.com', password: 'violet-harbour-lantern-42', first: 'Grace', last: 'Brewster' };

const env = useBrowser();
const contexts = env.contexts;
const newPage = (viewport = DESKTOP) => freshPage(env, viewport);
const shoot = (page, name, fullPage = true) => shootTo(env, page, name, fullPage);
const assertNoProblems = noProblems;
let server;
let shots;

test('a user registers, chats and is signed out by an admin, all in the browser', { timeout: 300_000 }, async (t) => {
  let failed = false;
  const step = (name, body) =>
    t.test(name, async (s) => {
      if (failed) {
        s.skip('an earlier step failed');
        return;
      }
      try {
        await body();
      } catch (error) {
        failed = true;
        for (const [i, context] of contexts.entries()) {
          for (const [j, page] of context.pages().entries()) {
            await page.screenshot({ path: join(shots, `failure-${i}-${j}.png`) }).catch(() => {});
          }
        }
        throw error;
      }
    });

  ({ server, shots } = env);
  let user;
  let admin;

  await step('pages that need a login redirect to /login with next', async () => {
    const response = await fetch(`${server.baseUrl}/profile`, { redirect: 'manual' });
    assert.equal(response.status, 302);
    assert.equal(response.headers.get('location'), '/login?next=/profile');
    const root = await fetch(`${server.baseUrl}/`, { redirect: 'manual' });
    assert.equal(root.headers.get('location'), '/profile');
    const css = await fetch(`${server.baseUrl}/assets/app.css`);
    assert.match(css.headers.get('content-type'), /^text\/css/);
    const js = await fetch(`${server.baseUrl}/assets/api.js`);
    assert.match(js.headers.get('content-type'), /^text\/javascript/);
    const missing = await fetch(`${server.baseUrl}/assets/nope.js`);
    assert.equal(missing.status, 404);
    assert.equal((await missing.json()).code, 'not_found');
  });

  await step('register: errors inline, then the API key once and on to the profile', async () => {
    user = await newPage();
    await user.goto('/register');
    await shoot(user, 'register');
    await user.fill('#first-name', USER.first);
    await user.fill('#last-name', USER.last);
    await user.fill('#email', USER.email);
    await user.fill('#password', 'password');
    await user.click('#register-submit');
    await user.waitForSelector('[data-error-for="password"]:not(:empty)');
    await user.fill('#password', USER.password);
    await user.click('#register-submit');
    await user.waitForSelector('#register-done:not([hidden])');
    assert.match(await user.inputValue('#register-api-key'), /^sk_.{32,}/);
    await user.click('#register-continue');
    await user.waitForURL((url) => url.pathname === '/profile');
    await waitValue(user, '#email', USER.email);
    assertNoProblems(user);
  });

  await step('logout, then login: a wrong password is shown inline, next is honoured', async () => {
    await user.click('#logout');
    await user.waitForURL((url) => url.pathname === '/login');
    await user.goto('/chat');
    await user.waitForURL((url) => url.pathname === '/login' && url.searchParams.get('next') === '/chat');
    await user.waitForSelector('#login-notice:not(:empty)');
    await user.fill('#email', USER.email);
    await user.fill('#password', 'not-the-password-1');
    await user.click('#login-submit');
    await user.waitForSelector('#login-error:not(:empty)');
    assert.match(await user.textContent('#login-error'), /invalid email or password/i);
    await user.goto('/login');
    await shoot(user, 'login');
    await login(user, USER, '/chat');
    await user.waitForURL((url) => url.pathname === '/chat');
    await user.goto('/profile');
    assertNoProblems(user);
  });

  await step('a returning user with only the refresh cookie is not asked to log in', async () => {
    // Let the profile page finish its requests first: one of them meeting the missing cookie
    // would refresh as well, and the two refreshes would race.
    await waitLive(user, '#live-status');
    await user.waitForLoadState('networkidle');
    const context = user.context();
    const cookies = await context.cookies();
    // As if the 15-minute access cookie had expired.
    await context.clearCookies({ name: 'sb_access' });
    assert.ok(cookies.some((c) => c.name === 'sb_refresh'));
    // The server sends the page to /login?next=/profile, whose script refreshes and returns.
    await user.goto('/profile', { waitUntil: 'commit' });
    await user.waitForURL((url) => url.pathname === '/profile');
    await user.waitForSelector('#whoami:not(:empty)');
    assert.ok((await context.cookies()).some((c) => c.name === 'sb_access'), 'a new access cookie');
  });

  await step('edit profile: names are saved and still there after a reload', async () => {
    await user.fill('#first-name', 'Grace');
    await user.fill('#last-name', 'Hopper');
    await user.click('#save-profile');
    await user.waitForSelector('#profile-status:has-text("Saved")');
    await user.reload();
    await user.waitForFunction(() => document.querySelector('#last-name').value === 'Hopper');
    assert.equal(await user.inputValue('#first-name'), 'Grace');
    assert.ok(await user.isDisabled('#email'), 'the email cannot be edited');
  });

  await step('regenerate the API key: the password is asked, the new key is shown once, the old one dies', async () => {
    await user.waitForFunction(() => document.querySelector('#api-key').value.endsWith('…'));
    const statusWith = async (key) =>
      (await fetch(`${server.baseUrl}/api/me`, { headers: { Authorization: `Bearer ${key}` } })).status;
    const regenerate = async (password) => {
      await user.click('#regenerate-key');
      await user.fill('#regenerate-password', password);
      await user.click('#regenerate-confirm');
    };
    await regenerate('not-the-password-1');
    await user.waitForSelector('#profile-error:not(:empty)');
    assert.ok(await user.isHidden('#new-key-box'), 'a wrong password makes no key');
    const keys = [];
    for (const round of [1, 2]) {
      const before = await user.inputValue('#api-key');
      await regenerate(USER.password);
      await user.waitForFunction((previous) => {
        const box = document.querySelector('#new-key-box');
        return !box.hidden && document.querySelector('#api-key').value !== previous;
      }, before);
      const key = await user.inputValue('#new-key');
      assert.match(key, /^sk_/, `round ${round}`);
      assert.equal(await user.inputValue('#api-key'), `${key.slice(0, 10)}…`);
      assert.equal(await statusWith(key), 200, `round ${round}: the new key works`);
      keys.push(key);
    }
    assert.equal(await statusWith(keys[0]), 401, 'the key it replaced no longer works');
    const key = keys[1];
    await user.reload();
    await user.waitForFunction(() => document.querySelector('#api-key').value.endsWith('…'));
    assert.equal(await user.inputValue('#api-key'), `${key.slice(0, 10)}…`);
    assert.ok(await user.isHidden('#new-key-box'), 'the full key is not shown again');
  });

  await step('chat round trip: create a chat, send, the reply streams into one bubble', async () => {
    await user.goto('/chat');
    await waitLive(user, '#conn-status');
    await user.waitForSelector('#credits-left:has-text("100")');
    await user.click('#new-chat');
    await user.waitForSelector('#chat-list button[aria-current="true"]');
    // Records every text the assistant's bubble shows before the reply is final: the stream.
    await user.evaluate(() => {
      window.partials = new Set();
      new MutationObserver((records) => {
        for (const record of records) {
          const bubble = record.target.closest?.('.bubble.assistant');
          if (bubble && !bubble.dataset.done) window.partials.add(bubble.textContent);
        }
      }).observe(document.getElementById('messages'), { childList: true, subtree: true, characterData: true });
    });
    await user.fill('#message-input', 'Hello there, switchboard');
    await user.press('#message-input', 'Enter');
    await user.waitForSelector('.bubble.user:has-text("Hello there, switchboard")');
    const reply = await user.waitForSelector('.bubble.assistant[data-done="true"]');
    assert.equal(await reply.textContent(), 'You said: Hello there, switchboard');
    assert.ok((await user.evaluate(() => window.partials.size)) >= 2, 'the reply grew in several deltas');
    assert.equal(await user.inputValue('#message-input'), '');
    await shoot(user, 'chat', false);
    assertNoProblems(user);
  });

  await step('a server restart: the page says it is offline and reconnects by itself', async () => {
    await user.evaluate(() => {
      window.notReloaded = true;
    });
    const offline = user.waitForSelector('#conn-status[data-state="offline"]:has-text("retrying in")');
    const banner = user.waitForSelector('#reconnect-banner:not([hidden]):has-text("Reconnecting")');
    await server.restart();
    await offline;
    await banner;
    await waitLive(user, '#conn-status');
    await user.waitForSelector('#reconnect-banner', { state: 'hidden' });
    await user.waitForSelector('.bubble.assistant[data-done="true"]:has-text("You said: Hello there")');
    assert.equal(await user.evaluate(() => window.notReloaded), true, 'reconnected without a reload');
  });

  await step('credits drop: 99 on /chat and on /profile', async () => {
    await user.waitForSelector('#credits-left:has-text("99")');
    await user.goto('/profile');
    await user.waitForSelector('#stat-credits:has-text("99")');
    await user.waitForSelector('#stat-chats:has-text("1")');
    await user.waitForSelector('#usage-rows tr[data-service="chat"]');
  });

  await step('a non-admin opening /admin lands on the profile', async () => {
    const response = await fetch(`${server.baseUrl}/admin`, { redirect: 'manual' });
    assert.equal(response.status, 302, 'anonymous');
    const page = await user.context().newPage();
    await page.goto('/admin');
    await page.waitForURL((url) => url.pathname === '/profile');
    await page.close();
  });

  await step('the admin sees the user online in the presence panel, live', async () => {
    await waitLive(user, '#live-status');
    admin = await newPage();
    await login(admin, ADMIN, '/admin');
    await admin.waitForURL((url) => url.pathname === '/admin');
    await waitLive(admin, '#presence-status');
    const row = `#presence-list li[data-email="${USER.email}"]`;
    await admin.waitForSelector(`${row}[data-sessions="1"]`);
    assert.match(await admin.textContent(row), /since/);
    // A second tab of the user shows up as a second session without a reload, and goes again.
    const second = await user.context().newPage();
    await second.goto('/chat');
    await admin.waitForSelector(`${row}[data-sessions="2"]`);
    await second.close();
    await admin.waitForSelector(`${row}[data-sessions="1"]`);
    assert.match(await admin.textContent('#presence-summary'), /users? online/);
    assertNoProblems(admin);
  });

  await step('the admin grants credits and the user sees the new balance without a reload', async () => {
    await user.evaluate(() => {
      window.notReloaded = true;
    });
    await admin.fill('#user-search', 'hopper');
    const row = `#users-rows tr[data-email="${USER.email}"]`;
    await admin.waitForSelector(row);
    await admin.waitForSelector('#users-total:has-text("1 user")');
    await admin.click(`${row} .manage-user`);
    await admin.waitForSelector('#user-detail:not([hidden])');
    await admin.waitForSelector('#detail-credits:has-text("99")');
    await admin.fill('#grant-amount', '50');
    await admin.fill('#grant-reason', 'Welcome bonus');
    await admin.click('#grant-submit');
    await admin.waitForSelector('#grant-status:has-text("Balance: 149")');
    await admin.waitForSelector('#admin-usage-rows tr[data-service="grant"]');
    await user.waitForSelector('#stat-credits:has-text("149")');
    assert.equal(await user.evaluate(() => window.notReloaded), true, 'the profile was not reloaded');
    await user.waitForSelector('#usage-rows tr[data-service="grant"]');
    await admin.fill('#user-search', '');
    await admin.waitForSelector(`#users-rows tr[data-email="${ADMIN.email}"]`);
    await shoot(admin, 'admin');
    await shoot(user, 'profile');
    assertNoProblems(user);
  });

  await step('the profile fits a phone (375 px)', async () => {
    const phone = await newPage(PHONE);
    await login(phone, USER, '/profile');
    await phone.waitForURL((url) => url.pathname === '/profile');
    await phone.waitForSelector('#stat-credits:has-text("149")');
    await phone.waitForSelector('#usage-rows tr');
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no sideways scrolling (overflow ${overflow}px)`);
    await shoot(phone, 'profile-mobile');
    await phone.goto('/chat');
    await waitLive(phone, '#conn-status');
    await phone.waitForSelector('.bubble.assistant[data-done="true"]');
    await shoot(phone, 'chat-mobile', false);
    assertNoProblems(phone);
    await phone.context().close();
  });

  await step('out of credits: /chat says so clearly and keeps the message', async () => {
    await admin.fill('#grant-amount', '-149');
    await admin.fill('#grant-reason', 'Testing an empty balance');
    await admin.click('#grant-submit');
    await admin.waitForSelector('#grant-status:has-text("Balance: 0")');
    await user.waitForSelector('#stat-credits:has-text("0")');
    await user.goto('/chat');
    await waitLive(user, '#conn-status');
    await user.waitForSelector('#credits-left:has-text("0")');
    await user.fill('#message-input', 'One more, please');
    await user.press('#message-input', 'Enter');
    await user.waitForSelector('#chat-notice[data-code="insufficient_credits"]:has-text("out of credits")');
    assert.equal(await user.inputValue('#message-input'), 'One more, please');
  });

  await step('the admin deactivates the user and the user is signed out at once', async () => {
    const toggle = `#users-rows tr[data-email="${USER.email}"] .active-toggle`;
    assert.ok(await admin.isChecked(toggle));
    // A click, not uncheck(): the row is redrawn from the server's answer, which uncheck() would
    // race when it reads the box's state back.
    await admin.click(toggle);
    await admin.waitForSelector(`#users-rows tr[data-email="${USER.email}"][data-active="false"]`);
    await user.waitForURL((url) => url.pathname === '/login');
    await user.waitForSelector('#login-notice:has-text("disabled")');
    await admin.waitForSelector(`#presence-list li[data-email="${USER.email}"]`, { state: 'detached' });
    await login(user, USER);
    await user.waitForSelector('#login-error:has-text("disabled")');
  });

  await step('forgot and reset password: the mailed link sets a new password', async () => {
    const page = await newPage();
    const email = 'ada@example.com';
    const created = await fetch(`${server.baseUrl}/api/register`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ email, password: 'copper-meadow-signal-17', first_name: 'Ada', last_name: 'Lovelace' }),
    });
    assert.equal(created.status, 201);
    await page.goto('/forgot-password');
    await page.fill('#email', email);
    await page.click('#forgot-submit');
    await page.waitForSelector('#forgot-result:has-text("If the account exists, a link is on its way")');
    await shoot(page, 'forgot-password');
    const link = await resetLinkFor(server.dataDir, email);
    const path = new URL(link).pathname + new URL(link).search;
    // A wrong token is refused inline.
    await page.goto('/reset-password?token=not-a-real-token');
    await page.fill('#new-password', 'amber-falcon-river-88');
    await page.fill('#confirm-password', 'amber-falcon-river-88');
    await page.click('#reset-submit');
    await page.waitForSelector('#reset-error:has-text("invalid")');
    await page.goto(path);
    await shoot(page, 'reset-password');
    await page.fill('#new-password', 'amber-falcon-river-88');
    await page.fill('#confirm-password', 'amber-falcon-river-88');
    await page.click('#reset-submit');
    await page.waitForSelector('#reset-done:not([hidden])');
    await page.click('#reset-login-link');
    await login(page, { email, password: 'amber-falcon-river-88' });
    await page.waitForURL((url) => url.pathname === '/profile');
    assertNoProblems(page);
  });
});
