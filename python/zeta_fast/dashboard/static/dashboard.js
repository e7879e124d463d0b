// zeta_fast dashboard: polls /dashboard/data (or renders the data a report
// embedded in window.ZETA_DATA) and draws tables and small canvas charts.
// No framework, no build step. Every value cell carries data-k (what it is)
// and data-v (the raw number), so tests can read the page back exactly.
"use strict";

const POLL_MS = 500;
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
let key = sessionStorage.getItem("zeta-key") || "";

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

const pct = (v) => (v === null || v === undefined ? "-" : (v * 100).toFixed(1) + "%");
const ms = (v) => (v === null || v === undefined ? "-" : v.toFixed(v < 10 ? 1 : 0) + " ms");
const num = (v, digits) => (v === null || v === undefined ? "-" : Number(v).toFixed(digits));
const clock = (ts) => new Date(ts * 1000).toLocaleTimeString();

// A value cell: shown text, what it is (data-k) and its raw value (data-v).
function cell(k, v, text, cls) {
  return el("td", { "data-k": k, "data-v": v === null || v === undefined ? "" : String(v), class: cls || "num" }, text);
}

function fill(tableId, rows) {
  const body = document.querySelector("#" + tableId + " tbody");
  body.replaceChildren(...rows);
}

function renderModels(data) {
  fill("models", data.models.map((m) => {
    const tr = el("tr", { "data-model": m.id });
    tr.append(
      el("td", {}, m.id),
      cell(`model:${m.id}:requests`, m.requests, String(m.requests)),
      cell(`model:${m.id}:success`, m.success_rate, pct(m.success_rate)),
      cell(`model:${m.id}:p50`, m.p50_ms, ms(m.p50_ms)),
      cell(`model:${m.id}:p95`, m.p95_ms, ms(m.p95_ms)),
      cell(`model:${m.id}:p99`, m.p99_ms, ms(m.p99_ms)),
      cell(`model:${m.id}:in_flight`, m.in_flight, String(m.in_flight)),
    );
    return tr;
  }));
  const scoreRows = [];
  for (const m of data.models) {
    for (const t of m.tasks) {
      const tr = el("tr");
      const penalties = el("td", { "data-k": `penalties:${m.id}:${t.task}` });
      for (const name of t.penalties) {
        penalties.append(el("span", { class: "penalty", "data-k": `penalty:${m.id}:${t.task}:${name}` },
          `${name} (${t.reasons[name] || ""}) `));
      }
      if (!t.penalties.length) penalties.append(el("span", { class: "ok" }, t.has_data ? "none" : "no data yet"));
      tr.append(
        el("td", {}, m.id), el("td", {}, t.task),
        cell(`score:${m.id}:${t.task}:capability`, t.capability, num(t.capability, 1)),
        cell(`score:${m.id}:${t.task}:score`, t.score, num(t.score, 1), t.penalties.length ? "num bad" : "num"),
        cell(`score:${m.id}:${t.task}:success`, t.success_rate, t.has_data ? pct(t.success_rate) : "-"),
        cell(`score:${m.id}:${t.task}:latency`, t.avg_latency_ms, t.has_data ? ms(t.avg_latency_ms) : "-"),
        penalties,
      );
      scoreRows.push(tr);
    }
  }
  fill("scores", scoreRows);
  const replicaRows = [];
  for (const m of data.models) {
    for (const r of m.replicas) {
      const state = !r.healthy ? "down" : r.breaker !== "closed" ? "breaker " + r.breaker : r.degraded ? "degraded" : "ok";
      const tr = el("tr");
      tr.append(
        el("td", {}, m.id), el("td", {}, r.id),
        cell(`replica:${m.id}:${r.id}:in_flight`, r.in_flight, String(r.in_flight)),
        el("td", { class: r.healthy ? "ok" : "bad" }, r.healthy ? "healthy" : "unhealthy"),
        el("td", { class: r.breaker === "closed" ? "" : "bad" }, r.breaker),
        cell(`replica:${m.id}:${r.id}:failures`, r.recent_failure_share, pct(r.recent_failure_share)),
        cell(`replica:${m.id}:${r.id}:latency`, r.recent_latency_ms, ms(r.recent_latency_ms)),
        cell(`replica:${m.id}:${r.id}:p50`, r.p50_ms, ms(r.p50_ms)),
        cell(`replica:${m.id}:${r.id}:p95`, r.p95_ms, ms(r.p95_ms)),
        cell(`replica:${m.id}:${r.id}:p99`, r.p99_ms, ms(r.p99_ms)),
        el("td", { "data-k": `replica:${m.id}:${r.id}:state`, class: state === "ok" ? "ok" : "bad" }, state),
        cell(`replica:${m.id}:${r.id}:requests`, r.requests, String(r.requests)),
        cell(
          `replica:${m.id}:${r.id}:cache_hit`, r.cache_hit_share,
          r.cache_hit_share == null ? "-" : `${pct(r.cache_hit_share)} (${pct(r.cache_expected_share)})`,
        ),
      );
      replicaRows.push(tr);
    }
  }
  fill("replicas", replicaRows);
}

// Lines of `series` ({key, pick, color, width, dash}) over the history.
function drawLines(canvasId, history, series, maxFloor) {
  const canvas = document.getElementById(canvasId);
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 34;
  ctx.clearRect(0, 0, w, h);
  ctx.font = "10px sans-serif";
  ctx.fillStyle = "#667085";
  if (history.length < 2) { ctx.fillText("collecting…", pad, h / 2); return; }
  const t0 = history[0].ts, t1 = history[history.length - 1].ts;
  let max = maxFloor;
  for (const point of history) for (const s of series) {
    const v = s.pick(point);
    if (v !== null && v !== undefined && v > max) max = v;
  }
  ctx.strokeStyle = "#e4e7ec";
  ctx.beginPath(); ctx.moveTo(pad, 4); ctx.lineTo(pad, h - 14); ctx.lineTo(w - 4, h - 14); ctx.stroke();
  ctx.fillText(max.toFixed(max < 2 ? 2 : 0), 2, 12);
  ctx.fillText("0", 2, h - 14);
  ctx.fillText(`${Math.round(t1 - t0)} s`, w - 30, h - 2);
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = s.width || 1.5;
    ctx.setLineDash(s.dash || []);
    ctx.beginPath();
    let started = false;
    for (const point of history) {
      const v = s.pick(point);
      if (v === null || v === undefined) { started = false; continue; }
      const x = pad + ((point.ts - t0) / Math.max(t1 - t0, 1e-9)) * (w - pad - 6);
      const y = h - 14 - (v / max) * (h - 22);
      if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
    }
    ctx.stroke();
  }
  ctx.setLineDash([]);
}

function legend(id, names) {
  document.getElementById(id).replaceChildren(...names.map((name, i) => {
    const span = el("span", {});
    span.append(el("i", { style: `background:${COLORS[i % COLORS.length]}` }), document.createTextNode(name));
    return span;
  }));
}

function renderCharts(data) {
  const ids = data.models.map((m) => m.id);
  const perModel = (field, extra) => ids.map((id, i) => ({
    pick: (p) => (p.models[id] || {})[field], color: COLORS[i % COLORS.length], ...(extra || {}),
  }));
  drawLines("chart-latency", data.history, [
    ...perModel("p50_ms", { width: 0.8 }), ...perModel("p95_ms"), ...perModel("p99_ms", { dash: [4, 3] }),
  ], 1);
  drawLines("chart-success", data.history, perModel("success_rate"), 1);
  drawLines("chart-inflight", data.history, perModel("in_flight"), 1);
  legend("legend", ids);
  const replicas = data.models.flatMap((m) => m.replicas.map((r) => `${m.id}/${r.id}`));
  const perReplica = (field) => replicas.map((key, i) => ({
    pick: (p) => ((p.replicas || {})[key] || {})[field], color: COLORS[i % COLORS.length],
  }));
  drawLines("chart-replica-p95", data.history, perReplica("p95_ms"), 1);
  drawLines("chart-replica-inflight", data.history, perReplica("in_flight"), 1);
  legend("replica-legend", replicas);
}

function renderAlerts(data) {
  const open = document.getElementById("alerts-open");
  if (!data.alerts.enabled) { open.textContent = "alerts are off"; fill("alerts", []); return; }
  open.replaceChildren(...(data.alerts.open.length ? data.alerts.open.map((a) =>
    el("div", { class: "alert", "data-k": `alert-open:${a.model}:${a.rule}` },
      `OPEN ${a.severity}: ${a.model}${a.task ? "/" + a.task : ""} ${a.rule}: ${a.message}`))
    : [el("div", { class: "ok", "data-k": "alerts-open-none" }, "no open alerts")]));
  fill("alerts", data.alerts.past.map((a) => {
    const tr = el("tr", { "data-k": `alert:${a.model}:${a.rule}` });
    tr.append(el("td", {}, clock(a.ts_ms / 1000)), el("td", { class: a.severity === "critical" ? "bad" : "warn" }, a.severity),
      el("td", {}, a.model), el("td", {}, a.task || "all"), el("td", {}, a.rule), el("td", {}, a.message));
    return tr;
  }));
}

function renderLearned(data) {
  const learned = data.learned;
  const status = document.getElementById("learned-status");
  const head = document.querySelector("#learned thead");
  if (!learned.enabled) {
    status.textContent = "learning is off (learning.enabled in the configuration)";
    head.replaceChildren(); fill("learned", []); return;
  }
  status.textContent = `${learned.updates} outcomes learned; smoothed success rate per category ` +
    "(task type / complexity band), the winner highlighted";
  const tr = el("tr");
  tr.append(el("th", {}, "category"), ...learned.models.map((m) => el("th", {}, m)), el("th", {}, "wins"));
  head.replaceChildren(tr);
  fill("learned", learned.categories.map((c) => {
    const row = el("tr");
    row.append(el("td", {}, c.category));
    for (const m of learned.models) {
      const td = cell(`learned:${c.category}:${m}`, c.success[m], `${pct(c.success[m])} (${c.requests[m]})`,
        m === c.winner ? "num winner" : "num");
      row.append(td);
    }
    row.append(el("td", { "data-k": `learned:${c.category}:winner` }, c.winner));
    return row;
  }));
}

function renderDecisions(data) {
  fill("decisions", data.decisions.map((d) => {
    const tr = el("tr");
    tr.append(
      el("td", {}, clock(d.ts)), el("td", {}, d.model + (d.explored ? " (explored)" : "")), el("td", {}, d.replica),
      el("td", {}, d.task), cell("decision:complexity", d.complexity, num(d.complexity, 2)),
      cell("decision:capability", d.capability, num(d.capability, 1)),
      cell("decision:score", d.score, num(d.score, 1)),
      el("td", { class: d.penalties.length ? "penalty" : "" }, d.penalties.join(", ") || "-"),
      el("td", {}, d.runners_up.map((r) => `${r.model_id} ${num(r.performance_score, 1)}`).join(", ") || "-"),
      el("td", { class: d.outcome === "success" ? "ok" : "bad" }, d.outcome),
      cell("decision:latency", d.latency_ms, ms(d.latency_ms)),
    );
    return tr;
  }));
}

// Labels per minute of one source at each history point (over the 10 s before it).
function labelRates(history, source) {
  return history.map((point, i) => {
    let j = i;
    while (j > 0 && point.ts - history[j - 1].ts <= 10) j--;
    const before = history[j];
    const span = point.ts - before.ts;
    if (span < 1) return { ts: point.ts, v: null };
    const now = (point.verdicts || {})[source] || 0, then = (before.verdicts || {})[source] || 0;
    return { ts: point.ts, v: ((now - then) * 60) / span };
  });
}

function renderSignals(data) {
  const signals = data.signals || { sources: [], kinds: {}, events: {} };
  fill("signals", signals.sources.map((s) => {
    const perModel = Object.entries(s.models).map(([m, c]) => `${m} ${c.good} / ${c.bad}`).join(", ");
    const rate = s.per_minute === null || s.per_minute === undefined ? "–" : s.per_minute.toFixed(1);
    const row = el("tr", {});
    row.append(el("td", {}, s.source), el("td", { "data-k": `signals:${s.source}:good` }, String(s.good)),
      el("td", { "data-k": `signals:${s.source}:bad` }, String(s.bad)), el("td", {}, rate), el("td", {}, perModel));
    return row;
  }));
  const kinds = [];
  for (const [model, perKind] of Object.entries(signals.kinds)) {
    for (const [kind, k] of Object.entries(perKind)) {
      if (!k.checked) continue;
      const row = el("tr", {});
      row.append(el("td", {}, model), el("td", {}, kind), el("td", {}, String(k.checked)),
        el("td", {}, String(k.failed)),
        el("td", { "data-k": `kinds:${model}:${kind}`, class: k.factor < 1 ? "bad" : "ok" }, k.factor.toFixed(2)));
      kinds.push(row);
    }
  }
  fill("kinds", kinds);
  const events = Object.entries(signals.events || {}).map(([k, n]) => `${k} ${n}`).join(" · ");
  document.getElementById("signal-events").textContent = events;
  const sources = signals.sources.map((s) => s.source);
  const rates = Object.fromEntries(sources.map((s) => [s, labelRates(data.history, s)]));
  drawLines("chart-labels", data.history, sources.map((s, i) => ({
    pick: (p) => { const r = rates[s].find((x) => x.ts === p.ts); return r ? r.v : null; },
    color: COLORS[i % COLORS.length],
  })), 1);
  const ids = data.models.map((m) => m.id);
  drawLines("chart-learned", data.history, ids.map((id, i) => ({
    pick: (p) => (p.learned || {})[id], color: COLORS[i % COLORS.length],
  })), 1);
  legend("signal-legend", sources);
  legend("learned-legend", ids);
}

function render(data) {
  document.getElementById("login").hidden = true;
  document.getElementById("main").hidden = false;
  renderModels(data);
  renderCharts(data);
  renderAlerts(data);
  renderLearned(data);
  renderSignals(data);
  renderDecisions(data);
  const shared = data.shared || { enabled: false };
  document.getElementById("shared").textContent = !shared.enabled ? "" : shared.up
    ? `shared state: up, ${shared.remote_instances} other instance(s)`
    : "shared state: DOWN, routing on local state";
  const updated = document.getElementById("updated");
  updated.textContent = (data.source === "live" ? "updated " : "report of ") + clock(data.ts);
  updated.setAttribute("data-v", String(data.ts));
}

async function poll() {
  try {
    const response = await fetch("/dashboard/data", { headers: key ? { Authorization: "Bearer " + key } : {} });
    if (response.status === 401) {
      document.getElementById("status").textContent = "needs an API key";
      document.getElementById("login").hidden = false;
      document.getElementById("main").hidden = true;
      return; // the login form starts polling again
    }
    render(await response.json());
    document.getElementById("status").textContent = "live";
  } catch (error) {
    document.getElementById("status").textContent = "disconnected: " + error;
  }
  setTimeout(poll, POLL_MS);
}

function start() {
  if (window.ZETA_DATA) { // a report: the data is in the page
    render(window.ZETA_DATA);
    document.getElementById("status").textContent = "report";
    return;
  }
  // A key may come in the URL's fragment (never sent to the server): kept
  // for this tab only, and taken out of the address bar.
  const match = /(?:^#|&)key=([^&]+)/.exec(location.hash);
  if (match) {
    key = decodeURIComponent(match[1]);
    sessionStorage.setItem("zeta-key", key);
    history.replaceState(null, "", location.pathname);
  }
  document.getElementById("login").addEventListener("submit", (event) => {
    event.preventDefault();
    key = document.getElementById("key").value;
    sessionStorage.setItem("zeta-key", key);
    poll();
  });
  poll();
}

start();
