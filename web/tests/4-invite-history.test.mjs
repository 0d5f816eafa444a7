// An agent invites a visitor from the console's live visitor list; the widget shows the
// invitation (on the push, and again after a reload through invitation.check); "Not now"
// refuses it, "Chat now" accepts it and a chat starts; after the chat ends the agent finds
// it in History by a word from one message, reads the transcript in order and exports it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { api, consoleLogin, hasEvent, launch, newPage, server, shot, startShop, widget, widgetCopy, sleep } from './lib.mjs';

const missing = [];
for (const e of ['invitation.send', 'invitation.check', 'chat.request', 'chats.list']) {
  if (!(await hasEvent(e))) missing.push(e);
}
const skip = missing.length ? `the server has no ${missing.join(', ')} yet` : false;

let browser;
let shop;
before(async () => {
  browser = await launch();
  shop = await startShop({ title: 'Acme support' });
});
after(async () => {
  await browser?.close();
  await shop?.close();
});

/** The visitor's row in the console's live list (the console names unnamed visitors by id). */
async function visitorRow(agent, visitorId) {
  await agent.click('.tab[data-view=visitors]');
  const row = agent.locator('#visitor-rows tr', { hasText: 'Visitor ' + String(visitorId).slice(-4) });
  await row.waitFor();
  return row;
}

async function inviteFromConsole(agent, visitorId, message) {
  const row = await visitorRow(agent, visitorId);
  await row.locator('button.invite').click();
  const input = row.locator('.invite-msg');
  await input.waitFor();
  assert.equal(await agent.evaluate(() => document.activeElement.className), 'invite-msg', 'the form takes the focus');
  if (message) await input.fill(message);
  await row.locator('.invite-form button[type=submit]').click();
  await row.locator('.invite-form').waitFor({ state: 'detached' });
}

test('invite from the visitor list, accept in the widget, chat, then find it in History', { skip }, async () => {
  const agent = await newPage(browser);
  await consoleLogin(agent, server.admin());
  const me = await agent.evaluate(() => JSON.parse(sessionStorage.getItem('fd.auth')).agent);
  const visitor = await newPage(browser);
  await visitor.goto(shop.url);
  const w = widget(visitor);
  await visitor.waitForFunction((key) => JSON.parse(localStorage.getItem(key) || '{}').visitorId, 'frontdesk:' + server.siteId());
  const { visitorId, token } = await widgetCopy(visitor);
  const card = w.q('.invite');

  // A first invitation (its message is page text, not markup); "Not now" refuses it.
  const hostile = 'Hi! <b>Looking</b> for a size? <img src=x onerror=alert(1)>';
  await inviteFromConsole(agent, visitorId, hostile);
  await card.waitFor({ state: 'visible' });
  assert.equal(await card.locator('.inv-name').textContent(), me.name);
  assert.equal(await card.locator('.inv-msg').textContent(), hostile);
  assert.equal(await w.q('.invite b, .invite img').count(), 0, 'rendered as text');
  await card.locator('button', { hasText: 'Not now' }).click();
  await card.waitFor({ state: 'hidden' });
  let check = await api('invitation.check', {}, token);
  assert.deepEqual(check.body.data, { status: 'none' }, 'refused: nothing pending');

  // A second one, still pending after a reload.
  const hello = 'Hi! Looking for the right jacket size? I can check stock for you.';
  await inviteFromConsole(agent, visitorId, hello);
  await card.waitFor({ state: 'visible' });
  assert.equal(await card.locator('.inv-msg').textContent(), hello);
  await visitor.reload();
  await card.waitFor({ state: 'visible' });
  assert.equal(await card.locator('.inv-msg').textContent(), hello, 'shown again through invitation.check');
  assert.match(await w.q('[role=status]').textContent(), /invites you to chat/, 'announced to screen readers');
  await sleep(400); // the card's fade-in
  await shot(visitor, 'widget-invitation');

  // Accepted from the keyboard: the chat view opens with the agent's greeting.
  await card.locator('button', { hasText: 'Chat now' }).focus();
  await visitor.keyboard.press('Enter');
  await w.panel.waitFor({ state: 'visible' });
  await card.waitFor({ state: 'hidden' });
  await w.q('.hello', { hasText: 'Looking' }).waitFor();
  check = await api('invitation.check', {}, token);
  assert.equal(check.body.data.status, 'none', 'accepted: nothing pending');

  // The visitor writes; the agent accepts the chat; messages flow both ways.
  const first = 'Do you have the Trail Jacket in marigold, size M?';
  await w.text.fill(first);
  await w.text.press('Enter');
  await w.q('.bubble', { hasText: first }).waitFor();
  await agent.click('.tab[data-view=chats]');
  await agent.locator('#offers .offer button', { hasText: 'Accept' }).click();
  const p = agent.locator('.pane', { has: agent.locator('.bubble', { hasText: first }) });
  await p.waitFor();
  const reply = p.locator('.composer textarea');
  const answer = 'Yes — two left in marigold, size M. Shall I reserve one?';
  await reply.fill(answer);
  await reply.press('Enter');
  await w.q('.bubble', { hasText: answer }).waitFor();
  const last = 'Please do, thank you!';
  await w.text.fill(last);
  await w.text.press('Enter');
  await p.locator('.bubble', { hasText: last }).waitFor();

  // The agent ends the chat; the visitor rates it; the agent wraps up with tags.
  await p.locator('button.end').click();
  await w.q('form[aria-label="Rate this chat"]').waitFor();
  await w.q('.star[aria-label="5 stars"]').click();
  await w.q('#fd-comment').fill('Reserved in a minute. Great!');
  await w.q('form[aria-label="Rate this chat"] button[type=submit]').click();
  await w.q('text=Thank you for your feedback!').waitFor();
  await p.locator('form.wrap').waitFor();
  await p.locator('form.wrap textarea').fill('Reserved one jacket, marigold M.');
  await p.locator('form.wrap input').fill('invitation, reservation');
  await p.locator('form.wrap button').click();
  await p.locator('button.close').waitFor({ state: 'visible' });
  await p.locator('button.close').click();

  // History: a word from one message finds the chat (written behind: poll a little).
  await agent.click('.tab[data-view=history]');
  await agent.fill('#h-q', 'marigold');
  await agent.selectOption('#h-status', 'ended');
  const result = agent.locator('#history-results .result').first();
  for (let i = 0; i < 40; i++) {
    await agent.click('#history-form button[type=submit]');
    await sleep(250);
    const text = (await agent.locator('#history-results').textContent()) || '';
    if (/★★★★★/.test(text)) break;
  }
  await result.waitFor();
  await agent.locator('#history-results .result', { hasText: '★★★★★' }).first().click();
  const transcript = agent.locator('#transcript');
  await transcript.locator('.bubble', { hasText: last }).waitFor();
  const bubbles = await transcript.locator('.bubble').allTextContents();
  assert.deepEqual(bubbles, [first, answer, last], 'the messages in order');
  assert.match(await transcript.textContent(), /invitation/, 'tags shown');
  assert.match(await transcript.textContent(), /Reserved in a minute/, 'the comment shown');
  await shot(agent, 'console-history');

  // Export CSV: fetched with the token and saved through a blob URL.
  const [download] = await Promise.all([agent.waitForEvent('download'), transcript.locator('button', { hasText: 'Export CSV' }).click()]);
  const csv = readFileSync(await download.path(), 'utf8');
  assert.match(download.suggestedFilename(), /^chat-\d+\.csv$/);
  assert.match(csv, /marigold, size M/);
  assert.ok(csv.indexOf(first) < csv.indexOf(answer) && csv.indexOf(answer) < csv.indexOf(last), 'CSV rows in order');

  // A search with no match says so.
  await agent.fill('#h-q', 'zzqxnomatchword');
  await agent.click('#history-form button[type=submit]');
  await agent.locator('#history-empty').waitFor({ state: 'visible' });

  assert.deepEqual(visitor.dialogs, []);
  assert.deepEqual(agent.dialogs, []);
  assert.deepEqual(visitor.errors, []);
  assert.deepEqual(agent.errors, []);
  await visitor.context().close();
  await agent.context().close();
});
