// flowcast dashboard: login, overview (the stats stream), channels, a live
// tail, a publish form, workflows and jobs. No dependencies, no inline code
// (the page's CSP allows only this file). Everything that comes from the
// server is inserted as text (textContent, text nodes), never as HTML.
'use strict';

(() => {
  // ---- small helpers ---------------------------------------------------------

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  /** An element; string and number children become text nodes. */
  function h(tag, props = {}, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }

  const fmtInt = (n) => (n === null || n === undefined ? '–' : Math.round(n).toLocaleString('en-US'));
  const fmtNum = (n, d = 1) => (n === null || n === undefined ? '–' : Number(n).toFixed(d));
  function fmtBytes(n) {
    if (!n && n !== 0) return '–';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) {
      n /= 1024;
      i++;
    }
    return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
  }
  function fmtDuration(s) {
    if (s === null || s === undefined) return '–';
    const d = Math.floor(s / 86400);
    const hh = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d) return `${d}d ${hh}h ${m}m`;
    if (hh) return `${hh}h ${m}m`;
    return `${m}m ${s % 60}s`;
  }
  const fmtTime = (t) => (t ? new Date(t).toLocaleTimeString() : '');
  /** Compares two event ids (decimal strings of any length). */
  function idCmp(a, b) {
    if (a.length !== b.length) return a.length - b.length;
    return a < b ? -1 : a > b ? 1 : 0;
  }
  const CHANNEL_RE = /^[A-Za-z0-9._:-]{1,128}$/;
  /** Data as it is shown: JSON pretty-printed, anything else as is. */
  function pretty(data) {
    if (typeof data !== 'string') return JSON.stringify(data, null, 2);
    const t = data.trim();
    if (t.startsWith('{') || t.startsWith('[') || t.startsWith('"')) {
      try {
        return JSON.stringify(JSON.parse(t), null, 2);
      } catch {
        return data;
      }
    }
    return data;
  }

  // ---- session and requests ---------------------------------------------------

  const S = {
    me: null, // GET /api/v1/session
    token: sessionStorage.getItem('flowcast.token') || '',
    view: '',
  };
  const isAdmin = () => !!(S.me && (S.me.open || S.me.admin));

  function authHeaders(extra = {}) {
    return S.token ? { ...extra, authorization: `Bearer ${S.token}` } : extra;
  }
  /** A URL for streams (EventSource cannot send headers): the token as ?access_token=. */
  function streamUrl(path) {
    if (!S.token) return path;
    return `${path}${path.includes('?') ? '&' : '?'}access_token=${encodeURIComponent(S.token)}`;
  }

  /** fetch that never throws: {status, json, text}; status 0 when the server is unreachable. A 401 shows the login. */
  async function api(path, { method = 'GET', body, headers = {}, quiet401 = false } = {}) {
    let res;
    try {
      res = await fetch(path, { method, body, headers: authHeaders(headers), credentials: 'same-origin' });
    } catch (e) {
      return { status: 0, json: null, text: String(e) };
    }
    const text = await res.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (res.status === 401 && !quiet401 && S.me) showLogin('Your session has ended: log in again.');
    return { status: res.status, json, text };
  }
  const errText = (r) =>
    r.status === 0 ? 'the server is unreachable' : r.json?.error?.message || `HTTP ${r.status}`;

  function banner(msg) {
    const b = $('#banner');
    b.textContent = msg || '';
    b.hidden = !msg;
  }

  async function loadSession() {
    const r = await api('/api/v1/session', { quiet401: true });
    if (r.status === 200 && r.json && !r.json.authenticated) {
      const had = !!S.me || !!S.token;
      if (S.token) {
        S.token = '';
        sessionStorage.removeItem('flowcast.token');
      }
      showLogin(had ? 'Your session has ended: log in again.' : '');
    } else if (r.status === 200 && r.json) {
      S.me = r.json;
      banner('');
      onLoggedIn();
    } else if (r.status === 401) {
      if (S.token) {
        S.token = '';
        sessionStorage.removeItem('flowcast.token');
      }
      showLogin(S.me ? 'Your session has ended: log in again.' : '');
    } else {
      showLogin('');
      banner(`Cannot reach the server (${errText(r)}). Retrying…`);
      setTimeout(loadSession, 3000);
    }
  }

  function showLogin(msg) {
    S.me = null;
    stopAll();
    $('#nav').hidden = true;
    $('#logout').hidden = true;
    $('#whoami').textContent = 'not logged in';
    for (const v of $$('.view')) v.hidden = v.id !== 'view-login';
    $('#login-error').textContent = msg || '';
    document.title = 'Log in · flowcast';
    $('#login-form [name=username]').focus();
  }

  function onLoggedIn() {
    const me = S.me;
    $('#nav').hidden = false;
    $('#logout').hidden = me.open;
    $('#whoami').textContent = me.open
      ? 'open mode (no login)'
      : `${me.sub || 'token'}${me.admin ? ' · admin' : ''}${S.token ? ' · token' : ''}`;
    for (const n of $$('[data-note="admin"]')) n.hidden = isAdmin();
    const rights = me.open || me.admin ? 'every channel' : (me.publish || []).join(', ') || 'no channel';
    $('#pub-rights').textContent = `This login may publish to: ${rights}.`;
    if (isAdmin()) Stats.start();
    route();
  }

  $('#login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = e.currentTarget;
    const btn = $('button[type=submit]', f);
    btn.disabled = true;
    $('#login-error').textContent = '';
    const r = await api('/api/v1/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: f.username.value, password: f.password.value, stayConnected: f.stay.checked }),
      quiet401: true,
    });
    btn.disabled = false;
    if (r.status === 200) {
      f.password.value = '';
      S.token = '';
      sessionStorage.removeItem('flowcast.token');
      await loadSession();
    } else {
      $('#login-error').textContent =
        r.status === 401 ? 'Wrong user name or password.' : `Login failed: ${errText(r)}`;
      f.password.select();
    }
  });

  $('#token-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    S.token = e.currentTarget.token.value.trim();
    e.currentTarget.token.value = '';
    sessionStorage.setItem('flowcast.token', S.token);
    await loadSession();
    if (!S.me) $('#login-error').textContent = 'That token was refused (malformed, expired or not signed by this server).';
  });

  $('#logout').addEventListener('click', async () => {
    await api('/api/v1/logout', { method: 'POST', quiet401: true });
    S.token = '';
    sessionStorage.removeItem('flowcast.token');
    showLogin('You are logged out.');
  });

  function stopAll() {
    Stats.stop();
    Tail.stopAll();
    Channels.leave();
    Jobs.close();
  }

  // ---- views -----------------------------------------------------------------

  const VIEWS = ['overview', 'channels', 'tail', 'publish', 'workflows'];

  function route() {
    if (!S.me) return;
    let v = location.hash.slice(1);
    if (!VIEWS.includes(v)) v = isAdmin() ? 'overview' : 'tail';
    if (S.view === 'channels' && v !== 'channels') Channels.leave();
    S.view = v;
    for (const el of $$('.view')) el.hidden = el.id !== `view-${v}`;
    for (const a of $$('#nav a')) {
      if (a.dataset.view === v) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    document.title = `${$(`#nav a[data-view=${v}]`).textContent} · flowcast`;
    if (v === 'overview') Overview.render();
    if (v === 'channels') Channels.enter();
    if (v === 'workflows') Workflows.enter();
  }
  window.addEventListener('hashchange', route);

  // ---- overview: the stats stream and the charts --------------------------------

  const KEEP = 300; // samples kept: five minutes

  const Stats = {
    es: null,
    samples: [],
    start() {
      if (this.es) return;
      const es = new EventSource(streamUrl('/api/v1/stats/sse'));
      this.es = es;
      const dot = $('#live');
      const show = () => {
        dot.dataset.state = ['connecting', 'open', 'closed'][es.readyState];
        dot.title = `stats stream: ${dot.dataset.state}`;
      };
      show();
      es.onopen = show;
      es.onmessage = (e) => {
        show();
        let s;
        try {
          s = JSON.parse(e.data);
        } catch {
          return;
        }
        this.samples.push(s);
        if (this.samples.length > KEEP) this.samples.shift();
        if (S.view === 'overview') Overview.render();
      };
      es.onerror = () => {
        show();
        if (es.readyState === EventSource.CLOSED) {
          // refused (401/403) or not a stream: is the session still good?
          this.es = null;
          setTimeout(() => {
            if (S.me) loadSession();
          }, 3000);
        }
      };
    },
    stop() {
      if (this.es) this.es.close();
      this.es = null;
      $('#live').dataset.state = 'off';
    },
  };

  /** Draws lines of `series` ({label, color, values}) on a canvas, scaled to their maximum. */
  function lineChart(fig, series, unit = '') {
    const canvas = $('canvas', fig);
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 300;
    const hgt = canvas.clientHeight || 160;
    if (canvas.width !== Math.round(w * dpr)) canvas.width = Math.round(w * dpr);
    if (canvas.height !== Math.round(hgt * dpr)) canvas.height = Math.round(hgt * dpr);
    const g = canvas.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, hgt);
    let max = 0;
    for (const s of series) for (const v of s.values) if (v > max) max = v;
    max = niceMax(max);
    const padL = 44;
    const padB = 16;
    const ch = hgt - padB - 6;
    g.font = '11px system-ui, sans-serif';
    g.fillStyle = '#667085';
    g.strokeStyle = '#e3e7ee';
    g.lineWidth = 1;
    for (let i = 0; i <= 2; i++) {
      const y = 6 + (ch * i) / 2;
      g.beginPath();
      g.moveTo(padL, y + 0.5);
      g.lineTo(w, y + 0.5);
      g.stroke();
      g.fillText(shortNum((max * (2 - i)) / 2), 2, y + 4);
    }
    g.fillText(`−${Math.round(KEEP / 60)} min`, padL, hgt - 3);
    g.fillText('now', w - 24, hgt - 3);
    const step = (w - padL) / (KEEP - 1);
    for (const s of series) {
      g.strokeStyle = s.color;
      g.lineWidth = 2;
      g.beginPath();
      const off = KEEP - s.values.length;
      s.values.forEach((v, i) => {
        const x = padL + (off + i) * step;
        const y = 6 + ch - (max ? (v / max) * ch : 0);
        if (i) g.lineTo(x, y);
        else g.moveTo(x, y);
      });
      g.stroke();
    }
    const legend = $('.legend', fig);
    legend.replaceChildren(
      ...series.map((s) => {
        const last = s.values.length ? s.values[s.values.length - 1] : null;
        return h('span', { 'data-series': s.key, 'data-value': last ?? '' },
          h('span', { class: 'sw', 'data-color': s.color }), `${s.label}: `, h('b', {}, last === null ? '–' : `${fmtNum(last, s.digits ?? 1)}${unit}`));
      }),
    );
    for (const sw of $$('.sw', legend)) sw.style.background = sw.dataset.color;
    fig.dataset.points = String(series[0]?.values.length || 0);
  }
  function niceMax(v) {
    if (v <= 0) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }
  function shortNum(v) {
    if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
    if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
    return `${+v.toFixed(v < 10 ? 1 : 0)}`;
  }

  const Overview = {
    render() {
      if (!isAdmin()) {
        $('#cards').replaceChildren();
        $('.charts').hidden = true;
        return;
      }
      $('.charts').hidden = false;
      const ss = Stats.samples;
      const s = ss[ss.length - 1];
      const card = (k, v, small) => h('div', { class: 'stat' }, h('div', { class: 'k' }, k), h('div', { class: small ? 'v small' : 'v' }, v));
      if (!s) {
        $('#cards').replaceChildren(card('Stats', 'waiting for the first sample…', true));
      } else {
        const cards = [
          card('Connections', fmtInt(s.connections)),
          card('Subscribers', fmtInt(s.subscribers)),
          card('Channels', fmtInt(s.channels)),
          card('Published', fmtInt(s.published_total)),
          card('Delivered', fmtInt(s.delivered_total)),
          card('Uptime', fmtDuration(s.uptime_s), true),
          card('Version', `${s.version} (${s.commit})`, true),
          card('Storage', `${s.storage.kind} · ${fmtInt(s.storage.events_total)} stored${s.storage.failures_total ? ` · ${s.storage.failures_total} failed` : ''}`, true),
          card('Process', `CPU ${fmtNum(s.process.cpu_percent)}% · ${fmtBytes(s.process.resident_bytes)} · ${s.process.open_fds} fds`, true),
        ];
        if (s.cluster) cards.push(card('Cluster', `node ${s.cluster.node} · Redis ${s.cluster.redis}`, true));
        $('#cards').replaceChildren(...cards);
      }
      const col = (k) => ss.map((x) => x[k] ?? 0);
      lineChart($('#chart-rate'), [
        { key: 'published', label: 'published/s', color: '#2456c7', values: col('published_per_s') },
        { key: 'delivered', label: 'delivered/s', color: '#1f8a5b', values: col('delivered_per_s') },
      ]);
      lineChart($('#chart-conn'), [
        { key: 'connections', label: 'connections', color: '#7b3fbf', values: col('connections'), digits: 0 },
        { key: 'subscribers', label: 'subscribers', color: '#d9822b', values: col('subscribers'), digits: 0 },
      ]);
      lineChart($('#chart-lat'), [
        { key: 'p50', label: 'p50', color: '#2456c7', values: ss.map((x) => x.publish_latency_ms?.p50 ?? 0), digits: 2 },
        { key: 'p99', label: 'p99', color: '#c0392b', values: ss.map((x) => x.publish_latency_ms?.p99 ?? 0), digits: 2 },
      ], ' ms');
      const jobs = s ? s.jobs : {};
      const total = Math.max(1, ...Object.values(jobs));
      const bars = $('#chart-jobs .bars');
      bars.replaceChildren(
        ...Object.entries(jobs).flatMap(([st, n]) => {
          const fill = h('div', { class: 'fill', 'data-pct': (100 * n) / total });
          return [h('span', { class: `badge ${st}` }, st), h('div', { class: 'track' }, fill), h('span', { class: 'num', 'data-status': st }, fmtInt(n))];
        }),
      );
      for (const f of $$('.fill', bars)) f.style.width = `${f.dataset.pct}%`;
    },
  };
  window.addEventListener('resize', () => {
    if (S.view === 'overview') Overview.render();
  });

  // ---- channels ------------------------------------------------------------------

  const Channels = {
    timer: null,
    rows: [],
    prev: new Map(), // name -> {lastId, at}
    rates: new Map(),
    sort: { key: 'name', dir: 1 },
    open: new Set(), // expanded prefix groups
    presence: null, // the channel whose presence panel is open
    async enter() {
      if (!isAdmin()) {
        $('#ch-table').hidden = true;
        return;
      }
      $('#ch-table').hidden = false;
      await this.refresh();
      clearInterval(this.timer);
      this.timer = setInterval(() => this.refresh(), 2000);
    },
    leave() {
      clearInterval(this.timer);
      this.timer = null;
    },
    async refresh() {
      const all = [];
      let after = '';
      for (let page = 0; page < 20; page++) {
        const r = await api(`/api/v1/channels?limit=1000${after ? `&after=${encodeURIComponent(after)}` : ''}`);
        if (r.status !== 200) {
          $('#ch-status').textContent = `Channels: ${errText(r)}`;
          return;
        }
        all.push(...r.json.channels);
        if (!r.json.next) break;
        after = r.json.next;
      }
      await this.measure(all);
      this.rows = all;
      if (this.presence) await this.showPresence(this.presence);
      const n = this.notice;
      $('#ch-status').textContent = n && Date.now() < n.until ? n.text : `${all.length} channels · updated ${new Date().toLocaleTimeString()}`;
      this.render();
    },
    /** Events/s of channels whose last id moved: counted from their history since the last look (at most 10 a pass). */
    async measure(all) {
      const now = Date.now();
      let asked = 0;
      for (const c of all) {
        const p = this.prev.get(c.name);
        this.prev.set(c.name, { lastId: c.lastId, at: now });
        if (!p || !c.lastId) continue;
        if (p.lastId === c.lastId) {
          this.rates.set(c.name, 0);
          continue;
        }
        if (asked++ >= 10 || !p.lastId) continue;
        const r = await api(`/api/v1/channels/${encodeURIComponent(c.name)}/events?after=${p.lastId}&limit=1000`);
        if (r.status === 200 && Array.isArray(r.json)) this.rates.set(c.name, (r.json.length * 1000) / Math.max(1, now - p.at));
      }
    },
    render() {
      const q = $('#ch-filter').value.trim().toLowerCase();
      const { key, dir } = this.sort;
      const val = (c) => (key === 'rate' ? this.rates.get(c.name) ?? -1 : c[key]);
      const rows = this.rows
        .filter((c) => !q || c.name.toLowerCase().includes(q))
        .sort((a, b) => {
          const x = val(a);
          const y = val(b);
          if (key === 'lastId') return dir * idCmp(x || '', y || '');
          return dir * (typeof x === 'string' ? x.localeCompare(y) : (x ?? 0) - (y ?? 0));
        });
      const body = $('#ch-table tbody');
      const out = [];
      const group = $('#ch-group').checked && !q;
      if (group) {
        const groups = new Map();
        for (const c of rows) {
          const dot = c.name.indexOf('.');
          const g = dot > 0 ? c.name.slice(0, dot) : '';
          if (!groups.has(g)) groups.set(g, []);
          groups.get(g).push(c);
        }
        for (const [g, list] of groups) {
          if (!g || list.length < 3) {
            out.push(...list.map((c) => this.row(c)));
            continue;
          }
          const isOpen = this.open.has(g);
          const subs = list.reduce((a, c) => a + c.subscribers, 0);
          const ret = list.reduce((a, c) => a + c.retained, 0);
          const toggle = h('button', { type: 'button', 'aria-expanded': String(isOpen), onclick: () => {
            if (this.open.has(g)) this.open.delete(g);
            else this.open.add(g);
            this.render();
          } }, `${isOpen ? '▾' : '▸'} ${g}.* (${list.length} channels)`);
          out.push(h('tr', { class: 'group', 'data-group': g }, h('td', {}, toggle), h('td', { class: 'num' }, fmtInt(ret)),
            h('td', { class: 'num' }, fmtInt(subs)), h('td'), h('td'), h('td')));
          if (isOpen) out.push(...list.map((c) => this.row(c)));
        }
      } else {
        out.push(...rows.map((c) => this.row(c)));
      }
      if (!out.length) out.push(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, q ? 'No channel matches.' : 'No channel yet.')));
      body.replaceChildren(...out);
      for (const b of $$('th button', $('#ch-table'))) {
        if (b.dataset.sort === key) b.setAttribute('aria-sort', dir > 0 ? 'ascending' : 'descending');
        else b.removeAttribute('aria-sort');
      }
    },
    row(c) {
      const rate = this.rates.get(c.name);
      return h('tr', { 'data-channel': c.name },
        h('td', {}, c.name),
        h('td', { class: 'num' }, fmtInt(c.retained)),
        h('td', { class: 'num' }, fmtInt(c.subscribers)),
        h('td', { class: 'num' }, c.lastId ?? '–'),
        h('td', { class: 'num' }, rate === undefined ? '–' : fmtNum(rate)),
        h('td', { class: 'acts' },
          h('button', { type: 'button', onclick: () => {
            Tail.add(c.name);
            location.hash = '#tail';
          } }, 'Tail'),
          c.presence ? h('button', { type: 'button', class: 'presence', onclick: () => this.showPresence(c.name) }, 'Presence') : null,
          h('button', { type: 'button', class: 'danger', onclick: () => this.purge(c.name) }, 'Purge')));
    },
    /** Fills the presence panel with who is subscribed to `name` (its entries and counts). */
    async showPresence(name) {
      this.presence = name;
      const path = `/api/v1/channels/${encodeURIComponent(name)}/presence`;
      const [list, stats] = await Promise.all([api(path), api(`${path}/stats`)]);
      if (this.presence !== name) return;
      $('#pr-panel').hidden = false;
      $('#pr-title').textContent = `Presence: ${name}`;
      if (list.status !== 200 || stats.status !== 200) {
        $('#pr-stats').textContent = errText(list.status !== 200 ? list : stats);
        $('#pr-table tbody').replaceChildren();
        return;
      }
      const { connections, users } = stats.json;
      $('#pr-stats').textContent = `${fmtInt(connections)} connection${connections === 1 ? '' : 's'} · ${fmtInt(users)} user${users === 1 ? '' : 's'}` +
        (list.json.truncated ? ` · showing the first ${fmtInt(list.json.entries.length)}` : '');
      $('#pr-table tbody').replaceChildren(...list.json.entries.map((e) => h('tr', { 'data-conn': e.conn },
        h('td', { class: 'mono' }, e.conn.slice(0, 8)), h('td', {}, e.sub), h('td', {}, e.transport), h('td', {}, e.node),
        h('td', {}, new Date(e.since).toLocaleTimeString()), h('td', { class: 'mono' }, e.info === undefined ? '' : JSON.stringify(e.info)))));
    },
    async purge(name) {
      if (!window.confirm(`Purge every retained event of "${name}"? Subscribers stay; stored events are deleted.`)) return;
      const r = await api(`/api/v1/channels/${encodeURIComponent(name)}`, { method: 'DELETE' });
      this.notice = { text: r.status < 300 ? `Purged ${name}.` : `Purge of ${name} failed: ${errText(r)}`, until: Date.now() + 8000 };
      await this.refresh();
    },
  };
  $('#ch-filter').addEventListener('input', () => Channels.render());
  $('#pr-close').addEventListener('click', () => {
    Channels.presence = null;
    $('#pr-panel').hidden = true;
  });
  $('#ch-group').addEventListener('change', () => Channels.render());
  for (const b of $$('#ch-table th button')) {
    b.addEventListener('click', () => {
      const k = b.dataset.sort;
      Channels.sort = { key: k, dir: Channels.sort.key === k ? -Channels.sort.dir : k === 'name' ? 1 : -1 };
      Channels.render();
    });
  }

  // ---- live tail -------------------------------------------------------------------

  /**
   * An SSE client over fetch with EventSource's states (readyState 0 connecting,
   * 1 open, 2 closed), reconnection after `retry:` and resume with Last-Event-ID.
   * The tail uses it instead of EventSource because EventSource delivers a named
   * event only to a listener registered for that name in advance: the tail must
   * show every event, whatever its name.
   */
  class SseReader {
    constructor(url, { onevent, onstate, lastEventId = '' }) {
      this.url = url;
      this.onevent = onevent;
      this.onstate = onstate;
      this.lastEventId = lastEventId;
      this.retry = 3000;
      this.readyState = 0;
      this.error = '';
      this.connect();
    }
    state(s, error = '') {
      this.readyState = s;
      this.error = error;
      this.onstate?.(this);
    }
    async connect() {
      if (this.closed) return;
      this.ctrl = new AbortController();
      this.state(0);
      const headers = authHeaders({ accept: 'text/event-stream' });
      if (this.lastEventId) headers['last-event-id'] = this.lastEventId;
      let res;
      try {
        res = await fetch(this.url, { headers, signal: this.ctrl.signal, cache: 'no-store', credentials: 'same-origin' });
      } catch {
        return this.again();
      }
      if (res.status === 204) return this.close('the server ended the stream');
      if (res.status !== 200 || !/^text\/event-stream/.test(res.headers.get('content-type') || '')) {
        let msg = `HTTP ${res.status}`;
        try {
          msg = (await res.json()).error.message || msg;
        } catch {
          // not JSON
        }
        if (res.status === 401 && S.me) showLogin('Your session has ended: log in again.');
        if (res.status >= 500) return this.again(msg);
        return this.close(msg);
      }
      this.state(1);
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      let ev = { type: '', data: [], id: null };
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let m;
          while ((m = /\r\n|\r|\n/.exec(buf))) {
            if (m[0] === '\r' && m.index === buf.length - 1) break; // a CR whose LF may follow
            const line = buf.slice(0, m.index);
            buf = buf.slice(m.index + m[0].length);
            ev = this.line(line, ev);
          }
        }
      } catch {
        // dropped: reconnect below
      }
      this.again();
    }
    /** One line of the stream (WHATWG rules); returns the event being built. */
    line(line, ev) {
      if (line === '') {
        if (ev.id !== null) this.lastEventId = ev.id;
        if (ev.data.length) this.onevent?.({ type: ev.type || 'message', data: ev.data.join('\n'), id: this.lastEventId });
        return { type: '', data: [], id: null };
      }
      if (line.startsWith(':')) return ev;
      const c = line.indexOf(':');
      const field = c < 0 ? line : line.slice(0, c);
      let value = c < 0 ? '' : line.slice(c + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'data') ev.data.push(value);
      else if (field === 'event') ev.type = value;
      else if (field === 'id' && !value.includes('\0')) ev.id = value;
      else if (field === 'retry' && /^\d+$/.test(value)) this.retry = Number(value);
      return ev;
    }
    again(error = '') {
      if (this.closed) return;
      this.state(0, error);
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.connect(), this.retry);
    }
    close(error = '') {
      this.closed = true;
      clearTimeout(this.timer);
      this.ctrl?.abort();
      this.state(2, error);
    }
  }

  const MAX_TAIL = 1000; // events kept in the list
  const MAX_CHANNELS = 3; // one connection each: browsers allow six per server over HTTP/1.1

  const Tail = {
    streams: new Map(), // channel -> {reader, chip, oldest}
    items: [], // {li, text}, newest first
    paused: false,
    waiting: [],
    seen: 0,
    add(channel) {
      channel = channel.trim();
      if (!CHANNEL_RE.test(channel)) {
        this.note(`"${channel}" is not a channel name ([A-Za-z0-9._:-], at most 128).`);
        return;
      }
      if (this.streams.has(channel)) return;
      if (this.streams.size >= MAX_CHANNELS) {
        this.note(`At most ${MAX_CHANNELS} channels at once (each is a connection); remove one first.`);
        return;
      }
      const dot = h('span', { class: 'dot', 'data-state': 'connecting' });
      const state = h('span', { class: 'vh' }, 'connecting');
      const chip = h('li', { 'data-channel': channel }, dot, h('span', { class: 'name' }, channel), state,
        h('button', { type: 'button', 'aria-label': `Stop tailing ${channel}`, onclick: () => this.remove(channel) }, '×'));
      $('#tail-chips').append(chip);
      const entry = { chip, oldest: null };
      entry.reader = new SseReader(`/api/v1/channels/${encodeURIComponent(channel)}/sse?replay=20`, {
        onevent: (e) => this.onEvent(channel, entry, e),
        onstate: (r) => {
          const st = ['connecting', 'open', 'closed'][r.readyState];
          dot.dataset.state = st;
          chip.dataset.state = st;
          state.textContent = r.error ? `${st}: ${r.error}` : st;
          chip.title = state.textContent;
        },
      });
      this.streams.set(channel, entry);
      this.count();
    },
    remove(channel) {
      const s = this.streams.get(channel);
      if (!s) return;
      s.reader.close();
      s.chip.remove();
      this.streams.delete(channel);
    },
    stopAll() {
      for (const c of [...this.streams.keys()]) this.remove(c);
    },
    onEvent(channel, entry, e) {
      if (e.type === 'flowcast.gap') {
        let lost = '?';
        try {
          lost = JSON.parse(e.data).lost;
        } catch {
          // shown as is
        }
        this.note(`${channel}: ${lost} events were evicted before they could be resumed.`);
        return;
      }
      if (e.id && entry.last && idCmp(e.id, entry.last) <= 0) return; // never twice
      entry.last = e.id;
      if (!entry.oldest) entry.oldest = e.id;
      const item = { channel, type: e.type, data: e.data, id: e.id, time: Date.now() };
      if (this.paused) {
        this.waiting.push(item);
        if (this.waiting.length > MAX_TAIL) this.waiting.shift();
      } else {
        this.show(item, true);
      }
      this.count();
    },
    /** Renders an event: newest at the top, older ones (from history) at the bottom. */
    show(item, newest) {
      const name = item.type === 'message' ? null : item.type;
      const li = h('li', { 'data-channel': item.channel, 'data-id': item.id, 'data-event': name ?? '' },
        h('div', { class: 'meta' },
          h('span', { class: 'ch' }, item.channel),
          h('span', { class: name ? 'ev' : 'ev none' }, name ?? '(unnamed)'),
          h('span', {}, `id ${item.id || '–'}`),
          h('span', {}, fmtTime(item.time))),
        h('pre', {}, pretty(item.data)));
      const text = `${item.channel} ${name ?? ''} ${item.data}`.toLowerCase();
      const entry = { li, text };
      li.hidden = !this.matches(entry);
      const list = $('#tail-list');
      if (newest) {
        list.prepend(li);
        this.items.unshift(entry);
      } else {
        list.append(li);
        this.items.push(entry);
      }
      while (this.items.length > MAX_TAIL) this.items.pop().li.remove();
      this.seen++;
    },
    note(msg) {
      const li = h('li', { class: 'sys' }, msg);
      $('#tail-list').prepend(li);
      this.items.unshift({ li, text: msg.toLowerCase() });
    },
    matches(entry) {
      const q = $('#tail-filter').value.trim().toLowerCase();
      return !q || entry.text.includes(q);
    },
    filter() {
      for (const it of this.items) it.li.hidden = !this.matches(it);
      this.count();
    },
    count() {
      const shown = this.items.filter((i) => !i.li.hidden).length;
      $('#tail-count').textContent = `${shown} shown${this.waiting.length ? ` · ${this.waiting.length} waiting` : ''}`;
    },
    togglePause() {
      this.paused = !this.paused;
      const b = $('#tail-pause');
      b.textContent = this.paused ? 'Resume' : 'Pause';
      b.setAttribute('aria-pressed', String(this.paused));
      if (!this.paused) {
        for (const it of this.waiting.splice(0)) this.show(it, true);
      }
      this.count();
    },
    clear() {
      this.items = [];
      this.waiting = [];
      $('#tail-list').replaceChildren();
      this.count();
    },
    /** Older events from the history API, before the oldest one shown, for each tailed channel. */
    async older() {
      for (const [channel, s] of this.streams) {
        const r = await api(`/api/v1/channels/${encodeURIComponent(channel)}/events?limit=1000`);
        if (r.status !== 200 || !Array.isArray(r.json)) {
          this.note(`${channel}: history: ${errText(r)}`);
          continue;
        }
        const before = r.json.filter((e) => !s.oldest || idCmp(e.id, s.oldest) < 0).slice(-50).reverse();
        for (const e of before) {
          this.show({ channel, type: e.event || 'message', id: e.id, time: Date.parse(e.time) || 0,
            data: typeof e.data === 'string' ? e.data : JSON.stringify(e.data) }, false);
          s.oldest = e.id;
        }
        if (!before.length) this.note(`${channel}: nothing older is retained.`);
      }
      this.count();
    },
  };
  $('#tail-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = $('#tail-channel');
    for (const c of input.value.split(/[\s,]+/).filter(Boolean)) Tail.add(c);
    input.value = '';
  });
  $('#tail-pause').addEventListener('click', () => Tail.togglePause());
  $('#tail-clear').addEventListener('click', () => Tail.clear());
  $('#tail-older').addEventListener('click', () => Tail.older());
  $('#tail-filter').addEventListener('input', () => Tail.filter());

  // ---- publish ---------------------------------------------------------------------

  $('#pub-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = e.currentTarget;
    const out = $('#pub-result');
    out.className = '';
    const channel = f.channel.value.trim();
    const event = f.event.value.trim();
    const asText = f.text.checked;
    if (!CHANNEL_RE.test(channel)) {
      out.className = 'error';
      out.textContent = 'The channel name may hold letters, digits and . _ : - (at most 128).';
      return;
    }
    if (!asText) {
      try {
        JSON.parse(f.data.value);
      } catch (err) {
        out.className = 'error';
        out.textContent = `Not valid JSON (${err.message}). Fix it, or tick "Send as text".`;
        f.data.focus();
        return;
      }
    }
    const q = event ? `?event=${encodeURIComponent(event)}` : '';
    const r = await api(`/api/v1/channels/${encodeURIComponent(channel)}/events${q}`, {
      method: 'POST',
      headers: { 'content-type': asText ? 'text/plain; charset=utf-8' : 'application/json' },
      body: f.data.value,
    });
    if (r.status === 201) {
      out.className = 'ok';
      out.textContent = `Published: id ${r.json.id} on ${r.json.channel} (${r.json.subscribers} subscribers).`;
      out.dataset.id = r.json.id;
    } else {
      out.className = 'error';
      out.textContent = `Refused: ${errText(r)}`;
    }
  });

  // ---- workflows and jobs ------------------------------------------------------------

  const FINAL = ['Done', 'Failed', 'Warning', 'Stopped', 'Rejected'];
  const ACTIONS = {
    Pending: ['stop'],
    Running: ['suspend', 'stop'],
    Suspended: ['resume', 'stop'],
    Waiting: ['approve', 'reject', 'stop'],
  };

  const Workflows = {
    list: [],
    async enter() {
      const r = await api('/api/v1/workflows');
      if (r.status !== 200) {
        $('#wf-status').textContent = `Workflows: ${errText(r)}`;
        $('#wf-table tbody').replaceChildren();
        return;
      }
      this.list = (Array.isArray(r.json) ? r.json : []).map((w) => ({
        id: w.id ?? w.Id, name: w.name ?? w.Name ?? '', description: w.description ?? w.Description ?? '',
      }));
      $('#wf-status').textContent = this.list.length ? '' : 'No workflow this login may run.';
      $('#wf-table tbody').replaceChildren(...this.list.map((w) => h('tr', { 'data-workflow': w.id },
        h('td', {}, String(w.id)), h('td', {}, w.name), h('td', {}, w.description),
        h('td', { class: 'acts' },
          h('button', { type: 'button', class: 'primary', onclick: () => this.start(w) }, 'Start'),
          h('button', { type: 'button', onclick: () => Jobs.show(w) }, 'Jobs')))));
      if (Jobs.wf) Jobs.load();
    },
    async start(w) {
      const r = await api(`/api/v1/start?w=${encodeURIComponent(w.id)}`, { method: 'POST' });
      if (r.status === 200 || r.status === 201) {
        $('#wf-status').textContent = `Started ${w.name}: job ${r.json}`;
        await Jobs.show(w, r.json);
      } else {
        $('#wf-status').textContent = `Start of ${w.name} refused: ${errText(r)}`;
      }
    },
  };

  const Jobs = {
    wf: null,
    es: null,
    jobs: new Map(),
    async show(w) {
      if (!this.wf || this.wf.id !== w.id) {
        this.close();
        this.wf = w;
        $('#jobs-log').replaceChildren();
        this.listen();
      }
      $('#jobs').hidden = false;
      $('#jobs-title').textContent = `Jobs of ${w.name} (${w.id})`;
      await this.load();
    },
    /** The workflow's stream (workflow.{id}) carries every job's status and log events. */
    listen() {
      const es = new EventSource(streamUrl(`/api/v1/channels/workflow.${encodeURIComponent(this.wf.id)}/sse?replay=0`));
      this.es = es;
      const state = () => {
        $('#jobs-stream').textContent = `Live updates: ${['connecting', 'open', 'closed'][es.readyState]}`;
        $('#jobs-stream').dataset.state = ['connecting', 'open', 'closed'][es.readyState];
      };
      state();
      es.onopen = state;
      es.onerror = state;
      const onStatus = (e) => {
        let d;
        try {
          d = JSON.parse(e.data);
        } catch {
          return;
        }
        if (!d || !d.jobId || !d.status) return;
        const j = this.jobs.get(d.jobId);
        if (j) {
          j.status = d.status;
          this.render();
        } else {
          this.load();
        }
      };
      es.addEventListener('status', onStatus);
      es.onmessage = onStatus; // the final event of a job
      const log = (e) => {
        let line = e.data;
        try {
          const d = JSON.parse(e.data);
          line = d.line !== undefined ? `${d.jobId.slice(0, 8)} ${d.stream || ''}: ${d.line}` : `${e.type}: ${e.data}`;
        } catch {
          // shown as is
        }
        const list = $('#jobs-log');
        list.prepend(h('li', {}, line));
        while (list.childElementCount > 300) list.lastElementChild.remove();
      };
      es.addEventListener('log', log);
      es.addEventListener('progress', log);
    },
    close() {
      if (this.es) this.es.close();
      this.es = null;
      this.wf = null;
      this.jobs = new Map();
      $('#jobs').hidden = true;
    },
    async load() {
      if (!this.wf) return;
      const r = await api(`/api/v1/jobs?w=${encodeURIComponent(this.wf.id)}&limit=100`);
      if (r.status !== 200 || !Array.isArray(r.json)) {
        $('#jobs-stream').textContent = `Jobs: ${errText(r)}`;
        return;
      }
      this.jobs = new Map(r.json.map((j) => [j.jobId, j]));
      this.render();
    },
    render() {
      const rows = [...this.jobs.values()].sort((a, b) => String(b.createdAt).localeCompare(String(a.createdAt)));
      $('#jobs-table tbody').replaceChildren(...(rows.length ? rows.map((j) => h('tr', { 'data-job': j.jobId, 'data-status': j.status },
        h('td', { title: j.jobId }, j.jobId),
        h('td', {}, h('span', { class: `badge ${j.status}` }, j.status)),
        h('td', {}, j.createdAt ? new Date(j.createdAt).toLocaleString() : ''),
        h('td', {}, j.reason ?? ''),
        h('td', { class: 'acts' }, ...(FINAL.includes(j.status) ? [] : ACTIONS[j.status] || []).map((a) =>
          h('button', { type: 'button', class: a === 'stop' || a === 'reject' ? 'danger' : '', 'data-action': a,
            onclick: () => this.act(a, j) }, a[0].toUpperCase() + a.slice(1)))))) : [h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No job yet.'))]));
    },
    async act(action, j) {
      const r = await api(`/api/v1/${action}?w=${encodeURIComponent(this.wf.id)}&i=${encodeURIComponent(j.jobId)}`, { method: 'POST' });
      if (r.status >= 300) $('#wf-status').textContent = `${action} refused: ${errText(r)}`;
      await this.load();
    },
  };

  loadSession();
})();
