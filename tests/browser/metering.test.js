// Metered generations in the browser (docs/API.md §8): the chat page's model picker with prices,
// a reply's cost and tokens under it, a Stop button that stops a slow reply (and its upstream
// request), the usage table's one line per generation, the image page's price per size from the
// catalogue, and the admin's view of a user's held credits and spend today. The slow model is a
// small OpenAI-compatible server in this file that streams a word every 100 ms.

import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';

import { ADMIN, assertNoProblems, login, newPage, rest, useBrowser, waitLive } from './harness.js';

const WORDS = 100;
const upstream = { calls: 0, wentAway: 0 };
const slow = createServer((request, response) => {
  request.resume();
  request.on('end', () => {
    upstream.calls += 1;
    response.writeHead(200, { 'Content-Type': 'text/event-stream' });
    let sent = 0;
    const timer = setInterval(() => {
      if (sent === WORDS) {
        clearInterval(timer);
        response.end('data: [DONE]\n\n');
        return;
      }
      response.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: ` word${sent}` } }] })}\n\n`);
      sent += 1;
    }, 100);
    response.on('close', () => {
      clearInterval(timer);
      if (sent < WORDS) upstream.wentAway += 1;
    });
  });
});
await new Promise((resolve) => slow.listen(0, '127.0.0.1', resolve));
after(() => slow.close());

const dir = mkdtempSync(join(tmpdir(), 'switchboard-models-'));
const models = join(dir, 'models.toml');
writeFileSync(
  models,
  `[[chat]]
id = "quick"
name = "Quick echo"
message_price = 2
default = true

[[chat]]
id = "slow"
name = "Slow thinker"
url = "http://127.0.0.1:${slow.address().port}"
input_price = 1000000
output_price = 1000000
max_output_tokens = 400

[[image]]
id = "sketch"
name = "Sketch"
prices = { "256x256" = 3, "512x512" = 7 }
default = true
`,
);

const env = useBrowser({ SWITCHBOARD_MODELS: models, STARTING_CREDITS: '1000' });
const MIA = { email: 'mia@example.com', password: 'copper-meadow-lantern-71' };

test('models, prices, a reply\'s cost, Stop, and one usage line per generation', { timeout: 180_000 }, async (t) => {
  await rest(env, 'POST', '/api/register', {
    body: { email: MIA.email, password: MIA.password, first_name: 'Mia', last_name: 'Ito' },
  });
  const page = await newPage(env);
  await login(page, MIA, '/chat');
  await page.waitForURL((url) => url.pathname === '/chat');
  await waitLive(page, '#conn-status');

  await t.test('the picker lists the models with their prices', async () => {
    await page.waitForSelector('#model-picker option[value="slow"]', { state: 'attached' });
    const options = await page.$$eval('#model-picker option', (all) => all.map((o) => [o.value, o.textContent]));
    assert.deepEqual(options, [['quick', 'Quick echo'], ['slow', 'Slow thinker']]);
    await page.locator('#model-price', { hasText: /^2 credits per message$/ }).waitFor();
    await page.selectOption('#model-picker', 'slow');
    await page.locator('#model-price', { hasText: '1,000,000 / 1,000,000 credits per 1M tokens in / out' }).waitFor();
    await page.selectOption('#model-picker', 'quick');
  });

  await t.test('a reply shows what it cost and its tokens, marked estimated', async () => {
    await page.fill('#message-input', 'Hello there, echo');
    await page.click('#send');
    const reply = page.locator('.bubble.assistant[data-status="complete"]');
    const cost = page.locator(`[data-cost-for="${await reply.getAttribute('data-message-id')}"]`);
    await cost.waitFor();
    assert.match(await cost.textContent(), /^quick · 2 credits · \d+ in \/ \d+ out tokens \(estimated\)$/);
    await page.locator('#credits-left[data-value="998"]').waitFor();
  });

  await t.test('Stop ends a slow reply, its upstream request too, and bills what was written', async () => {
    await page.selectOption('#model-picker', 'slow');
    await page.fill('#message-input', 'Count slowly');
    await page.click('#send');
    await page.locator('#stop').waitFor({ state: 'visible' });
    await page.locator('.bubble.assistant.streaming', { hasText: 'word2' }).waitFor();
    await page.click('#stop');
    const stopped = page.locator('.bubble.assistant[data-status="stopped"]');
    await stopped.waitFor();
    const stoppedCost = page.locator(`[data-cost-for="${await stopped.getAttribute('data-message-id')}"]`);
    assert.match(await stoppedCost.textContent(), /^slow · \d+ credits · \d+ in \/ \d+ out tokens \(estimated\) · stopped$/);
    const text = await stopped.textContent();
    assert.ok(text.includes('word2') && !text.includes(`word${WORDS - 1}`), `the partial reply stays: ${text}`);
    await page.locator('#stop').waitFor({ state: 'hidden' });
    for (let i = 0; i < 50 && upstream.wentAway === 0; i += 1) await new Promise((r) => setTimeout(r, 100));
    assert.equal(upstream.wentAway, 1, 'the upstream request was dropped');
    assert.equal(upstream.calls, 1);
  });

  await t.test('the usage table shows each generation once, with its model and tokens', async () => {
    await page.goto('/profile');
    await page.waitForSelector('#usage-rows tr[data-kind="settle"]');
    const rows = await page.$$eval('#usage-rows tr', (all) => all.map((r) => [r.dataset.kind, [...r.cells].map((c) => c.textContent)]));
    assert.equal(rows.length, 2, `two generations, two lines: ${JSON.stringify(rows)}`);
    assert.deepEqual(rows.map(([kind]) => kind), ['settle', 'settle']);
    assert.equal(rows[0][1][1], 'Chat · slow');
    assert.match(rows[0][1][4], /^\d+ in \/ \d+ out tokens \(estimated\)$/);
    assert.deepEqual([rows[1][1][1], rows[1][1][2]], ['Chat · quick', '-2']);
  });

  await t.test('the image page prices each size from the catalogue', async () => {
    await page.goto('/images');
    await waitLive(page, '#conn-status');
    const sizes = await page.$$eval('#size option', (all) => all.map((o) => o.value));
    assert.deepEqual(sizes, ['256x256', '512x512']);
    await page.selectOption('#size', '256x256');
    await page.locator('#price', { hasText: /^3 credits$/ }).waitFor();
    await page.selectOption('#size', '512x512');
    await page.locator('#price', { hasText: /^7 credits$/ }).waitFor();
  });

  await t.test('the admin sees the user\'s held credits and spend today', async () => {
    const admin = await newPage(env);
    await login(admin, ADMIN, '/admin');
    await admin.waitForURL((url) => url.pathname === '/admin');
    await admin.fill('#user-search', 'mia@');
    await admin.click(`#users-rows tr[data-email="${MIA.email}"] .manage-user`);
    await admin.locator('#detail-held', { hasText: /^0$/ }).waitFor();
    const spent = Number(await admin.textContent('#detail-spent'));
    const credits = Number((await admin.textContent('#detail-credits')).replace(/,/g, ''));
    assert.ok(spent > 2, `spent today counts both replies: ${spent}`);
    assert.equal(credits, 1000 - spent, 'what was spent today is what left the balance');
    assertNoProblems(admin);
  });
  assertNoProblems(page);
});
