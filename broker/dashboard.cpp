// The dashboard seppo-broker --http serves at /: one page, its style and script inline, that
// polls /api/status every second. Nothing is loaded from anywhere else (the Content-Security-
// Policy the server sends forbids it).
#include "broker/http.hpp"

namespace seppo::broker {

const char* const kDashboardPage = R"html(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>seppo broker</title>
<style>
  :root { --bg:#f7f7f5; --fg:#1d1d1f; --dim:#6b6b70; --line:#dcdcd8; --card:#fff; --bar:#3b7dd8; --bad:#d9453b; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: var(--bg); color: var(--fg); }
  header { display: flex; flex-wrap: wrap; gap: 18px; align-items: baseline; padding: 12px 18px;
           background: #23262d; color: #eee; }
  header h1 { font-size: 18px; margin: 0 12px 0 0; }
  header .figure b { font-size: 17px; color: #fff; }
  header .figure { color: #b8bcc6; }
  main { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; padding: 14px 18px; }
  section { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px;
            min-width: 0; }
  section.wide { grid-column: 1 / 3; }
  h2 { font-size: 14px; margin: 0 0 8px; text-transform: uppercase; letter-spacing: .04em; color: var(--dim); }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid var(--line); vertical-align: top;
           white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 260px; }
  td.wide { max-width: none; }
  td.bar { width: 40%; }
  th { font-weight: 600; color: var(--dim); font-size: 12px; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  .progress { position: relative; height: 14px; min-width: 160px; background: #e8e8e4; border-radius: 3px; overflow: hidden; }
  .progress > div { position: absolute; top: 0; bottom: 0; left: 0; background: var(--bar); }
  .progress > div.failed { background: var(--bad); }
  .empty { color: var(--dim); font-style: italic; }
  .run { font-family: ui-monospace, monospace; font-size: 12px; }
  #stream svg { display: block; width: 100%; }
  #error { color: var(--bad); padding: 0 18px; }
  .legend span { display: inline-block; margin-right: 12px; font-size: 12px; }
  .legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; border-radius: 2px; }
</style>
</head>
<body>
<header>
  <h1>seppo broker</h1>
  <span class="figure" id="version">version …</span>
  <span class="figure">up <b id="uptime">…</b></span>
  <span class="figure">workers <b id="n-workers">…</b></span>
  <span class="figure">slots busy <b id="n-busy">…</b> / <b id="n-slots">…</b></span>
  <span class="figure">jobs <b id="n-jobs">…</b></span>
  <span class="figure">clients <b id="n-clients">…</b></span>
  <span class="figure">queued <b id="n-queued">…</b></span>
  <span class="figure">held <b id="n-bytes">…</b></span>
</header>
<div id="error"></div>
<main>
  <section class="wide" id="stream"><h2>Task stream (last 2 minutes)</h2><div id="stream-plot" class="empty">no tasks yet</div>
    <div class="legend" id="legend"></div></section>
  <section class="wide" id="workers"><h2>Workers</h2><div id="workers-table" class="empty">no workers</div></section>
  <section class="wide" id="jobs"><h2>Jobs</h2><div id="jobs-table" class="empty">no jobs</div></section>
  <section class="wide" id="functions"><h2>Functions and queues</h2><div id="functions-table" class="empty">no functions</div></section>
</main>
<script>
"use strict";
const WINDOW_MS = 120000;
let previous = null;  // {t, done: Map job -> items_done}, for rates

function esc(s) {
  return String(s).replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;","\"":"&quot;","'":"&#39;"}[c]));
}
function duration(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 60) return (ms / 1000).toFixed(s < 10 ? 1 : 0) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor(s % 3600 / 60) + " min";
  return Math.floor(s / 86400) + " d " + Math.floor(s % 86400 / 3600) + " h";
}
function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; ++i; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}
function hue(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return h % 360;
}
function colour(name) { return "hsl(" + hue(name) + ",62%,52%)"; }
function items(first, count) {
  return count > 1 ? first + "–" + (first + count - 1) : String(first);
}
function table(headers, rows) {
  if (!rows.length) return null;
  return "<table><tr>" + headers.map(h => h.startsWith("#") ? "<th class=num>" + esc(h.slice(1)) + "</th>"
                                                              : "<th>" + esc(h) + "</th>").join("") +
         "</tr>" + rows.map(r => "<tr>" + r.map(c => c.num !== undefined ? "<td class=num>" + c.num + "</td>" :
                                                          c.cls !== undefined ? "<td class=" + c.cls + ">" + c.html + "</td>"
                                                                          : "<td>" + c + "</td>").join("") +
                            "</tr>").join("") + "</table>";
}
function fill(id, html, empty) {
  const e = document.getElementById(id);
  e.className = html ? "" : "empty";
  e.innerHTML = html || empty;
}

function render(s) {
  const now = performance.now();
  const workers = s.workers || [], jobs = s.jobs || [], functions = s.functions || {};
  const counters = s.counters || {};
  let slots = 0, busy = 0, queued = 0;
  for (const w of workers) { slots += 1; busy += w.busy > 0 ? 1 : 0; }
  for (const f of Object.values(functions)) queued += f.queued;
  document.getElementById("version").textContent = "version " + s.version + ", protocol " + s.protocol;
  document.getElementById("uptime").textContent = duration(s.uptime_ms || 0);
  document.getElementById("n-workers").textContent = workers.length;
  document.getElementById("n-busy").textContent = busy;
  document.getElementById("n-slots").textContent = slots;
  document.getElementById("n-jobs").textContent = jobs.length;
  document.getElementById("n-clients").textContent = s.clients;
  document.getElementById("n-queued").textContent = queued;
  document.getElementById("n-bytes").textContent = bytes(s.bytes_held || 0);

  fill("workers-table", table(["worker", "host", "functions", "#held", "running now", "#done", "#up"],
    workers.map(w => [esc(w.name) + (w.version ? " <small>v" + esc(w.version) + "</small>" : ""), esc(w.host), esc(w.functions.join(", ")), {num: w.busy},
      {cls: "wide", html: (w.running || []).slice(0, 1).map(r =>
        "<span class=run>" + esc(r.function) + " job " + esc(r.client) + "/" + r.job + " item " +
        items(r.first, r.count) + " for " + duration(r.elapsed_ms) + "</span>").join("<br>") || "<span class=empty>idle</span>"},
      {num: w.tasks_done}, {num: duration(w.uptime_ms || 0)}])), "no workers");

  const done = new Map();
  fill("jobs-table", table(["job", "owner", "function", "progress", "#rate"],
    jobs.map(j => {
      const key = j.client + "/" + j.job;
      done.set(key, j.items_done);
      const total = j.items_done + j.items_open;
      const ok = total ? 100 * (j.items_done - j.items_failed) / total : 0;
      const bad = total ? 100 * j.items_failed / total : 0;
      let rate = j.age_ms > 0 ? j.items_done / (j.age_ms / 1000) : 0;
      if (previous && previous.done.has(key) && now > previous.t) {
        rate = (j.items_done - previous.done.get(key)) / ((now - previous.t) / 1000);
      }
      return [esc(key), esc((j.owner || "?").replace(/^uid:/, "uid ")), esc(j.function),
        {cls: "bar", html: "<div class=progress title='" + j.items_done + " of " + total + " items'><div style='width:" + ok.toFixed(1) +
        "%'></div><div class=failed style='left:" + ok.toFixed(1) + "%;width:" + bad.toFixed(1) + "%'></div></div>" +
        "<small>" + j.items_done + " / " + total + (j.items_failed ? ", " + j.items_failed + " failed" : "") + "</small>"},
        {num: rate.toFixed(1) + "/s"}];
    })), "no jobs");
  previous = {t: now, done};

  const names = [...new Set([...Object.keys(functions), ...Object.keys(counters)])].sort();
  fill("functions-table", table(["function", "#workers", "#queued", "#finished", "#failed", "#retried", "#mean run"],
    names.map(n => {
      const f = functions[n] || {workers: 0, queued: 0}, c = counters[n] || {};
      const failed = Object.values(c.failed || {}).reduce((a, b) => a + b, 0);
      return [esc(n), {num: f.workers}, {num: f.queued}, {num: c.finished || 0}, {num: failed},
              {num: c.retried || 0}, {num: c.tasks ? duration(1000 * c.seconds / c.tasks) : "–"}];
    })), "no functions");

  stream(s, workers);
}

// Dask's task stream: a lane per worker, a bar per task from its start to its end, coloured by
// function; failed ones red; running ones drawn up to now.
function stream(s, workers) {
  const recent = s.recent || [];
  const lanes = new Map();
  for (const w of workers) lanes.set(w.name, lanes.size);
  for (const r of recent) {
    if (!r[2]) r[2] = "(worker lost)";
    if (!lanes.has(r[2])) lanes.set(r[2], lanes.size);
  }
  const bars = [];
  for (const r of recent) {
    const end = -r[0], start = end - r[1] / 1000;
    if (end < -WINDOW_MS) continue;
    bars.push({lane: r[2], start, end, fn: r[3], label: r[3] + " job " + r[4] + "/" + r[5] + " item " + items(r[6], r[7]), ok: r[8]});
  }
  for (const w of workers) for (const r of (w.running || []).slice(0, 1)) {
    bars.push({lane: w.name, start: -r.elapsed_ms, end: 0, fn: r.function, label: r.function + " job " + r.client + "/" + r.job +
               " item " + items(r.first, r.count) + " (running)", ok: true, running: true});
  }
  const plot = document.getElementById("stream-plot");
  if (!bars.length || !lanes.size) { plot.className = "empty"; plot.textContent = "no tasks yet"; return; }
  plot.className = "";
  const W = 1000, left = 150, laneH = 18, H = lanes.size * laneH + 24;
  const x = t => left + (W - left - 10) * (Math.max(t, -WINDOW_MS) + WINDOW_MS) / WINDOW_MS;
  let svg = "<svg viewBox='0 0 " + W + " " + H + "' xmlns='http://www.w3.org/2000/svg' role='img' aria-label='task stream'>";
  for (const [name, i] of lanes) {
    svg += "<text x='4' y='" + (i * laneH + 13) + "' font-size='11' fill='#555'>" + esc(name.length > 24 ? name.slice(0, 23) + "…" : name) + "</text>";
    svg += "<line x1='" + left + "' x2='" + (W - 10) + "' y1='" + (i * laneH + laneH - 1) + "' y2='" + (i * laneH + laneH - 1) + "' stroke='#eee'/>";
  }
  const used = new Set();
  for (const b of bars) {
    if (!lanes.has(b.lane)) continue;
    used.add(b.fn);
    const x0 = x(b.start), x1 = Math.max(x(b.end), x0 + 1.5);
    svg += "<rect class='task' x='" + x0.toFixed(1) + "' y='" + (lanes.get(b.lane) * laneH + 2) + "' width='" + (x1 - x0).toFixed(1) +
           "' height='" + (laneH - 5) + "' fill='" + (b.ok ? colour(b.fn) : "#d9453b") + "'" + (b.running ? " fill-opacity='0.55'" : "") +
           "><title>" + esc(b.label) + "</title></rect>";
  }
  for (let t = 0; t <= WINDOW_MS; t += 30000) {
    svg += "<text x='" + x(-t).toFixed(1) + "' y='" + (H - 6) + "' font-size='10' fill='#888' text-anchor='middle'>" + (t ? "-" + t / 1000 + " s" : "now") + "</text>";
  }
  plot.innerHTML = svg + "</svg>";
  document.getElementById("legend").innerHTML = [...used].sort().map(f =>
    "<span><i style='background:" + colour(f) + "'></i>" + esc(f) + "</span>").join("") +
    "<span><i style='background:#d9453b'></i>failed</span>";
}

async function poll() {
  try {
    const response = await fetch("/api/status", {cache: "no-store"});
    if (!response.ok) throw new Error(response.status + " " + response.statusText);
    render(await response.json());
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = "cannot read /api/status: " + e.message;
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body>
</html>
)html";

}  // namespace seppo::broker
