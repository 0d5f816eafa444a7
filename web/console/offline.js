/*
 * Frontdesk agent console — the Offline messages tab: the inbox of messages visitors left
 * through the widget's offline form while no agent was online. Lists them newest first
 * (GET /api/v1/offline-messages?handled=&limit=&cursor=, cursor paging) with an
 * Open / Handled / All filter, marks one handled or open again (PATCH
 * /api/v1/offline-messages/{id} {handled}) and keeps the count of open ones on the tab (one
 * GET with handled=false). Loaded before console.js, which hands it its helpers; every piece
 * of data is rendered with textContent or set as an attribute, never parsed as markup.
 */
(() => {
  'use strict';

  const PAGE = 20;
  /** The count on the tab comes from one page of open messages: at most this many, then "+". */
  const COUNT_PAGE = 100;
  const FILTERS = { open: 'false', handled: 'true', all: null };
  const EMPTY = {
    open: 'No open messages. Messages visitors leave while no one is online show here.',
    handled: 'No handled messages yet.',
    all: 'No offline messages yet. Visitors leave them through the widget while no one is online.',
  };

  /**
   * deps: { h, rest, toast, agentName(id) → name or '', me() → this agent's id }.
   * Returns { show(), refreshCount() } for the console's tab switch and timers.
   */
  window.FrontdeskOffline = function (deps) {
    const { h, rest, toast } = deps;
    const $ = (sel) => document.querySelector(sel);
    let filter = 'open';
    let cursor = null;
    /** Bumped by every fresh load, so an answer to an older one is dropped. */
    let generation = 0;
    let loading = false;

    const day = (ms) => (ms ? new Date(ms).toLocaleDateString([], { year: 'numeric', month: 'short', day: 'numeric' }) : '');
    const hm = (ms) => (ms ? new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : '');
    const when = (ms) => (ms ? day(ms) + ' · ' + hm(ms) : '');
    function who(id) {
      if (id === null || id === undefined) return 'an agent';
      if (String(id) === String(deps.me())) return 'you';
      return deps.agentName(id) || 'an agent';
    }

    /**
     * A mailto: link for an address, or null when it does not look like one. The address is
     * percent-encoded part by part and set with setAttribute: it can add no scheme, no
     * header and no markup.
     */
    function mailto(email) {
      const m = /^([^\s@<>"()[\]\\,;:]+)@([^\s@<>"()[\]\\,;:]+\.[^\s@<>"()[\]\\,;:]+)$/.exec(email || '');
      if (!m) return null;
      return 'mailto:' + encodeURIComponent(m[1]) + '@' + encodeURIComponent(m[2]);
    }

    async function load(more) {
      if (more && (loading || !cursor)) return;
      const gen = more ? generation : ++generation;
      loading = true;
      const list = $('#offline-list');
      const p = new URLSearchParams();
      if (FILTERS[filter] !== null) p.set('handled', FILTERS[filter]);
      p.set('limit', String(PAGE));
      if (more) p.set('cursor', cursor);
      $('#offline-more').disabled = true;
      if (!more) $('#offline-list').setAttribute('aria-busy', 'true');
      try {
        const data = await rest('GET', 'offline-messages?' + p.toString());
        if (gen !== generation) return;
        if (!more) list.replaceChildren();
        for (const m of data.offlineMessages || []) list.append(item(m));
        cursor = data.nextCursor || null;
        render();
      } catch (e) {
        if (gen === generation) toast('Offline messages: ' + e.message);
      } finally {
        if (gen === generation) {
          loading = false;
          $('#offline-more').disabled = false;
          list.removeAttribute('aria-busy');
        }
      }
    }

    function render() {
      const n = $('#offline-list').children.length;
      const empty = $('#offline-empty');
      empty.textContent = EMPTY[filter];
      empty.hidden = n > 0;
      $('#offline-more').hidden = !cursor;
      $('#offline-summary').textContent = n ? n + (cursor ? '+' : '') + (n === 1 ? ' message' : ' messages') : '';
    }

    function item(m) {
      const id = String(m.id);
      const link = mailto(m.email);
      const email = link
        ? h('a', { class: 'offline-email', href: link, text: m.email })
        : m.email
          ? h('span', { class: 'offline-email', text: m.email })
          : null;
      const li = h('li', { class: 'offline-item' + (m.handled ? ' is-handled' : ''), 'data-offline-id': id });
      li.append(
        h(
          'div',
          { class: 'result-top' },
          h('span', { class: 'offline-from' }, h('span', { class: 'strong', text: m.name || 'Visitor' }), email),
          h('time', { class: 'muted small', datetime: m.createdAt ? new Date(m.createdAt).toISOString() : null, text: when(m.createdAt) })
        ),
        m.pageUrl ? h('div', { class: 'offline-page muted small' }, 'From ', h('span', { class: 'offline-url', text: m.pageUrl })) : null,
        h('p', { class: 'offline-body', text: m.message }),
        footer(m)
      );
      return li;
    }

    function footer(m) {
      const bar = h('div', { class: 'offline-foot' });
      if (m.handled) {
        bar.append(
          h('span', { class: 'state state-handled', text: 'handled' }),
          h('span', { class: 'muted small offline-handled', text: 'by ' + who(m.handledBy) + (m.handledAt ? ' · ' + when(m.handledAt) : '') }),
          h('span', { class: 'grow' }),
          h('button', { type: 'button', class: 'btn ghost small', text: 'Reopen', onclick: (e) => mark(m, false, e.currentTarget) })
        );
      } else {
        bar.append(
          h('span', { class: 'state state-open', text: 'open' }),
          h('span', { class: 'grow' }),
          h('button', { type: 'button', class: 'btn primary small', text: 'Mark handled', onclick: (e) => mark(m, true, e.currentTarget) })
        );
      }
      return bar;
    }

    async function mark(m, handled, button) {
      button.disabled = true;
      try {
        const data = await rest('PATCH', 'offline-messages/' + encodeURIComponent(String(m.id)), { handled });
        const updated = data.offlineMessage || Object.assign({}, m, { handled });
        const old = $('#offline-list').querySelector('[data-offline-id="' + CSS.escape(String(m.id)) + '"]');
        // The item stays where it is (the filter applies on the next load), showing its new state.
        if (old) old.replaceWith(item(updated));
        const live = $('#live');
        if (live) live.textContent = handled ? 'Marked handled.' : 'Marked open again.';
        refreshCount();
      } catch (e) {
        button.disabled = false;
        toast('Offline message: ' + e.message);
      }
    }

    let counting = 0;
    async function refreshCount() {
      const mine = ++counting;
      try {
        const data = await rest('GET', 'offline-messages?handled=false&limit=' + COUNT_PAGE);
        if (mine !== counting) return;
        const n = (data.offlineMessages || []).length;
        const pill = $('#offline-count');
        pill.textContent = n + (data.nextCursor ? '+' : '');
        pill.hidden = n === 0;
        pill.setAttribute('aria-label', n + (data.nextCursor ? ' or more' : '') + ' open');
      } catch (e) {
        /* the count is a hint; the tab itself reports errors */
      }
    }

    function setFilter(name) {
      filter = name;
      for (const b of document.querySelectorAll('#offline-filter button')) b.setAttribute('aria-pressed', String(b.dataset.filter === name));
      cursor = null;
      load(false);
    }

    for (const b of document.querySelectorAll('#offline-filter button')) b.addEventListener('click', () => setFilter(b.dataset.filter));
    $('#offline-more').addEventListener('click', () => load(true));
    $('#offline-refresh').addEventListener('click', () => {
      cursor = null;
      load(false);
      refreshCount();
    });

    return {
      /** Reloads on every visit: new messages arrive without a push. */
      show() {
        cursor = null;
        load(false);
        refreshCount();
      },
      refreshCount,
    };
  };
})();
