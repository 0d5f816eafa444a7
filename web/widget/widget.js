/*
 * Frontdesk chat widget — readable source. `npm run build` in web/widget minifies it to
 * dist/widget.min.js, which the server embeds and serves at /widget.js.
 *
 * Embed:  <script src="https://chat.example.com/widget.js" data-site-id="123" async></script>
 * Options on the tag: data-color="#0a7cff", data-prechat="true", data-title="Chat with us".
 *
 * Everything lives in a (open) shadow root, so the page's CSS cannot reach it, and every piece of
 * text from the server or a person is rendered with textContent, never as HTML.
 *
 * The widget keeps the chat's local copy (messages with their sig, offsets, chat id, the
 * visitor token and unacknowledged messages) in localStorage: it is the rebuild source of
 * SPEC §6. A `code: 1` answer makes it upload what the server lacks (everything when the
 * offsets are -1/-1) with `chat.rebuild` and replace its copy with the merged chat.
 */
(() => {
  'use strict';
  if (window.Frontdesk && window.Frontdesk.version) return;

  const script =
    document.currentScript || document.querySelector('script[data-site-id][src*="widget"]');
  if (!script || !script.dataset.siteId) {
    console.warn('Frontdesk: the widget script tag needs data-site-id');
    return;
  }
  const siteId = script.dataset.siteId;
  const base = new URL(script.src, location.href).origin;
  const color = /^#[0-9a-f]{3,8}$/i.test(script.dataset.color || '') ? script.dataset.color : '#0a7cff';
  const prechat = script.dataset.prechat === 'true';
  const title = script.dataset.title || 'Chat with us';
  const KEY = 'frontdesk:' + siteId;
  const CALL_TIMEOUT = 15000;

  // ---------------------------------------------------------------- local copy ----------

  /** The persisted state: identity, the chat's local copy, pending sends, UI bits. */
  let st = load();
  function load() {
    try {
      return Object.assign({ user: {}, chat: null, unread: 0 }, JSON.parse(localStorage.getItem(KEY) || '{}'));
    } catch (e) {
      return { user: {}, chat: null, unread: 0 };
    }
  }
  function save() {
    try {
      localStorage.setItem(KEY, JSON.stringify(st));
    } catch (e) {
      /* storage full or blocked: the chat still works for this page */
    }
  }
  function newChat(chatId) {
    return { chatId, status: 'queued', messages: [], vOff: 0, aOff: 0, pending: [], seenSeq: 0, agentName: '', position: 0, rated: false };
  }
  const uid = () =>
    (crypto.randomUUID && crypto.randomUUID()) || Date.now().toString(36) + Math.random().toString(36).slice(2);

  /** Adds messages (by id; an echo of a pending send replaces it), keeps them ordered by seq. */
  function addMessages(c, list) {
    let added = 0;
    for (const m of list || []) {
      if (String(m.chatId) !== String(c.chatId)) continue;
      const i = c.messages.findIndex((x) => x.id === m.id);
      const msg = strip(m);
      if (i >= 0) c.messages[i] = msg;
      else {
        c.messages.push(msg);
        added++;
      }
      if (m.clientMessageId) c.pending = c.pending.filter((p) => p.clientMessageId !== m.clientMessageId);
    }
    c.messages.sort((a, b) => a.seq - b.seq);
    return added;
  }
  /** A ChatMessage exactly as the server sent it (its sig covers these fields). */
  function strip(m) {
    const keep = ['id', 'chatId', 'seq', 'dataOffset', 'messageType', 'senderId', 'senderName', 'content', 'sendTime', 'clientMessageId', 'attachment', 'sig'];
    const out = {};
    for (const k of keep) if (m[k] !== undefined) out[k] = m[k];
    return out;
  }
  /** Offsets a push may advance: only to the next one, so a lost push is never skipped. */
  function advance(c) {
    const has = (side, n) => c.messages.some((m) => (m.messageType === 1) === side && m.dataOffset === n);
    while (has(true, c.vOff + 1)) c.vOff++;
    while (has(false, c.aOff + 1)) c.aOff++;
  }

  // ---------------------------------------------------------------- transport -----------

  let ws = null;
  let wsOpen = false;
  let retry = 0;
  let reconnectTimer = 0;
  const waiting = new Map();
  let frameId = 0;

  /** One event call, over the socket when it is open, else over HTTP. */
  async function raw(event, data, offsets) {
    if (wsOpen) {
      const id = 'w' + ++frameId;
      const frame = { id, event, data };
      if (offsets) Object.assign(frame, { visitorDataOffset: offsets.v, agentDataOffset: offsets.a });
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(id);
          reject(new Error('timeout'));
        }, CALL_TIMEOUT);
        waiting.set(id, (result) => {
          clearTimeout(timer);
          resolve(result);
        });
        ws.send(JSON.stringify(frame));
      });
    }
    const headers = { 'Content-Type': 'application/json' };
    if (st.token) headers.Authorization = 'Bearer ' + st.token;
    if (offsets) {
      headers['X-Visitor-Data-Offset'] = String(offsets.v);
      headers['X-Agent-Data-Offset'] = String(offsets.a);
    }
    const res = await fetch(base + '/api/v1/' + event, { method: 'POST', headers, body: JSON.stringify(data) });
    return res.json();
  }

  /** Calls an event; chat events carry the local offsets and take part in rebuild. */
  async function call(event, data, again) {
    const c = st.chat && data.chatId && String(data.chatId) === String(st.chat.chatId) ? st.chat : null;
    const res = await raw(event, data, c && { v: c.vOff, a: c.aOff });
    if (res.code === -1) {
      const err = new Error((res.error && res.error.message) || 'request failed');
      err.kind = res.error && res.error.kind;
      throw err;
    }
    if (c && res.code === 1) {
      await rebuild(c, res.visitorDataOffset, res.agentDataOffset);
      if (!again) return call(event, data, true);
      return res;
    }
    if (c && res.code === 0) absorb(c, res);
    return res;
  }

  /** A code-0 answer holds every message above our offsets: take them and its offsets. */
  function absorb(c, res) {
    const added = addMessages(c, res.messages);
    if (typeof res.visitorDataOffset === 'number') c.vOff = Math.max(c.vOff, res.visitorDataOffset);
    if (typeof res.agentDataOffset === 'number') c.aOff = Math.max(c.aOff, res.agentDataOffset);
    if (added) noteNew(c, res.messages);
    save();
    render();
  }

  /** SPEC §6: upload what the server lacks, then replace the local copy with the merge. */
  async function rebuild(c, sv, sa) {
    const full = sv < 0 || sa < 0;
    const messages = c.messages.filter(
      (m) => m.sig && (full || (m.messageType === 1 ? m.dataOffset > sv : m.dataOffset > sa))
    );
    const res = await raw('chat.rebuild', { chatId: c.chatId, visitorDataOffset: 0, agentDataOffset: 0, messages }, { v: 0, a: 0 });
    if (res.code !== 0) throw new Error((res.error && res.error.message) || 'rebuild failed');
    c.messages = [];
    addMessages(c, res.messages);
    c.vOff = res.visitorDataOffset || 0;
    c.aOff = res.agentDataOffset || 0;
    save();
    render();
  }

  function connect() {
    clearTimeout(reconnectTimer);
    if (!st.token || ws) return;
    const url = base.replace(/^http/, 'ws') + '/api/v1/ws?token=' + encodeURIComponent(st.token);
    try {
      ws = new WebSocket(url);
    } catch (e) {
      return scheduleReconnect();
    }
    ws.onopen = () => {
      wsOpen = true;
      retry = 0;
      resync();
    };
    ws.onmessage = (ev) => {
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      if (f.id && waiting.has(f.id)) {
        waiting.get(f.id)(f.result);
        waiting.delete(f.id);
      } else if (f.push) onPush(f.push, f.data || {});
    };
    ws.onclose = () => {
      ws = null;
      wsOpen = false;
      for (const done of waiting.values()) done({ code: -1, error: { kind: 'unavailable', message: 'connection lost' } });
      waiting.clear();
      scheduleReconnect();
    };
  }
  /** Jittered exponential backoff: 0.5–1 × min(30 s, 1 s × 2^n). */
  function scheduleReconnect() {
    clearTimeout(reconnectTimer);
    const delay = Math.min(30000, 1000 * 2 ** retry++) * (0.5 + Math.random() / 2);
    reconnectTimer = setTimeout(connect, delay);
  }

  /** After (re)connecting: catch up on the chat (rebuilding if asked), resend what is pending. */
  async function resync() {
    const c = st.chat;
    if (!c || c.status === 'ended') return;
    try {
      const res = await call('chat.visitor_heartbeat', { chatId: c.chatId });
      applyHeartbeat(c, res.data || {});
      await flush();
    } catch (e) {
      if (e.kind === 'not_found') endLocally(c);
    }
  }
  let flushing = null;
  /** Sends the unacknowledged messages in order, one flush at a time. */
  function flush() {
    const next = (flushing || Promise.resolve()).then(flushNow);
    const done = () => flushing === next && (flushing = null);
    flushing = next;
    next.then(done, done);
    return next;
  }
  async function flushNow() {
    const c = st.chat;
    if (!c) return;
    for (const p of c.pending.slice()) {
      if (!c.pending.includes(p)) continue;
      try {
        await call('chat.visitor_send_message', { chatId: c.chatId, content: p.content, clientMessageId: p.clientMessageId });
      } catch (e) {
        if (e.kind === 'bad_request') {
          c.pending = c.pending.filter((x) => x !== p);
          notice(e.message);
        }
        return;
      }
    }
    save();
    render();
  }

  // ---------------------------------------------------------------- pushes --------------

  function onPush(name, d) {
    if (name === 'invitation.pop') return showInvite(d);
    const c = st.chat;
    const mine = c && String(d.chatId) === String(c.chatId);
    if (name === 'chat.message' && mine) {
      if (addMessages(c, [d])) noteNew(c, [d]);
      advance(c);
      ui.typing = false;
    } else if (name === 'chat.typing' && mine && d.side === 'agent') {
      ui.typing = !!d.typing;
    } else if (name === 'chat.seen' && mine && d.by !== 'visitor') {
      c.seenSeq = Math.max(c.seenSeq || 0, d.seq || 0);
    } else if ((name === 'chat.started' || name === 'chat.transferred') && mine) {
      c.status = 'active';
      c.position = 0;
      c.agentName = d.agentName || c.agentName;
      if (name === 'chat.started') emit('chatStarted', { chatId: c.chatId, agentName: c.agentName });
    } else if (name === 'chat.ended' && mine) {
      endLocally(c);
    } else if (name === 'queue.updated' && mine) {
      c.position = d.position || 0;
    } else if (name === 'chat.rebuild_required' && mine) {
      return resync();
    } else return;
    save();
    render();
  }
  function endLocally(c) {
    if (c.status === 'ended') return;
    c.status = 'ended';
    ui.typing = false;
    ui.view = 'rating';
    emit('chatEnded', { chatId: c.chatId });
  }
  function noteNew(c, list) {
    for (const m of list || []) {
      if (m.messageType === 1) continue;
      if (!ui.open) st.unread = (st.unread || 0) + 1;
      emit('message', strip(m));
    }
    if (ui.open) markSeen();
  }
  function applyHeartbeat(c, d) {
    if (d.status) c.status = d.status === 'offered' ? 'queued' : d.status;
    if (typeof d.typing === 'boolean') ui.typing = d.typing;
    if (c.status === 'ended') endLocally(c);
  }

  // ---------------------------------------------------------------- visitor -------------

  async function enter() {
    const u = st.user || {};
    const res = await raw('visitor.enter_site', {
      siteId,
      url: location.href,
      title: document.title || undefined,
      referrer: document.referrer || undefined,
      name: u.name || undefined,
      email: u.email || undefined,
      visitorToken: st.token || undefined,
    });
    if (res.code !== 0) throw new Error((res.error && res.error.message) || 'cannot enter');
    st.token = res.data.visitorToken;
    st.visitorId = res.data.visitorId;
    save();
  }
  function pageVisit() {
    if (st.token) call('visitor.page_visit', { url: location.href, title: document.title || undefined }).catch(() => {});
  }
  function trackNavigation() {
    for (const fn of ['pushState', 'replaceState']) {
      const orig = history[fn];
      history[fn] = function () {
        const before = location.href;
        const out = orig.apply(this, arguments);
        if (location.href !== before) setTimeout(pageVisit, 0);
        return out;
      };
    }
    addEventListener('popstate', () => setTimeout(pageVisit, 0));
    setInterval(() => {
      if (st.token) call('visitor.page_heartbeat', {}).catch(() => {});
      const c = st.chat;
      if (c && c.status !== 'ended') call('chat.visitor_heartbeat', { chatId: c.chatId }).then((r) => applyHeartbeat(c, r.data || {}), () => {});
    }, 30000);
  }

  // ---------------------------------------------------------------- chat actions --------

  async function send(text) {
    const content = text.trim();
    if (!content) return;
    const p = { clientMessageId: uid(), content, sendTime: new Date().toISOString() };
    let c = st.chat;
    if (!c || c.status === 'ended') {
      const u = st.user || {};
      ui.busy = true;
      render();
      try {
        const res = await call('chat.request', { message: content, name: u.name || undefined, email: u.email || undefined });
        c = st.chat = newChat(res.data.chatId);
        ui.greeting = null;
        c.position = res.data.queuePosition || 0;
        c.status = res.data.status === 'active' ? 'active' : 'queued';
        absorb(c, res);
      } catch (e) {
        notice(e.message);
      }
      ui.busy = false;
      render();
      return;
    }
    c.pending.push(p);
    save();
    render();
    setTyping(false);
    flush();
  }
  let typingTimer = 0;
  let typingSent = false;
  function setTyping(on) {
    clearTimeout(typingTimer);
    if (on) typingTimer = setTimeout(() => setTyping(false), 3000);
    const c = st.chat;
    if (!c || c.status === 'ended' || typingSent === on) return;
    typingSent = on;
    call('chat.visitor_heartbeat', { chatId: c.chatId, typing: on }).catch(() => {});
  }
  function markSeen() {
    const c = st.chat;
    if (!c || !c.messages.length || document.hidden) return;
    const seq = c.messages[c.messages.length - 1].seq;
    if (seq > (c.mySeen || 0)) {
      c.mySeen = seq;
      call('chat.visitor_heartbeat', { chatId: c.chatId, seenSeq: seq }).catch(() => {});
    }
  }

  // ---------------------------------------------------------------- invitations ---------

  /** An agent's invitation (an `invitation.pop` push, or pending on load): a card above the launcher. */
  let inviteTimer = 0;
  function showInvite(inv) {
    const c = st.chat;
    if (!inv || !inv.invitationId || (c && c.status !== 'ended')) return;
    ui.invite = { id: inv.invitationId, agentName: inv.agentName || 'Our team', message: inv.message || '' };
    clearTimeout(inviteTimer);
    if (inv.expiresAt) inviteTimer = setTimeout(() => hideInvite(), Math.max(0, inv.expiresAt - Date.now()));
    renderInvite();
    live.textContent = ui.invite.agentName + ' invites you to chat' + (ui.invite.message ? ': ' + ui.invite.message : '');
  }
  function hideInvite() {
    ui.invite = null;
    clearTimeout(inviteTimer);
    renderInvite();
  }
  async function answerInvite(yes) {
    const inv = ui.invite;
    if (!inv) return;
    const hadFocus = card.contains(root.activeElement);
    hideInvite();
    try {
      await call(yes ? 'invitation.accept' : 'invitation.refuse', { invitationId: inv.id });
    } catch (e) {
      if (yes) notice('This invitation has expired — you can still start a chat.');
    }
    if (yes) {
      ui.greeting = inv;
      open();
    } else if (hadFocus) launcher.focus();
  }
  function checkInvite() {
    call('invitation.check', {}).then((r) => r.data && r.data.status === 'pop' && showInvite(r.data.invitation), () => {});
  }

  // ---------------------------------------------------------------- events --------------

  const handlers = {};
  function emit(name, data) {
    for (const fn of handlers[name] || []) {
      try {
        fn(data);
      } catch (e) {
        console.error(e);
      }
    }
  }

  // ---------------------------------------------------------------- UI ------------------

  const ui = { open: false, view: 'chat', typing: false, busy: false, notice: '', online: true, sent: false, invite: null, greeting: null };
  const host = document.createElement('div');
  host.setAttribute('data-frontdesk', '');
  // Open, so tests and assistive tools can reach it; the page's CSS cannot either way.
  const root = host.attachShadow({ mode: 'open' });
  try {
    // A constructed sheet is not inline style, so a shop's strict CSP does not block it.
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(css());
    root.adoptedStyleSheets = [sheet];
  } catch (e) {
    const style = document.createElement('style');
    style.textContent = css();
    root.appendChild(style);
  }

  /** Builds an element: h('div', {class: 'x', onclick: f}, child, 'text'). Text is textContent. */
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === false || v === null) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'text') el.textContent = v;
      else if (k === 'value') el.value = v;
      else el.setAttribute(k, v === true ? '' : v);
    }
    for (const kid of kids.flat()) if (kid != null && kid !== false) el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    return el;
  }
  const svg = (d) => {
    const s = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    s.setAttribute('viewBox', '0 0 24 24');
    s.setAttribute('aria-hidden', 'true');
    const p = document.createElementNS('http://www.w3.org/2000/svg', 'path');
    p.setAttribute('d', d);
    s.appendChild(p);
    return s;
  };
  const ICON_CHAT = 'M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z';
  const ICON_CLOSE = 'M6 6l12 12M18 6L6 18';
  const ICON_SEND = 'M3 11l18-8-8 18-2-8-8-2z';

  const badge = h('span', { class: 'badge', 'aria-hidden': 'true' });
  const launcher = h('button', { class: 'launcher', type: 'button', 'aria-haspopup': 'dialog', onclick: () => (ui.open ? close() : open()) }, svg(ICON_CHAT), svg(ICON_CLOSE), badge);
  const panel = h('div', { class: 'panel', role: 'dialog', 'aria-label': title, hidden: true });
  const live = h('div', { class: 'sr', 'aria-live': 'polite', role: 'status' });
  const card = h('div', { class: 'invite', role: 'region', 'aria-label': 'Invitation to chat', hidden: true, onkeydown: (e) => e.key === 'Escape' && answerInvite(false) });
  root.append(card, launcher, panel, live);
  /** Shows the card unless the chat is open; the first time it is seen, says so (`invitation.show`). */
  function syncInvite() {
    const inv = ui.invite;
    card.hidden = !inv || ui.open;
    if (card.hidden || inv.shown) return;
    inv.shown = true;
    call('invitation.show', { invitationId: inv.id }).catch(() => {});
  }
  function renderInvite() {
    const inv = ui.invite;
    syncInvite();
    if (!inv) return card.replaceChildren();
    card.replaceChildren(
      h('div', { class: 'inv-head' }, h('span', { class: 'avatar', 'aria-hidden': 'true', text: inv.agentName.trim().charAt(0).toUpperCase() || '?' }), h('p', { class: 'inv-name', text: inv.agentName })),
      h('p', { class: 'inv-msg', text: inv.message || 'Hi! Can I help you with anything?' }),
      h('div', { class: 'inv-actions' }, h('button', { class: 'primary', type: 'button', text: 'Chat now', onclick: () => answerInvite(true) }), h('button', { class: 'ghost', type: 'button', text: 'Not now', onclick: () => answerInvite(false) }))
    );
  }
  panel.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') close();
  });

  function open() {
    if (ui.open) return;
    ui.open = true;
    st.unread = 0;
    save();
    chooseView().then(() => {
      render();
      focusFirst();
      markSeen();
    });
    render();
    emit('open', {});
  }
  function close() {
    if (!ui.open) return;
    ui.open = false;
    render();
    launcher.focus();
    emit('close', {});
  }
  async function chooseView() {
    const c = st.chat;
    if (c && c.status !== 'ended') return (ui.view = 'chat');
    if (c && c.status === 'ended' && !c.rated) return (ui.view = 'rating');
    try {
      const r = await raw('offline_message.availability', { siteId });
      ui.online = !(r.code === 0 && r.data && r.data.agentsOnline === false);
    } catch (e) {
      ui.online = true;
    }
    if (!ui.online) ui.view = ui.sent ? 'sent' : 'offline';
    else if (prechat && !(st.user && st.user.name && st.user.email)) ui.view = 'prechat';
    else ui.view = 'chat';
  }
  function focusFirst() {
    const el = panel.querySelector('input, textarea, .star');
    if (el) el.focus();
  }
  function notice(text) {
    ui.notice = text;
    render();
    setTimeout(() => {
      if (ui.notice === text) {
        ui.notice = '';
        render();
      }
    }, 6000);
  }

  let lastAnnounced = '';
  function render() {
    const n = st.unread || 0;
    badge.textContent = n > 9 ? '9+' : String(n);
    badge.hidden = !n || ui.open;
    launcher.setAttribute('aria-label', ui.open ? 'Close chat' : n ? `Open chat, ${n} unread` : 'Open chat');
    launcher.setAttribute('aria-expanded', String(ui.open));
    launcher.classList.toggle('is-open', ui.open);
    panel.hidden = !ui.open;
    syncInvite();
    if (!ui.open) return;
    panel.classList.toggle('tall', ui.view === 'chat');
    const active = root.activeElement;
    const focusWasInside = !!active && panel.contains(active);
    const keepId = active && active.id;
    const draft = panel.querySelector('#fd-text');
    const draftValue = draft ? draft.value : '';
    const formValues = {};
    for (const el of panel.querySelectorAll('input, textarea')) formValues[el.id] = el.value;
    panel.replaceChildren(header(), body());
    if (ui.notice) panel.append(h('p', { class: 'notice', role: 'alert', text: ui.notice }));
    for (const [id, v] of Object.entries(formValues)) {
      const el = panel.querySelector('#' + id);
      if (el && !el.value) el.value = v;
    }
    const text = panel.querySelector('#fd-text');
    if (text && draftValue) text.value = draftValue;
    const again = keepId && panel.querySelector('#' + keepId);
    if (again) again.focus();
    else if (focusWasInside) (panel.querySelector('input, textarea, .star') || panel.querySelector('.x')).focus();
    const log = panel.querySelector('.log');
    if (log) log.scrollTop = log.scrollHeight;
    const c = st.chat;
    const last = c && c.messages[c.messages.length - 1];
    if (last && last.messageType !== 1 && last.id !== lastAnnounced) {
      lastAnnounced = last.id;
      live.textContent = (last.senderName ? last.senderName + ': ' : '') + last.content;
    }
  }

  function header() {
    const c = st.chat;
    let sub = 'We typically reply in a few minutes';
    if (ui.view === 'offline' || ui.view === 'sent') sub = 'We are away — leave a message';
    else if (c && c.status === 'active') sub = c.agentName ? `You are chatting with ${c.agentName}` : 'An agent is with you';
    else if (c && c.status === 'queued') sub = 'Waiting for an agent…';
    return h(
      'div',
      { class: 'head' },
      h('div', { class: 'head-text' }, h('h2', { text: title }), h('p', { text: sub })),
      h('button', { class: 'x', type: 'button', 'aria-label': 'Close chat', onclick: close }, svg(ICON_CLOSE))
    );
  }

  function body() {
    if (ui.view === 'prechat') return prechatView();
    if (ui.view === 'offline') return offlineView();
    if (ui.view === 'sent') return h('div', { class: 'body pad center' }, h('p', { class: 'big', text: 'Thanks — your message is on its way.' }), h('p', { text: 'We will answer by e-mail as soon as we are back.' }));
    if (ui.view === 'rating') return ratingView();
    return chatView();
  }

  function field(id, label, type, attrs) {
    const input = type === 'textarea' ? h('textarea', Object.assign({ id, rows: 4 }, attrs)) : h('input', Object.assign({ id, type }, attrs));
    return h('label', { class: 'field', for: id }, h('span', { text: label }), input);
  }

  function prechatView() {
    const u = st.user || {};
    const form = h(
      'form',
      { class: 'body pad form', 'aria-label': 'Before we start', onsubmit: (e) => {
        e.preventDefault();
        const name = form.querySelector('#fd-name').value.trim();
        const email = form.querySelector('#fd-email').value.trim();
        if (!name || !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email)) return notice('Please enter your name and a valid e-mail address.');
        st.user = Object.assign({}, st.user, { name, email });
        save();
        ui.view = 'chat';
        render();
        focusFirst();
      } },
      h('p', { class: 'lead', text: 'Tell us who you are and we will be right with you.' }),
      field('fd-name', 'Name', 'text', { required: true, autocomplete: 'name', value: u.name || '', maxlength: 200 }),
      field('fd-email', 'E-mail', 'email', { required: true, autocomplete: 'email', value: u.email || '', maxlength: 254 }),
      h('button', { class: 'primary', type: 'submit', text: 'Start chat' })
    );
    return form;
  }

  function offlineView() {
    const u = st.user || {};
    const form = h(
      'form',
      { class: 'body pad form', 'aria-label': 'Leave a message', onsubmit: async (e) => {
        e.preventDefault();
        const get = (id) => form.querySelector(id).value.trim();
        const data = { siteId, name: get('#fd-name'), email: get('#fd-email'), message: get('#fd-msg') };
        ui.busy = true;
        try {
          await call('offline_message.submit', data);
          st.user = Object.assign({}, st.user, { name: data.name, email: data.email });
          ui.sent = true;
          ui.view = 'sent';
          save();
        } catch (err) {
          notice(err.message);
        }
        ui.busy = false;
        render();
      } },
      h('p', { class: 'lead', text: 'No one is online right now. Leave a message and we will reply by e-mail.' }),
      field('fd-name', 'Name', 'text', { required: true, autocomplete: 'name', value: u.name || '', maxlength: 200 }),
      field('fd-email', 'E-mail', 'email', { required: true, autocomplete: 'email', value: u.email || '', maxlength: 254 }),
      field('fd-msg', 'Message', 'textarea', { required: true, maxlength: 5000 }),
      h('button', { class: 'primary', type: 'submit', disabled: ui.busy, text: 'Send message' })
    );
    return form;
  }

  function ratingView() {
    const c = st.chat || {};
    if (c.rated) {
      return h('div', { class: 'body pad center' }, h('p', { class: 'big', text: 'Thank you for your feedback!' }), newChatButton());
    }
    const stars = h('div', { class: 'stars', role: 'radiogroup', 'aria-label': 'Rating' });
    for (let i = 1; i <= 5; i++) {
      stars.append(
        h('button', {
          class: 'star' + (i <= (ui.rating || 0) ? ' on' : ''),
          type: 'button',
          role: 'radio',
          'aria-checked': String(i === ui.rating),
          'aria-label': i + (i === 1 ? ' star' : ' stars'),
          text: '★',
          onclick: () => {
            ui.rating = i;
            render();
          },
        })
      );
    }
    const form = h(
      'form',
      { class: 'body pad form', 'aria-label': 'Rate this chat', onsubmit: async (e) => {
        e.preventDefault();
        if (!ui.rating) return notice('Pick 1 to 5 stars.');
        const comment = form.querySelector('#fd-comment').value.trim();
        try {
          await call('chat.post_chat', { chatId: c.chatId, rating: ui.rating, comment: comment || undefined });
          c.rated = true;
          save();
        } catch (err) {
          notice(err.message);
        }
        render();
      } },
      h('p', { class: 'big', text: 'The chat has ended.' }),
      h('p', { class: 'lead', text: 'How did we do?' }),
      stars,
      field('fd-comment', 'Comment (optional)', 'textarea', { maxlength: 2000, rows: 3 }),
      h('button', { class: 'primary', type: 'submit', text: 'Send rating' }),
      newChatButton()
    );
    return form;
  }
  function newChatButton() {
    return h('button', { class: 'link', type: 'button', text: 'Start a new chat', onclick: () => {
      st.chat = null;
      ui.rating = 0;
      save();
      chooseView().then(() => {
        render();
        focusFirst();
      });
    } });
  }

  function chatView() {
    const c = st.chat;
    // Redrawn on every change, so not live itself: new messages are announced once by `live`.
    const log = h('div', { class: 'log', role: 'log', 'aria-live': 'off', 'aria-label': 'Messages', tabindex: '0' });
    const g = (!c || c.status === 'ended') && ui.greeting;
    if (g) log.append(h('span', { class: 'who', text: g.agentName }));
    if (!c || !c.messages.length) log.append(h('p', { class: 'hello', text: (g && g.message) || 'Hi there! 👋 Ask us anything — we are happy to help.' }));
    if (c) {
      let lastSender = '';
      const seenAt = c.messages.filter((m) => m.messageType === 1 && m.seq <= (c.seenSeq || 0)).pop();
      for (const m of c.messages) {
        if (m.messageType === 4) {
          log.append(h('p', { class: 'sys', text: m.content }));
          lastSender = '';
          continue;
        }
        const me = m.messageType === 1;
        const who = me ? 'me' : m.senderName || 'Agent';
        const row = h('div', { class: 'row ' + (me ? 'mine' : 'theirs') });
        if (!me && who !== lastSender) row.append(h('span', { class: 'who', text: who }));
        row.append(h('p', { class: 'bubble', text: m.content }));
        const meta = h('span', { class: 'meta', text: time(m.sendTime) });
        if (m === seenAt) meta.append(' · Seen');
        row.append(meta);
        log.append(row);
        lastSender = who;
      }
      for (const p of c.pending) {
        log.append(h('div', { class: 'row mine pending' }, h('p', { class: 'bubble', text: p.content }), h('span', { class: 'meta', text: 'Sending…' })));
      }
    }
    const status = [];
    if (c && c.status === 'queued') {
      status.push(h('p', { class: 'queue', text: c.position > 0 ? `You are number ${c.position} in the queue` : 'Connecting you to an agent…' }));
    }
    if (ui.typing) status.push(h('p', { class: 'typing', 'aria-label': 'Agent is typing' }, h('i'), h('i'), h('i'), h('span', { class: 'sr', text: 'Agent is typing' })));
    const text = h('textarea', {
      id: 'fd-text',
      rows: 1,
      placeholder: 'Write a message…',
      'aria-label': 'Message',
      maxlength: 5000,
      oninput: (e) => setTyping(!!e.target.value.trim()),
      onkeydown: (e) => {
        if (e.key === 'Enter' && !e.shiftKey) {
          e.preventDefault();
          submit();
        }
      },
    });
    const submit = () => {
      const v = text.value;
      text.value = '';
      send(v);
    };
    const composer = h(
      'form',
      { class: 'composer', onsubmit: (e) => {
        e.preventDefault();
        submit();
      } },
      text,
      h('button', { class: 'send', type: 'submit', 'aria-label': 'Send', disabled: ui.busy }, svg(ICON_SEND))
    );
    return h('div', { class: 'body chat' }, log, status, composer);
  }
  function time(iso) {
    const d = new Date(iso);
    return isNaN(d) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  function css() {
    return `
:host{all:initial}
*{box-sizing:border-box;font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
[hidden]{display:none!important}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
button{font:inherit;cursor:pointer}
button:focus-visible,textarea:focus-visible,input:focus-visible,.log:focus-visible{outline:3px solid ${color}66;outline-offset:2px}
.launcher{position:fixed;right:20px;bottom:20px;z-index:2147483646;width:60px;height:60px;border-radius:50%;border:0;background:${color};color:#fff;box-shadow:0 6px 24px rgba(0,0,0,.22);display:grid;place-items:center;transition:transform .15s}
.launcher:hover{transform:scale(1.06)}
.launcher svg{width:28px;height:28px;fill:#fff}
.launcher svg+svg path{fill:none;stroke:#fff;stroke-width:2.4;stroke-linecap:round}
.launcher svg+svg,.launcher.is-open svg:first-child{display:none}
.launcher.is-open svg+svg{display:block}
.badge{position:absolute;top:-2px;right:-2px;min-width:22px;height:22px;padding:0 6px;border-radius:11px;background:#e5484d;color:#fff;font:600 12px/22px system-ui,sans-serif;text-align:center;border:2px solid #fff}
.panel{position:fixed;right:20px;bottom:92px;z-index:2147483647;width:370px;max-height:calc(100vh - 112px);display:flex;flex-direction:column;background:#fff;color:#1c2024;border-radius:16px;box-shadow:0 12px 48px rgba(0,0,0,.22);overflow:hidden;font-size:15px;line-height:1.45}
.panel.tall{height:min(600px,calc(100vh - 112px))}
.head{display:flex;align-items:center;gap:12px;padding:18px 16px 18px 20px;background:${color};color:#fff}
.head-text{flex:1;min-width:0}
.head h2{margin:0;font-size:17px;font-weight:650}
.head p{margin:2px 0 0;font-size:13px;opacity:.9;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.x{width:36px;height:36px;border:0;border-radius:8px;background:transparent;display:grid;place-items:center}
.x:hover{background:rgba(255,255,255,.18)}
.x svg{width:20px;height:20px;fill:none;stroke:#fff;stroke-width:2.2;stroke-linecap:round}
.body{flex:1;min-height:0;display:flex;flex-direction:column}
.pad{padding:20px;overflow:auto}
.center{justify-content:center;align-items:center;text-align:center;gap:8px}
.form{gap:14px}
.lead{margin:0;color:#60646c}
.big{margin:0;font-size:17px;font-weight:600}
.field{display:flex;flex-direction:column;gap:6px;font-size:13px;font-weight:600;color:#3a3f45}
.field input,.field textarea{font:inherit;font-size:15px;font-weight:400;color:#1c2024;padding:10px 12px;border:1px solid #d5d9de;border-radius:10px;background:#fff;resize:vertical}
.field input:focus,.field textarea:focus{border-color:${color};outline:none;box-shadow:0 0 0 3px ${color}33}
.primary{padding:12px;border:0;border-radius:10px;background:${color};color:#fff;font-weight:600}
.primary:disabled{opacity:.6}
.link{border:0;background:none;color:${color};padding:8px;font-weight:600}
.log{flex:1;overflow-y:auto;padding:16px;display:flex;flex-direction:column;gap:6px;background:#f7f8fa}
.hello{margin:auto 0 0;align-self:flex-start;max-width:85%;background:#fff;border:1px solid #e6e8eb;border-radius:14px 14px 14px 4px;padding:10px 14px}
.row{display:flex;flex-direction:column;max-width:82%}
.mine{align-self:flex-end;align-items:flex-end}
.theirs{align-self:flex-start;align-items:flex-start}
.who{font-size:12px;color:#60646c;margin:6px 0 2px 4px}
.bubble{margin:0;padding:9px 13px;border-radius:16px;white-space:pre-wrap;overflow-wrap:anywhere}
.mine .bubble{background:${color};color:#fff;border-bottom-right-radius:4px}
.theirs .bubble{background:#fff;border:1px solid #e6e8eb;border-bottom-left-radius:4px}
.pending{opacity:.6}
.meta{font-size:11px;color:#8b8d98;margin:2px 4px 0}
.sys{align-self:center;margin:8px 0;font-size:12px;color:#60646c;background:#eceef1;padding:4px 10px;border-radius:10px;text-align:center}
.queue{margin:0;padding:8px 16px;font-size:13px;color:#60646c;background:#f7f8fa;border-top:1px solid #eceef1;text-align:center}
.typing{margin:0;padding:6px 20px 8px;background:#f7f8fa;display:flex;gap:4px;align-items:center}
.typing i{width:7px;height:7px;border-radius:50%;background:#9ba1a6;animation:fd-b 1.2s infinite}
.typing i:nth-child(2){animation-delay:.15s}.typing i:nth-child(3){animation-delay:.3s}
@keyframes fd-b{0%,60%,100%{transform:none;opacity:.5}30%{transform:translateY(-4px);opacity:1}}
.composer{display:flex;gap:8px;align-items:flex-end;padding:12px;border-top:1px solid #eceef1;background:#fff}
.composer textarea{flex:1;font:inherit;font-size:15px;resize:none;max-height:120px;padding:10px 12px;border:1px solid #d5d9de;border-radius:12px;color:#1c2024}
.composer textarea:focus{outline:none;border-color:${color}}
.send{width:42px;height:42px;flex:none;border:0;border-radius:12px;background:${color};display:grid;place-items:center}
.send svg{width:20px;height:20px;fill:#fff}
.stars{display:flex;gap:6px}
.star{font-size:30px;line-height:1;border:0;background:none;color:#d5d9de;padding:2px}
.star.on{color:#f5a623}
.invite{position:fixed;right:20px;bottom:92px;z-index:2147483646;width:300px;padding:16px;background:#fff;color:#1c2024;border-radius:14px;box-shadow:0 10px 40px rgba(0,0,0,.2);font-size:15px;line-height:1.45;animation:fd-in .2s ease-out}
.inv-head{display:flex;align-items:center;gap:10px}
.avatar{width:36px;height:36px;flex:none;border-radius:50%;background:${color};color:#fff;display:grid;place-items:center;font-weight:650}
.inv-name{margin:0;font-weight:650}
.inv-msg{margin:10px 0 14px;white-space:pre-wrap;overflow-wrap:anywhere;color:#3a3f45}
.inv-actions{display:flex;gap:8px}
.inv-actions button{flex:1;padding:10px}
.ghost{border:1px solid #d5d9de;border-radius:10px;background:#fff;color:#3a3f45;font-weight:600}
.ghost:hover{background:#f3f4f6}
@keyframes fd-in{from{opacity:0;transform:translateY(8px)}}
.notice{margin:0;padding:10px 16px;background:#fff1f0;color:#b42318;font-size:13px;border-top:1px solid #fcd7d4}
@media (max-width:480px){.panel,.panel.tall{inset:0;width:auto;height:auto;max-height:none;border-radius:0}.launcher.is-open{display:none}}
@media (prefers-reduced-motion:reduce){.typing i,.invite{animation:none}.launcher{transition:none}}
`;
  }

  // ---------------------------------------------------------------- start ---------------

  window.Frontdesk = {
    version: '1',
    open,
    close,
    setUser(u) {
      st.user = Object.assign({}, st.user, { name: u && u.name, email: u && u.email });
      save();
      if (ui.open) render();
    },
    /** Resolves with the server's answer once the visitor has entered the site. */
    setCustomVariables(vars) {
      return entered.then(() => call('visitor.set_custom_variables', { customVariables: vars || {} }));
    },
    on(name, fn) {
      (handlers[name] = handlers[name] || []).push(fn);
    },
  };

  let markEntered;
  const entered = new Promise((resolve) => (markEntered = resolve));
  async function start() {
    document.body.appendChild(host);
    render();
    try {
      await enter();
    } catch (e) {
      console.warn('Frontdesk:', e.message);
      return;
    }
    markEntered();
    connect();
    checkInvite();
    trackNavigation();
    addEventListener('storage', (e) => {
      if (e.key === KEY) {
        st = load();
        render();
      }
    });
    document.addEventListener('visibilitychange', () => ui.open && markSeen());
  }
  if (document.body) start();
  else addEventListener('DOMContentLoaded', start);
})();
