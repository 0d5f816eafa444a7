// The console's Offline messages tab (the inbox): a visitor leaves two messages while no one
// is online; an agent sees the open count on the tab, reads both (name, mailto: link, page,
// time, text) newest first, marks one handled (the item then says by whom and when), and the
// Open / Handled / All filters show each where it belongs. Hostile name, e-mail and message
// show as text and never run; "Load more" pages through with the cursor.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { api, consoleLogin, hasEvent, launch, newPage, server, shot, sleep } from './lib.mjs';

const missing = [];
for (const e of ['agent.login', 'offline_message.submit', 'offline_messages.list', 'offline_messages.update']) {
  if (!(await hasEvent(e))) missing.push(e);
}
const skip = missing.length ? `the server has no ${missing.join(', ')} yet` : false;

/** A REST call with an agent's token; the envelope's `data`, or a thrown error. */
async function rest(method, path, token, body) {
  const headers = { Authorization: 'Bearer ' + token };
  if (body) headers['Content-Type'] = 'application/json';
  const res = await fetch(server.url() + '/api/v1/' + path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const json = await res.json();
  if (res.status !== 200 || json.code !== 0) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json.data;
}

/** Every stored offline message of a filter (`'true'`, `'false'` or null for all), newest first. */
async function listAll(token, handled) {
  const all = [];
  let cursor = null;
  for (let page = 0; page < 50; page++) {
    const p = new URLSearchParams({ limit: '100' });
    if (handled !== null) p.set('handled', handled);
    if (cursor) p.set('cursor', cursor);
    const data = await rest('GET', 'offline-messages?' + p, token);
    all.push(...data.offlineMessages);
    cursor = data.nextCursor;
    if (!cursor) return all;
  }
  throw new Error('more than 50 pages of offline messages');
}

/** Sends offline messages as one new visitor; waits until the write-behind stored them all. */
async function leaveMessages(token, messages) {
  const entered = await api('visitor.enter_site', { siteId: server.siteId(), url: 'https://shop.example/' });
  assert.equal(entered.body.code, 0, JSON.stringify(entered.body));
  const ids = [];
  for (const m of messages) {
    const sent = await api('offline_message.submit', m, entered.body.data.visitorToken);
    assert.equal(sent.body.code, 0, JSON.stringify(sent.body));
    ids.push(sent.body.data.id);
  }
  for (let i = 0; i < 60; i++) {
    const stored = new Set((await listAll(token, null)).map((m) => m.id));
    if (ids.every((id) => stored.has(id))) return ids;
    await sleep(250);
  }
  throw new Error('the offline messages were not stored within 15 s');
}

/** Polls until fn() is truthy (bounded); returns its value. */
async function until(fn, what, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await sleep(100);
  }
}

/** The ids the inbox shows, top to bottom. */
const shownIds = (page) => page.locator('#offline-list .offline-item').evaluateAll((els) => els.map((e) => e.dataset.offlineId));

async function pick(page, filter) {
  await page.click(`#offline-filter button[data-filter=${filter}]`);
  await page.locator(`#offline-filter button[data-filter=${filter}][aria-pressed=true]`).waitFor();
  await page.locator('#offline-list:not([aria-busy])').waitFor({ state: 'attached' });
}

let browser;
let admin;
before(async () => {
  browser = await launch();
  if (skip) return;
  admin = (await api('agent.login', server.admin())).body.data.accessToken;
  // Earlier tests left messages open; handle them so the Open filter holds only this file's.
  for (const m of await listAll(admin, 'false')) await rest('PATCH', 'offline-messages/' + m.id, admin, { handled: true });
});
after(async () => {
  await browser?.close();
});

test('the inbox lists offline messages, marks one handled and filters by state', { skip, timeout: 90000 }, async () => {
  const first = {
    name: 'Maria Lopez',
    email: 'maria.lopez@mail.example',
    message: 'Do you ship the Trail Jacket to Norway?\nI would need it before the 12th.',
    url: 'https://shop.example/products/trail-jacket?color=marigold',
  };
  const second = {
    name: "Liam O'Connor",
    email: "liam.o'connor@mail.example",
    message: 'Is the marigold jacket in size L coming back in stock? Please let me know by e-mail.',
    url: 'https://shop.example/products/trail-jacket?size=L',
  };
  const [firstId, secondId] = await leaveMessages(admin, [first, second]);

  const desk = await newPage(browser);
  await consoleLogin(desk, server.second());
  const me = await desk.evaluate(() => JSON.parse(sessionStorage.getItem('fd.auth')).agent);
  // The open count is on the tab before it is opened.
  const pill = desk.locator('.tab[data-view=offline] #offline-count');
  await until(async () => (await pill.isVisible()) && (await pill.textContent()) === '2', 'the open count 2 on the tab');

  await desk.click('.tab[data-view=offline]');
  await desk.locator('#view-offline').waitFor({ state: 'visible' });
  assert.equal(await desk.locator('#offline-filter button[aria-pressed=true]').textContent(), 'Open', 'Open is the first filter');
  await until(async () => (await shownIds(desk)).length === 2, 'two open messages');
  assert.deepEqual(await shownIds(desk), [secondId, firstId], 'newest first');
  assert.equal(await desk.locator('#offline-summary').textContent(), '2 messages');
  assert.ok(await desk.locator('#offline-empty').isHidden());
  assert.ok(await desk.locator('#offline-more').isHidden(), 'one page: no Load more');

  for (const [id, m] of [[firstId, first], [secondId, second]]) {
    const item = desk.locator(`.offline-item[data-offline-id="${id}"]`);
    assert.equal(await item.locator('.offline-from .strong').textContent(), m.name);
    const mail = item.locator('a.offline-email');
    assert.equal(await mail.textContent(), m.email);
    const [local, domain] = m.email.split('@');
    assert.equal(await mail.getAttribute('href'), `mailto:${encodeURIComponent(local)}@${domain}`);
    assert.equal(await item.locator('.offline-url').textContent(), m.url, 'the page as text');
    assert.equal(await item.locator('.offline-url').evaluate((el) => el.closest('a')), null, 'the page is no link');
    assert.equal(await item.locator('.offline-body').textContent(), m.message);
    assert.match(await item.locator('time').textContent(), /\d{4}/, 'a date');
    assert.equal(await item.locator('.state').textContent(), 'open');
    await item.locator('button', { hasText: 'Mark handled' }).waitFor();
  }

  // Mark the older one handled: it stays in place and says who and when.
  const older = desk.locator(`.offline-item[data-offline-id="${firstId}"]`);
  await older.locator('button', { hasText: 'Mark handled' }).click();
  await older.locator('.state', { hasText: 'handled' }).waitFor();
  assert.match(await older.locator('.offline-handled').textContent(), /^by you · .*\d/);
  assert.equal(await older.locator('button', { hasText: 'Mark handled' }).count(), 0);
  await older.locator('button', { hasText: 'Reopen' }).waitFor();
  await until(async () => (await pill.textContent()) === '1', 'the open count 1');
  const stored = (await rest('GET', 'offline-messages/' + firstId, admin)).offlineMessage;
  assert.equal(stored.handled, true);
  assert.equal(String(stored.handledBy), String(me.id), 'handled by the agent who clicked');
  assert.ok(stored.handledAt > 0);
  await desk.mouse.move(1000, 700); // no hover highlight in the picture
  await shot(desk, 'console-offline');

  // Each filter from the server again.
  await pick(desk, 'open');
  await until(async () => (await shownIds(desk)).join() === secondId, 'Open: only the newer one');
  assert.equal(await desk.locator('#offline-list .offline-item').count(), 1);
  await pick(desk, 'handled');
  await until(async () => (await shownIds(desk)).includes(firstId), 'Handled: the older one');
  assert.ok(!(await shownIds(desk)).includes(secondId), 'Handled: not the open one');
  assert.match(await desk.locator(`.offline-item[data-offline-id="${firstId}"] .offline-handled`).textContent(), /^by you · /);
  await pick(desk, 'all');
  await until(async () => {
    const ids = await shownIds(desk);
    return ids.indexOf(secondId) === 0 && ids.indexOf(firstId) === 1;
  }, 'All: both, newest first');

  // Reopen from Handled puts it back on the Open list; handle it again.
  await pick(desk, 'handled');
  await desk.locator(`.offline-item[data-offline-id="${firstId}"] button`, { hasText: 'Reopen' }).click();
  await desk.locator(`.offline-item[data-offline-id="${firstId}"] .state`, { hasText: 'open' }).waitFor();
  await until(async () => (await pill.textContent()) === '2', 'the open count 2 after reopening');
  await desk.locator(`.offline-item[data-offline-id="${firstId}"] button`, { hasText: 'Mark handled' }).click();
  await desk.locator(`.offline-item[data-offline-id="${firstId}"] .state`, { hasText: 'handled' }).waitFor();

  // Nothing open: the empty state, and no count on the tab.
  await pick(desk, 'open');
  await desk.locator(`.offline-item[data-offline-id="${secondId}"] button`, { hasText: 'Mark handled' }).click();
  await desk.locator(`.offline-item[data-offline-id="${secondId}"] .state`, { hasText: 'handled' }).waitFor();
  await until(async () => await pill.isHidden(), 'no count on the tab');
  await desk.click('#offline-refresh');
  await desk.locator('#offline-empty', { hasText: 'No open messages' }).waitFor();
  assert.equal(await desk.locator('#offline-list .offline-item').count(), 0);

  assert.deepEqual(desk.dialogs, []);
  assert.deepEqual(desk.errors, []);
  await desk.context().close();
});

test('hostile name, e-mail and message show as text in the inbox and never run', { skip, timeout: 60000 }, async () => {
  const hostile = {
    name: 'Bo <img src=x onerror=window.__xss=1>',
    email: "bo'+x?cc=evil&body=x%0Ay@mail.example",
    message: 'Is the <b>L</b> back? <img src=x onerror=window.__xss=1><script>window.__xss=2</script><svg onload=window.__xss=3>',
    url: "https://shop.example/p?q=<img src=x onerror=window.__xss=4>&x='\"",
  };
  const [id] = await leaveMessages(admin, [hostile]);
  const desk = await newPage(browser);
  await consoleLogin(desk, server.second());
  await desk.click('.tab[data-view=offline]');
  const item = desk.locator(`.offline-item[data-offline-id="${id}"]`);
  await item.waitFor();
  assert.equal(await item.locator('.offline-from .strong').textContent(), hostile.name);
  assert.equal(await item.locator('.offline-body').textContent(), hostile.message);
  // The server keeps the page address as the visitor sent it, or normalised by the URL parser.
  const url = (await rest('GET', 'offline-messages/' + id, admin)).offlineMessage.pageUrl;
  assert.equal(await item.locator('.offline-url').textContent(), url);
  // The address is a link whose parts are percent-encoded: no extra mail header, no markup.
  const mail = item.locator('a.offline-email');
  assert.equal(await mail.textContent(), hostile.email);
  assert.equal(await mail.getAttribute('href'), "mailto:bo'%2Bx%3Fcc%3Devil%26body%3Dx%250Ay@mail.example");
  assert.equal(await desk.locator('#view-offline img, #view-offline script, #view-offline svg, #view-offline b').count(), 0);

  await item.locator('button', { hasText: 'Mark handled' }).click();
  await item.locator('.state', { hasText: 'handled' }).waitFor();
  await sleep(300);
  const found = await desk.evaluate(() => {
    const bad = [];
    for (const el of document.querySelectorAll('*')) {
      for (const a of el.attributes) {
        if (a.name.startsWith('on') || /^\s*javascript:/i.test(a.value)) bad.push(`${el.tagName} ${a.name}=${a.value}`);
      }
    }
    return { bad, flag: window.__xss === undefined ? null : String(window.__xss) };
  });
  assert.equal(found.flag, null, 'a payload ran');
  assert.deepEqual(found.bad, []);
  assert.deepEqual(desk.dialogs, []);
  assert.deepEqual(desk.errors, []);
  await desk.context().close();
});

test('Load more pages through the handled messages with the cursor', { skip, timeout: 90000 }, async () => {
  const batch = Array.from({ length: 21 }, (_, i) => ({
    name: `Paging ${i}`,
    email: `paging${i}@mail.example`,
    message: `Message ${i} for paging.`,
  }));
  const ids = await leaveMessages(admin, batch);
  for (const id of ids) await rest('PATCH', 'offline-messages/' + id, admin, { handled: true });
  const expected = (await listAll(admin, 'true')).map((m) => m.id);
  assert.ok(expected.length > 20);

  const desk = await newPage(browser);
  await consoleLogin(desk, server.second());
  await desk.click('.tab[data-view=offline]');
  await pick(desk, 'handled');
  await until(async () => (await shownIds(desk)).length === 20, 'the first page of 20');
  assert.equal(await desk.locator('#offline-summary').textContent(), '20+ messages');
  for (let i = 0; i < 10 && (await desk.locator('#offline-more').isVisible()); i++) {
    const before = (await shownIds(desk)).length;
    await desk.click('#offline-more');
    await until(async () => (await shownIds(desk)).length > before, 'the next page');
  }
  assert.ok(await desk.locator('#offline-more').isHidden(), 'the last page hides Load more');
  assert.deepEqual(await shownIds(desk), expected, 'every handled message once, newest first');
  // Handled by the admin: named when this agent's console knows the name, else "an agent".
  assert.match(await desk.locator(`.offline-item[data-offline-id="${ids[0]}"] .offline-handled`).textContent(), /^by (Admin|an agent) · /);
  assert.deepEqual(desk.errors, []);
  await desk.context().close();
});
