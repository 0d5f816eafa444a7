/*
 * Frontdesk agent console: plain JavaScript, no framework, no build step. Served by the
 * binary at /console under a Content-Security-Policy without 'unsafe-inline', so nothing
 * here is inline in the HTML and every piece of data is rendered with textContent.
 *
 * Tokens live in sessionStorage and are refreshed before they expire. The console keeps its
 * own local copy of the open chats (messages with their sig, offsets, unacknowledged sends)
 * in sessionStorage and takes part in rebuild (SPEC §6) like the widget: a `code: 1` answer
 * uploads what the server lacks with chat.rebuild and replaces the copy with the merge.
 */
(() => {
  'use strict';

  const $ = (sel) => document.querySelector(sel);
  const $$ = (sel) => Array.from(document.querySelectorAll(sel));
  const CALL_TIMEOUT = 15000;
  const DEFAULT_CANNED = [
    'Hi! Thanks for reaching out — how can I help you today?',
    'Let me check that for you, one moment please.',
    'Could you share your order number?',
    'Is there anything else I can help you with?',
    'Thanks for chatting with us. Have a great day!',
  ];

  // ------------------------------------------------------------ state ------------------

  const session = {
    get(key, fallback) {
      try {
        const v = sessionStorage.getItem(key);
        return v ? JSON.parse(v) : fallback;
      } catch (e) {
        return fallback;
      }
    },
    set(key, value) {
      try {
        sessionStorage.setItem(key, JSON.stringify(value));
      } catch (e) {
        /* storage full: the copy lives in memory for this tab */
      }
    },
  };
  let auth = session.get('fd.auth', null);
  /** chatId → local copy of an open chat. */
  let chats = session.get('fd.chats', {});
  /** The status this agent chose in this session; re-applied after every reconnect. */
  let wantStatus = session.get('fd.status', null);
  const offers = new Map();
  const visitors = new Map();
  const agents = new Map();
  let departments = [];
  let view = 'chats';
  const saveChats = () => session.set('fd.chats', chats);
  const uid = () =>
    (crypto.randomUUID && crypto.randomUUID()) || Date.now().toString(36) + Math.random().toString(36).slice(2);

  function canned() {
    try {
      const list = JSON.parse(localStorage.getItem('fd.canned') || 'null');
      return Array.isArray(list) ? list : DEFAULT_CANNED.slice();
    } catch (e) {
      return DEFAULT_CANNED.slice();
    }
  }
  function setCanned(list) {
    try {
      localStorage.setItem('fd.canned', JSON.stringify(list));
    } catch (e) {
      toast('Cannot save canned responses in this browser.');
    }
  }

  // ------------------------------------------------------------ DOM helpers -------------

  /** h('div', {class, text, onclick}, ...children): text always goes in as textContent. */
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'text') el.textContent = v;
      else if (k === 'value') el.value = v;
      else el.setAttribute(k, v === true ? '' : v);
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }
  let toastTimer = 0;
  function toast(text) {
    const t = $('#toast');
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => (t.hidden = true), 3500);
  }
  function ago(ms) {
    if (!ms) return '';
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min';
    return Math.floor(s / 3600) + ' h ' + (Math.floor(s / 60) % 60) + ' min';
  }
  const clock = (iso) => {
    const d = new Date(iso);
    return isNaN(d) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  };

  // ------------------------------------------------------------ transport ---------------

  let ws = null;
  let wsOpen = false;
  let retry = 0;
  let reconnectTimer = 0;
  let refreshTimer = 0;
  const waiting = new Map();
  let frameId = 0;

  class ApiError extends Error {
    constructor(kind, message) {
      super(message);
      this.kind = kind;
    }
  }

  async function raw(event, data, offsets) {
    if (wsOpen && event !== 'agent.login' && event !== 'agent.refresh_token') {
      const id = 'c' + ++frameId;
      const frame = { id, event, data };
      if (offsets) Object.assign(frame, { visitorDataOffset: offsets.v, agentDataOffset: offsets.a });
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(id);
          reject(new ApiError('unavailable', 'the server did not answer in time'));
        }, CALL_TIMEOUT);
        waiting.set(id, (result) => {
          clearTimeout(timer);
          resolve(result);
        });
        ws.send(JSON.stringify(frame));
      });
    }
    const headers = { 'Content-Type': 'application/json' };
    if (auth && auth.accessToken) headers.Authorization = 'Bearer ' + auth.accessToken;
    if (offsets) {
      headers['X-Visitor-Data-Offset'] = String(offsets.v);
      headers['X-Agent-Data-Offset'] = String(offsets.a);
    }
    let res;
    try {
      res = await fetch('/api/v1/' + event, { method: 'POST', headers, body: JSON.stringify(data) });
    } catch (e) {
      throw new ApiError('unavailable', 'cannot reach the server');
    }
    return res.json().catch(() => ({ code: -1, error: { kind: 'internal', message: 'HTTP ' + res.status } }));
  }

  /** An event call; chat events carry the chat's offsets and take part in rebuild. */
  async function call(event, data, again) {
    const c = data && data.chatId ? chats[data.chatId] : null;
    const res = await raw(event, data || {}, c && { v: c.vOff, a: c.aOff });
    if (res.code === -1) {
      const err = res.error || {};
      if (err.kind === 'unauthorized' && auth && !again && event !== 'agent.refresh_token') {
        if (await refresh()) return call(event, data, true);
        logout(true);
      }
      throw new ApiError(err.kind || 'internal', err.message || 'request failed');
    }
    if (c && res.code === 1) {
      await rebuild(c, res.visitorDataOffset, res.agentDataOffset);
      return again ? res : call(event, data, true);
    }
    if (c && res.code === 0) absorb(c, res);
    return res;
  }

  async function rest(method, path, body) {
    const headers = { Authorization: 'Bearer ' + (auth && auth.accessToken) };
    if (body) headers['Content-Type'] = 'application/json';
    const res = await fetch('/api/v1/' + path, { method, headers, body: body ? JSON.stringify(body) : undefined });
    const json = await res.json().catch(() => ({}));
    if (!res.ok || json.code === -1) {
      const err = json.error || {};
      throw new ApiError(err.kind || 'internal', err.message || `${method} /api/v1/${path}: HTTP ${res.status}`);
    }
    return json.data !== undefined ? json.data : json;
  }

  function connect() {
    clearTimeout(reconnectTimer);
    if (!auth || ws) return;
    const url = location.origin.replace(/^http/, 'ws') + '/api/v1/ws?token=' + encodeURIComponent(auth.accessToken);
    ws = new WebSocket(url);
    ws.onopen = () => {
      wsOpen = true;
      retry = 0;
      renderConn();
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
    ws.onclose = (ev) => {
      ws = null;
      wsOpen = false;
      for (const done of waiting.values()) done({ code: -1, error: { kind: 'unavailable', message: 'connection lost' } });
      waiting.clear();
      renderConn();
      if (!auth) return;
      // 4001: this session was signed out (here, in another tab, or revoked): no reconnecting.
      if (ev && ev.code === 4001) return void logout(true);
      const delay = Math.min(30000, 1000 * 2 ** retry++) * (0.5 + Math.random() / 2);
      reconnectTimer = setTimeout(connect, delay);
    };
  }
  function renderConn() {
    const el = $('#conn');
    el.className = 'conn ' + (wsOpen ? 'up' : 'down');
    el.title = wsOpen ? 'Connected' : 'Reconnecting…';
    el.setAttribute('aria-label', el.title);
  }

  /** After (re)connecting: status again, each open chat caught up (or rebuilt), sends resent. */
  async function resync() {
    if (!wantStatus) wantStatus = auth.agent && auth.agent.status === 'online' ? 'online' : 'away';
    try {
      await setStatus(wantStatus, true);
    } catch (e) {
      toast(e.message);
    }
    for (const c of Object.values(chats)) {
      if (c.status === 'ended' || c.gone) continue;
      try {
        const res = await call('chat.agent_heartbeat', { chatId: c.chatId });
        applyHeartbeat(c, res.data || {});
        await flush(c);
      } catch (e) {
        if (e.kind === 'not_found' || e.kind === 'forbidden') {
          c.gone = true;
          c.note = 'This chat is no longer yours.';
        }
      }
    }
    saveChats();
    renderChats();
    loadVisitors();
  }

  // ------------------------------------------------------------ auth --------------------

  async function login(email, password) {
    const res = await raw('agent.login', { email, password });
    if (res.code !== 0) throw new ApiError((res.error || {}).kind, (res.error || {}).message || 'sign-in failed');
    keepTokens(res.data);
  }
  function keepTokens(d) {
    auth = {
      accessToken: d.accessToken,
      refreshToken: d.refreshToken || (auth && auth.refreshToken),
      expiresAt: Date.now() + (d.expiresIn || 900) * 1000,
      agent: d.agent || (auth && auth.agent),
    };
    session.set('fd.auth', auth);
    scheduleRefresh();
  }
  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    if (!auth) return;
    const wait = Math.max(5000, auth.expiresAt - Date.now() - 60000);
    refreshTimer = setTimeout(refresh, wait);
  }
  let refreshing = null;
  function refresh() {
    if (!auth || !auth.refreshToken) return Promise.resolve(false);
    refreshing =
      refreshing ||
      raw('agent.refresh_token', { refreshToken: auth.refreshToken })
        .then((res) => {
          if (res.code !== 0) return false;
          keepTokens(res.data);
          return true;
        })
        .catch(() => {
          scheduleRefreshRetry();
          return false;
        })
        .finally(() => (refreshing = null));
    return refreshing;
  }
  function scheduleRefreshRetry() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refresh, 10000);
  }
  async function logout(expired) {
    if (auth && !expired) await call('agent.logout', {}).catch(() => {});
    auth = null;
    chats = {};
    sessionStorage.clear();
    clearTimeout(refreshTimer);
    if (ws) ws.close();
    showLogin(expired ? 'Your session ended; sign in again.' : '');
  }

  // ------------------------------------------------------------ local copy --------------

  function newChat(chatId, extra) {
    return Object.assign(
      { chatId: String(chatId), visitorName: 'Visitor', status: 'active', role: 'owner', messages: [], vOff: 0, aOff: 0, pending: [], seenSeq: 0, mySeen: 0, typing: false },
      extra
    );
  }
  function strip(m) {
    const keep = ['id', 'chatId', 'seq', 'dataOffset', 'messageType', 'senderId', 'senderName', 'content', 'sendTime', 'clientMessageId', 'attachment', 'sig'];
    const out = {};
    for (const k of keep) if (m[k] !== undefined) out[k] = m[k];
    return out;
  }
  function addMessages(c, list) {
    let added = 0;
    for (const m of list || []) {
      if (String(m.chatId) !== String(c.chatId)) continue;
      const i = c.messages.findIndex((x) => x.id === m.id);
      if (i >= 0) c.messages[i] = strip(m);
      else {
        c.messages.push(strip(m));
        added++;
      }
      if (m.clientMessageId) c.pending = c.pending.filter((p) => p.clientMessageId !== m.clientMessageId);
    }
    c.messages.sort((a, b) => a.seq - b.seq);
    return added;
  }
  function advance(c) {
    const has = (visitorSide, n) => c.messages.some((m) => (m.messageType === 1) === visitorSide && m.dataOffset === n);
    while (has(true, c.vOff + 1)) c.vOff++;
    while (has(false, c.aOff + 1)) c.aOff++;
  }
  function absorb(c, res) {
    const added = addMessages(c, res.messages);
    if (typeof res.visitorDataOffset === 'number') c.vOff = Math.max(c.vOff, res.visitorDataOffset);
    if (typeof res.agentDataOffset === 'number') c.aOff = Math.max(c.aOff, res.agentDataOffset);
    saveChats();
    if (added) {
      renderPane(c);
      markSeen(c);
    }
  }
  async function rebuild(c, sv, sa) {
    const full = sv < 0 || sa < 0;
    const messages = c.messages.filter((m) => m.sig && (full || (m.messageType === 1 ? m.dataOffset > sv : m.dataOffset > sa)));
    const res = await raw('chat.rebuild', { chatId: c.chatId, visitorDataOffset: 0, agentDataOffset: 0, messages }, { v: 0, a: 0 });
    if (res.code !== 0) throw new ApiError((res.error || {}).kind || 'internal', (res.error || {}).message || 'rebuild failed');
    c.messages = [];
    addMessages(c, res.messages);
    c.vOff = res.visitorDataOffset || 0;
    c.aOff = res.agentDataOffset || 0;
    saveChats();
    renderPane(c);
  }
  /** Sends a chat's unacknowledged messages in order, one flush per chat at a time. */
  const flushes = new Map();
  function flush(c) {
    const next = (flushes.get(c.chatId) || Promise.resolve()).then(() => flushNow(c));
    const done = () => flushes.get(c.chatId) === next && flushes.delete(c.chatId);
    flushes.set(c.chatId, next);
    next.then(done, done);
    return next;
  }
  async function flushNow(c) {
    for (const p of c.pending.slice()) {
      if (!c.pending.includes(p)) continue;
      try {
        await call('chat.agent_send_message', { chatId: c.chatId, content: p.content, clientMessageId: p.clientMessageId });
      } catch (e) {
        if (e.kind === 'bad_request' || e.kind === 'forbidden' || e.kind === 'conflict') {
          c.pending = c.pending.filter((x) => x !== p);
          toast(e.message);
          continue;
        }
        break;
      }
    }
    saveChats();
    renderPane(c);
  }
  function applyHeartbeat(c, d) {
    if (typeof d.typing === 'boolean') c.typing = d.typing;
    if (d.status === 'ended') c.status = 'ended';
    if (typeof d.seenSeq === 'number') c.mySeen = Math.max(c.mySeen || 0, d.seenSeq);
    renderPane(c);
  }

  // ------------------------------------------------------------ pushes ------------------

  function onPush(name, d) {
    const c = d.chatId ? chats[String(d.chatId)] : null;
    const me = auth && String(auth.agent.id);
    switch (name) {
      case 'chat.offered':
        offers.set(String(d.chatId), d);
        renderOffers();
        alertAgent(d);
        break;
      case 'chat.started':
        if (String(d.agentId) === me && !c) openChat(d.chatId, { visitorName: d.visitorName, visitorId: d.visitorId });
        if (c) {
          c.status = 'active';
          renderChats();
        }
        break;
      case 'chat.transferred':
        offers.delete(String(d.chatId));
        if (String(d.to) === me && !c) openChat(d.chatId, {});
        else if (c && String(d.from) === me) {
          c.gone = true;
          c.note = `Transferred to ${d.agentName || 'another agent'}.`;
        }
        renderOffers();
        renderChats();
        break;
      case 'chat.message':
        if (!c) break;
        if (d.messageType === 1 && !c.messages.some((m) => m.id === d.id)) $('#live').textContent = `${chatName(c)}: ${d.content}`;
        addMessages(c, [d]);
        advance(c);
        if (d.messageType === 1) c.typing = false;
        saveChats();
        renderPane(c);
        markSeen(c);
        break;
      case 'chat.typing':
        if (c && d.side === 'visitor') {
          c.typing = !!d.typing;
          renderPane(c);
        }
        break;
      case 'chat.seen':
        if (c && d.by === 'visitor') {
          c.seenSeq = Math.max(c.seenSeq || 0, d.seq || 0);
          saveChats();
          renderPane(c);
        }
        break;
      case 'chat.ended':
        offers.delete(String(d.chatId));
        renderOffers();
        if (c) {
          c.status = 'ended';
          c.typing = false;
          saveChats();
          renderChats();
        }
        break;
      case 'chat.rebuild_required':
        if (c) openChat(c.chatId, {});
        break;
      case 'visitor.updated':
        if (d.id) {
          visitors.set(String(d.id), d);
          renderVisitors();
        }
        break;
      case 'agent.status': {
        const id = String(d.agentId || d.id || '');
        if (id) {
          agents.set(id, Object.assign({}, agents.get(id) || { id }, d));
          renderSupervisor();
        }
        break;
      }
      default:
    }
  }

  let audio = null;
  function alertAgent(offer) {
    try {
      audio = audio || new AudioContext();
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.15, audio.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.4);
      osc.connect(gain).connect(audio.destination);
      osc.start();
      osc.stop(audio.currentTime + 0.4);
    } catch (e) {
      /* no audio device */
    }
    if ('Notification' in window && Notification.permission === 'granted' && document.hidden) {
      new Notification('New chat waiting', { body: (offer.visitorName || 'A visitor') + ' wants to chat', tag: 'fd-' + offer.chatId });
    }
  }

  // ------------------------------------------------------------ actions -----------------

  async function setStatus(status, quiet) {
    await call('agent.set_status', { status });
    wantStatus = status;
    session.set('fd.status', status);
    if (auth) agents.set(String(auth.agent.id), Object.assign({}, agents.get(String(auth.agent.id)), { status }));
    for (const b of $$('.status-switch button')) {
      const on = b.dataset.status === status;
      b.setAttribute('aria-checked', String(on));
      b.classList.toggle('on', on);
    }
    if (!quiet) toast(status === 'online' ? 'You are online and will receive chats.' : 'You are away; no new chats will be offered.');
  }
  /** Opens (or re-opens) a chat pane and fetches its messages with the chat's offsets. */
  async function openChat(chatId, extra, event) {
    const id = String(chatId);
    const existed = !!chats[id];
    const c = chats[id] || (chats[id] = newChat(id, extra));
    Object.assign(c, extra || {}, { gone: false, note: '' });
    try {
      const res = await call(event || 'chat.agent_heartbeat', { chatId: id });
      if (event) c.status = 'active';
      applyHeartbeat(c, res.data || {});
    } catch (e) {
      if (!existed) delete chats[id];
      toast(e.message);
    }
    saveChats();
    renderChats();
  }
  async function accept(chatId) {
    const offer = offers.get(chatId) || {};
    offers.delete(chatId);
    renderOffers();
    await openChat(chatId, { visitorName: offer.visitorName || 'Visitor', visitorId: offer.visitorId, role: 'owner' }, 'chat.agent_accept');
  }
  async function refuse(chatId) {
    offers.delete(chatId);
    renderOffers();
    await call('chat.agent_refuse', { chatId }).catch((e) => toast(e.message));
  }
  function send(c, text) {
    const content = text.trim();
    if (!content) return;
    c.pending.push({ clientMessageId: uid(), content });
    saveChats();
    renderPane(c);
    setTyping(c, false);
    flush(c);
  }
  function setTyping(c, on) {
    clearTimeout(c._typingTimer);
    if (on) c._typingTimer = setTimeout(() => setTyping(c, false), 3000);
    if (!!c._typingSent === on || c.status === 'ended' || c.role === 'monitoring') return;
    c._typingSent = on;
    call('chat.agent_heartbeat', { chatId: c.chatId, typing: on }).catch(() => {});
  }
  function markSeen(c) {
    if (document.hidden || !c.messages.length || c.role === 'monitoring') return;
    const seq = c.messages[c.messages.length - 1].seq;
    if (seq > (c.mySeen || 0)) {
      c.mySeen = seq;
      call('chat.agent_heartbeat', { chatId: c.chatId, seenSeq: seq }).catch(() => {});
    }
  }
  async function act(c, event, data, done) {
    try {
      await call(event, Object.assign({ chatId: c.chatId }, data));
      if (done) done();
    } catch (e) {
      toast(e.message);
    }
    saveChats();
    renderChats();
  }
  function closePane(c) {
    delete chats[c.chatId];
    saveChats();
    renderChats();
  }

  // ------------------------------------------------------------ chats view --------------

  function renderOffers() {
    const list = $('#offers');
    list.replaceChildren();
    for (const [chatId, o] of offers) {
      if (o.expiresAt && o.expiresAt < Date.now()) {
        offers.delete(chatId);
        continue;
      }
      list.append(
        h(
          'li',
          { class: 'offer' },
          h('div', { class: 'offer-title', text: o.visitorName || 'Visitor' }),
          h('div', { class: 'muted small', text: o.transferFrom ? 'Transfer from a colleague' : 'Wants to chat' }),
          h(
            'div',
            { class: 'offer-actions' },
            h('button', { type: 'button', class: 'btn primary small', text: 'Accept', 'aria-label': 'Accept chat with ' + (o.visitorName || 'visitor'), onclick: () => accept(chatId) }),
            h('button', { type: 'button', class: 'btn ghost small', text: 'Refuse', onclick: () => refuse(chatId) })
          )
        )
      );
    }
    $('#offers-empty').hidden = offers.size > 0;
    const count = $('#queue-count');
    count.textContent = String(offers.size);
    count.hidden = offers.size === 0;
  }

  function renderChats() {
    const list = $('#my-chats');
    list.replaceChildren();
    const open = Object.values(chats);
    for (const c of open) {
      const unread = c.messages.filter((m) => m.messageType === 1 && m.seq > (c.mySeen || 0)).length;
      list.append(
        h(
          'li',
          { class: 'chat-item' },
          h('span', { class: 'dot ' + (c.status === 'ended' || c.gone ? 'off' : 'on'), 'aria-hidden': 'true' }),
          h('span', { class: 'grow', text: chatName(c) }),
          c.role !== 'owner' ? h('span', { class: 'tag', text: c.role }) : null,
          unread ? h('span', { class: 'pill', text: String(unread), 'aria-label': unread + ' unread' }) : null
        )
      );
    }
    $('#chats-empty').hidden = open.length > 0;
    const panes = $('#panes');
    for (const el of Array.from(panes.children)) if (!chats[el.dataset.chat]) el.remove();
    for (const c of open) renderPane(c);
    if (!open.length && !panes.querySelector('.panes-empty')) {
      panes.append(h('div', { class: 'panes-empty' }, h('p', { class: 'big', text: 'No open chats' }), h('p', { class: 'muted', text: wantStatus === 'online' ? 'New chats appear on the left; accept one to start.' : 'Set yourself online to receive chats.' })));
    } else if (open.length) {
      const empty = panes.querySelector('.panes-empty');
      if (empty) empty.remove();
    }
  }

  /** The visitor's name as the chat knows it (its messages carry it), else what we were told. */
  function chatName(c) {
    const m = c.messages.find((x) => x.messageType === 1 && x.senderName);
    const name = (m && m.senderName) || c.visitorName || 'Visitor';
    // Unnamed visitors are told apart the way the visitor list does it.
    return name === 'Visitor' && c.visitorId ? 'Visitor ' + String(c.visitorId).slice(-4) : name;
  }

  function renderPane(c) {
    const panes = $('#panes');
    let pane = panes.querySelector(`[data-chat="${CSS.escape(c.chatId)}"]`);
    const fresh = !pane;
    if (fresh) {
      pane = buildPane(c);
      panes.append(pane);
    }
    const title = pane.querySelector('.pane-title');
    title.textContent = chatName(c);
    const state = pane.querySelector('.pane-state');
    state.textContent = c.gone ? c.note : c.status === 'ended' ? 'Ended' : c.role === 'monitoring' ? 'Monitoring (visitor cannot see you)' : c.role === 'joined' ? 'Joined' : 'Active';
    const log = pane.querySelector('.log');
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.replaceChildren();
    const seenAt = c.messages.filter((m) => m.messageType !== 1 && m.messageType !== 4 && m.seq <= (c.seenSeq || 0)).pop();
    for (const m of c.messages) {
      if (m.messageType === 4) {
        log.append(h('p', { class: 'sys', text: m.content }));
        continue;
      }
      const mine = m.messageType !== 1;
      const row = h('div', { class: 'row ' + (mine ? 'mine' : 'theirs') }, h('span', { class: 'who', text: (m.senderName || (mine ? 'Agent' : 'Visitor')) + ' · ' + clock(m.sendTime) }), h('p', { class: 'bubble', text: m.content }));
      if (m === seenAt) row.append(h('span', { class: 'seen', text: 'Seen' }));
      log.append(row);
    }
    for (const p of c.pending) log.append(h('div', { class: 'row mine pending' }, h('p', { class: 'bubble', text: p.content }), h('span', { class: 'seen', text: 'Sending…' })));
    if (atBottom || fresh) log.scrollTop = log.scrollHeight;
    pane.querySelector('.typing').hidden = !c.typing;
    const ended = c.status === 'ended' || c.gone;
    pane.querySelector('.composer').hidden = ended || c.role === 'monitoring';
    pane.querySelector('.actions').hidden = ended;
    pane.querySelector('.end').hidden = c.role !== 'owner';
    pane.querySelector('.transfer').hidden = c.role !== 'owner';
    pane.querySelector('.leave').hidden = c.role === 'owner';
    const wrap = pane.querySelector('.wrap');
    wrap.hidden = !(c.status === 'ended' && c.role === 'owner' && !c.wrapped && !c.gone);
    pane.querySelector('.close').hidden = !ended || !wrap.hidden;
  }

  function buildPane(c) {
    const text = h('textarea', { rows: 2, placeholder: 'Type a reply… (Enter to send, Shift+Enter for a new line)', 'aria-label': 'Reply to ' + (c.visitorName || 'visitor'), maxlength: 5000 });
    text.addEventListener('input', () => setTyping(c, !!text.value.trim()));
    text.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey) {
        e.preventDefault();
        send(c, text.value);
        text.value = '';
      }
    });
    const pick = h('select', { class: 'canned', 'aria-label': 'Insert a canned response' }, h('option', { value: '', text: 'Canned…' }), canned().map((t) => h('option', { value: t, text: t.length > 60 ? t.slice(0, 57) + '…' : t })));
    pick.addEventListener('change', () => {
      if (pick.value) {
        text.value = (text.value ? text.value + ' ' : '') + pick.value;
        pick.value = '';
        text.focus();
      }
    });
    pick.addEventListener('focus', () => {
      pick.replaceChildren(h('option', { value: '', text: 'Canned…' }), canned().map((t) => h('option', { value: t, text: t.length > 60 ? t.slice(0, 57) + '…' : t })));
    });

    const transferSel = h('select', { 'aria-label': 'Transfer to' });
    const fillTransfer = () => {
      const me = auth && String(auth.agent.id);
      transferSel.replaceChildren(
        h('option', { value: '', text: 'Transfer to…' }),
        h('optgroup', { label: 'Agents' }, Array.from(agents.values()).filter((a) => String(a.id) !== me).map((a) => h('option', { value: 'a:' + a.id, text: (a.name || a.email) + (a.status ? ' (' + a.status + ')' : '') }))),
        h('optgroup', { label: 'Departments' }, departments.map((d) => h('option', { value: 'd:' + d.id, text: d.name })))
      );
    };
    fillTransfer();
    transferSel.addEventListener('focus', fillTransfer);
    transferSel.addEventListener('change', () => {
      const v = transferSel.value;
      transferSel.value = '';
      if (!v) return;
      const data = v.startsWith('a:') ? { agentId: v.slice(2) } : { departmentId: v.slice(2) };
      act(c, 'chat.agent_transfer', data, () => toast('Transfer offered; the chat stays with you until it is accepted.'));
    });

    const notes = h('textarea', { rows: 2, 'aria-label': 'Wrap-up notes', placeholder: 'Notes for this chat' });
    const tags = h('input', { 'aria-label': 'Tags', placeholder: 'Tags, comma separated' });
    const wrap = h(
      'form',
      { class: 'wrap' },
      h('h3', { text: 'Wrap-up' }),
      notes,
      tags,
      h('button', { type: 'submit', class: 'btn primary small', text: 'Save wrap-up' })
    );
    wrap.addEventListener('submit', (e) => {
      e.preventDefault();
      const t = tags.value.split(',').map((s) => s.trim()).filter(Boolean);
      act(c, 'chat.wrap_up', { notes: notes.value.trim() || undefined, tags: t }, () => {
        c.wrapped = true;
        toast('Wrap-up saved.');
      });
    });

    const composer = h('form', { class: 'composer' }, text, h('div', { class: 'composer-bar' }, pick, h('button', { type: 'submit', class: 'btn primary small', text: 'Send' })));
    composer.addEventListener('submit', (e) => {
      e.preventDefault();
      send(c, text.value);
      text.value = '';
    });
    return h(
      'article',
      { class: 'pane', 'data-chat': c.chatId, 'aria-label': 'Chat' },
      h(
        'header',
        { class: 'pane-head' },
        h('div', { class: 'grow' }, h('h2', { class: 'pane-title' }), h('span', { class: 'pane-state muted small' })),
        h(
          'div',
          { class: 'actions' },
          h('span', { class: 'transfer' }, transferSel),
          h('button', { type: 'button', class: 'btn ghost small end', text: 'End chat', onclick: () => act(c, 'chat.end', {}, () => (c.status = 'ended')) }),
          h('button', { type: 'button', class: 'btn ghost small leave', text: 'Leave', onclick: () => act(c, 'chat.agent_leave', {}, () => closePane(c)) })
        ),
        h('button', { type: 'button', class: 'btn ghost small close', text: 'Close', onclick: () => closePane(c) })
      ),
      // Redrawn on every change, so not live itself: #live announces new messages once.
      h('div', { class: 'log', role: 'log', 'aria-live': 'off', 'aria-label': 'Messages', tabindex: '0' }),
      h('p', { class: 'typing', hidden: true }, h('i'), h('i'), h('i'), ' visitor is typing'),
      wrap,
      composer
    );
  }

  // ------------------------------------------------------------ visitors ----------------

  async function loadVisitors() {
    try {
      const res = await call('visitor.list', {});
      visitors.clear();
      for (const v of (res.data && res.data.visitors) || []) visitors.set(String(v.id), v);
      renderVisitors();
    } catch (e) {
      if (e.kind !== 'unavailable') toast('Visitors: ' + e.message);
    }
  }
  function visitorName(v) {
    const chat = v.chatId && chats[String(v.chatId)];
    const known = chat && chatName(chat);
    return v.name || (known && known !== 'Visitor' && known) || 'Visitor ' + String(v.id).slice(-4);
  }
  function joinButtons(v) {
    const mine = v.chatId && chats[String(v.chatId)];
    if (!v.chatId || (mine && !mine.gone)) return null;
    return h(
      'span',
      { class: 'row-actions' },
      h('button', { type: 'button', class: 'btn ghost small', text: 'Join', onclick: () => openChat(v.chatId, { visitorName: visitorName(v), visitorId: v.id, role: 'joined' }, 'chat.agent_join').then(() => go('chats')) }),
      h('button', { type: 'button', class: 'btn ghost small', text: 'Monitor', onclick: () => openChat(v.chatId, { visitorName: visitorName(v), visitorId: v.id, role: 'monitoring' }, 'chat.agent_monitor').then(() => go('chats')) })
    );
  }
  /** The visitor whose row shows the invitation form, and its draft message. */
  let inviting = null;
  const IN_CHAT = ['prechat', 'queued', 'chatting'];
  function inviteCell(v) {
    const id = String(v.id);
    const busy = IN_CHAT.includes(v.state) || (v.chatId && v.state !== 'browsing' && v.state !== 'invited');
    if (inviting && inviting.id === id && !busy) {
      const input = h('input', { class: 'invite-msg', type: 'text', maxlength: 500, placeholder: 'Message (optional)', 'aria-label': 'Invitation message for ' + visitorName(v), value: inviting.text, oninput: (e) => (inviting.text = e.target.value) });
      return h(
        'form',
        { class: 'invite-form', 'aria-label': 'Invite ' + visitorName(v), onsubmit: (e) => {
          e.preventDefault();
          invite(v, input.value.trim());
        }, onkeydown: (e) => {
          if (e.key === 'Escape') {
            inviting = null;
            renderVisitors();
          }
        } },
        input,
        h('button', { type: 'submit', class: 'btn primary small', text: 'Send invitation' }),
        h('button', { type: 'button', class: 'btn ghost small', text: 'Cancel', onclick: () => {
          inviting = null;
          renderVisitors();
        } })
      );
    }
    return h('button', {
      type: 'button',
      class: 'btn ghost small invite',
      text: v.state === 'invited' ? 'Invite again' : 'Invite to chat',
      disabled: busy,
      title: busy ? 'Already in a chat' : undefined,
      onclick: () => {
        inviting = { id, text: '' };
        renderVisitors();
        const input = document.querySelector('.invite-msg');
        if (input) input.focus();
      },
    });
  }
  async function invite(v, message) {
    try {
      await call('invitation.send', { visitorId: v.id, message: message || undefined });
      inviting = null;
      v.state = 'invited';
      toast('Invitation sent to ' + visitorName(v) + '.');
    } catch (e) {
      toast('Invitation: ' + e.message);
    }
    renderVisitors();
  }
  function renderVisitors() {
    const rows = $('#visitor-rows');
    // Re-rendered on every push: the invitation form keeps its focus.
    const typing = document.activeElement && document.activeElement.classList.contains('invite-msg');
    rows.replaceChildren();
    const list = Array.from(visitors.values()).filter((v) => v.state !== 'left').sort((a, b) => (b.lastSeen || 0) - (a.lastSeen || 0));
    for (const v of list) {
      rows.append(
        h(
          'tr',
          {},
          h('td', {}, h('div', { class: 'strong', text: visitorName(v) }), v.email ? h('div', { class: 'muted small', text: v.email }) : null),
          h('td', {}, h('div', { class: 'truncate', text: v.currentTitle || v.currentUrl || '' }), h('div', { class: 'muted small truncate', text: v.currentUrl || '' })),
          h('td', { text: v.visitCount > 1 ? `visit ${v.visitCount}` : ago(v.firstSeen) }),
          h('td', { text: String(v.pageViews || 0) }),
          h('td', {}, (v.segments || []).map((s) => h('span', { class: 'tag', text: s }))),
          h('td', {}, h('span', { class: 'state state-' + (v.state || 'browsing'), text: v.state || 'browsing' })),
          h('td', {}, h('span', { class: 'row-actions' }, inviteCell(v), joinButtons(v)))
        )
      );
    }
    if (typing) {
      const input = rows.querySelector('.invite-msg');
      if (input) input.focus();
    }
    $('#visitors-empty').hidden = list.length > 0;
    $('#visitor-count').textContent = list.length ? list.length + ' online' : '';
    renderSupervisor();
  }

  // ------------------------------------------------------------ supervisor --------------

  async function loadAgents() {
    try {
      const data = await rest('GET', 'agents');
      for (const a of data.agents || (Array.isArray(data) ? data : [])) agents.set(String(a.id), Object.assign({}, agents.get(String(a.id)), a));
    } catch (e) {
      try {
        const res = await call('agents.list', {});
        for (const a of (res.data && res.data.agents) || []) agents.set(String(a.id), Object.assign({}, agents.get(String(a.id)), a));
      } catch (e2) {
        /* no agent list for this role */
      }
    }
    try {
      const data = await rest('GET', 'departments');
      departments = data.departments || (Array.isArray(data) ? data : []);
    } catch (e) {
      departments = [];
    }
    renderSupervisor();
    renderAdmin();
  }
  function renderSupervisor() {
    const body = $('#sup-agents');
    body.replaceChildren();
    for (const a of agents.values()) {
      const status = a.status || 'offline';
      body.append(
        h(
          'tr',
          {},
          h('td', {}, h('div', { class: 'strong', text: a.name || '' }), h('div', { class: 'muted small', text: a.email || '' })),
          h('td', { text: a.role || '' }),
          h('td', {}, h('span', { class: 'state state-' + status, text: status })),
          h('td', { text: a.maxChats ? String(a.maxChats) : '' })
        )
      );
    }
    const rows = $('#sup-chats');
    rows.replaceChildren();
    const open = Array.from(visitors.values()).filter((v) => v.chatId && (v.state === 'chatting' || v.state === 'queued'));
    for (const v of open) {
      rows.append(h('tr', { 'data-visitor': String(v.id) }, h('td', { class: 'strong', text: visitorName(v) }), h('td', { class: 'truncate', text: v.currentTitle || v.currentUrl || '' }), h('td', {}, h('span', { class: 'state state-' + v.state, text: v.state })), h('td', {}, joinButtons(v))));
    }
    $('#sup-chats-empty').hidden = open.length > 0;
  }

  // ------------------------------------------------------------ admin -------------------

  function adminError(e) {
    const el = $('#admin-error');
    el.textContent = e ? e.message : '';
    el.hidden = !e;
  }
  function renderAdmin() {
    const body = $('#admin-agents');
    body.replaceChildren();
    for (const a of agents.values()) {
      const self = auth && String(a.id) === String(auth.agent.id);
      const role = h('select', { 'aria-label': 'Role of ' + (a.name || a.email), disabled: self, title: self ? 'You cannot change your own role' : undefined }, ['agent', 'supervisor', 'admin'].map((r) => h('option', { value: r, text: r, selected: r === a.role })));
      role.addEventListener('change', () => patchAgent(a, { role: role.value }));
      const max = h('input', { type: 'number', min: '1', max: '50', value: String(a.maxChats || ''), class: 'num', 'aria-label': 'Max chats of ' + (a.name || a.email) });
      max.addEventListener('change', () => patchAgent(a, { maxChats: Number(max.value) }));
      body.append(
        h(
          'tr',
          {},
          h('td', { class: 'strong', text: a.name || '' }),
          h('td', { text: a.email || '' }),
          h('td', {}, role),
          h('td', {}, max),
          h('td', {}, self ? h('span', { class: 'muted small', text: 'you' }) : h('button', { type: 'button', class: 'btn danger small', text: 'Delete', onclick: () => deleteAgent(a) }))
        )
      );
    }
    const list = $('#admin-departments');
    list.replaceChildren();
    if (!departments.length) list.append(h('li', { class: 'empty', text: 'No departments yet. Chats then go to every agent of the site.' }));
    for (const d of departments) {
      const name = h('input', { value: d.name || '', 'aria-label': 'Department name', class: 'grow' });
      name.addEventListener('change', () => patchDepartment(d, { name: name.value.trim() }));
      const strategy = h('select', { 'aria-label': 'Routing of ' + d.name }, [['least_busy', 'Least busy'], ['round_robin', 'Round robin']].map(([v, t]) => h('option', { value: v, text: t, selected: v === d.strategy })));
      strategy.addEventListener('change', () => patchDepartment(d, { strategy: strategy.value }));
      const members = (d.members || []).map(String);
      const boxes = Array.from(agents.values()).map((a) => {
        const box = h('input', { type: 'checkbox', checked: members.includes(String(a.id)) });
        box.addEventListener('change', () => {
          const next = Array.from(agents.values()).filter((x, i) => boxes[i].firstChild.checked).map((x) => String(x.id));
          patchDepartment(d, { members: next });
        });
        return h('label', { class: 'check' }, box, a.name || a.email);
      });
      list.append(
        h(
          'li',
          { class: 'dept' },
          h('div', { class: 'dept-row' }, name, strategy, h('button', { type: 'button', class: 'btn danger small', text: 'Delete', onclick: () => {
            if (confirm(`Delete the department “${d.name}”?`)) rest('DELETE', 'departments/' + d.id).then(loadAgents, adminError);
          } })),
          h('details', {}, h('summary', { text: `Members (${members.length})` }), h('div', { class: 'checks' }, boxes))
        )
      );
    }
  }
  function patchDepartment(d, change) {
    adminError(null);
    rest('PATCH', 'departments/' + d.id, change).then(() => {
      toast('Saved.');
      loadAgents();
    }, adminError);
  }
  function patchAgent(a, change) {
    adminError(null);
    rest('PATCH', 'agents/' + a.id, change).then(() => {
      toast('Saved.');
      loadAgents();
    }, adminError);
  }
  function deleteAgent(a) {
    if (!confirm(`Delete the agent ${a.name || a.email}?`)) return;
    rest('DELETE', 'agents/' + a.id).then(() => {
      agents.delete(String(a.id));
      loadAgents();
    }, adminError);
  }

  function renderCanned() {
    const list = $('#canned-list');
    list.replaceChildren();
    canned().forEach((t, i) => {
      const input = h('input', { value: t, 'aria-label': 'Canned response ' + (i + 1), maxlength: '1000' });
      input.addEventListener('change', () => {
        const all = canned();
        all[i] = input.value.trim() || all[i];
        setCanned(all);
      });
      list.append(h('li', {}, input, h('button', { type: 'button', class: 'btn danger small', text: 'Remove', onclick: () => {
        const all = canned();
        all.splice(i, 1);
        setCanned(all);
        renderCanned();
      } })));
    });
  }

  // ------------------------------------------------------------ shell -------------------

  const historyView = window.FrontdeskHistory
    ? window.FrontdeskHistory({
        h,
        rest,
        toast,
        token: () => (auth && auth.accessToken) || '',
        agentName: (id) => {
          const a = agents.get(String(id));
          return (a && (a.name || a.email)) || '';
        },
      })
    : null;
  const offlineView = window.FrontdeskOffline
    ? window.FrontdeskOffline({
        h,
        rest,
        toast,
        me: () => (auth && auth.agent && auth.agent.id) || '',
        agentName: (id) => {
          const a = agents.get(String(id));
          return (a && (a.name || a.email)) || '';
        },
      })
    : null;

  function go(name) {
    view = name;
    for (const t of $$('.tab')) t.setAttribute('aria-current', String(t.dataset.view === name));
    for (const s of $$('.view')) s.hidden = s.id !== 'view-' + name;
    if (name === 'visitors' || name === 'supervisor') loadVisitors();
    if (name === 'supervisor' || name === 'admin') loadAgents();
    if (name === 'canned') renderCanned();
    if (name === 'history' && historyView) historyView.show();
    if (name === 'offline' && offlineView) offlineView.show();
  }
  function showLogin(message) {
    $('#app').hidden = true;
    $('#login').hidden = false;
    const err = $('#login-error');
    err.textContent = message || '';
    err.hidden = !message;
    $('#login-email').focus();
  }
  function showApp() {
    $('#login').hidden = true;
    $('#app').hidden = false;
    const a = auth.agent || {};
    $('#me-name').textContent = a.name || a.email || '';
    const rank = { agent: 0, supervisor: 1, admin: 2 };
    for (const t of $$('.tab[data-role]')) t.hidden = (rank[a.role] || 0) < rank[t.dataset.role];
    $('#notify').hidden = !('Notification' in window) || Notification.permission !== 'default';
    agents.set(String(a.id), Object.assign({}, a, agents.get(String(a.id))));
    scheduleRefresh();
    connect();
    renderConn();
    renderOffers();
    renderChats();
    loadAgents();
    if (offlineView && view !== 'offline') offlineView.refreshCount();
    go(view);
  }

  $('#login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const btn = e.target.querySelector('button');
    btn.disabled = true;
    try {
      await login($('#login-email').value.trim(), $('#login-password').value);
      $('#login-password').value = '';
      showApp();
    } catch (err) {
      showLogin(err.message);
    }
    btn.disabled = false;
  });
  for (const t of $$('.tab')) t.addEventListener('click', () => go(t.dataset.view));
  for (const b of $$('.status-switch button')) b.addEventListener('click', () => setStatus(b.dataset.status).catch((e) => toast(e.message)));
  $('#logout').addEventListener('click', () => logout(false));
  $('#notify').addEventListener('click', () => Notification.requestPermission().then(() => ($('#notify').hidden = Notification.permission !== 'default')));
  $('#canned-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const v = $('#canned-text').value.trim();
    if (!v) return;
    setCanned(canned().concat(v));
    $('#canned-text').value = '';
    renderCanned();
  });
  $('#agent-form').addEventListener('submit', (e) => {
    e.preventDefault();
    adminError(null);
    const body = {
      name: $('#agent-name').value.trim(),
      email: $('#agent-email').value.trim(),
      password: $('#agent-password').value,
      role: $('#agent-role').value,
      maxChats: Number($('#agent-max').value) || undefined,
    };
    rest('POST', 'agents', body).then(() => {
      e.target.reset();
      toast('Agent added.');
      loadAgents();
    }, adminError);
  });
  $('#dept-form').addEventListener('submit', (e) => {
    e.preventDefault();
    adminError(null);
    rest('POST', 'departments', { name: $('#dept-name').value.trim(), strategy: $('#dept-strategy').value }).then(() => {
      e.target.reset();
      loadAgents();
    }, adminError);
  });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) for (const c of Object.values(chats)) markSeen(c);
  });
  setInterval(() => {
    if (!auth) return;
    renderOffers();
    if (view === 'visitors') renderVisitors();
    // Long-poll fallback and presence while the socket is down.
    if (!wsOpen) for (const c of Object.values(chats)) if (c.status !== 'ended' && !c.gone) call('chat.agent_heartbeat', { chatId: c.chatId }).then((r) => applyHeartbeat(c, r.data || {}), () => {});
  }, 15000);
  setInterval(() => auth && wsOpen && loadVisitors(), 60000);
  // Offline messages come without a push: the count of open ones on the tab is polled.
  setInterval(() => auth && offlineView && offlineView.refreshCount(), 60000);

  if (auth && auth.accessToken) showApp();
  else showLogin('');
})();
