// clb web console: plain JavaScript, no framework. It keeps nothing in web storage (local or
// session): the session is an HttpOnly cookie the page cannot read, and the CSRF token
// lives in the variable below for as long as the page is open.
'use strict';
(function () {
  const POLL_MS = 800;   // services and status: "about once a second", so a change shows within one
  const SVGNS = 'http://www.w3.org/2000/svg';
  const CHART_W = 120, CHART_H = 28;

  const st = {
    csrf: null,          // the session's CSRF token, in memory only
    me: null,            // {key, scope, admin, services}
    pollTimer: null,
    statsTimer: null,
    gen: 0,              // bumped at login and logout so that late answers of an old session are dropped
    stats: new Map(),    // "service\nmember" -> [sample, ...] oldest first
    statsSince: null,
    statsInterval: 2,
    statsWindow: 600,
    statsState: 'unknown', // unknown | ok | unavailable
    charts: new Map(),   // "service\nmember" -> {rate: element, ms: element}
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k.startsWith('data-')) e.setAttribute(k, v);
      else if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function svg(tag, attrs) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }

  // call sends a request to the console's view of the API (/ui/api/X is the API's /v1/X).
  async function call(method, path, body) {
    const headers = {};
    if (method !== 'GET') headers['X-Clb-Csrf'] = st.csrf || '';
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const gen = st.gen;
    const resp = await fetch('/ui/api/' + path, {
      method, headers, credentials: 'same-origin', cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await resp.json(); } catch (e) { data = { error: 'answer is not JSON (' + resp.status + ')' }; }
    if (gen !== st.gen) throw new Error('stale');
    if (resp.status === 401) {
      endSession((data && data.error) || 'session ended');
      throw new Error('stale');
    }
    return { status: resp.status, data };
  }

  // ---- login and session ----

  function showLogin(msg) {
    $('main-view').hidden = true;
    $('who').hidden = true;
    $('logout').hidden = true;
    $('login-view').hidden = false;
    $('login-error').textContent = msg || '';
    $('login-secret').value = '';
    $('login-secret').focus();
  }

  function startSession(info) {
    st.gen++;
    st.csrf = info.csrf_token;
    st.me = info;
    st.stats.clear();
    st.charts.clear();
    st.statsSince = null;
    st.statsState = 'unknown';
    $('services').replaceChildren();
    $('login-view').hidden = true;
    $('login-error').textContent = '';
    $('main-view').hidden = false;
    $('who').textContent = info.key + ' (' + info.scope + ')';
    $('who').hidden = false;
    $('logout').hidden = false;
    document.body.classList.toggle('admin', !!info.admin);
    poll();
    pollStats();
  }

  function endSession(msg) {
    st.gen++;
    st.csrf = null;
    st.me = null;
    clearTimeout(st.pollTimer);
    clearTimeout(st.statsTimer);
    $('services').replaceChildren();
    $('applies').tBodies[0].replaceChildren();
    $('status-summary').replaceChildren();
    $('message').textContent = '';
    showLogin(msg);
  }

  async function login(ev) {
    ev.preventDefault();
    const key = $('login-key').value.trim();
    const secret = $('login-secret').value;
    $('login-secret').value = ''; // the secret leaves the page with this request only
    $('login-submit').disabled = true;
    $('login-error').textContent = '';
    try {
      const resp = await fetch('/ui/login', {
        method: 'POST', credentials: 'same-origin', cache: 'no-store',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ key, secret }),
      });
      let data = {};
      try { data = await resp.json(); } catch (e) { /* shown below */ }
      if (resp.ok) {
        startSession(data);
        return;
      }
      let msg = 'refused: ' + (data.error || resp.status);
      const retry = resp.headers.get('Retry-After');
      if (resp.status === 429 && retry) msg += ' (Retry-After ' + retry + ' s)';
      $('login-error').textContent = msg;
    } catch (e) {
      $('login-error').textContent = 'clbd did not answer: ' + e.message;
    } finally {
      $('login-submit').disabled = false;
    }
  }

  async function logout() {
    try {
      await fetch('/ui/logout', { method: 'POST', credentials: 'same-origin', headers: { 'X-Clb-Csrf': st.csrf || '' } });
    } finally {
      endSession('logged out');
    }
  }

  // ---- polling ----

  async function poll() {
    const gen = st.gen;
    const started = Date.now();
    try {
      const [svcs, status] = await Promise.all([call('GET', 'services'), call('GET', 'status')]);
      if (svcs.status !== 200) throw new Error('GET services: ' + svcs.status + ' ' + (svcs.data.error || ''));
      renderServices(svcs.data.services || []);
      if (status.status === 200) renderStatus(status.data);
      $('poll-error').textContent = '';
    } catch (e) {
      if (e.message === 'stale') return;
      $('poll-error').textContent = 'update failed: ' + e.message;
    }
    if (gen !== st.gen) return;
    st.pollTimer = setTimeout(poll, Math.max(50, POLL_MS - (Date.now() - started)));
  }

  async function pollStats() {
    const gen = st.gen;
    let next = st.statsInterval * 1000;
    try {
      const q = st.statsSince ? '?since=' + encodeURIComponent(st.statsSince) : '';
      const r = await call('GET', 'stats' + q);
      if (r.status === 200) {
        st.statsState = 'ok';
        mergeStats(r.data);
      } else if (r.status === 404 || r.status === 405) {
        st.statsState = 'unavailable'; // a clbd without GET /v1/stats: look again now and then
        next = 30000;
      } else {
        throw new Error('GET stats: ' + r.status + ' ' + (r.data.error || ''));
      }
      updateCharts();
    } catch (e) {
      if (e.message === 'stale') return;
      $('poll-error').textContent = 'stats update failed: ' + e.message;
    }
    if (gen !== st.gen) return;
    st.statsTimer = setTimeout(pollStats, Math.max(1000, next));
  }

  function mergeStats(data) {
    if (data.interval_seconds > 0) st.statsInterval = data.interval_seconds;
    if (data.window_seconds > 0) st.statsWindow = data.window_seconds;
    let newest = st.statsSince;
    for (const svc of data.services || []) {
      for (const m of svc.members || []) {
        const k = svc.name + '\n' + m.name;
        const series = st.stats.get(k) || [];
        const last = series.length ? Date.parse(series[series.length - 1].t) : -Infinity;
        for (const s of m.samples || []) {
          if (Date.parse(s.t) > last) series.push(s);
          if (!newest || Date.parse(s.t) > Date.parse(newest)) newest = s.t;
        }
        st.stats.set(k, series);
      }
    }
    st.statsSince = newest;
    if (newest) {
      const from = Date.parse(newest) - st.statsWindow * 1000;
      for (const [k, series] of st.stats) {
        let i = 0;
        while (i < series.length && Date.parse(series[i].t) < from) i++;
        if (i > 0) series.splice(0, i);
        if (series.length === 0) st.stats.delete(k);
      }
    }
  }

  // ---- charts ----

  function chartFor(service, member) {
    const k = service + '\n' + member;
    let c = st.charts.get(k);
    if (!c) {
      c = { rate: el('span', { class: 'chart rate' }), ms: el('span', { class: 'chart ms' }) };
      st.charts.set(k, c);
      drawChart(c, st.stats.get(k));
    }
    return c;
  }

  function updateCharts() {
    for (const [k, c] of st.charts) drawChart(c, st.stats.get(k));
  }

  function drawChart(c, series) {
    if (st.statsState !== 'ok') {
      const why = st.statsState === 'unavailable' ? 'no stats (this clbd has no GET /v1/stats)' : '';
      c.rate.replaceChildren(el('span', { class: 'nostats', title: why }, st.statsState === 'unavailable' ? 'n/a' : '…'));
      c.ms.replaceChildren(el('span', { class: 'nostats', title: why }, st.statsState === 'unavailable' ? 'n/a' : '…'));
      return;
    }
    series = series || [];
    c.rate.replaceChildren(spark(series, (s) => s.req_rate, 'rate'), label(series, (s) => s.req_rate, '/s'));
    c.ms.replaceChildren(spark(series, (s) => s.resp_ms, 'ms'), label(series, (s) => s.resp_ms, ' ms'));
  }

  function label(series, f, unit) {
    if (!series.length) return el('span', { class: 'value' }, '–');
    const v = f(series[series.length - 1]) || 0;
    return el('span', { class: 'value' }, (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + unit);
  }

  // chartSpan is the time every chart spans, ending at end: the history held, at least a
  // half a minute and at most the stats window, so that young history is not squeezed to the edge.
  function chartSpan(end) {
    let first = end;
    for (const series of st.stats.values()) if (series.length) first = Math.min(first, Date.parse(series[0].t));
    return Math.min(st.statsWindow * 1000, Math.max(30000, end - first));
  }

  function fmtSpan(ms) {
    const s = Math.round(ms / 1000);
    return s < 120 ? s + ' s' : Math.round(s / 60) + ' min';
  }

  // spark draws the series over chartSpan, newest at the right edge.
  function spark(series, f, cls) {
    const s = svg('svg', { width: CHART_W, height: CHART_H, viewBox: '0 0 ' + CHART_W + ' ' + CHART_H, role: 'img' });
    if (!series.length) return s;
    const end = Date.parse(st.statsSince || series[series.length - 1].t);
    const span = chartSpan(end);
    let max = 0;
    for (const p of series) max = Math.max(max, f(p) || 0);
    const top = max > 0 ? max * 1.1 : 1;
    const pts = series.map((p) => {
      const x = CHART_W - ((end - Date.parse(p.t)) / span) * CHART_W;
      const y = CHART_H - 1 - ((f(p) || 0) / top) * (CHART_H - 2);
      return x.toFixed(1) + ',' + y.toFixed(1);
    });
    if (pts.length === 1) pts.push(pts[0]);
    s.append(svg('polyline', { points: pts.join(' '), class: cls }));
    const t = svg('title', {});
    t.textContent = 'last ' + fmtSpan(span) + ', max ' + max.toFixed(1);
    s.append(t);
    return s;
  }

  // ---- services ----

  function renderServices(list) {
    const root = $('services');
    const keep = new Set();
    for (const svc of list) {
      keep.add(svc.name);
      const sig = JSON.stringify(svc) + '|' + st.me.admin;
      let sec = [...root.children].find((s) => s.dataset.service === svc.name);
      if (!sec || sec.dataset.sig !== sig) {
        const fresh = buildService(svc);
        fresh.dataset.sig = sig;
        if (sec) sec.replaceWith(fresh); else root.append(fresh);
        sec = fresh;
      }
      root.append(sec); // keep the API's order (by name)
    }
    for (const sec of [...root.children]) if (!keep.has(sec.dataset.service)) sec.remove();
    if (!list.length) root.replaceChildren(el('p', { class: 'hint' }, 'No services this key may see.'));
    // Charts of members that are gone.
    for (const k of [...st.charts.keys()]) {
      const [s, m] = k.split('\n');
      const svc = list.find((x) => x.name === s);
      if (!svc || !svc.members.some((x) => x.name === m)) st.charts.delete(k);
    }
  }

  function buildService(svc) {
    const admin = !!st.me.admin;
    const listeners = (svc.listeners || []).map((l) => (l.address ? l.address + ':' : ':') + l.port + ' → ' + (l.member_port || '') + ' ' + (l.protocol || 'http')).join(', ');
    const sec = el('section', { class: 'service', 'data-service': svc.name },
      el('h2', {}, svc.name),
      el('p', { class: 'meta' }, 'listeners ' + (listeners || 'none') + ' · balance ' + (svc.balance || 'roundrobin') + (svc.sticky ? ' · sticky' : '')));

    if (svc.zones && svc.zones.length) {
      const body = el('tbody');
      for (const z of svc.zones) {
        const action = z.enabled ? 'disable' : 'enable';
        body.append(el('tr', { class: 'zone' + (z.enabled ? '' : ' off'), 'data-service': svc.name, 'data-zone': z.name },
          el('td', {}, z.name),
          el('td', { class: 'state' }, z.enabled ? 'enabled' : 'disabled'),
          el('td', { class: 'num' }, z.members),
          admin ? el('td', {}, el('button', { type: 'button', class: 'zone-toggle', 'data-service': svc.name, 'data-zone': z.name, 'data-action': action }, action)) : null));
      }
      sec.append(el('h3', {}, 'Zones'), el('table', { class: 'zones' },
        el('thead', {}, el('tr', {}, el('th', {}, 'zone'), el('th', {}, 'traffic'), el('th', {}, 'members'), admin ? el('th', {}, '') : null)), body));
    }

    sec.append(el('h3', {}, 'Members'));
    if (!svc.members.length) {
      sec.append(el('p', { class: 'hint empty' }, 'No members.'));
    } else {
      const body = el('tbody');
      for (const m of svc.members) {
        const c = chartFor(svc.name, m.name);
        let lease = '';
        if (m.lease_ttl) lease = m.lease_ttl + (m.lease_expires ? ', ends ' + new Date(m.lease_expires).toLocaleTimeString() : '');
        body.append(el('tr', { class: 'member', 'data-service': svc.name, 'data-member': m.name, 'data-health': m.health },
          el('td', { class: 'name' }, m.name),
          el('td', {}, m.address + ':' + m.port),
          el('td', {}, m.zone || '–'),
          el('td', { class: 'num' }, m.weight),
          el('td', { class: 'health ' + m.health }, m.health),
          el('td', {}, lease || 'permanent'),
          el('td', {}, c.rate),
          el('td', {}, c.ms),
          admin ? el('td', {}, el('button', { type: 'button', class: 'unregister', 'data-service': svc.name, 'data-member': m.name }, 'unregister')) : null));
      }
      sec.append(el('table', { class: 'members' },
        el('thead', {}, el('tr', {}, el('th', {}, 'member'), el('th', {}, 'address'), el('th', {}, 'zone'), el('th', {}, 'weight'),
          el('th', {}, 'health'), el('th', {}, 'lease'), el('th', {}, 'requests'), el('th', {}, 'response time'), admin ? el('th', {}, '') : null)),
        body));
    }
    const draining = svc.draining || [];
    sec.append(el('p', { class: 'meta draining' }, 'draining: ' + (draining.length ? draining.join(', ') : 'none')));
    return sec;
  }

  // ---- status ----

  function fmtTime(t) {
    if (!t || t.startsWith('0001-')) return '–';
    return new Date(t).toLocaleTimeString();
  }

  function renderStatus(s) {
    const la = s.last_apply || {};
    const rows = [
      ['haproxy', (s.haproxy_version || '?') + (s.haproxy_pid ? ' (pid ' + s.haproxy_pid + ')' : '') + ', ' + s.mode],
      ['reloads', s.reloads],
      ['apply failures', s.apply_failures],
      ['pending changes', s.pending_changes],
      ['last apply', (la.result || '–') + ' ' + (la.path || '') + ' at ' + fmtTime(la.time) + (la.error ? ': ' + la.error : '')],
      ['draining servers', s.draining_servers],
      ['clbd', (s.clbd_version || '') + ', up ' + (s.uptime || '')],
    ];
    $('status-summary').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', { 'data-field': k }, v === undefined ? '–' : v)]));
    const body = $('applies').tBodies[0];
    body.replaceChildren(...(s.recent_applies || []).map((a) => el('tr', { class: a.result === 'ok' ? 'ok' : 'failed' },
      el('td', {}, fmtTime(a.time)), el('td', {}, a.result), el('td', {}, a.path || ''),
      el('td', { class: 'num' }, (a.duration_ms || 0).toFixed(1)), el('td', { class: 'num' }, a.generation),
      el('td', {}, a.error || a.runtime_error || ''))));
  }

  // ---- actions ----

  async function act(button, method, path, done) {
    button.disabled = true;
    $('message').textContent = '';
    try {
      const r = await call(method, path);
      if (r.status >= 200 && r.status < 300) {
        $('message').textContent = done + (r.status === 202 ? ' (accepted, not yet applied)' : ' (applied)');
      } else {
        $('message').textContent = '';
        $('poll-error').textContent = method + ' ' + path + ' refused: ' + r.status + ' ' + (r.data.error || '');
      }
    } catch (e) {
      if (e.message !== 'stale') $('poll-error').textContent = 'action failed: ' + e.message;
    } finally {
      button.disabled = false;
    }
    if (st.me) { clearTimeout(st.pollTimer); poll(); }
  }

  function onClick(ev) {
    const b = ev.target.closest('button');
    if (!b || b.disabled) return;
    const enc = encodeURIComponent;
    if (b.classList.contains('zone-toggle')) {
      const { service, zone, action } = b.dataset;
      act(b, 'POST', 'services/' + enc(service) + '/zones/' + enc(zone) + '/' + action, 'zone ' + zone + ' of ' + service + ' ' + action + 'd');
    } else if (b.classList.contains('unregister')) {
      // Two clicks: the first arms the button for 5 s.
      if (!b.classList.contains('armed')) {
        b.classList.add('armed');
        b.textContent = 'confirm unregister';
        setTimeout(() => { b.classList.remove('armed'); b.textContent = 'unregister'; }, 5000);
        return;
      }
      const { service, member } = b.dataset;
      act(b, 'DELETE', 'services/' + enc(service) + '/members/' + enc(member), 'member ' + member + ' of ' + service + ' unregistered');
    }
  }

  async function start() {
    $('login-form').addEventListener('submit', login);
    $('logout').addEventListener('click', logout);
    $('services').addEventListener('click', onClick);
    // A page reloaded during a session carries on with it (the cookie is sent, the token is
    // handed out again to this same-origin page).
    try {
      const resp = await fetch('/ui/session', { credentials: 'same-origin', cache: 'no-store' });
      if (resp.ok) { startSession(await resp.json()); return; }
    } catch (e) { /* not logged in */ }
    showLogin('');
  }

  document.addEventListener('DOMContentLoaded', start);
})();
