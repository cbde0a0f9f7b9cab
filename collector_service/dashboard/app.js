// The collector's dashboard: polls the JSON API of the same origin (no framework, no build step).
// Every value from the API is put into the page with textContent, never as HTML.
'use strict';

const PAGE_SIZE = 25;
const state = {
  info: { read_only: true },
  offset: 0,
  filter: { state: '', cliente: '' },
  view: 'list',
  jobId: '',
  rateSamples: [],   // [time ms, records/s] of the job shown
  lastOk: 0,
  failures: 0,
  timer: null,
  pagesAt: 0,
};

const $ = (id) => document.getElementById(id);
const token = () => sessionStorage.getItem('etl-token') || '';

function fmtInt(n) { return Number(n || 0).toLocaleString('en-US'); }
function fmtRate(r) { return r > 0 ? `${fmtInt(Math.round(r))}/s` : '–'; }
function fmtDuration(s) {
  s = Math.max(0, Math.round(Number(s) || 0));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}
function fmtEta(p) {
  const eta = Number(p.eta_seconds);
  if (terminal(p.state)) return '–';
  return eta >= 0 ? fmtDuration(eta) : '?';
}
function fmtTime(ms) {
  ms = Number(ms);
  if (!ms) return '–';
  const d = new Date(ms);
  return d.toISOString().replace('T', ' ').slice(0, 19);
}
function fmtBytes(b) {
  b = Number(b || 0);
  const u = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return `${b.toFixed(i ? 1 : 0)} ${u[i]}`;
}
function terminal(s) { return ['SUCCEEDED', 'PARTIAL', 'FAILED', 'CANCELLED'].includes(s); }
function pct(p) {
  const total = Number(p.records_total), pagesTotal = Number(p.pages_total);
  if (p.state === 'SUCCEEDED') return 100;
  if (total > 0) return Math.min(100, (100 * Number(p.records_committed)) / total);
  if (pagesTotal > 0) return Math.min(100, (100 * Number(p.pages_committed)) / pagesTotal);
  return 0;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function setConn(ok, text) {
  const c = $('conn');
  c.className = 'conn ' + (ok ? 'conn-ok' : state.failures > 2 ? 'conn-down' : 'conn-wait');
  c.textContent = text;
}

async function api(path, opts) {
  const res = await fetch(path, Object.assign({ cache: 'no-store' }, opts || {}));
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (!res.ok) {
    const err = new Error((body && body.error) || `HTTP ${res.status}`);
    err.status = res.status;
    throw err;
  }
  return body;
}

// ---- jobs list ----

async function refreshList() {
  const q = new URLSearchParams({ limit: PAGE_SIZE, offset: state.offset });
  if (state.filter.state) q.set('state', state.filter.state);
  if (state.filter.cliente) q.set('cliente', state.filter.cliente);
  const [list, writer] = await Promise.all([api('/api/jobs?' + q), api('/api/writer').catch((e) => ({ error: e }))]);
  renderJobs(list);
  renderWriter(writer);
}

function renderJobs(list) {
  const body = $('jobs-body');
  const rows = [];
  for (const j of list.jobs) {
    const p = j.progress || {};
    const tr = el('tr', null, 'job-row');
    tr.dataset.jobId = j.job_id;
    tr.dataset.state = j.state;
    tr.addEventListener('click', () => { location.hash = '#/jobs/' + encodeURIComponent(j.job_id); });
    const st = el('td'); st.appendChild(el('span', j.state, 'state state-' + j.state)); tr.appendChild(st);
    tr.appendChild(el('td', `${j.spec.cliente_id} / ${j.spec.rota}`));
    tr.appendChild(el('td', j.table_name));
    const rec = el('td', null, 'num');
    const mini = el('span', null, 'mini'); const fill = el('div'); fill.style.width = pct(p) + '%'; mini.appendChild(fill);
    rec.appendChild(mini);
    rec.appendChild(document.createTextNode(`${fmtInt(p.records_committed)} / ${Number(p.records_total) ? fmtInt(p.records_total) : '?'}`));
    tr.appendChild(rec);
    tr.appendChild(el('td', `${fmtInt(p.pages_committed)} / ${Number(p.pages_total) ? fmtInt(p.pages_total) : '?'}`, 'num'));
    tr.appendChild(el('td', fmtInt(p.pages_failed), 'num'));
    tr.appendChild(el('td', terminal(j.state) ? '–' : fmtRate(p.records_per_second), 'num'));
    tr.appendChild(el('td', fmtEta(p), 'num'));
    tr.appendChild(el('td', fmtTime(j.created_at_unix_ms)));
    tr.appendChild(el('td', fmtDuration(p.elapsed_seconds), 'num'));
    rows.push(tr);
  }
  if (rows.length === 0) {
    const tr = el('tr'); const td = el('td', 'No jobs match.', 'small'); td.colSpan = 10; tr.appendChild(td); rows.push(tr);
  }
  body.replaceChildren(...rows);
  const total = Number(list.total);
  const first = total ? state.offset + 1 : 0, last = Math.min(total, state.offset + PAGE_SIZE);
  $('page-info').textContent = `${first}–${last} of ${total}`;
  $('prev').disabled = state.offset === 0;
  $('next').disabled = state.offset + PAGE_SIZE >= total;
}

function renderWriter(w) {
  if (w.error) {
    $('w-serving').textContent = 'unreachable';
    $('w-error').textContent = String(w.error.message || w.error);
    return;
  }
  $('w-serving').textContent = w.serving ? 'serving' : 'NOT serving';
  $('w-serving').className = 'value ' + (w.serving ? '' : 'error-text');
  $('w-rate').textContent = fmtRate(w.commit_rate_records_per_second);
  $('w-streams').textContent = `${fmtInt(w.streams_active)} / ${fmtInt(w.streams_total)}`;
  $('w-committed').textContent = fmtInt(w.records_committed);
  const qr = Number(w.queue_capacity_records) ? (100 * Number(w.queue_depth_records)) / Number(w.queue_capacity_records) : 0;
  const qb = Number(w.queue_capacity_bytes) ? (100 * Number(w.queue_depth_bytes)) / Number(w.queue_capacity_bytes) : 0;
  $('w-qrec').style.width = Math.min(100, qr) + '%';
  $('w-qbytes').style.width = Math.min(100, qb) + '%';
  $('w-qrec-text').textContent = `${fmtInt(w.queue_depth_records)} of ${fmtInt(w.queue_capacity_records)} records`;
  $('w-qbytes-text').textContent = `${fmtBytes(w.queue_depth_bytes)} of ${fmtBytes(w.queue_capacity_bytes)}`;
  $('w-error').textContent = w.last_error ? 'last error: ' + w.last_error : '';
}

// ---- one job ----

async function refreshJob() {
  const id = state.jobId;
  const job = await api('/api/jobs/' + encodeURIComponent(id));
  if (id !== state.jobId) return;
  renderJob(job);
  const now = Date.now();
  // The page map reads the writer's ledger: every second for small jobs, every 5 s for large ones.
  const every = Number(job.progress && job.progress.pages_total) > 2000 ? 5000 : 900;
  if (now - state.pagesAt > every || terminal(job.state)) {
    state.pagesAt = now;
    const map = await api('/api/jobs/' + encodeURIComponent(id) + '/pages').catch(() => null);
    if (map && id === state.jobId) renderPageMap(map);
  }
}

function stat(label, value) {
  const d = el('div');
  d.appendChild(el('span', label, 'label'));
  d.appendChild(el('span', value, 'value'));
  return d;
}

function renderJob(j) {
  const p = j.progress || {};
  $('j-id').textContent = j.job_id;
  const st = $('j-state');
  st.textContent = j.state;
  st.className = 'state state-' + j.state;
  document.title = `${j.state} · job ${j.job_id.slice(0, 8)}`;
  const percent = pct(p);
  const bar = $('j-progress');
  bar.style.width = percent + '%';
  bar.dataset.pct = percent.toFixed(1);
  bar.dataset.state = j.state;
  bar.classList.toggle('done', j.state === 'SUCCEEDED');
  $('j-progress-text').textContent = `${percent.toFixed(1)} %`;
  $('j-stats').replaceChildren(
    stat('Cliente / rota', `${j.spec.cliente_id} / ${j.spec.rota}`),
    stat('Table', j.table_name),
    stat('Records committed', `${fmtInt(p.records_committed)} / ${Number(p.records_total) ? fmtInt(p.records_total) : '?'}`),
    stat('Pages committed', `${fmtInt(p.pages_committed)} / ${Number(p.pages_total) ? fmtInt(p.pages_total) : '?'}`),
    stat('Failed pages', fmtInt(p.pages_failed)),
    stat('Dead letters', fmtInt(p.records_rejected)),
    stat('Retries', fmtInt(p.retries)),
    stat('Rate', terminal(j.state) ? '–' : fmtRate(p.records_per_second)),
    stat('ETA', fmtEta(p)),
    stat('Started', fmtTime(j.created_at_unix_ms)),
    stat('Duration', fmtDuration(p.elapsed_seconds)),
    stat('Finished', fmtTime(j.finished_at_unix_ms)));
  $('j-error').textContent = j.error || '';
  $('j-message').textContent = !terminal(j.state) && p.message && p.message !== j.error ? p.message : '';
  const ro = state.info.read_only || !token();
  $('cancel-btn').disabled = ro || terminal(j.state);
  $('retry-btn').disabled = ro || !terminal(j.state);
  $('cancel-btn').title = $('retry-btn').title = state.info.read_only
    ? 'read-only dashboard (collector started without an API token)' : (token() ? '' : 'enter the API token first');

  const failed = (j.failed_pages || []).map((f) => {
    const tr = el('tr');
    tr.appendChild(el('td', f.page_number, 'num'));
    tr.appendChild(el('td', f.page_token));
    tr.appendChild(el('td', f.attempts, 'num'));
    tr.appendChild(el('td', f.error));
    return tr;
  });
  if (failed.length === 0) { const tr = el('tr'); const td = el('td', 'None.', 'small'); td.colSpan = 4; tr.appendChild(td); failed.push(tr); }
  $('failed-body').replaceChildren(...failed);
  $('j-spec').textContent = JSON.stringify(j.spec, null, 2);

  if (!terminal(j.state) || state.rateSamples.length === 0) {
    state.rateSamples.push([Date.now(), Number(p.records_per_second) || 0]);
    if (state.rateSamples.length > 600) state.rateSamples.shift();
  }
  drawChart();
}

function renderPageMap(map) {
  const total = Math.max(1, Number(map.total));
  const parts = map.runs.map(([kind, n]) => {
    const d = el('div', null, 'pm-' + kind);
    d.style.flex = `${n} 0 0`;
    d.title = `${kind.replace('_', ' ')}: ${fmtInt(n)} page(s)`;
    return d;
  });
  $('page-map').replaceChildren(...parts);
  const counts = {};
  for (const [kind, n] of map.runs) counts[kind] = (counts[kind] || 0) + Number(n);
  const legend = $('pm-legend');
  legend.replaceChildren();
  for (const kind of ['committed', 'in_flight', 'failed', 'pending']) {
    legend.appendChild(el('span', null, 'legend-dot pm-' + kind));
    legend.appendChild(document.createTextNode(`${kind.replace('_', ' ')} ${fmtInt(counts[kind] || 0)}`));
  }
  legend.appendChild(document.createTextNode(`  (of ${fmtInt(total)}${map.exact ? '' : ', from counts'})`));
}

function drawChart() {
  const c = $('rate-chart');
  const ctx = c.getContext('2d');
  const w = c.width, h = c.height, pad = 40;
  ctx.clearRect(0, 0, w, h);
  ctx.font = '11px sans-serif';
  ctx.fillStyle = '#677085';
  const pts = state.rateSamples;
  const max = Math.max(1, ...pts.map((p) => p[1]));
  ctx.strokeStyle = '#e1e4ea';
  for (let i = 0; i <= 4; i++) {
    const y = pad / 2 + ((h - pad) * i) / 4;
    ctx.beginPath(); ctx.moveTo(pad + 20, y); ctx.lineTo(w - 5, y); ctx.stroke();
    ctx.fillText(fmtInt(Math.round(max * (1 - i / 4))), 2, y + 4);
  }
  if (pts.length < 2) return;
  const t0 = pts[0][0], t1 = pts[pts.length - 1][0];
  ctx.strokeStyle = '#2f6fde';
  ctx.lineWidth = 2;
  ctx.beginPath();
  pts.forEach(([t, v], i) => {
    const x = pad + 20 + ((w - pad - 25) * (t - t0)) / Math.max(1, t1 - t0);
    const y = pad / 2 + (h - pad) * (1 - v / max);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
  ctx.lineWidth = 1;
  ctx.fillText(`last ${fmtDuration((t1 - t0) / 1000)}`, w - 90, h - 4);
}

async function action(kind) {
  const msg = $('action-msg');
  msg.textContent = kind === 'cancel' ? 'cancelling…' : 'starting…';
  try {
    const job = await api(`/api/jobs/${encodeURIComponent(state.jobId)}/${kind}`, {
      method: 'POST', headers: { Authorization: 'Bearer ' + token() },
    });
    if (kind === 'retry') {
      msg.textContent = 'started job ' + job.job_id;
      location.hash = '#/jobs/' + encodeURIComponent(job.job_id);
    } else {
      msg.textContent = 'job is ' + job.state;
      renderJob(job);
    }
  } catch (e) {
    msg.textContent = `${kind} refused: ${e.message}`;
  }
}

// ---- routing and polling ----

function route() {
  const m = location.hash.match(/^#\/jobs\/([^/]+)$/);
  const newId = m ? decodeURIComponent(m[1]) : '';
  state.view = m ? 'job' : 'list';
  if (newId !== state.jobId) { state.rateSamples = []; state.pagesAt = 0; $('page-map').replaceChildren(); }
  state.jobId = newId;
  $('list-view').hidden = state.view !== 'list';
  $('job-view').hidden = state.view !== 'job';
  if (state.view === 'list') document.title = 'ETL pipeline: jobs';
  poll();
}

async function poll() {
  clearTimeout(state.timer);
  try {
    if (!state.info.version) {
      state.info = await api('/api/info');
      renderMode();
    }
    if (state.view === 'job') await refreshJob(); else await refreshList();
    state.failures = 0;
    state.lastOk = Date.now();
    setConn(true, 'live');
  } catch (e) {
    if (e.status && e.status < 500 && e.status !== 404) {
      setConn(true, 'live');
    } else {
      state.failures++;
      state.info.version = '';  // a restarted collector may come back with other settings
      setConn(false, `reconnecting… (${e.message || 'no answer'})`);
    }
    if (state.view === 'job' && e.status === 404) $('j-error').textContent = e.message;
  }
  // One second while live; back off to five while the collector is away.
  const delay = state.failures ? Math.min(5000, 500 * 2 ** Math.min(state.failures, 4)) : 1000;
  state.timer = setTimeout(poll, delay);
}

function renderMode() {
  $('mode').textContent = state.info.read_only ? 'read-only' : token() ? 'token set: cancel / retry enabled' : '';
  $('token-form').hidden = state.info.read_only;
  $('footer').textContent = `collector ${state.info.version || ''} (${state.info.revision || ''})`;
}

$('filter').addEventListener('submit', (e) => {
  e.preventDefault();
  state.filter = { state: $('f-state').value, cliente: $('f-cliente').value.trim() };
  state.offset = 0;
  poll();
});
$('prev').addEventListener('click', () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); poll(); });
$('next').addEventListener('click', () => { state.offset += PAGE_SIZE; poll(); });
$('token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  sessionStorage.setItem('etl-token', $('token').value);
  $('token').value = '';
  renderMode();
  poll();
});
$('cancel-btn').addEventListener('click', () => action('cancel'));
$('retry-btn').addEventListener('click', () => action('retry'));
window.addEventListener('hashchange', route);
route();
