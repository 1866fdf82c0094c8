// The pages of issue 13 in a real browser: Markdown replies, renaming and deleting a chat, images
// generated in one tab and seen in another, the usage charts, the sessions list (signing another
// browser out and watching it land on the login page), the password change, and the admin's
// overview and a user's sessions. Screenshots of the new pages go to SCREENSHOT_DIR.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';

import { ADMIN, assertNoProblems, inkedPixels, login, newPage, rest, shoot, useBrowser, waitLive, watch } from './harness.js';

const env = useBrowser();
const LIN = { email: 'lin@example.com', password: 'copper-meadow-signal-17', next: 'amber-falcon-river-88' };

test('images, charts, sessions, chats and the password, all in the browser', { timeout: 300_000 }, async (t) => {
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
        for (const [i, context] of env.contexts.entries()) {
          for (const [j, page] of context.pages().entries()) {
            await page.screenshot({ path: join(env.shots, `failure-features-${i}-${j}.png`) }).catch(() => {});
          }
        }
        throw error;
      }
    });

  let lin;
  let second;
  let admin;
  let adminToken;
  let userId;

  await step('a user signs in and the top bar leads to the images page', async () => {
    const created = await rest(env, 'POST', '/api/register', {
      body: { email: LIN.email, password: LIN.password, first_name: 'Lin', last_name: 'Ma' },
    });
    userId = created.user.id;
    ({ access_token: adminToken } = await rest(env, 'POST', '/api/login', { body: ADMIN }));
    lin = await newPage(env);
    await login(lin, LIN, '/chat');
    await lin.waitForURL((url) => url.pathname === '/chat');
    await lin.click('#nav-images');
    await lin.waitForURL((url) => url.pathname === '/images');
    assert.equal(await lin.getAttribute('#nav-images', 'aria-current'), 'page');
  });

  await step('images: the price and balance show before sending, and a new image reaches every tab', async () => {
    await waitLive(lin, '#conn-status');
    await lin.waitForSelector('#price:has-text("10 credits")');
    await lin.waitForSelector('#balance[data-value="100"]');
    second = watch(await lin.context().newPage());
    await second.goto('/images');
    await waitLive(second, '#conn-status');
    await lin.fill('#prompt', 'A lighthouse at dusk, oil on canvas');
    await lin.selectOption('#size', '256x256');
    await lin.click('#generate');
    await lin.waitForSelector('#gallery li[data-image-id] img');
    await second.waitForSelector('#gallery li[data-image-id] img');
    await lin.waitForSelector('#balance[data-value="90"]');
    await second.waitForSelector('#balance[data-value="90"]');
    const id = await lin.getAttribute('#gallery li[data-image-id]', 'data-image-id');
    assert.equal(await second.getAttribute('#gallery li[data-image-id]', 'data-image-id'), id, 'the same image in the other tab');
    // Loaded for real: the thumbnail has pixels.
    await lin.waitForFunction(() => document.querySelector('#gallery img').naturalWidth === 256);
    assert.equal(await lin.getAttribute('#gallery li a[download]', 'href'), `/api/images/${id}/content`);
    await lin.click('#gallery .thumb');
    await lin.waitForSelector('#viewer[open]');
    await lin.waitForFunction(() => document.getElementById('viewer-image').naturalWidth === 256);
    await lin.click('#viewer-close');
    await lin.waitForSelector('#viewer:not([open])', { state: 'attached' });
    // A second image, newest first, and then the first one deleted (two clicks).
    await lin.fill('#prompt', 'A kite over the sea');
    await lin.click('#generate');
    await lin.waitForSelector('#gallery li:nth-child(2)');
    assert.match(await lin.textContent('#gallery li:first-child .gallery-prompt'), /kite/);
    await shoot(env, lin, 'images');
    const first = `#gallery li[data-image-id="${id}"]`;
    await lin.click(`${first} .delete-image`);
    await lin.click(`${first} .delete-image`);
    await lin.waitForSelector(first, { state: 'detached' });
    const gone = await lin.evaluate(async (path) => (await fetch(path)).status, `/api/images/${id}`);
    assert.equal(gone, 404, 'the deleted image is gone');
    assertNoProblems(lin);
    assertNoProblems(second);
    await second.close();
  });

  await step('images: running out of credits is said in words', async () => {
    await rest(env, 'POST', `/api/admin/users/${userId}/credits`, { token: adminToken, body: { amount: -80, reason: 'test' } });
    await lin.waitForSelector('#balance[data-value="0"]');
    await lin.fill('#prompt', 'One more');
    await lin.click('#generate');
    await lin.waitForSelector('#generate-notice[data-code="insufficient_credits"]:has-text("Not enough credits")');
    await rest(env, 'POST', `/api/admin/users/${userId}/credits`, { token: adminToken, body: { amount: 100, reason: 'back' } });
    await lin.waitForSelector('#balance[data-value="100"]');
  });

  await step('chat: replies are Markdown, the model\'s HTML stays text, and a chat is renamed and deleted', async () => {
    await lin.goto('/chat');
    await waitLive(lin, '#conn-status');
    await lin.click('#new-chat');
    await lin.waitForSelector('#chat-actions:not([hidden])');
    const text = 'Some **bold** and `code`\n\n- one\n- [a link](https://example.com)\n\n<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>';
    await lin.fill('#message-input', text);
    await lin.press('#message-input', 'Enter');
    const reply = '.bubble.assistant[data-done="true"]';
    await lin.waitForSelector(reply);
    assert.equal(await lin.textContent(`${reply} strong`), 'bold');
    assert.equal(await lin.textContent(`${reply} code`), 'code');
    assert.equal(await lin.locator(`${reply} li`).count(), 2);
    assert.equal(await lin.getAttribute(`${reply} a`, 'rel'), 'noopener noreferrer nofollow');
    assert.equal(await lin.locator(`${reply} img, ${reply} script`).count(), 0, 'no element from the model\'s HTML');
    assert.match(await lin.textContent(reply), /<script>window\.pwned=2<\/script>/, 'shown as text');
    assert.equal(await lin.evaluate(() => window.pwned), undefined, 'nothing ran');
    await shoot(env, lin, 'chat-markdown', false);

    await lin.click('#rename-chat');
    await lin.fill('#rename-input', 'Renamed in the browser');
    await lin.press('#rename-input', 'Enter');
    await lin.waitForSelector('#chat-title:has-text("Renamed in the browser")');
    await lin.waitForSelector('#chat-list button[aria-current="true"]:has-text("Renamed in the browser")');
    const chatId = await lin.getAttribute('#chat-list button[aria-current="true"]', 'data-chat-id');
    await lin.reload();
    await lin.waitForSelector(`#chat-list button[data-chat-id="${chatId}"]:has-text("Renamed in the browser")`);
    await waitLive(lin, '#conn-status');
    await lin.click(`#chat-list button[data-chat-id="${chatId}"]`);
    await lin.click('#delete-chat');
    await lin.waitForSelector('#delete-chat:has-text("Delete for good?")');
    await lin.click('#delete-chat');
    await lin.waitForSelector(`#chat-list button[data-chat-id="${chatId}"]`, { state: 'detached' });
    await lin.waitForSelector('#messages:has-text("deleted")');
    const status = await lin.evaluate(async (id) => (await fetch(`/api/chats/${id}/messages`)).status, chatId);
    assert.equal(status, 404, 'its messages are gone');
    assertNoProblems(lin);
  });

  await step('profile: the 30-day chart is drawn with today\'s credits', async () => {
    await lin.goto('/profile');
    await lin.waitForSelector('#usage-chart[data-points="30"] canvas');
    assert.ok((await inkedPixels(lin, '#usage-chart canvas')) > 0, 'the chart is drawn, not a blank canvas');
    assert.ok(Number(await lin.getAttribute('#usage-chart', 'data-total')) >= 21, 'two images and a chat message today');
    await lin.waitForSelector('#chart-total:has-text("in 30 days")');
    assertNoProblems(lin);
  });

  let other;
  await step('sessions: another browser is listed, and signing it out sends its tab to the login page', async () => {
    other = await newPage(env);
    await login(other, LIN, '/chat');
    await other.waitForURL((url) => url.pathname === '/chat');
    await waitLive(other, '#conn-status');
    await lin.reload();
    await lin.waitForSelector('#sessions-rows tr[data-current="true"]:has-text("This browser")');
    const row = '#sessions-rows tr[data-current="false"]';
    await lin.waitForSelector(`${row}[data-sockets="1"]`);
    assert.match(await lin.textContent(`${row} .device`), /Chrome on Linux/);
    await lin.waitForSelector('#sessions-rows tr[data-current="true"][data-sockets="1"]');
    await shoot(env, lin, 'profile-sessions', false);
    await lin.locator('#sessions-card').screenshot({ path: join(env.shots, 'profile-sessions.png') });
    await lin.click(`${row} .end-session`);
    await other.waitForURL((url) => url.pathname === '/login');
    await other.waitForSelector('#login-notice:has-text("signed out from another device")');
    await lin.waitForSelector('#sessions-notice:has-text("signed out")');
    assert.equal(await lin.locator('#sessions-rows tr').count(), 1, 'only this browser is left');
  });

  await step('sessions: "sign out everywhere else" ends the others and keeps this one', async () => {
    await login(other, LIN, '/chat');
    await other.waitForURL((url) => url.pathname === '/chat');
    await waitLive(other, '#conn-status');
    await lin.reload();
    await lin.waitForSelector('#sessions-rows tr[data-current="false"]');
    await lin.click('#end-others');
    await other.waitForURL((url) => url.pathname === '/login');
    await lin.waitForSelector('#sessions-notice:has-text("Every other session")');
    await lin.reload();
    await lin.waitForSelector('#whoami:not(:empty)');
    assert.equal(await lin.url().endsWith('/profile'), true, 'this browser is still signed in');
  });

  await step('admin: the overview and its chart, and a user\'s sessions with one ended', async () => {
    await login(other, LIN, '/chat');
    await other.waitForURL((url) => url.pathname === '/chat');
    await waitLive(other, '#conn-status');
    admin = await newPage(env);
    await login(admin, ADMIN, '/admin');
    await admin.waitForURL((url) => url.pathname === '/admin');
    await admin.waitForSelector('#overview-chart[data-points="30"] canvas');
    assert.ok((await inkedPixels(admin, '#overview-chart canvas')) > 0, 'the overview chart is drawn, not a blank canvas');
    assert.ok(Number(await admin.getAttribute('#ov-users', 'data-value')) >= 2);
    assert.ok(Number(await admin.getAttribute('#ov-image', 'data-value')) >= 20, 'image credits today');
    assert.ok(Number(await admin.getAttribute('#ov-signups', 'data-value')) >= 1);
    await admin.waitForSelector('#presence-list li');
    await admin.locator('#overview-card').screenshot({ path: join(env.shots, 'admin-overview.png') });
    await admin.fill('#user-search', 'lin@');
    await admin.click(`#users-rows tr[data-email="${LIN.email}"] .manage-user`);
    await admin.waitForSelector('#detail-sessions-rows tr[data-session-id]');
    assert.equal(await admin.locator('#detail-sessions-rows tr[data-current="true"]').count(), 0, 'never current for an admin');
    const otherSid = await other.evaluate(async () => {
      const { sessions } = await (await fetch('/api/me/sessions')).json();
      return sessions.find((s) => s.current).id;
    });
    await admin.click(`#detail-sessions-rows tr[data-session-id="${otherSid}"] .end-session`);
    await other.waitForURL((url) => url.pathname === '/login');
    await admin.waitForSelector(`#detail-sessions-rows tr[data-session-id="${otherSid}"]`, { state: 'detached' });
    assertNoProblems(admin);
  });

  await step('password: the rules show as it is typed, and afterwards every session ends', async () => {
    // Another browser of the same user, open on the chat: the change must end it too.
    const elsewhere = await newPage(env);
    await login(elsewhere, LIN, '/chat');
    await elsewhere.waitForURL((url) => url.pathname === '/chat');
    await waitLive(elsewhere, '#conn-status');
    await lin.goto('/profile');
    await lin.waitForSelector('#whoami:not(:empty)');
    await lin.fill('#current-password', LIN.password);
    await lin.fill('#new-password', 'Password1');
    await lin.waitForSelector('#rule-common[data-ok="false"]');
    await lin.waitForSelector('#rule-length[data-ok="true"]');
    await lin.fill('#new-password', 'short');
    await lin.waitForSelector('#rule-length[data-ok="false"]');
    await lin.fill('#new-password', LIN.next);
    await lin.fill('#confirm-password', LIN.next);
    await lin.waitForSelector('#rule-common[data-ok="true"]');
    await lin.waitForSelector('#rule-match[data-ok="true"]');
    await lin.locator('#password-card').screenshot({ path: join(env.shots, 'profile-password.png') });
    await lin.click('#change-password');
    await lin.waitForURL((url) => url.pathname === '/login');
    await lin.waitForSelector('#login-notice:has-text("Your password was changed")');
    await elsewhere.waitForURL((url) => url.pathname === '/login');
    await login(lin, { email: LIN.email, password: LIN.password });
    await lin.waitForSelector('#login-error:has-text("Invalid email or password")');
    await login(lin, { email: LIN.email, password: LIN.next });
    await lin.waitForURL((url) => url.pathname === '/profile');
    assertNoProblems(lin);
  });
});
