// maillage web page: devices of the token's tenant and a chart of a device's readings.
"use strict";
const $ = (id) => document.getElementById(id);
let token = localStorage.getItem("maillage-token") || "";
let current = null;

async function api(path) {
  const resp = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error((body.error && body.error.message) || `HTTP ${resp.status}`);
  return body;
}

function showError(err) { $("error").textContent = err ? String(err.message || err) : ""; }

function fmtTime(iso) { return iso ? new Date(iso).toLocaleString("fr-FR") : "—"; }

async function loadDevices() {
  showError(null);
  const params = new URLSearchParams({ limit: "500" });
  if ($("type-filter").value) params.set("type", $("type-filter").value);
  if ($("commune-filter").value) params.set("commune", $("commune-filter").value);
  try {
    const { items, next } = await api(`/v1/devices?${params}`);
    const tbody = $("devices").querySelector("tbody");
    tbody.replaceChildren(...items.map((d) => {
      const tr = document.createElement("tr");
      tr.dataset.id = d.device_id;
      for (const text of [d.device_id, d.type, d.commune || "—", d.status, fmtTime(d.last_seen_at)]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      tr.children[3].className = d.status;
      tr.addEventListener("click", () => selectDevice(d, tr));
      return tr;
    }));
    $("devices-summary").textContent = next
      ? `${items.length} premiers équipements (filtrez par type ou commune)`
      : `${items.length} équipement(s)`;
  } catch (err) { showError(err); }
}

async function selectDevice(device, row) {
  document.querySelectorAll("tbody tr.selected").forEach((r) => r.classList.remove("selected"));
  row.classList.add("selected");
  current = device;
  $("detail-panel").hidden = false;
  $("detail-title").textContent = `Mesures — ${device.device_id}`;
  try {
    const since = new Date(Date.now() - 7 * 86400e3).toISOString();
    const { items } = await api(`/v1/devices/${encodeURIComponent(device.device_id)}/readings?from=${since}&limit=2000`);
    const metrics = [...new Set(items.map((r) => r.metric))].sort();
    $("metric").replaceChildren(...metrics.map((m) => new Option(m, m)));
    await drawChart();
  } catch (err) { showError(err); }
}

async function drawChart() {
  if (!current || !$("metric").value) { $("chart").replaceChildren(); return; }
  const from = new Date(Date.now() - Number($("span").value) * 3600e3).toISOString();
  const params = new URLSearchParams({ metric: $("metric").value, from, limit: "5000" });
  if ($("bucket").value) params.set("bucket", $("bucket").value);
  try {
    const { items } = await api(`/v1/devices/${encodeURIComponent(current.device_id)}/readings?${params}`);
    const pts = items.map((r) => [new Date(r.ts || r.bucket).getTime(), r.value]).filter((p) => p[1] !== null);
    renderSvg(pts);
    $("detail-summary").textContent = pts.length
      ? `${pts.length} point(s), dernière valeur ${pts[pts.length - 1][1]} (${fmtTime(items[items.length - 1].ts || items[items.length - 1].bucket)})`
      : "aucune donnée sur la période";
  } catch (err) { showError(err); }
}

function renderSvg(pts) {
  const svg = $("chart"), W = 800, H = 260, L = 50, B = 24;
  svg.replaceChildren();
  if (pts.length < 1) return;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs) || x0 + 1;
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const sx = (x) => L + ((x - x0) / (x1 - x0 || 1)) * (W - L - 10);
  const sy = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - B - 10);
  const ns = "http://www.w3.org/2000/svg";
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e);
    return e;
  };
  el("line", { x1: L, y1: H - B, x2: W, y2: H - B, class: "axis" });
  el("line", { x1: L, y1: 0, x2: L, y2: H - B, class: "axis" });
  el("text", { x: 4, y: 14 }, y1.toFixed(1));
  el("text", { x: 4, y: H - B }, y0.toFixed(1));
  el("text", { x: L, y: H - 6 }, new Date(x0).toLocaleString("fr-FR"));
  el("text", { x: W - 150, y: H - 6 }, new Date(x1).toLocaleString("fr-FR"));
  el("polyline", { class: "line", points: pts.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ") });
}

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $("token").value.trim();
  localStorage.setItem("maillage-token", token);
  loadDevices();
});
$("type-filter").addEventListener("change", loadDevices);
$("commune-filter").addEventListener("change", loadDevices);
for (const id of ["metric", "bucket", "span"]) $(id).addEventListener("change", drawChart);
// A token may also come in the fragment (#token=…), which browsers never send to the server.
const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromHash) { token = fromHash; localStorage.setItem("maillage-token", token); history.replaceState(null, "", location.pathname); }
if (token) { $("token").value = token; loadDevices(); }
