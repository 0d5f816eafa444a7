/*
 * Frontdesk agent console — the History tab: full-text search and filters over the site's
 * chat history (GET /api/v1/chats, cursor paging), a transcript view (GET /api/v1/chats/{id})
 * and CSV export (GET /api/v1/chats/{id}/export?format=csv, fetched with the bearer token and
 * saved through a blob URL). Loaded before console.js, which hands it its helpers; every
 * piece of data is rendered with textContent.
 */
(() => {
  'use strict';

  /**
   * deps: { h, rest, toast, token() → access token, agentName(id) → name or '' }.
   * Returns { show() } for the console's tab switch.
   */
  window.FrontdeskHistory = function (deps) {
    const { h, rest, toast } = deps;
    const $ = (sel) => document.querySelector(sel);
    let cursor = null;
    let selected = null;
    let loading = false;
    let loaded = false;

    const day = (ms) => (ms ? new Date(ms).toLocaleDateString([], { year: 'numeric', month: 'short', day: 'numeric' }) : '');
    const hm = (ms) => (ms ? new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : '');
    const stars = (n) => (n ? '★'.repeat(n) + '☆'.repeat(5 - n) : '');
    /** A date input's value (local day) as Unix milliseconds at its start, or the next day's. */
    function dayMs(value, next) {
      if (!value) return null;
      const d = new Date(value + 'T00:00:00');
      if (isNaN(d)) return null;
      if (next) d.setDate(d.getDate() + 1);
      return d.getTime();
    }
    function query() {
      const p = new URLSearchParams();
      const q = $('#h-q').value.trim();
      if (q) p.set('q', q);
      const from = dayMs($('#h-from').value, false);
      const to = dayMs($('#h-to').value, true);
      if (from !== null) p.set('from', String(from));
      if (to !== null) p.set('to', String(to));
      if ($('#h-status').value) p.set('status', $('#h-status').value);
      if ($('#h-rating').value) p.set('rating', $('#h-rating').value);
      p.set('limit', '20');
      return p;
    }
    function agentsOf(c) {
      return (c.agentIds || []).map((id) => deps.agentName(id)).filter(Boolean).join(', ');
    }

    async function search(more) {
      if (loading) return;
      loading = true;
      const list = $('#history-results');
      const p = query();
      if (more && cursor) p.set('cursor', cursor);
      $('#history-more').disabled = true;
      try {
        const data = await rest('GET', 'chats?' + p.toString());
        if (!more) list.replaceChildren();
        for (const c of data.chats || []) list.append(item(c));
        cursor = data.nextCursor || null;
        $('#history-empty').hidden = list.children.length > 0;
        $('#history-more').hidden = !cursor;
        $('#history-count').textContent = list.children.length + (cursor ? '+' : '') + (list.children.length === 1 ? ' chat' : ' chats');
        loaded = true;
      } catch (e) {
        toast('History: ' + e.message);
      }
      $('#history-more').disabled = false;
      loading = false;
    }

    function item(c) {
      const id = String(c.chatId);
      const when = c.createdAt ? day(c.createdAt) + ' · ' + hm(c.createdAt) : '';
      const btn = h(
        'button',
        { type: 'button', class: 'result', 'data-chat-id': id, 'aria-current': String(selected === id), onclick: () => open(id) },
        h('span', { class: 'result-top' }, h('span', { class: 'strong', text: c.visitorName || 'Visitor' }), h('span', { class: 'muted small', text: when })),
        h(
          'span',
          { class: 'result-meta' },
          h('span', { class: 'state state-' + (c.status || 'ended'), text: c.status || 'pending' }),
          c.rating ? h('span', { class: 'stars', 'aria-label': c.rating + ' of 5 stars', text: stars(c.rating) }) : null,
          agentsOf(c) ? h('span', { class: 'muted small', text: agentsOf(c) }) : null,
          (c.tags || []).map((t) => h('span', { class: 'tag', text: t }))
        )
      );
      return h('li', {}, btn);
    }

    async function open(id) {
      selected = id;
      for (const b of document.querySelectorAll('#history-results .result')) b.setAttribute('aria-current', String(b.dataset.chatId === id));
      const pane = $('#transcript');
      pane.replaceChildren(h('p', { class: 'empty', text: 'Loading the transcript…' }));
      try {
        const data = await rest('GET', 'chats/' + encodeURIComponent(id));
        if (selected === id) pane.replaceChildren(...transcript(data.chat || {}, data.messages || []));
      } catch (e) {
        pane.replaceChildren(h('p', { class: 'error', role: 'alert', text: e.message }));
      }
    }

    function transcript(c, messages) {
      const facts = h('dl', { class: 'facts' });
      const fact = (k, v) => v && facts.append(h('dt', { text: k }), h('dd', { text: v }));
      fact('Started', c.createdAt ? day(c.createdAt) + ' ' + hm(c.createdAt) : '');
      fact('Ended', c.endedAt ? hm(c.endedAt) : '');
      fact('Agents', agentsOf(c));
      fact('Rating', c.rating ? stars(c.rating) + ' (' + c.rating + '/5)' : '');
      fact('Comment', c.comment || '');
      fact('Wrap-up', c.wrapUpNotes || '');
      const head = h(
        'div',
        { class: 'transcript-head' },
        h('div', { class: 'grow' }, h('h3', { text: c.visitorName || 'Visitor' }), c.visitorEmail ? h('div', { class: 'muted small', text: c.visitorEmail }) : null),
        h('button', { type: 'button', class: 'btn ghost small', text: 'Export CSV', onclick: () => exportCsv(String(c.chatId)) })
      );
      const tags = (c.tags || []).length ? h('div', { class: 'tags' }, c.tags.map((t) => h('span', { class: 'tag', text: t }))) : null;
      const log = h('div', { class: 'log transcript-log', role: 'log', 'aria-label': 'Transcript' });
      for (const m of messages.slice().sort((a, b) => a.seq - b.seq)) {
        if (m.messageType === 4) {
          log.append(h('p', { class: 'sys', text: m.content }));
          continue;
        }
        const agent = m.messageType !== 1;
        log.append(
          h(
            'div',
            { class: 'row ' + (agent ? 'mine' : 'theirs') },
            h('span', { class: 'who', text: (m.senderName || (agent ? 'Agent' : 'Visitor')) + ' · ' + hm(m.sendTimeMs || Date.parse(m.sendTime)) }),
            h('p', { class: 'bubble', text: m.content })
          )
        );
      }
      if (!messages.length) log.append(h('p', { class: 'empty', text: 'No messages in this chat.' }));
      return [head, facts, tags, log].filter(Boolean);
    }

    async function exportCsv(id) {
      try {
        const res = await fetch('/api/v1/chats/' + encodeURIComponent(id) + '/export?format=csv', {
          headers: { Authorization: 'Bearer ' + deps.token() },
        });
        if (!res.ok) {
          const body = await res.json().catch(() => ({}));
          throw new Error((body.error && body.error.message) || 'HTTP ' + res.status);
        }
        const url = URL.createObjectURL(await res.blob());
        const a = h('a', { href: url, download: 'chat-' + id + '.csv', hidden: true });
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10000);
      } catch (e) {
        toast('Export: ' + e.message);
      }
    }

    $('#history-form').addEventListener('submit', (e) => {
      e.preventDefault();
      cursor = null;
      search(false);
    });
    $('#history-more').addEventListener('click', () => search(true));

    return {
      show() {
        if (!loaded) search(false);
      },
    };
  };
})();
