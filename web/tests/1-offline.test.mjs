// The widget on a shop page of another origin while no agent is online: it loads from one
// script tag, survives the shop's CSS, shows the offline form, validates it and sends it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { api, launch, newPage, server, shot, startShop, widget } from './lib.mjs';

let browser;
let shop;
before(async () => {
  browser = await launch();
  shop = await startShop({ color: '#0a7cff' });
});
after(async () => {
  await browser?.close();
  await shop?.close();
});

test('the widget is served minified, cacheable and usable from any origin', async () => {
  const res = await fetch(server.url() + '/widget.js');
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^application\/javascript/);
  assert.equal(res.headers.get('cache-control'), 'public, max-age=300');
  assert.equal(res.headers.get('access-control-allow-origin'), '*');
  const body = await res.text();
  assert.ok(body.startsWith('/*! Frontdesk chat widget'), 'the committed minified build');
  const pre = await fetch(server.url() + '/api/v1/chat.request', {
    method: 'OPTIONS',
    headers: {
      Origin: 'http://shop.example',
      'Access-Control-Request-Method': 'POST',
      'Access-Control-Request-Headers': 'content-type,authorization,x-visitor-data-offset,x-agent-data-offset',
    },
  });
  assert.equal(pre.status, 200);
  assert.equal(pre.headers.get('access-control-allow-origin'), '*');
  assert.match(pre.headers.get('access-control-allow-headers'), /x-visitor-data-offset/);
});

test('availability and submit answer as specified', async () => {
  const avail = await api('offline_message.availability', { siteId: server.siteId() });
  assert.equal(avail.status, 200);
  assert.equal(avail.body.data.agentsOnline, false);
  const unknown = await api('offline_message.availability', { siteId: '12345' });
  assert.equal(unknown.status, 404);
  const enter = await api('visitor.enter_site', { siteId: server.siteId(), url: 'http://shop.example/' });
  assert.equal(enter.status, 200, JSON.stringify(enter.body));
  const token = enter.body.data.visitorToken;
  const bad = await api('offline_message.submit', { name: 'Ann', email: 'not-an-address', message: 'Hi' }, token);
  assert.equal(bad.status, 400);
  assert.match(bad.body.error.message, /^data\.email/);
  const long = await api('offline_message.submit', { name: 'Ann', email: 'ann@shop.example', message: 'x'.repeat(5001) }, token);
  assert.equal(long.status, 400);
  assert.match(long.body.error.message, /^data\.message/);
  const anon = await api('offline_message.submit', { name: 'Ann', email: 'ann@shop.example', message: 'Hi' });
  assert.equal(anon.status, 401);
  const ok = await api('offline_message.submit', { name: 'Ann', email: 'ann@shop.example', message: 'Do you ship to Norway?' }, token);
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.match(ok.body.data.id, /^\d+$/);
});

test('with no agent online the widget offers the offline form and sends it', async () => {
  const page = await newPage(browser);
  await page.goto(shop.url);
  const w = widget(page);
  await w.launcher.waitFor();
  // The shop's CSS paints every p red and every field yellow; inside the shadow root, not.
  assert.equal(await w.launcher.evaluate((el) => getComputedStyle(el).backgroundColor), 'rgb(10, 124, 255)');
  assert.equal(await w.launcher.getAttribute('aria-label'), 'Open chat');
  await shot(page, 'widget-closed');

  // The shop knows its signed-in customer: the form starts filled in.
  await page.evaluate(() => window.Frontdesk.setUser({ name: 'Ann Example', email: 'ann@shop.example' }));
  await w.launcher.click();
  await w.q('form[aria-label="Leave a message"]').waitFor();
  assert.equal(await w.launcher.getAttribute('aria-expanded'), 'true');
  assert.equal(await w.q('#fd-name').inputValue(), 'Ann Example');
  assert.equal(await w.q('#fd-email').inputValue(), 'ann@shop.example');
  const lead = w.q('.lead');
  assert.notEqual(await lead.evaluate((el) => getComputedStyle(el).color), 'rgb(187, 0, 0)');
  assert.notEqual(await w.q('#fd-name').evaluate((el) => getComputedStyle(el).backgroundColor), 'rgb(255, 255, 0)');
  // Focus moves into the panel.
  assert.equal(await page.evaluate(() => document.querySelector('[data-frontdesk]').shadowRoot.activeElement?.id), 'fd-name');

  await w.q('#fd-msg').fill('Do you ship to Norway? <b>bold?</b>');
  await shot(page, 'widget-offline');
  await w.q('form[aria-label="Leave a message"] button[type=submit]').click();
  await w.q('text=Thanks — your message is on its way.').waitFor();

  // Escape closes the panel and gives focus back to the launcher.
  await page.keyboard.press('Escape');
  await w.panel.waitFor({ state: 'hidden' });
  assert.equal(await page.evaluate(() => document.querySelector('[data-frontdesk]').shadowRoot.activeElement?.className), 'launcher');
  assert.deepEqual(page.dialogs, []);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('under 480 px the panel takes the whole screen', async () => {
  const page = await newPage(browser, { viewport: { width: 390, height: 760 }, isMobile: true, hasTouch: true });
  await page.goto(shop.url);
  const w = widget(page);
  await w.launcher.click();
  await w.q('form').first().waitFor();
  const box = await w.panel.boundingBox();
  assert.deepEqual([box.x, box.y, box.width, box.height], [0, 0, 390, 760]);
  await shot(page, 'widget-mobile');
  await page.context().close();
});
