// Every page checked by axe-core (WCAG 2 A and AA, and best practices), signed out and signed in
// as a user and as an admin, in the dark and the light colour scheme: no serious or critical
// violation. axe is injected as a script, which
// the pages' CSP would block, so these contexts (and only these) bypass the CSP; the other test
// files check that nothing on the pages themselves violates it.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ADMIN, axeViolations, login, newPage, rest, useBrowser } from './harness.js';

const env = useBrowser();
const USER = { email: 'mo@example.com', password: 'quartz-lagoon-pepper-64' };

/** Opens `path`, waits for `ready`, runs axe; returns the violations of at least `serious` impact. */
async function check(page, path, ready, report) {
  await page.goto(path);
  await page.waitForSelector(ready);
  // Let the page's scripts finish what they draw on load (lists, charts).
  await page.waitForLoadState('networkidle');
  const violations = await axeViolations(page);
  report.push(...violations.map((v) => `${path} [${v.impact}] ${v.id}: ${v.help} (${v.targets.join(', ')})`));
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

for (const colorScheme of ['dark', 'light']) {
  test(`every page passes axe-core without serious or critical violations (${colorScheme} scheme)`, { timeout: 180_000 }, async () => {
    const user = { ...USER, email: `${colorScheme}-${USER.email}` };
    await rest(env, 'POST', '/api/register', { body: { ...user, first_name: 'Mo', last_name: 'Farah' } });
    const report = [];
    const failures = [];
    const options = { bypassCSP: true, colorScheme };

    const visitor = await newPage(env, undefined, options);
    for (const [path, ready] of [
      ['/login', '#login-form'],
      ['/register', '#register-form'],
      ['/forgot-password', '#forgot-form'],
      ['/reset-password?token=not-a-real-token', '#reset-form'],
    ]) {
      failures.push(...(await check(visitor, path, ready, report)));
    }

    const signedIn = await newPage(env, undefined, options);
    await login(signedIn, user);
    await signedIn.waitForURL((url) => url.pathname === '/profile');
    for (const [path, ready] of [
      ['/profile', '#sessions-rows tr'],
      ['/chat', '#conn-status[data-state="open"]'],
      ['/images', '#conn-status[data-state="open"]'],
    ]) {
      failures.push(...(await check(signedIn, path, ready, report)));
    }

    const admin = await newPage(env, undefined, options);
    await login(admin, ADMIN, '/admin');
    await admin.waitForURL((url) => url.pathname === '/admin');
    failures.push(...(await check(admin, '/admin', '#overview-chart canvas', report)));

    console.log(`axe-core (${colorScheme}) found ${report.length} violation(s) in all:\n${report.join('\n') || '(none)'}`);
    assert.deepEqual(
      failures.map((v) => `${v.id}: ${v.help} (${v.targets.join(', ')})`),
      [],
      `no serious or critical accessibility violation on any page in the ${colorScheme} scheme`,
    );
  });
}
