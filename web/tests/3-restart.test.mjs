// The server is killed mid-chat and started again in memory mode on the same port and data
// directory: every chat is gone from the runtime state. Widget and console reconnect by
// themselves, answer `code: 1` by uploading their local copies (SPEC §6), and the
// conversation carries on with nothing lost and no message changing its id.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { consoleCopy, consoleLogin, hasEvent, launch, newPage, server, shot, startServer, stopServer, startShop, tuples, widget, widgetCopy } from './lib.mjs';

const missing = [];
for (const e of ['agent.login', 'chat.request', 'chat.rebuild', 'chat.agent_accept']) {
  if (!(await hasEvent(e))) missing.push(e);
}
const skip = missing.length ? `the server has no ${missing.join(', ')} yet` : false;

let browser;
let shop;
before(async () => {
  browser = await launch();
  shop = await startShop({});
});
after(async () => {
  await browser?.close();
  await shop?.close();
});

test('a restart mid-chat loses nothing: both sides rebuild and carry on', { skip }, async () => {
  const agent = await newPage(browser);
  await consoleLogin(agent, server.admin());
  const visitor = await newPage(browser);
  await visitor.goto(shop.url);
  const w = widget(visitor);
  await w.launcher.click();
  await w.text.waitFor();
  await w.text.fill('Before the restart: one');
  await w.text.press('Enter');
  await agent.locator('#offers .offer button', { hasText: 'Accept' }).click();
  const p = agent.locator('.pane').nth(0);
  await p.locator('.bubble', { hasText: 'Before the restart: one' }).waitFor();

  // A second visitor, a second chat side by side in the console.
  const visitor2 = await newPage(browser);
  await visitor2.goto(shop.url);
  const w2 = widget(visitor2);
  await w2.launcher.click();
  await w2.text.waitFor();
  await w2.text.fill('Do you have this jacket in blue?');
  await w2.text.press('Enter');
  await agent.locator('#offers .offer button', { hasText: 'Accept' }).click();
  const p2 = agent.locator('.pane').nth(1);
  await p2.locator('.bubble', { hasText: 'in blue?' }).waitFor();
  await p2.locator('.composer textarea').fill('We do — sizes S to XL.');
  await p2.locator('.composer textarea').press('Enter');
  await w2.q('.bubble', { hasText: 'sizes S to XL' }).waitFor();
  await p.locator('.composer textarea').fill('Agent before the restart');
  await p.locator('.composer textarea').press('Enter');
  await w.q('.bubble', { hasText: 'Agent before the restart' }).waitFor();
  await w.text.fill('Before the restart: two');
  await w.text.press('Enter');
  await p.locator('.bubble', { hasText: 'Before the restart: two' }).waitFor();
  // Wait until both copies hold the acknowledged messages (nothing pending).
  await visitor.waitForFunction(() => !document.querySelector('[data-frontdesk]').shadowRoot.querySelector('.pending'));
  await agent.waitForFunction(() => !document.querySelector('.pane .pending'));

  const visitorBefore = (await widgetCopy(visitor)).chat;
  const chatId = visitorBefore.chatId;
  const agentBefore = (await consoleCopy(agent))[chatId];
  assert.ok(agentBefore, 'the console keeps a copy of the chat');
  const before = tuples(visitorBefore.messages);
  assert.deepEqual(tuples(agentBefore.messages), before, 'both sides hold the same chat');
  assert.ok(before.length >= 3 && visitorBefore.messages.every((m) => m.sig), 'messages are kept with their sig');

  await stopServer();
  // Written while the server is down: kept as unacknowledged, shown as sending.
  await w.text.fill('Sent while the server was down');
  await w.text.press('Enter');
  await w.q('.pending .bubble', { hasText: 'Sent while the server was down' }).waitFor();
  await startServer();

  // Both reconnect on their own; the agent's console goes online again by itself.
  await agent.locator('#conn.down').or(agent.locator('#conn.up')).first().waitFor();
  await agent.locator('#conn.up').waitFor({ timeout: 20000 });
  // The message written while down is resent once, after the rebuild; then both carry on.
  await p.locator('.bubble', { hasText: 'Sent while the server was down' }).waitFor({ timeout: 20000 });
  await w.text.fill('After the restart: visitor');
  await w.text.press('Enter');
  await p.locator('.bubble', { hasText: 'After the restart: visitor' }).waitFor({ timeout: 20000 });
  await p.locator('.composer textarea').fill('After the restart: agent');
  await p.locator('.composer textarea').press('Enter');
  await w.q('.bubble', { hasText: 'After the restart: agent' }).waitFor({ timeout: 20000 });
  await visitor.waitForFunction(() => !document.querySelector('[data-frontdesk]').shadowRoot.querySelector('.pending'));
  await agent.waitForFunction(() => !document.querySelector('.pane .pending'));

  // The second chat came back too.
  await w2.text.fill('Blue in M, please.');
  await w2.text.press('Enter');
  await p2.locator('.bubble', { hasText: 'Blue in M, please.' }).waitFor({ timeout: 20000 });
  await p2.locator('.bubble', { hasText: 'in blue?' }).waitFor();
  await shot(agent, 'console-chats');

  const visitorAfter = tuples((await widgetCopy(visitor)).chat.messages);
  const agentAfter = tuples((await consoleCopy(agent))[chatId].messages);
  assert.deepEqual(visitorAfter.slice(0, before.length), before, 'the visitor kept every message, same ids and order');
  assert.deepEqual(agentAfter, visitorAfter, 'agent and visitor agree after the rebuild');
  const contents = visitorAfter.map((t) => t[3]);
  for (const text of ['Sent while the server was down', 'After the restart: visitor', 'After the restart: agent']) {
    assert.equal(contents.filter((c) => c === text).length, 1, `${text} once`);
  }
  assert.deepEqual([...visitor.dialogs, ...agent.dialogs], []);
  assert.deepEqual([...visitor.errors, ...visitor2.errors, ...agent.errors], []);
  for (const page of [visitor, visitor2, agent]) await page.context().close();
});
