// The paid-message limit as a user meets it in the browser: on a server allowing one paid
// request a minute, the second image and then a chat message are refused, and each page says how
// long to wait, counting down, with its button disabled until then.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { assertNoProblems, login, newPage, rest, useBrowser, waitLive } from './harness.js';

const env = useBrowser({ WS_RATE_LIMIT_PER_MINUTE: '1' });
const KIM = { email: 'kim@example.com', password: 'silver-harbour-kettle-52' };

test('a rate-limited image and chat message say how long to wait and count down', { timeout: 120_000 }, async () => {
  await rest(env, 'POST', '/api/register', {
    body: { email: KIM.email, password: KIM.password, first_name: 'Kim', last_name: 'Lee' },
  });
  const page = await newPage(env);
  await login(page, KIM, '/images');
  await page.waitForURL((url) => url.pathname === '/images');
  await waitLive(page, '#conn-status');

  await page.fill('#prompt', 'A paper boat on a pond');
  await page.selectOption('#size', '256x256');
  await page.click('#generate');
  await page.waitForSelector('#gallery li[data-image-id] img');
  await page.fill('#prompt', 'A second paper boat');
  await page.click('#generate');
  const notice = page.locator('#generate-notice');
  await notice.filter({ hasText: /You can generate again in \d+ s\./ }).waitFor();
  assert.equal(await notice.getAttribute('data-code'), 'rate_limited');
  assert.equal(await page.isDisabled('#generate'), true, 'Generate waits for the limit');
  const first = Number((await notice.textContent()).match(/in (\d+) s/)[1]);
  assert.ok(first > 1 && first <= 60, `a wait of up to a minute: ${first} s`);
  await page.waitForFunction(
    (before) => Number(document.getElementById('generate-notice').textContent.match(/in (\d+) s/)?.[1]) < before,
    first,
    { timeout: 5_000 },
  );

  await page.goto('/chat');
  await waitLive(page, '#conn-status');
  await page.click('#new-chat');
  await page.fill('#message-input', 'Hello?');
  await page.click('#send');
  const chatNotice = page.locator('#chat-notice');
  await chatNotice.filter({ hasText: /You can send again in \d+ s\./ }).waitFor();
  assert.equal(await page.isDisabled('#send'), true, 'Send waits for the limit');
  assertNoProblems(page);
});
