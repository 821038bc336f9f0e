// The nanoecr live view. Reads the daemon's own notification lines (docs/socket-protocol.md)
// relayed over /live, and the JSON API of nanoecr-ui. No build step; uPlot is the only library.
"use strict";

const $ = (id) => document.getElementById(id);
const SEGMENTS = ["settle", "load", "hold", "unload", "safe_unload"];
// Live points kept per series (a run sends up to 1000 per second at any rate). Past it, the
// whole series is halved: every other time, load and displacement, and the smaller minimum and
// larger maximum of each Δρ/ρ pair, so a one-sample spike stays; the chart keeps the whole run
// at ≥ LIVE_POINTS / 2 points and each redraw costs the same however long the run is.
const LIVE_POINTS = 16384;
// Redraw no more often than this, and only in a frame the browser is drawing anyway (none while
// the tab is hidden). Data arrives at 10 Hz; drawing every other batch halved the main thread's
// share at 100 kHz (docs/performance.md) for at most 200 ms more delay on screen.
const REDRAW_MS = 200;

// What the page knows; `window.nanoecr` exposes it to the browser test and curious operators.
const S = {
  connected: false, run: null, progress: null, end: null,
  t: [], load: [], setp: [], disp: [], rmin: [], rmax: [],
  events: [], counts: {}, dirty: false, statusDirty: false, redrawPending: false, lastDraw: 0, redraws: 0,
  lag: { last_ms: null, samples_ms: [] },
  busy: { ms: 0, since: performance.now() },
  runView: null,
};
window.nanoecr = S;

// "-0.0" reads as a sign that means something; a rounded zero is shown as 0.
function fmt(v, d = 3) {
  if (v == null || !isFinite(v)) return "–";
  const r = Number(v).toFixed(d);
  return /^-0(\.0*)?$/.test(r) ? r.slice(1) : r;
}
function fmtE(v) { return v == null || !isFinite(v) ? "–" : Number(v).toExponential(3); }
// Writing the same text again still costs a style and paint pass: write only changes.
// An RFC 3339 time from the daemon as this computer's local date and time, to the second.
function localTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function text(id, v) {
  const e = $(id), t = String(v);
  if (e.textContent !== t) e.textContent = t;
}

async function api(path, opts) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin" }, opts || {}));
  let body = null;
  try { body = await r.json(); } catch (e) { body = { error: { message: `HTTP ${r.status}` } }; }
  return body;
}

// ---------- live charts ----------
function sizeOf(el, h) { return { width: Math.max(360, Math.min(760, el.clientWidth || 560)), height: h }; }

// The index of the sample nearest `t` in the sorted array `ts`.
function nearest(ts, t) {
  let lo = 0, hi = ts.length - 1;
  while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (ts[mid] < t) lo = mid; else hi = mid; }
  return Math.abs(ts[hi] - t) < Math.abs(ts[lo] - t) ? hi : lo;
}

// Event markers drawn over the Δρ/ρ chart: p ▲ red, n ▼ blue on the curve at the spike's peak
// (its envelope's max or min there; the magnitude itself is relative to the detector's baseline);
// pop-ins as dashed orange vertical lines.
function markerHook(getEvents) {
  return (u) => {
    const ctx = u.ctx, evs = getEvents();
    if (!evs.length) return;
    ctx.save();
    const top = u.bbox.top, bot = u.bbox.top + u.bbox.height;
    for (const e of evs) {
      const x = u.valToPos(e.peak_time_s, "x", true);
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
      if (e.kind === "popin") {
        ctx.strokeStyle = "#e67e22"; ctx.setLineDash([4, 3]); ctx.lineWidth = 1;
        ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, bot); ctx.stroke(); ctx.setLineDash([]);
      } else if (e.kind === "spike" && e.magnitude != null) {
        const up = e.sign === "p", ts = u.data[0];
        let v = e.magnitude;
        if (ts.length) {
          const w = u.data[up ? 2 : 1][nearest(ts, e.peak_time_s)];
          if (w != null) v = w;
        }
        const off = (up ? -8 : 8) * devicePixelRatio;
        const y = Math.min(Math.max(u.valToPos(v, "y", true) + off, top + 6), bot - 6);
        const s = 6 * devicePixelRatio;
        ctx.fillStyle = up ? "#c0392b" : "#2471a3";
        ctx.beginPath();
        if (up) { ctx.moveTo(x, y - s); ctx.lineTo(x - s, y + s); ctx.lineTo(x + s, y + s); }
        else { ctx.moveTo(x, y + s); ctx.lineTo(x - s, y - s); ctx.lineTo(x + s, y - s); }
        ctx.closePath(); ctx.fill();
      }
    }
    ctx.restore();
  };
}

function makeLoadChart(el, extra) {
  return new uPlot(Object.assign({
    ...sizeOf(el, 260),
    scales: { x: { time: false } },
    axes: [{ label: "time (s)" }, { label: "µN", size: 60 }],
    series: [{ label: "t (s)" }, { label: "load (µN)", stroke: "#1f618d", width: 1.5 },
      { label: "setpoint (µN)", stroke: "#999", dash: [6, 4], width: 1 }],
  }, extra || {}), [[], [], []], el);
}

function makeRhoChart(el, getEvents, extra) {
  return new uPlot(Object.assign({
    ...sizeOf(el, 260),
    scales: { x: { time: false } },
    axes: [{ label: "time (s)" }, { label: "Δρ/ρ", size: 70 }],
    series: [{ label: "t (s)" }, { label: "Δρ/ρ min", stroke: "#117a65", width: 1 },
      { label: "Δρ/ρ max", stroke: "#48c9b0", width: 1 }],
    hooks: { draw: [markerHook(getEvents)] },
  }, extra || {}), [[], [], []], el);
}

let loadChart, rhoChart;

// Displacement vs load on a plain canvas: the curve loops (load, then unload), which a chart
// with a sorted x axis cannot draw.
function drawXY() {
  const c = $("chart-xy"), ctx = c.getContext("2d"), W = c.width, H = c.height, m = 40;
  ctx.clearRect(0, 0, W, H);
  const n = S.t.length;
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (let i = 0; i < n; i++) {
    const x = S.load[i], y = S.disp[i];
    if (x == null || y == null) continue;
    if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
  }
  ctx.strokeStyle = "#888"; ctx.strokeRect(m, 8, W - m - 8, H - m - 8);
  ctx.fillStyle = "#444"; ctx.font = "11px sans-serif";
  ctx.fillText("load (µN)", W / 2 - 20, H - 6);
  ctx.save(); ctx.translate(10, H / 2 + 20); ctx.rotate(-Math.PI / 2); ctx.fillText("displacement (nm)", 0, 0); ctx.restore();
  if (!(x1 > x0) || !(y1 > y0)) return;
  ctx.fillText(fmt(x0, 0), m, H - m + 14); ctx.fillText(fmt(x1, 0), W - 50, H - m + 14);
  ctx.fillText(fmt(y1, 0), 2, 18); ctx.fillText(fmt(y0, 0), 2, H - m);
  const px = (x) => m + (x - x0) / (x1 - x0) * (W - m - 8), py = (y) => H - m - (y - y0) / (y1 - y0) * (H - m - 16);
  ctx.strokeStyle = "#1f618d"; ctx.lineWidth = 1; ctx.beginPath();
  // At most ~4 points per horizontal pixel: enough for a line, cheap on long runs.
  const step = Math.max(1, Math.floor(n / (4 * W)));
  let started = false;
  for (let i = 0; i < n; i += step) {
    const x = S.load[i], y = S.disp[i];
    if (x == null || y == null) continue;
    if (!started) { ctx.moveTo(px(x), py(y)); started = true; } else ctx.lineTo(px(x), py(y));
  }
  ctx.stroke();
}

// Everything the live stream changes on screen is drawn here, in one frame.
function redraw() {
  S.redrawPending = false;
  const t0 = performance.now();
  S.lastDraw = t0;
  if (S.statusDirty) {
    S.statusDirty = false;
    renderStatus();
    if (S.end) text("lag", "lag – (no run)");
    else if (S.lag.last_ms != null) text("lag", `lag ${S.lag.last_ms.toFixed(0)} ms`);
    else text("lag", "lag –");
  }
  if (S.dirty) {
    S.dirty = false;
    S.redraws += 1;
    loadChart.setData([S.t, S.load, S.setp]);
    rhoChart.setData([S.t, S.rmin, S.rmax]);
    drawXY();
  }
  S.busy.ms += performance.now() - t0;
}

// Mark the charts stale and draw them in the next animation frame at least REDRAW_MS after the
// last one. requestAnimationFrame does not fire in a hidden tab: a hidden page draws nothing
// and catches up in one frame when shown.
function changed() {
  S.dirty = true;
  schedule();
}

// The status table and the lag are stale.
function statusChanged() {
  S.statusDirty = true;
  schedule();
}

function schedule() {
  if (S.redrawPending) return;
  S.redrawPending = true;
  const wait = Math.max(0, REDRAW_MS - (performance.now() - S.lastDraw));
  setTimeout(() => requestAnimationFrame(redraw), wait);
}

// Halve the live series (see LIVE_POINTS).
function compact() {
  const half = (a) => { const o = new Array(a.length >> 1); for (let i = 0; i < o.length; i++) o[i] = a[2 * i]; return o; };
  const pair = (a, f) => {
    const o = new Array(a.length >> 1);
    for (let i = 0; i < o.length; i++) {
      const x = a[2 * i], y = a[2 * i + 1];
      o[i] = x == null ? y : y == null ? x : f(x, y);
    }
    return o;
  };
  S.rmin = pair(S.rmin, Math.min); S.rmax = pair(S.rmax, Math.max);
  for (const k of ["t", "load", "setp", "disp"]) S[k] = half(S[k]);
}

// ---------- live stream ----------
function resetRun(run) {
  S.run = run; S.progress = null; S.end = null;
  for (const k of ["t", "load", "setp", "disp", "rmin", "rmax"]) S[k] = [];
  S.events = []; S.counts = {};
  $("events").tBodies[0].innerHTML = "";
  changed();
  renderCounts(); renderStatus();
}

function onSamples(p) {
  if (S.run && p.run_id !== S.run.run_id) return;
  const n = p.time_s.length;
  const rmin = p.delta_rho_min && p.delta_rho_min.length === n ? p.delta_rho_min : null;
  const rmax = p.delta_rho_max && p.delta_rho_max.length === n ? p.delta_rho_max : null;
  for (let i = 0; i < n; i++) {
    S.t.push(p.time_s[i]); S.load.push(p.load_un[i]); S.setp.push(p.setpoint_un[i]); S.disp.push(p.disp_nm[i]);
    S.rmin.push(rmin ? rmin[i] : null); S.rmax.push(rmax ? rmax[i] : null);
  }
  if (S.t.length > LIVE_POINTS) compact();
  if (S.run && n > 0 && S.run.t0_unix_s) {
    // Same machine, same clock: the newest sample's wall time vs now.
    const lag = Date.now() - (S.run.t0_unix_s + p.time_s[n - 1]) * 1000;
    S.lag.last_ms = lag;
    S.lag.samples_ms.push(lag);
    if (S.lag.samples_ms.length > 10000) S.lag.samples_ms.shift();
    statusChanged();
  }
  changed();
}

function onEvent(e) {
  if (S.run && e.run_id !== S.run.run_id) return;
  S.events.push(e);
  if (e.kind === "spike") {
    const c = S.counts[e.segment] || (S.counts[e.segment] = { p: 0, n: 0 });
    c[e.sign] += 1;
    renderCounts();
  }
  const tr = document.createElement("tr");
  const mag = e.kind === "spike" ? fmtE(e.magnitude) : e.kind === "popin" ? `${fmt(e.magnitude, 2)} nm` : fmtE(e.magnitude);
  for (const [v, l] of [[fmt(e.onset_time_s, 4)], [e.kind, 1], [e.kind === "spike" ? e.sign : "–", 1], [mag], [e.segment, 1]]) {
    const td = document.createElement("td"); td.textContent = v; if (l) td.className = "l"; tr.appendChild(td);
  }
  const body = $("events").tBodies[0];
  body.insertBefore(tr, body.firstChild);
  changed();
}

function renderCounts() {
  const body = $("counts").tBodies[0];
  body.innerHTML = "";
  let P = 0, N = 0;
  for (const seg of SEGMENTS) {
    const c = S.counts[seg];
    if (!c && seg !== "load" && seg !== "hold" && seg !== "unload") continue;
    const p = c ? c.p : 0, n = c ? c.n : 0; P += p; N += n;
    body.insertAdjacentHTML("beforeend", `<tr><td class="l">${seg}</td><td>${p}</td><td>${n}</td><td>${p - n}</td></tr>`);
  }
  body.insertAdjacentHTML("beforeend", `<tr><th class="l">all</th><th>${P}</th><th>${N}</th><th>${P - N}</th></tr>`);
}

function renderStatus() {
  const b = $("daemon");
  b.textContent = S.connected ? "nanoecrd connected" : "nanoecrd unreachable";
  b.className = "badge " + (S.connected ? "ok" : "bad");
  const st = $("run-state");
  if (S.end) { st.textContent = `run ${S.end.run_id} ${S.end.status}`; st.className = "badge " + (S.end.status === "complete" ? "ok" : "bad"); }
  else if (S.run) { st.textContent = `run ${S.run.run_id} running`; st.className = "badge run"; }
  else { st.textContent = "no run"; st.className = "badge"; }
  text("run-file", S.run ? S.run.file : "–");
  const p = S.progress;
  text("elapsed", p ? fmt(p.time_s, 1) : "–");
  text("total", S.run ? fmt(S.run.total_s, 1) : "–");
  text("segment", p ? p.segment : "–");
  text("load", p ? fmt(p.load_un, 1) : "–");
  text("setpoint", p ? fmt(p.setpoint_un, 1) : "–");
  text("samples", p ? p.samples : "–");
  text("dropped", p ? p.dropped : "–");
  const s = S.end && S.end.summary;
  if (s) {
    text("health", `${s.end_reason}; lateness p99 ${fmt(s.lateness_p99_us, 0)} µs, max ${fmt(s.lateness_max_us, 0)} µs; missed deadlines ${s.missed_deadlines}${(s.moved_ticks || s.skipped_ticks) ? ` (host stalls: ${s.moved_ticks || 0} ticks moved, ${s.skipped_ticks || 0} skipped)` : ""}; dropped ${s.dropped}`);
  } else if (p) {
    text("health", `ring ${p.ring_occupancy} samples waiting; ${p.dropped} dropped`);
  } else text("health", "–");
}

function onLine(msg) {
  const t0 = performance.now();
  const m = JSON.parse(msg), p = m.params || {};
  switch (m.method) {
    case "ui.hello": case "ui.daemon":
      S.connected = !!p.connected;
      if (p.connected) resetRun(p.run || null);
      break;
    case "run.started": resetRun(p); S.lag.last_ms = null; break;
    case "progress":
      if (!S.run || p.run_id === S.run.run_id) S.progress = p;
      break;
    case "samples": onSamples(p); break;
    case "event": onEvent(p); break;
    case "run.end":
      // No newer sample will come after it: the lag shows "no run" rather than a stale figure.
      if (!S.run || p.run_id === S.run.run_id) { S.end = p; if (!S.run) S.run = p; }
      loadRuns();
      break;
  }
  statusChanged();
  S.busy.ms += performance.now() - t0;
}

function connect() {
  const ws = new WebSocket(`ws://${location.host}/live`);
  ws.onmessage = (ev) => onLine(ev.data);
  ws.onclose = () => { S.connected = false; renderStatus(); setTimeout(connect, 1000); };
}

// ---------- start / abort ----------
async function loadConfigs() {
  const r = await api("/api/configs");
  const sel = $("config-select");
  for (const name of r.configs || []) {
    const o = document.createElement("option"); o.value = name; o.textContent = name; sel.appendChild(o);
  }
  if (r.configs && r.configs.length) { sel.value = r.configs.includes("demo.toml") ? "demo.toml" : r.configs[0]; await showConfig(); }
}

async function showConfig() {
  const name = $("config-select").value;
  if (!name) { $("config-toml").value = ""; return; }
  const r = await api(`/api/config?name=${encodeURIComponent(name)}`);
  $("config-toml").value = r.toml || "";
  $("config-toml").dataset.original = r.toml || "";
}

// The daemon's message (the CLI prints the same), and the TOML with the message under the
// offending line, the line marked.
function showConfigError(err, toml) {
  const pre = $("config-error");
  const d = err.data || {};
  pre.innerHTML = "";
  const head = document.createElement("div"); head.className = "err"; head.textContent = `error: ${err.message}`;
  pre.appendChild(head);
  if (d.line && toml) {
    const lines = toml.split("\n");
    const from = Math.max(0, d.line - 4), to = Math.min(lines.length, d.line + 2);
    for (let i = from; i < to; i++) {
      const row = document.createElement("div");
      row.textContent = `${String(i + 1).padStart(4)} | ${lines[i]}`;
      if (i + 1 === d.line) row.className = "bad";
      pre.appendChild(row);
      if (i + 1 === d.line) {
        const e = document.createElement("div"); e.className = "err key-error"; e.dataset.key = d.key || "";
        e.textContent = `     ^ ${d.key}: ${d.message}${d.expected ? ` (expected ${d.expected})` : ""}`;
        pre.appendChild(e);
      }
    }
  }
  pre.hidden = false;
}

async function start() {
  const res = $("start-result"), pre = $("config-error");
  pre.hidden = true; res.textContent = "starting…"; res.className = "";
  const name = $("config-select").value, toml = $("config-toml").value;
  const edited = !name || toml !== $("config-toml").dataset.original;
  const body = edited ? { config_toml: toml } : { config_name: name };
  if ($("fast").checked) body.fast = true;
  const r = await api("/api/start", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  if (r.error) {
    res.textContent = "not started"; res.className = "err";
    showConfigError(r.error, toml);
  } else {
    res.textContent = `started run ${r.result.run_id}: ${r.result.file} (${fmt(r.result.total_s, 1)} s program)`;
    res.className = "ok";
  }
}

async function abortRun() {
  $("abort-confirm").hidden = true;
  const r = await api("/api/abort", { method: "POST" });
  const res = $("start-result");
  if (r.error) { res.textContent = `abort: ${r.error.message}`; res.className = "err"; }
  else { res.textContent = `abort requested for run ${r.result.run_id}; the load ramps down safely`; res.className = "ok"; }
}

// ---------- recent runs and the run view ----------
async function loadRuns() {
  const r = await api("/api/runs");
  const body = $("runs").tBodies[0];
  body.innerHTML = "";
  for (const run of (r.result && r.result.runs) || []) {
    const tr = document.createElement("tr");
    for (const [v, l] of [[run.run_id ?? "–"], [run.status, 1], [run.end_reason || "", 1], [localTime(run.ended_at), 1], [run.file, 1]]) {
      const td = document.createElement("td"); td.textContent = v; if (l) td.className = "l"; tr.appendChild(td);
    }
    const td = document.createElement("td"), b = document.createElement("button");
    b.textContent = "open"; b.className = "open-run"; b.dataset.file = run.file;
    b.onclick = () => openRun(run.file);
    td.appendChild(b); tr.appendChild(td); body.appendChild(tr);
  }
}

let rvLoad, rvRho, rvBusy = false;

async function fetchRunWindow(t0, t1) {
  const v = S.runView;
  const px = Math.round(rvRho.bbox.width / devicePixelRatio) || 800;
  let q = `/api/run?file=${encodeURIComponent(v.file)}&pixels=${px}`;
  if (t0 != null) q += `&t0_s=${t0}&t1_s=${t1}`;
  // The first view reads the whole file once (its summary): seconds for a long run.
  if (!v.loaded) { text("rv-info", "reading the run file once (a long run takes a few seconds)…"); text("rv-window", ""); }
  const r = await api(q);
  if (r.error) { text("rv-info", `error: ${r.error.message}`); return; }
  const d = r.data, col = (name) => d.series.find((s) => s[0] === name)[1];
  v.meta = r; v.window = { t0, t1, samples: d.samples_in_window, full: d.full_resolution, points: d.time_s.length };
  v.events = r.events;
  rvBusy = true;
  rvLoad.setData([d.time_s, col("load_un"), col("setpoint_un")], t0 == null);
  // Δρ/ρ is one series here; both envelope series carry it, min/max is built into its points.
  rvRho.setData([d.time_s, col("delta_rho"), col("delta_rho")], t0 == null);
  if (t0 != null) { rvLoad.setScale("x", { min: t0, max: t1 }); rvRho.setScale("x", { min: t0, max: t1 }); }
  rvBusy = false;
  text("rv-window", `${d.samples_in_window} samples in view, ${d.full_resolution ? "every sample shown" : `min/max of each pixel column (${d.time_s.length} points)`}`);
  text("rv-info", `${r.status}${r.end_reason ? ` (${r.end_reason})` : ""}; ${r.samples} samples at ${fmt(r.rate_hz, 0)} Hz, ${fmt(r.duration_s, 3)} s; ${r.events.length} events`);
  v.loaded = (v.loaded || 0) + 1;
}

// Zoom: a drag across either chart selects a time window (setSelect hook in openRun); the
// server sends that window decimated to the chart's width, so zooming in reaches single samples.
async function openRun(file) {
  $("run-view").hidden = false;
  text("rv-file", file);
  $("rv-report").hidden = true;
  $("rv-figures").innerHTML = "";
  S.runView = { file, events: [], loaded: 0 };
  if (!rvLoad) {
    const hooks = { setSelect: [(u) => { if (u.select.width > 2) { const a = u.posToVal(u.select.left, "x"), b = u.posToVal(u.select.left + u.select.width, "x"); u.setSelect({ width: 0, height: 0 }, false); fetchRunWindow(a, b); } }] };
    const cursor = { drag: { x: true, y: false, setScale: false } };
    rvLoad = makeLoadChart($("rv-load"), { cursor, hooks });
    rvRho = makeRhoChart($("rv-rho"), () => (S.runView ? S.runView.events : []), { cursor, hooks: { setSelect: hooks.setSelect, draw: [markerHook(() => (S.runView ? S.runView.events : []))] } });
  }
  await fetchRunWindow(null, null);
  $("run-view").scrollIntoView();
}

async function loadReport() {
  const pre = $("rv-report");
  pre.hidden = false; pre.textContent = "analysing…";
  const figs = $("rv-figures");
  figs.innerHTML = "";
  const r = await api(`/api/report?file=${encodeURIComponent(S.runView.file)}`);
  pre.textContent = r.error ? `error: ${r.error.message}` : r.markdown;
  for (const f of r.figures || []) {
    const img = document.createElement("img");
    img.alt = f.name; img.title = f.name; img.className = "figure";
    img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(f.svg)}`;
    figs.appendChild(img);
  }
}

// For the browser test and the console: zoom the run view to [t0, t1] s.
S.zoomRun = (t0, t1) => fetchRunWindow(t0, t1);
S.lagStats = () => {
  const v = S.lag.samples_ms.slice().sort((a, b) => a - b);
  const q = (f) => (v.length ? v[Math.min(v.length - 1, Math.floor(f * v.length))] : null);
  const wall = performance.now() - S.busy.since;
  return { n: v.length, p50_ms: q(0.5), p99_ms: q(0.99), max_ms: v.length ? v[v.length - 1] : null, busy_fraction: S.busy.ms / wall };
};

window.addEventListener("DOMContentLoaded", () => {
  loadChart = makeLoadChart($("chart-load"));
  rhoChart = makeRhoChart($("chart-rho"), () => S.events);
  renderCounts(); renderStatus();
  $("config-select").onchange = showConfig;
  $("start").onclick = start;
  $("abort").onclick = () => { $("abort-confirm").hidden = false; };
  $("abort-no").onclick = () => { $("abort-confirm").hidden = true; };
  $("abort-yes").onclick = abortRun;
  $("runs-refresh").onclick = loadRuns;
  $("rv-reset").onclick = () => fetchRunWindow(null, null);
  $("rv-report-btn").onclick = loadReport;
  loadConfigs(); loadRuns(); connect();
});
