// A visitor on a shop page and agents in the console hold real conversations: pre-chat
// form, offer and accept, messages both ways, typing both ways, seen marks, hostile text
// shown as text, end and rating, wrap-up, and a transfer between two agents.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { api, consoleLogin, hasEvent, launch, newPage, server, shot, startShop, widget, widgetCopy } from './lib.mjs';

const missing = [];
for (const e of ['agent.login', 'agent.set_status', 'chat.request', 'chat.agent_accept', 'chat.agent_transfer']) {
  if (!(await hasEvent(e))) missing.push(e);
}
const skip = missing.length ? `the server has no ${missing.join(', ')} yet` : false;

const XSS = '<img src=x onerror=alert(1)>';
let browser;
let shop;
before(async () => {
  browser = await launch();
  shop = await startShop({ prechat: 'true', title: 'Acme support' });
});
after(async () => {
  await browser?.close();
  await shop?.close();
});

/** The console pane of the (only) chat with `name`. */
const pane = (page, name) => page.locator('.pane', { has: page.locator('.pane-title', { hasText: name }) });

async function visitorStarts(page, name, email, first, loaded) {
  if (!loaded) await page.goto(shop.url);
  const w = widget(page);
  await w.launcher.click();
  await w.q('form[aria-label="Before we start"]').waitFor();
  await w.q('#fd-name').fill(name);
  await w.q('#fd-email').fill(email);
  await shot(page, 'widget-prechat');
  await w.q('form[aria-label="Before we start"] button[type=submit]').click();
  await w.text.waitFor();
  await w.text.fill(first);
  await w.text.press('Enter');
  await w.q('.bubble', { hasText: first }).waitFor();
  return w;
}

test('the console signs in, goes online and the widget then offers a chat', { skip }, async () => {
  const agent = await newPage(browser);
  await agent.goto(server.url() + '/console');
  await agent.locator('#login-form').waitFor();
  await shot(agent, 'console-login');
  // The console's page carries the CSP; nothing inline runs, so nothing breaks under it.
  const res = await fetch(server.url() + '/console');
  assert.match(res.headers.get('content-security-policy'), /script-src 'self'$/);
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
  await agent.fill('#login-email', server.admin().email);
  await agent.fill('#login-password', 'wrong password');
  await agent.click('#login-form button[type=submit]');
  await agent.locator('#login-error').waitFor();
  await consoleLogin(agent, server.admin());
  const avail = await api('offline_message.availability', { siteId: server.siteId() });
  assert.equal(avail.body.data.agentsOnline, true);

  // Tokens are refreshed before they expire (here: made to expire in 61 s, so at once).
  const first = await agent.evaluate(() => JSON.parse(sessionStorage.getItem('fd.auth')));
  await agent.evaluate(() => {
    const a = JSON.parse(sessionStorage.getItem('fd.auth'));
    a.expiresAt = Date.now() + 61000;
    sessionStorage.setItem('fd.auth', JSON.stringify(a));
  });
  await agent.reload();
  await agent.waitForFunction(
    (old) => JSON.parse(sessionStorage.getItem('fd.auth')).refreshToken !== old,
    first.refreshToken,
    { timeout: 15000 }
  );
  const second = await agent.evaluate(() => JSON.parse(sessionStorage.getItem('fd.auth')));
  assert.notEqual(second.accessToken, first.accessToken);
  assert.ok(second.expiresAt > Date.now() + 120000, 'the new token lives longer');
  await agent.locator('#conn.up').waitFor();
  assert.deepEqual(agent.errors, []);

  // Signing out revokes the session and forgets the tokens.
  const refreshToken = second.refreshToken;
  await agent.click('#logout');
  await agent.locator('#login-form').waitFor();
  assert.equal(await agent.evaluate(() => sessionStorage.getItem('fd.auth')), null);
  const reused = await api('agent.refresh_token', { refreshToken });
  assert.equal(reused.body.code, -1, 'the refresh token no longer works');
  await agent.context().close();
});

test('visitor and agent talk: typing, seen, hostile text as text, end, rating, wrap-up', { skip }, async () => {
  const agent = await newPage(browser);
  await consoleLogin(agent, server.admin());
  const visitor = await newPage(browser);
  await visitor.goto(shop.url);
  await visitor.evaluate(() => {
    window.seen = [];
    for (const e of ['open', 'close', 'message', 'chatStarted', 'chatEnded']) window.Frontdesk.on(e, () => window.seen.push(e));
  });
  const vars = await visitor.evaluate(() => window.Frontdesk.setCustomVariables({ plan: 'gold', cartValue: 149 }));
  assert.equal(vars.code, 0);
  const w = await visitorStarts(visitor, 'Ann Example', 'ann@shop.example', 'Hello, where is my order?', true);
  await w.q('text=Connecting you to an agent…').or(w.q('.queue')).first().waitFor();

  // The offer reaches the console, with a sound and the count in the tab.
  await agent.locator('#offers .offer', { hasText: 'Ann Example' }).waitFor();
  assert.equal(await agent.locator('#queue-count').textContent(), '1');
  await agent.locator('#offers .offer button', { hasText: 'Accept' }).click();
  const p = pane(agent, 'Ann Example');
  await p.locator('.bubble', { hasText: 'Hello, where is my order?' }).waitFor();
  await w.q('.head p', { hasText: 'You are chatting with' }).waitFor();

  // Typing, visitor → agent.
  await w.text.pressSequentially('It was order 12', { delay: 20 });
  await p.locator('.typing').waitFor({ state: 'visible' });
  await w.text.fill('');
  await w.text.pressSequentially('It was order 1234', { delay: 5 });
  await w.text.press('Enter');
  await p.locator('.bubble', { hasText: 'It was order 1234' }).waitFor();
  assert.equal(await agent.locator('#live').textContent(), 'Ann Example: It was order 1234', 'announced to screen readers');
  await p.locator('.typing').waitFor({ state: 'hidden' });

  // Typing, agent → visitor, then a reply.
  const reply = p.locator('.composer textarea');
  await reply.pressSequentially('Let me check', { delay: 20 });
  await w.typing.waitFor({ state: 'visible' });
  await reply.fill('Thanks! It left our warehouse today.');
  await reply.press('Enter');
  await w.q('.bubble', { hasText: 'It left our warehouse today.' }).waitFor();
  assert.match(await w.q('[role=status]').textContent(), /It left our warehouse today\.$/, 'announced to screen readers');

  // Seen both ways: the visitor has the panel open; the agent's console is in front.
  await p.locator('.seen', { hasText: 'Seen' }).waitFor();
  await w.q('.meta', { hasText: 'Seen' }).waitFor();

  // Hostile text is text on both sides, and no dialog opens.
  await w.text.fill(XSS);
  await w.text.press('Enter');
  await p.locator('.bubble', { hasText: XSS }).waitFor();
  await reply.fill('<script>alert(2)</script><b>bold</b>');
  await reply.press('Enter');
  await w.q('.bubble', { hasText: '<script>alert(2)</script><b>bold</b>' }).waitFor();
  assert.equal(await p.locator('.log img').count(), 0);
  assert.equal(await w.q('.log img, .log b, .log script').count(), 0);
  assert.equal(await p.locator('.bubble', { hasText: XSS }).textContent(), XSS);
  assert.equal(await w.q('.bubble', { hasText: XSS }).textContent(), XSS);

  // A reload keeps the conversation: the widget's local copy, caught up with the server.
  await visitor.reload();
  await w.launcher.click();
  await w.q('.bubble', { hasText: 'It left our warehouse today.' }).waitFor();
  await w.q('.bubble', { hasText: XSS }).waitFor();
  await visitor.evaluate(() => {
    window.seen = [];
    for (const e of ['open', 'close', 'message', 'chatStarted', 'chatEnded']) window.Frontdesk.on(e, () => window.seen.push(e));
  });

  // A canned response goes in through the composer's list.
  await p.locator('select.canned').selectOption({ index: 4 });
  assert.match(await reply.inputValue(), /anything else I can help/);
  await reply.press('Enter');
  await w.q('.bubble', { hasText: 'anything else I can help' }).waitFor();
  await shot(visitor, 'widget-chat');
  await shot(agent, 'console-chat');

  // With the panel closed, a new message counts as unread on the launcher.
  await visitor.keyboard.press('Escape');
  await w.panel.waitFor({ state: 'hidden' });
  await reply.fill('One more thing: your parcel number is 7781.');
  await reply.press('Enter');
  await w.q('.badge', { hasText: '1' }).waitFor();
  assert.equal(await w.launcher.getAttribute('aria-label'), 'Open chat, 1 unread');
  await w.launcher.click();
  await w.q('.bubble', { hasText: 'parcel number' }).waitFor();
  assert.equal(await w.q('.badge').isHidden(), true);

  // A single-page shop navigates with pushState: the agent sees the new page.
  await visitor.evaluate(() => history.pushState({}, '', '/shipping'));
  await agent.click('.tab[data-view=visitors]');
  const row = agent.locator('#visitor-rows tr', { hasText: 'Ann Example' });
  await row.waitFor();
  await agent.locator('#visitor-rows tr', { hasText: '/shipping' }).waitFor();
  assert.match(await row.textContent(), /Trail Jacket/);
  assert.match(await row.textContent(), /chatting/);
  await shot(agent, 'console-visitors');
  await agent.click('.tab[data-view=admin]');
  await agent.locator('#admin-agents tr', { hasText: 'Sam Rivera' }).waitFor();
  await agent.fill('#agent-name', 'Kim Lee');
  await agent.fill('#agent-email', 'kim@acme.test');
  await agent.fill('#agent-password', 'kim-password-1');
  await agent.selectOption('#agent-role', 'supervisor');
  await agent.click('#agent-form button[type=submit]');
  const kim = agent.locator('#admin-agents tr', { hasText: 'kim@acme.test' });
  await kim.waitFor();
  assert.equal(await kim.locator('select').inputValue(), 'supervisor');
  await agent.fill('#dept-name', 'Returns & exchanges');
  await agent.click('#dept-form button[type=submit]');
  await agent.locator('#admin-departments .dept-row input').first().waitFor();
  assert.equal(await agent.locator('#admin-departments .dept-row input').first().inputValue(), 'Returns & exchanges');
  await shot(agent, 'console-admin');
  await agent.click('.tab[data-view=chats]');

  // The agent ends the chat; the widget asks for a rating; the agent wraps up.
  await p.locator('button.end').click();
  await w.q('form[aria-label="Rate this chat"]').waitFor();
  await w.q('.star[aria-label="4 stars"]').click();
  await w.q('#fd-comment').fill('Quick and friendly.');
  await shot(visitor, 'widget-rating');
  await w.q('form[aria-label="Rate this chat"] button[type=submit]').click();
  await w.q('text=Thank you for your feedback!').waitFor();
  await p.locator('form.wrap').waitFor();
  await p.locator('form.wrap textarea').fill('Order shipped; customer happy.');
  await p.locator('form.wrap input').fill('shipping, order-status');
  await p.locator('form.wrap button').click();
  await p.locator('button.close').waitFor({ state: 'visible' });

  assert.deepEqual(await visitor.evaluate(() => [...new Set(window.seen)].sort()), ['chatEnded', 'close', 'message', 'open']);
  assert.deepEqual(visitor.dialogs, []);
  assert.deepEqual(agent.dialogs, []);
  assert.deepEqual(visitor.errors, []);
  assert.deepEqual(agent.errors, []);
  await p.locator('button.close').click();
  await visitor.context().close();
  await agent.context().close();
});

test('an agent transfers a chat to another agent, who carries on', { skip }, async () => {
  const alex = await newPage(browser);
  await consoleLogin(alex, server.admin());
  const visitor = await newPage(browser);
  const w = await visitorStarts(visitor, 'Bo Visitor', 'bo@shop.example', 'Can I change my delivery address?');
  await alex.locator('#offers .offer', { hasText: 'Bo Visitor' }).waitFor();
  await alex.locator('#offers .offer button', { hasText: 'Accept' }).click();
  const pa = pane(alex, 'Bo Visitor');
  await pa.locator('.bubble', { hasText: 'delivery address' }).waitFor();

  // Sam comes online only now, so the first offer could only go to Alex.
  const sam = await newPage(browser);
  await consoleLogin(sam, server.second());
  await alex.reload();
  await alex.locator('#conn.up').waitFor();
  await pa.locator('.bubble', { hasText: 'delivery address' }).waitFor();
  const option = pa.locator('.transfer select option', { hasText: 'Sam Rivera' });
  await pa.locator('.transfer select').focus();
  await option.waitFor({ state: 'attached' });
  await pa.locator('.transfer select').selectOption({ label: await option.textContent() });

  await sam.locator('#offers .offer', { hasText: 'Bo Visitor' }).waitFor();
  assert.match(await sam.locator('#offers .offer').textContent(), /Transfer/);
  await sam.locator('#offers .offer button', { hasText: 'Accept' }).click();
  const ps = pane(sam, 'Bo Visitor');
  // Sam sees the whole conversation so far, and the visitor sees who took over.
  await ps.locator('.bubble', { hasText: 'delivery address' }).waitFor();
  await w.q('.head p', { hasText: 'Sam Rivera' }).waitFor();
  await pa.locator('.pane-state', { hasText: 'Transferred to' }).waitFor();
  await ps.locator('.composer textarea').fill('Hi, Sam here — yes, what is the new address?');
  await ps.locator('.composer textarea').press('Enter');
  await w.q('.bubble', { hasText: 'Sam here' }).waitFor();
  await w.text.fill('12 Fjord Street, Bergen');
  await w.text.press('Enter');
  await ps.locator('.bubble', { hasText: 'Fjord Street' }).waitFor();

  // Alex, an admin, monitors the chat from the supervisor view: sees it, cannot write.
  await alex.click('.tab[data-view=supervisor]');
  const chatRow = alex.locator('#sup-chats tr', { hasText: 'Bo Visitor' });
  await chatRow.waitFor();
  await alex.locator('#sup-agents tr', { hasText: 'Sam Rivera' }).locator('.state-online').waitFor();
  await shot(alex, 'console-supervisor');
  await chatRow.locator('button', { hasText: 'Monitor' }).click();
  await alex.locator('#view-chats').waitFor({ state: 'visible' });
  await pa.locator('.pane-state', { hasText: 'Monitoring' }).waitFor();
  await pa.locator('.bubble', { hasText: 'Fjord Street' }).waitFor();
  assert.equal(await pa.locator('.composer').isHidden(), true);
  await ps.locator('.composer textarea').fill('Done — the parcel goes to Bergen.');
  await ps.locator('.composer textarea').press('Enter');
  await pa.locator('.bubble', { hasText: 'goes to Bergen' }).waitFor();
  await w.q('.bubble', { hasText: 'goes to Bergen' }).waitFor();
  assert.deepEqual([...visitor.errors, ...alex.errors, ...sam.errors], []);
  // Away, so that neither is offered the next test's chat while its console is closed.
  for (const page of [alex, sam]) {
    await page.click('.status-switch button[data-status=away]');
    await page.locator('.status-switch button.on[data-status=away]').waitFor();
  }
  for (const page of [visitor, alex, sam]) await page.context().close();
});

test('a queued visitor sees its place; a refused chat goes to the next agent', { skip }, async () => {
  const alex = await newPage(browser);
  await consoleLogin(alex, server.admin());
  const visitor = await newPage(browser);
  await visitor.goto(shop.url);
  const w = widget(visitor);
  await w.launcher.click();
  await w.q('#fd-name').fill('Cy Queue');
  await w.q('#fd-email').fill('cy@shop.example');
  await w.q('form[aria-label="Before we start"] button[type=submit]').click();
  await w.text.waitFor();

  // Nobody takes chats now: the request waits in the queue and the widget says where.
  await alex.click('.status-switch button[data-status=away]');
  await alex.locator('.status-switch button.on[data-status=away]').waitFor();
  await w.text.fill('Is anyone there?');
  await w.text.press('Enter');
  await w.q('.queue', { hasText: 'You are number 1 in the queue' }).waitFor();

  // Alex comes back, is offered the chat and refuses it; Sam comes online and takes it.
  await alex.click('.status-switch button[data-status=online]');
  const offer = alex.locator('#offers .offer', { hasText: 'Cy Queue' });
  await offer.waitFor();
  await offer.locator('button', { hasText: 'Refuse' }).click();
  await offer.waitFor({ state: 'detached' });
  const sam = await newPage(browser);
  await consoleLogin(sam, server.second());
  await sam.locator('#offers .offer', { hasText: 'Cy Queue' }).locator('button', { hasText: 'Accept' }).click();
  await pane(sam, 'Cy Queue').locator('.bubble', { hasText: 'Is anyone there?' }).waitFor();
  await w.q('.head p', { hasText: 'Sam Rivera' }).waitFor();
  await w.q('.queue').waitFor({ state: 'detached' });
  assert.equal(await pane(alex, 'Cy Queue').count(), 0, 'the refused chat did not open for Alex');

  // Alex joins from the supervisor view, writes, and leaves.
  await alex.click('.tab[data-view=supervisor]');
  // The visitor record has no name (chat.request keeps it in the chat), so find it by id.
  const cyId = (await widgetCopy(visitor)).visitorId;
  await alex.locator(`#sup-chats tr[data-visitor="${cyId}"]`).locator('button', { hasText: 'Join' }).click();
  const pj = pane(alex, 'Cy Queue');
  await pj.locator('.pane-state', { hasText: 'Joined' }).waitFor();
  await pj.locator('.bubble', { hasText: 'Is anyone there?' }).waitFor();
  await pj.locator('.composer textarea').fill('Alex here too, from billing.');
  await pj.locator('.composer textarea').press('Enter');
  await w.q('.bubble', { hasText: 'from billing' }).waitFor();
  await pane(sam, 'Cy Queue').locator('.bubble', { hasText: 'from billing' }).waitFor();
  await pj.locator('button.leave').click();
  await pj.waitFor({ state: 'detached' });
  assert.deepEqual([...visitor.errors, ...alex.errors, ...sam.errors], []);
  for (const page of [alex, sam]) {
    await page.click('.status-switch button[data-status=away]');
    await page.locator('.status-switch button.on[data-status=away]').waitFor();
  }
  for (const page of [visitor, alex, sam]) await page.context().close();
});
