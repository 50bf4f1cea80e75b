// The device page: what the registry knows of one device, its alerts, and its recent readings
// as an inline SVG chart (no chart library: one polyline and two axes).
import { $, api, el, fmtTime } from "./api.js";
import { alertsOf, kindLabel } from "./alerts.js";
import { statusLabel } from "./map.js";

let current = null;
let onError = () => {};

/** Show the device `deviceId` (looked up through the API: 404 for one the token may not see). */
export async function openDevice(deviceId, { errors }) {
  onError = errors;
  current = null;
  $("detail-title").textContent = `Équipement ${deviceId}`;
  $("device-info").replaceChildren();
  $("chart").replaceChildren();
  $("detail-summary").textContent = "";
  try {
    const d = await api(`/v1/devices/${encodeURIComponent(deviceId)}`);
    current = d;
    showInfo(d);
    const since = new Date(Date.now() - 7 * 86400e3).toISOString();
    const { items } = await api(`/v1/devices/${encodeURIComponent(d.device_id)}/readings?from=${encodeURIComponent(since)}&limit=2000`);
    const metrics = [...new Set(items.map((r) => r.metric))].sort();
    $("metric").replaceChildren(...metrics.map((m) => new Option(m, m)));
    if (!metrics.length) $("detail-summary").textContent = "aucune mesure ces 7 derniers jours";
    await drawChart();
  } catch (err) { onError(err); }
}

/** Refresh the device's alert lines (after a change in the feed). */
export function refreshDevice() { if (current) showInfo(current); }

function showInfo(d) {
  const open = alertsOf(d.device_id).filter((a) => a.state !== "resolved");
  const status = open.length ? "alert" : d.status;
  const rows = [
    ["Type", d.type], ["Collectivité", d.tenant], ["Commune", d.commune], ["Quartier", d.district],
    ["Site", d.site], ["Bâtiment", d.building], ["Logement", d.dwelling],
    ["État", statusLabel(status)], ["Dernière donnée", fmtTime(d.last_seen_at)],
    ["Position", typeof d.lat === "number" ? `${d.lat.toFixed(5)}, ${d.lon.toFixed(5)}` : null],
    ["Alertes en cours", open.length ? open.map((a) => kindLabel(a.kind)).join(", ") : "aucune"],
  ];
  $("device-info").replaceChildren(...rows.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
}

async function drawChart() {
  if (!current || !$("metric").value) { $("chart").replaceChildren(); return; }
  const from = new Date(Date.now() - Number($("span").value) * 3600e3).toISOString();
  const params = new URLSearchParams({ metric: $("metric").value, from, limit: "5000" });
  if ($("bucket").value) params.set("bucket", $("bucket").value);
  try {
    const { items } = await api(`/v1/devices/${encodeURIComponent(current.device_id)}/readings?${params}`);
    const pts = items.map((r) => [new Date(r.ts || r.bucket).getTime(), r.value]).filter((p) => p[1] !== null);
    renderSvg(pts, $("metric").value);
    const last = items[items.length - 1];
    $("detail-summary").textContent = pts.length
      ? `${pts.length} point(s), dernière valeur ${pts[pts.length - 1][1]} (${fmtTime(last.ts || last.bucket)})`
      : "aucune donnée sur la période";
  } catch (err) { onError(err); }
}

function renderSvg(pts, metric) {
  const svg = $("chart"), W = 800, H = 260, L = 50, B = 24;
  svg.replaceChildren();
  svg.setAttribute("aria-label", `courbe de ${metric}, ${pts.length} point(s)`);
  if (pts.length < 1) return;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const sx = (x) => L + ((x - x0) / (x1 - x0 || 1)) * (W - L - 10);
  const sy = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - B - 10);
  const ns = "http://www.w3.org/2000/svg";
  const add = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e);
    return e;
  };
  add("line", { x1: L, y1: H - B, x2: W, y2: H - B, class: "axis" });
  add("line", { x1: L, y1: 0, x2: L, y2: H - B, class: "axis" });
  add("text", { x: 4, y: 14 }, y1.toFixed(1));
  add("text", { x: 4, y: H - B }, y0.toFixed(1));
  add("text", { x: L, y: H - 6 }, new Date(x0).toLocaleString("fr-FR"));
  add("text", { x: W - 150, y: H - 6 }, new Date(x1).toLocaleString("fr-FR"));
  if (pts.length === 1) add("circle", { class: "dot", cx: sx(pts[0][0]), cy: sy(pts[0][1]), r: 4 });
  else add("polyline", { class: "line", points: pts.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ") });
}

for (const id of ["metric", "bucket", "span"]) $(id).addEventListener("change", drawChart);
