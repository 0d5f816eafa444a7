// Shared by the browser tests: the server under test (started by scripts/browser-tests.sh,
// described by FRONTDESK_* variables), a shop page on another origin embedding the widget,
// Debian's Chromium through playwright-core, and small helpers.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { readFileSync, writeFileSync, mkdirSync, openSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the tests with scripts/browser-tests.sh`);
  return v;
}

export const server = {
  url: () => need('FDT_URL'),
  siteId: () => need('FDT_SITE_ID'),
  admin: () => ({ email: need('FRONTDESK_ADMIN_EMAIL'), password: need('FRONTDESK_ADMIN_PASSWORD') }),
  second: () => ({ email: need('FDT_AGENT2_EMAIL'), password: need('FDT_AGENT2_PASSWORD') }),
};

/** Calls an event over HTTP, as a widget or console would. */
export async function api(event, data, token, offsets) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = 'Bearer ' + token;
  if (offsets) {
    headers['X-Visitor-Data-Offset'] = String(offsets.v);
    headers['X-Agent-Data-Offset'] = String(offsets.a);
  }
  const res = await fetch(server.url() + '/api/v1/' + event, { method: 'POST', headers, body: JSON.stringify(data || {}) });
  return { status: res.status, body: await res.json() };
}

/** Whether the server has an event yet (the others are writing some right now). */
export async function hasEvent(event) {
  const { body } = await api(event, {});
  return !(body.error && body.error.kind === 'unknown_event');
}

/**
 * Stops the server (SIGKILL: a crash, nothing flushed) and starts it again on the same port
 * and data directory with the same settings; in memory mode all runtime state is gone.
 */
export async function restartServer() {
  await stopServer();
  await startServer();
}

/** Kills the server (SIGKILL, as a crash). */
export async function stopServer() {
  const pidFile = need('FDT_PID_FILE');
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 100; i++) {
    try {
      process.kill(pid, 0);
      await sleep(50);
    } catch (e) {
      break;
    }
  }
}

/** Starts the server again with the settings of the first start (FRONTDESK_* variables). */
export async function startServer() {
  const pidFile = need('FDT_PID_FILE');
  const log = openSync(need('FDT_LOG'), 'a');
  const child = spawn(need('FDT_BIN'), ['serve', '--log-format', 'json'], {
    env: process.env,
    stdio: ['ignore', log, log],
    detached: true,
  });
  child.unref();
  writeFileSync(pidFile, String(child.pid));
  for (let i = 0; i < 200; i++) {
    try {
      const res = await fetch(server.url() + '/healthz');
      if (res.ok) return;
    } catch (e) {
      /* not up yet */
    }
    await sleep(100);
  }
  throw new Error('the server did not come back after the restart');
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A shop on its own origin: a product page embedding the widget with one script tag, with
 * hostile CSS that must not reach inside the widget.
 */
export async function startShop(attrs = {}) {
  const extra = Object.entries(attrs).map(([k, v]) => ` data-${k}="${v}"`).join('');
  const page = `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Acme Outdoor — Trail Jacket</title>
<style>
  body{margin:0;font:16px/1.5 Georgia,serif;color:#222;background:#faf7f2}
  header{padding:18px 40px;background:#2f3e2c;color:#fff;font-size:22px;letter-spacing:.05em}
  main{display:flex;gap:40px;padding:40px;max-width:1000px}
  .photo{width:380px;height:380px;border-radius:12px;background:linear-gradient(135deg,#7d9b76,#2f3e2c)}
  h1{margin:0 0 8px} .price{font-size:24px;color:#8a4b08}
  .buy{margin-top:20px;padding:12px 28px;background:#8a4b08;color:#fff;border:0;border-radius:6px;font-size:16px}
  /* Hostile rules a shop's theme might carry: they must not change the widget. */
  div{border-radius:0 !important} p{color:#b00 !important;font-family:"Comic Sans MS",cursive !important}
  textarea,input{background:#ff0 !important}
</style></head><body>
<header>ACME OUTDOOR</header>
<main><div class="photo" role="img" aria-label="Trail jacket"></div>
<section><h1>Trail Jacket</h1><p class="price">€149</p>
<p>Waterproof, breathable and light: the jacket for every season on the trail.</p>
<button class="buy" type="button">Add to cart</button>
<p><a href="/shipping" id="nav-link">Shipping &amp; returns</a></p></section></main>
<script src="${server.url()}/widget.js" data-site-id="${server.siteId()}"${extra} async></script>
</body></html>`;
  const http = createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(page);
  });
  await new Promise((r) => http.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${http.address().port}/`;
  return { url, close: () => new Promise((r) => http.close(r)) };
}

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Debian's Chromium; playwright gives every launch a fresh, empty user-data-dir. */
export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
    headless: true,
  });
}

/** A page that fails the test on any JavaScript dialog (an XSS would open one). */
export async function newPage(browser, opts = {}) {
  const context = await browser.newContext(Object.assign({ viewport: { width: 1280, height: 800 } }, opts));
  const page = await context.newPage();
  page.dialogs = [];
  page.on('dialog', async (d) => {
    page.dialogs.push(d.message());
    await d.dismiss();
  });
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(String(e)));
  // A CSP violation is only a console message; it counts as an error here.
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) page.errors.push(m.text());
  });
  return page;
}

/** Saves a screenshot into docs/screenshots when FDT_SCREENSHOTS is set. */
export async function shot(page, name, opts = {}) {
  if (!process.env.FDT_SCREENSHOTS) return;
  const dir = join(here, '..', '..', 'docs', 'screenshots');
  mkdirSync(dir, { recursive: true });
  // Passing notices are not part of the picture.
  await page.evaluate(() => document.getElementById('toast')?.setAttribute('hidden', ''));
  await page.screenshot(Object.assign({ path: join(dir, name + '.png') }, opts));
}

/** The widget inside its shadow root (playwright's CSS locators pierce open shadow roots). */
export function widget(page) {
  const host = page.locator('[data-frontdesk]');
  return {
    launcher: host.locator('.launcher'),
    panel: host.locator('.panel'),
    text: host.locator('#fd-text'),
    log: host.locator('.log'),
    bubbles: host.locator('.log .bubble'),
    typing: host.locator('.typing'),
    q: (sel, opts) => host.locator(sel, opts),
  };
}

/** The visitor's local copy, as the widget keeps it. */
export async function widgetCopy(page) {
  return page.evaluate((key) => JSON.parse(localStorage.getItem(key) || '{}'), 'frontdesk:' + server.siteId());
}

/** Signs an agent in to the console and sets it online. */
export async function consoleLogin(page, who) {
  await page.goto(server.url() + '/console');
  await page.fill('#login-email', who.email);
  await page.fill('#login-password', who.password);
  await page.click('#login-form button[type=submit]');
  await page.locator('#app').waitFor({ state: 'visible' });
  await page.locator('#conn.up').waitFor();
  await page.click('.status-switch button[data-status=online]');
  await page.locator('.status-switch button.on[data-status=online]').waitFor();
}

/** The console's local copy of its open chats. */
export async function consoleCopy(page) {
  return page.evaluate(() => JSON.parse(sessionStorage.getItem('fd.chats') || '{}'));
}

/** Messages of a copy as comparable tuples. */
export const tuples = (messages) => messages.map((m) => [m.id, m.seq, m.messageType, m.content]);
