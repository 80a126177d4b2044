// The admin page of a running `outbox serve`, driven through headless Chromium.
// Started by scripts/browser-test.sh, which passes the server and the two message ids in
// the environment. Any failed check throws: the process exits non-zero.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run scripts/browser-test.sh)`);
  return value;
};
const base = env('OUTBOX_URL');
const token = env('OUTBOX_TOKEN');
const retryId = env('RETRY_ID');
const removeId = env('REMOVE_ID');
const serverPid = Number(env('SERVER_PID'));
const shots = env('SCREENSHOT_DIR');
const unsubscribeUrl = env('UNSUBSCRIBE_URL');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function serverAlive() {
  try {
    process.kill(serverPid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitForServer() {
  for (let i = 0; i < 300; i++) {
    if (!serverAlive()) throw new Error('outbox serve exited before it answered');
    try {
      const response = await fetch(`${base}/login`);
      if (response.status === 200) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`outbox serve did not answer on ${base} within 30 s`);
}

/** Reloads `url` until `check(page)` is true (the engine works in the background). */
async function until(page, url, what, check) {
  for (let i = 0; i < 120; i++) {
    await page.goto(url);
    if (await check(page)) return;
    await sleep(250);
  }
  throw new Error(`timed out waiting for: ${what}`);
}

const row = (page, id) => page.locator(`#queue tr[data-id="${id}"]`);

await waitForServer();
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-dev-shm-usage',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
  ],
});

try {
  const context = await browser.newContext({ viewport: { width: 1360, height: 800 } });
  const page = await context.newPage();
  const scriptErrors = [];
  page.on('pageerror', (error) => scriptErrors.push(String(error)));

  // No session: the queue sends us to the login form.
  await page.goto(`${base}/`);
  assert.equal(new URL(page.url()).pathname, '/login');

  // A wrong token is refused with 401 and no cookie.
  await page.fill('input[name=token]', 'not-the-token');
  const [refused] = await Promise.all([
    page.waitForNavigation(),
    page.click('button[type=submit]'),
  ]);
  assert.equal(refused.status(), 401);
  await page.getByText('That token is not accepted.').waitFor();
  assert.equal((await context.cookies()).length, 0);

  // The right token: a session cookie that is HttpOnly and SameSite=Strict.
  await page.fill('input[name=token]', token);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  assert.equal(new URL(page.url()).pathname, '/');
  const [cookie] = await context.cookies();
  assert.equal(cookie.name, 'outbox_session');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Strict');
  assert.notEqual(cookie.value, token);

  // Both messages are listed, newest first; the subject's markup shows as text.
  await row(page, retryId).waitFor();
  await row(page, removeId).waitFor();
  const ids = await page.locator('#queue tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.id));
  assert.deepEqual(ids, [removeId, retryId]);
  assert.equal(
    await row(page, retryId).locator('td.subject').innerText(),
    'Invoice <b>#42</b> & friends',
  );
  assert.equal(await page.locator('#queue b').count(), 0, 'no markup from a subject');

  // The delivery attempt to the closed relay port defers the recipient.
  const messageUrl = `${base}/messages/${retryId}`;
  await until(page, messageUrl, 'the first attempt to be deferred', async (p) =>
    (await p.locator('#recipients td.state').innerText()) === 'deferred');
  assert.match(await page.locator('#attempts').innerText(), /ann@example\.org/);

  // The HTML part is previewed in a frame that may run nothing.
  const frame = page.locator('iframe.preview');
  assert.equal(await frame.getAttribute('sandbox'), '');
  const preview = page.frameLocator('iframe.preview');
  assert.equal(await preview.locator('h1').innerText(), 'Invoice 42');
  assert.match(await page.locator('#raw').innerText(), /Subject: /);
  // Chromium leaves frames outside the viewport unpainted in a full-page shot: make the
  // viewport as tall as the page.
  const height = await page.evaluate(() => document.documentElement.scrollHeight);
  await page.setViewportSize({ width: 1360, height });
  await page.screenshot({ path: join(shots, 'admin-message.png') });
  await page.setViewportSize({ width: 1360, height: 800 });

  // Retry from the queue: the recipient is due again and the engine tries once more.
  await page.goto(`${base}/`);
  await Promise.all([
    page.waitForNavigation(),
    row(page, retryId).locator('button[data-action=retry]').click(),
  ]);
  assert.match(await page.locator('p.notice').innerText(), /^Retried 1 recipient of 1 message\./);
  await until(page, messageUrl, 'a second delivery attempt after the retry', async (p) =>
    (await p.locator('#attempts tbody tr').count()) >= 2);

  // Remove the other one from the queue view.
  await page.goto(`${base}/`);
  await Promise.all([
    page.waitForNavigation(),
    row(page, removeId).locator('button[data-action=remove]').click(),
  ]);
  assert.match(await page.locator('p.notice').innerText(), /^Removed 1 recipient of 1 message\./);
  assert.equal(await row(page, removeId).locator('td.status').innerText(), 'error');
  assert.equal(await row(page, retryId).locator('td.status').innerText(), 'queued');
  assert.equal(await page.locator('a.card[data-status=error] b').innerText(), '1');
  assert.equal(await page.locator('a.card[data-status=queued] b').innerText(), '1');

  await page.goto(`${base}/messages/${removeId}`);
  assert.equal(await page.locator('#recipients td.state').innerText(), 'removed');

  // Filters: the error status shows only the removed message.
  await page.goto(`${base}/`);
  await page.selectOption('select[name=status]', 'error');
  await Promise.all([page.waitForNavigation(), page.click('form.filters button[type=submit]')]);
  await row(page, removeId).waitFor();
  assert.equal(await row(page, retryId).count(), 0);

  await page.goto(`${base}/`);
  await page.screenshot({ path: join(shots, 'admin.png'), fullPage: true });
  assert.deepEqual(scriptErrors, []);

  // One-click unsubscribe, as the recipient sees it: the link's page asks first and
  // changes nothing by itself (link scanners follow GETs)...
  const visitor = await browser.newContext();
  const reader = await visitor.newPage();
  reader.on('pageerror', (error) => scriptErrors.push(String(error)));
  const shown = await reader.goto(unsubscribeUrl);
  assert.equal(shown.status(), 200);
  assert.equal(await reader.locator('h1').innerText(), 'Unsubscribe?');
  assert.match(await reader.locator('main p').innerText(), /weekly.*carol@example\.org/);
  await page.goto(`${base}/suppressions`);
  assert.equal(await page.locator('tr[data-address="carol@example.org"]').count(), 0);
  // ...and the button unsubscribes.
  const [confirmed] = await Promise.all([
    reader.waitForNavigation(),
    reader.click('button[type=submit]'),
  ]);
  assert.equal(confirmed.status(), 200);
  assert.equal(await reader.locator('h1').innerText(), 'You are unsubscribed');
  await reader.screenshot({ path: join(shots, 'unsubscribed.png') });
  await reader.goto(unsubscribeUrl);
  assert.equal(await reader.locator('h1').innerText(), 'You are unsubscribed');
  // A changed link is refused and changes nothing.
  const last = unsubscribeUrl.at(-1) === 'A' ? 'B' : 'A';
  const tampered = await reader.goto(`${unsubscribeUrl.slice(0, -1)}${last}`);
  assert.equal(tampered.status(), 400);
  await visitor.close();
  // The admin page lists the address as suppressed for the list, by the unsubscribe.
  await page.goto(`${base}/suppressions`);
  const entry = page.locator('tr[data-address="carol@example.org"] td');
  assert.equal(await entry.nth(1).innerText(), 'weekly');
  assert.equal(await entry.nth(2).innerText(), 'unsubscribed');

  // Logging out ends the session.
  await Promise.all([page.waitForNavigation(), page.click('header form button')]);
  assert.equal(new URL(page.url()).pathname, '/login');
  await page.goto(`${base}/`);
  assert.equal(new URL(page.url()).pathname, '/login');

  console.log('browser: 1 passed, 0 failed');
} finally {
  await browser.close();
}
