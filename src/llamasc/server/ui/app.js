// The llamasc dashboard: reads /api/events (a fetch stream, so the API key can travel in a
// header) and the JSON routes. No build step, no assets from elsewhere.
"use strict";

const KEY_ITEM = "llamasc-api-key";
const state = { sidecars: new Map(), waiting: {}, inFlight: {}, points: {}, logHash: "" };
const $ = (id) => document.getElementById(id);

function headers() {
  const key = sessionStorage.getItem(KEY_ITEM);
  return key ? { Authorization: "Bearer " + key } : {};
}

async function api(path, options = {}) {
  const resp = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (resp.status === 401) {
    askKey();
    throw new Error("API key needed");
  }
  const data = await resp.json();
  if (!resp.ok) throw new Error((data.error && data.error.message) || resp.statusText);
  return data;
}

function askKey() {
  $("keyform").hidden = false;
  setConn(false, "API key needed");
}

$("keyform").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(KEY_ITEM, $("key").value);
  $("key").value = "";
  $("keyform").hidden = true;
  restart();
});

function setConn(on, text) {
  const el = $("conn");
  el.textContent = text;
  el.className = "pill " + (on ? "on" : "off");
}

// ------------------------------------------------------------------------- formatting

const fmtBytes = (b) => {
  if (b === undefined || b === null) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return b.toFixed(i ? 1 : 0) + " " + units[i];
};
const fmtS = (s) => (s === undefined || s === null ? "-" : s < 1 ? (s * 1000).toFixed(0) + " ms" : s.toFixed(2) + " s");
const fmtNum = (n, d = 1) => (n === undefined || n === null ? "-" : Number(n).toFixed(d));
const ago = (t) => {
  if (!t) return "-";
  const s = Math.max(0, Date.now() / 1000 - t);
  return s < 60 ? s.toFixed(0) + "s ago" : s < 3600 ? (s / 60).toFixed(0) + "m ago" : (s / 3600).toFixed(1) + "h ago";
};
function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

// --------------------------------------------------------------------------- sidecars

let memory = { devices: {}, sidecars: {} };

function renderSidecars() {
  const body = $("sidecars").querySelector("tbody");
  body.replaceChildren();
  const list = [...state.sidecars.values()].sort((a, b) => (a.started || 0) - (b.started || 0));
  $("no-sidecars").hidden = list.length > 0;
  for (const s of list) {
    const tr = document.createElement("tr");
    tr.dataset.hash = s.hash;
    tr.className = "sidecar";
    const mem = memory.sidecars[s.hash.slice(0, 8)] || {};
    const sum = (kind) => {
      const vals = Object.values(mem).map((d) => d[kind]).filter((v) => v !== undefined);
      return vals.length ? vals.reduce((a, b) => a + b, 0) : null;
    };
    const t = s.last_timings || {};
    const ttft = t.prompt_ms !== undefined ? t.prompt_ms / 1000 : null;
    cell(tr, s.model, "model");
    cell(tr, s.hash.slice(0, 8), "hash");
    cell(tr, (s.flags || []).join(" ") || "-", "flags");
    cell(tr, s.state, "state state-" + s.state);
    cell(tr, fmtBytes(sum("projected")) + " / " + fmtBytes(sum("actual")));
    cell(tr, String(s.in_flight ?? 0));
    cell(tr, String(s.requests_served ?? 0));
    cell(tr, ago(s.last_used));
    cell(tr, fmtS(ttft));
    cell(tr, fmtNum(t.predicted_per_second));
    const td = cell(tr, "");
    const btn = document.createElement("button");
    btn.textContent = "Stop";
    btn.className = "stop";
    btn.disabled = s.state === "stopping";
    btn.addEventListener("click", () => stopSidecar(s.hash));
    td.appendChild(btn);
    body.appendChild(tr);
  }
  const sel = $("log-sidecar");
  const keep = sel.value;
  sel.replaceChildren(new Option("(choose a sidecar)", ""));
  for (const s of list) sel.appendChild(new Option(s.model + " " + s.hash.slice(0, 8), s.hash));
  sel.value = list.some((s) => s.hash === keep) ? keep : "";
  $("summary").textContent = list.length + " sidecar(s), " +
    Object.values(state.inFlight).reduce((a, b) => a + b, 0) + " in flight";
}

async function stopSidecar(hash) {
  const s = state.sidecars.get(hash);
  if (s) { s.state = "stopping"; renderSidecars(); }
  try { await api("/sidecars/" + hash, { method: "DELETE" }); } catch (e) { console.warn(e.message); }
}

$("unload-all").addEventListener("click", async () => {
  try { await api("/sidecars?all=1", { method: "DELETE" }); } catch (e) { console.warn(e.message); }
});

let refreshTimer = null;
function refreshSoon() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(async () => {
    refreshTimer = null;
    try {
      const data = await api("/sidecars");
      state.sidecars = new Map(data.sidecars.map((s) => [s.hash, s]));
      renderSidecars();
      loadActivity();
    } catch (e) { console.warn(e.message); }
  }, 300);
}

function renderWaiting() {
  const ul = $("waiting");
  ul.replaceChildren();
  const entries = Object.entries(state.waiting).filter(([, n]) => n > 0);
  if (!entries.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "nobody is waiting";
    ul.appendChild(li);
  }
  for (const [model, n] of entries) {
    const li = document.createElement("li");
    li.textContent = model + ": " + n + " waiting";
    ul.appendChild(li);
  }
}

// ----------------------------------------------------------------------------- memory

async function loadMemory() {
  try { memory = await api("/api/memory"); } catch (e) { return; }
  const box = $("memory");
  box.replaceChildren();
  for (const [device, m] of Object.entries(memory.devices)) {
    const total = m.total || m.budget || 0;
    const label = document.createElement("div");
    label.textContent = device + ": " + fmtBytes(m.used) + " used of " + fmtBytes(total) +
      (m.budget ? " (budget " + fmtBytes(m.budget) + ")" : "");
    const bar = document.createElement("div");
    bar.className = "bar";
    const used = document.createElement("span");
    used.style.width = total ? Math.min(100, (100 * (m.used || 0)) / total) + "%" : "0";
    bar.appendChild(used);
    if (m.budget && total) {
      const b = document.createElement("span");
      b.className = "budget";
      b.style.width = Math.min(100, (100 * m.budget) / total) + "%";
      bar.appendChild(b);
    }
    box.append(label, bar);
  }
  renderSidecars();
}

// ---------------------------------------------------------------------- log and history

async function loadLog() {
  const hash = $("log-sidecar").value;
  if (!hash) { $("log").textContent = ""; return; }
  try {
    const data = await api("/sidecars/" + hash + "/logs?n=200");
    const pre = $("log");
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = data.lines.join("\n");
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  } catch (e) { /* the sidecar is gone */ }
}
$("log-sidecar").addEventListener("change", loadLog);

async function loadActivity() {
  let data;
  try { data = await api("/api/activity?limit=50"); } catch (e) { return; }
  const body = $("activity").querySelector("tbody");
  body.replaceChildren();
  for (const r of data.requests) {
    const tr = document.createElement("tr");
    cell(tr, new Date(r.time * 1000).toLocaleTimeString());
    cell(tr, r.client || "-");
    cell(tr, r.model || "-");
    cell(tr, r.sidecar || "-");
    cell(tr, r.route || "-");
    cell(tr, String(r.status));
    cell(tr, fmtS(r.queue_wait));
    cell(tr, fmtS(r.load_wait));
    cell(tr, fmtS(r.ttft));
    cell(tr, fmtS(r.duration));
    cell(tr, r.prompt_tokens ?? "-");
    cell(tr, r.completion_tokens ?? "-");
    cell(tr, fmtNum(r.tokens_per_second));
    cell(tr, r.error_code || "");
    body.appendChild(tr);
  }
  for (const r of [...data.requests].reverse()) addPoint(r.model, r.time, r.tokens_per_second, r.ttft);
  drawCharts();
}

// ----------------------------------------------------------------------------- charts

const COLORS = ["#4fa3ff", "#3fb950", "#d29922", "#f85149", "#bc8cff", "#39c5cf"];

function addPoint(model, t, tps, ttft) {
  if (!model) return;
  const pts = (state.points[model] = state.points[model] || []);
  if (pts.some((p) => p.t === t)) return;
  pts.push({ t, tps, ttft });
  pts.sort((a, b) => a.t - b.t);
  if (pts.length > 300) pts.splice(0, pts.length - 300);
}

function drawChart(canvas, field) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 24;
  ctx.clearRect(0, 0, w, h);
  const series = Object.entries(state.points).map(([m, pts]) => [m, pts.filter((p) => typeof p[field] === "number")]);
  const all = series.flatMap(([, pts]) => pts);
  if (!all.length) return;
  const t0 = Math.min(...all.map((p) => p.t)), t1 = Math.max(...all.map((p) => p.t));
  const vmax = Math.max(...all.map((p) => p[field])) || 1;
  ctx.fillStyle = "#8a929c";
  ctx.font = "11px sans-serif";
  ctx.fillText(vmax.toFixed(2), 2, 12);
  series.forEach(([model, pts], i) => {
    ctx.strokeStyle = ctx.fillStyle = COLORS[i % COLORS.length];
    ctx.beginPath();
    pts.forEach((p, j) => {
      const x = pad + ((p.t - t0) / Math.max(1e-9, t1 - t0)) * (w - 2 * pad);
      const y = h - pad - (p[field] / vmax) * (h - 2 * pad);
      j ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
      ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
    });
    ctx.stroke();
    ctx.fillText(model, pad + i * 110, h - 6);
  });
}

function drawCharts() {
  drawChart($("chart-tps"), "tps");
  drawChart($("chart-ttft"), "ttft");
}

// ------------------------------------------------------------------------ event stream

let controller = null;

function onEvent(type, ev) {
  if (type === "state") {
    state.sidecars = new Map(ev.sidecars.map((s) => [s.hash, s]));
    state.waiting = ev.waiting || {};
    state.inFlight = ev.in_flight || {};
    renderSidecars();
    renderWaiting();
  } else if (type === "sidecar") {
    if (ev.state === "exited") {
      state.sidecars.delete(ev.hash);
    } else {
      const s = state.sidecars.get(ev.hash) || { hash: ev.hash, model: ev.model, flags: ev.flags, started: ev.time };
      s.state = ev.state;
      state.sidecars.set(ev.hash, s);
    }
    renderSidecars();
    refreshSoon();
  } else if (type === "queue") {
    state.waiting = ev.waiting || {};
    state.inFlight = ev.in_flight || {};
    renderWaiting();
  } else if (type === "request_finished") {
    addPoint(ev.model, ev.started, ev.tokens_per_second, ev.ttft);
    drawCharts();
    refreshSoon();
  }
}

async function listen() {
  controller = new AbortController();
  try {
    const resp = await fetch("/api/events", { headers: headers(), signal: controller.signal });
    if (resp.status === 401) { askKey(); return; }
    if (!resp.ok) throw new Error("events: " + resp.status);
    setConn(true, "live");
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let at;
      while ((at = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, at);
        buf = buf.slice(at + 2);
        let type = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) type = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (data) onEvent(type, JSON.parse(data));
      }
    }
  } catch (e) {
    if (e.name === "AbortError") return;
  }
  setConn(false, "reconnecting");
  setTimeout(listen, 2000);
}

function restart() {
  if (controller) controller.abort();
  listen();
  loadActivity();
  loadMemory();
}

async function start() {
  // Ask for the key before any call that would be refused without it.
  try {
    const auth = await (await fetch("auth.json")).json();
    if (auth.required && !sessionStorage.getItem(KEY_ITEM)) { askKey(); return; }
  } catch (e) { /* the daemon is not there yet: the stream below retries */ }
  restart();
}

start();
const authed = () => $("keyform").hidden; // no key form shown: the API answers us
setInterval(() => { if (authed()) loadMemory(); }, 5000);
setInterval(() => { if (authed()) loadLog(); }, 1500);
setInterval(renderSidecars, 10000);
