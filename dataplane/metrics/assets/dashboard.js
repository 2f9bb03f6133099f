// l7lb's dashboard: refreshes the tables the page was served with from
// /dashboard.json once a second, and draws the last five minutes per backend.
// The tables' structure and cell texts are those of dataplane/metrics/page.py.
"use strict";

const COLUMNS = ["name", "health", "phi", "breaker", "state", "weight", "cc", "in_flight",
                 "rate", "error_share", "p50_ms", "p99_ms"];
const HEADINGS = ["backend", "health", "φ / threshold", "breaker", "admin", "weight", "cc",
                  "in flight", "req/s", "errors", "p50 ms", "p99 ms"];
const CHARTS = [["rate", "requests per second"], ["errors", "errors per second"],
                ["p99", "p99 latency, ms"]];
const COLOURS = ["#2b6cb0", "#c05621", "#2f855a", "#b83280", "#6b46c1", "#b7791f", "#319795",
                 "#c53030"];

function number(value) {
  if (value === null || value === undefined) return "-";
  return Number.isInteger(value) ? String(value) : String(Number(value.toFixed(2)));
}

function cell(field, row) {
  const value = row[field];
  if (field === "phi") return number(value) + " / " + number(row.phi_threshold);
  if (field === "error_share") return (value * 100).toFixed(1) + "%";
  if (typeof value === "number" || value === null || value === undefined) return number(value);
  return String(value);
}

function tone(field, row) {
  const value = row[field];
  if (field === "health") return {up: "good", down: "bad", slow_start: "warn"}[value] || "";
  if (field === "breaker") return value === "closed" ? "good" : value === "open" ? "bad" : "warn";
  if (field === "error_share") return value >= 0.05 ? "bad" : value > 0 ? "warn" : "";
  return "";
}

function element(tag, attributes, text) {
  const made = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) made.setAttribute(name, value);
  if (text !== undefined) made.textContent = text;
  return made;
}

function backendRow(row) {
  const tr = element("tr", {"data-backend": row.name, "data-key": row.key});
  for (const field of COLUMNS) {
    tr.append(element("td", {"data-field": field, class: (field + " " + tone(field, row)).trim()},
                      cell(field, row)));
  }
  return tr;
}

function clusterSection(cluster) {
  const section = element("section", {class: "cluster", "data-cluster": cluster.name});
  section.append(element("h2", {}, "cluster " + cluster.name));
  const table = element("table", {class: "backends"});
  const head = element("tr");
  for (const heading of HEADINGS) head.append(element("th", {}, heading));
  table.append(element("thead")).append(head);
  table.append(element("tbody"));
  section.append(table);
  return section;
}

function showClusters(clusters) {
  const anchor = document.getElementById("charts");
  const kept = new Set(clusters.map((c) => c.name));
  for (const old of document.querySelectorAll("section.cluster")) {
    if (!kept.has(old.dataset.cluster)) old.remove();
  }
  for (const cluster of clusters) {
    let section = document.querySelector(`section.cluster[data-cluster="${CSS.escape(cluster.name)}"]`);
    if (!section) {
      section = clusterSection(cluster);
      anchor.before(section);
    }
    section.querySelector("tbody").replaceChildren(...cluster.backends.map(backendRow));
  }
}

function clock(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString([], {hour12: false});
}

function showEvents(events) {
  const rows = events.map((e) => {
    const tr = element("tr");
    for (const text of [clock(e.at), e.kind, e.backend, e.from + " → " + e.to, e.reason || ""]) {
      tr.append(element("td", {}, text));
    }
    return tr;
  });
  if (!rows.length) {
    const none = element("tr");
    none.append(element("td", {colspan: 5}, "none yet"));
    rows.push(none);
  }
  document.querySelector("#events tbody").replaceChildren(...rows);
}

function showRoutes(routes) {
  const table = document.querySelector("#routes tbody");
  if (!table) return;
  table.replaceChildren(...routes.map((r) => {
    const tr = element("tr");
    for (const text of [r.name, r.action, String(r.requests)]) tr.append(element("td", {}, text));
    return tr;
  }));
}

function showProcess(process) {
  const values = {version: process.version, pid: process.pid, mode: process.mode,
                  listeners: process.listeners.join(" "), workers: process.workers,
                  reloads: process.reloads, "worker restarts": process.worker_restarts};
  for (const [name, value] of Object.entries(values)) {
    const dd = document.querySelector(`[data-process="${name}"]`);
    if (dd) dd.textContent = String(value);
  }
  const uptime = document.querySelector('[data-process="uptime"]');
  if (uptime) {
    const s = Math.floor(process.uptime_s), days = Math.floor(s / 86400);
    uptime.textContent = (days ? days + "d " : "") +
      new Date((s % 86400) * 1000).toISOString().slice(11, 19);
  }
}

function chartSection() {
  const section = document.getElementById("charts");
  if (section.dataset.drawn) return section;
  section.dataset.drawn = "1";
  section.replaceChildren(element("h2", {}, "Last 5 minutes"));
  const grid = element("div", {class: "charts"});
  for (const [field, title] of CHARTS) {
    const figure = element("figure", {"data-chart": field});
    figure.append(element("figcaption", {}, title), element("canvas", {width: 420, height: 180}));
    grid.append(figure);
  }
  section.append(grid, element("ul", {class: "legend"}));
  return section;
}

function drawChart(canvas, field, series, span, now) {
  const context = canvas.getContext("2d");
  const width = canvas.width, height = canvas.height, left = 44, bottom = 18;
  context.clearRect(0, 0, width, height);
  let top = 0;
  for (const points of Object.values(series)) {
    for (const value of points[field]) if (value !== null && value > top) top = value;
  }
  top = top > 0 ? top * 1.1 : 1;
  context.strokeStyle = "#ccc";
  context.fillStyle = "#555";
  context.font = "11px sans-serif";
  for (const fraction of [0, 0.5, 1]) {
    const y = (height - bottom) * (1 - fraction) + 0.5;
    context.beginPath();
    context.moveTo(left, y);
    context.lineTo(width, y);
    context.stroke();
    context.fillText(number(top * fraction), 2, Math.max(10, y));
  }
  context.fillText(span >= 120 ? "-" + Math.round(span / 60) + " min" : "-" + Math.round(span) + " s",
                   left, height - 4);
  context.fillText("now", width - 24, height - 4);
  Object.entries(series).forEach(([name, points], index) => {
    context.strokeStyle = COLOURS[index % COLOURS.length];
    context.lineWidth = 1.5;
    context.beginPath();
    let drawing = false;
    points.t.forEach((at, i) => {
      const value = points[field][i];
      if (value === null) { drawing = false; return; }
      if (now - at > span) return;
      const x = left + (width - left) * (1 - (now - at) / span);
      const y = (height - bottom) * (1 - value / top);
      if (drawing) context.lineTo(x, y); else context.moveTo(x, y);
      context.fillStyle = context.strokeStyle;
      context.fillRect(x - 1.5, y - 1.5, 3, 3);     // a second alone shows as a dot
      drawing = true;
    });
    context.stroke();
  });
}

function showCharts(history, now) {
  const section = chartSection();
  // The time axis spans what is kept (5 minutes), or less while less is known (30 s at least).
  let oldest = now;
  for (const points of Object.values(history.backends)) {
    if (points.t.length) oldest = Math.min(oldest, points.t[0]);
  }
  const span = Math.min(history.span_s, Math.max(30, now - oldest));
  for (const [field] of CHARTS) {
    drawChart(section.querySelector(`[data-chart="${field}"] canvas`), field, history.backends,
              span, now);
  }
  section.querySelector(".legend").replaceChildren(...Object.keys(history.backends).map(
    (name, index) => {
      const item = element("li", {}, name);
      item.style.setProperty("--colour", COLOURS[index % COLOURS.length]);
      return item;
    }));
}

function show(doc) {
  showProcess(doc.process);
  showClusters(doc.clusters);
  showCharts(doc.history, doc.at);
  showEvents(doc.events);
  showRoutes(doc.routes);
  document.getElementById("updated").textContent = "as of " + clock(doc.at);
  document.body.dataset.updated = String(doc.at);
  document.body.classList.remove("stale");
}

async function refresh() {
  try {
    const response = await fetch("/dashboard.json", {cache: "no-store"});
    if (!response.ok) throw new Error(String(response.status));
    show(await response.json());
  } catch (error) {
    document.body.classList.add("stale");       // the balancer did not answer: shown greyed
  }
  setTimeout(refresh, 1000);
}

refresh();
