// The device map: Leaflet (vendored, global `L`), circle markers coloured by status, no tile
// layer unless one is set in this browser (so by default the page asks nothing of any other host).
const TILES_KEY = "maillage-tiles";
const COLOURS = { online: "#0b6e4f", offline: "#6b7785", alert: "#b3261e", unknown: "#a9b4c0" };
const FRANCE = [46.6, 2.4];

let map = null;
let layer = null;
let tiles = null;

/** The device's colour key: an open or acknowledged alert first, then its connectivity. */
export function statusOf(device, alerting) {
  if (alerting.has(device.device_id)) return "alert";
  if (device.status === "online" || device.status === "offline") return device.status;
  return "unknown";
}

const STATUS_FR = { online: "en ligne", offline: "hors ligne", alert: "alerte en cours", unknown: "jamais vu" };
export const statusLabel = (s) => STATUS_FR[s] || s;

/** A tooltip as a text node (Leaflet would read a string as HTML). */
function tip(d, s) {
  const span = document.createElement("span");
  span.textContent = `${d.device_id} — ${d.type}${d.commune ? ` — ${d.commune}` : ""} — ${statusLabel(s)}`;
  return span;
}

function ensureMap() {
  if (map) return map;
  map = L.map("map", { preferCanvas: false, zoomControl: true, keyboard: true }).setView(FRANCE, 5);
  map.attributionControl.setPrefix("Leaflet");
  layer = L.layerGroup().addTo(map);
  try { setTiles(localStorage.getItem(TILES_KEY) || ""); } catch { setTiles(""); }
  return map;
}

/** Use a tile server (empty: none, the default). */
export function setTiles(url) {
  const host = url ? new URL(url).host : ""; // throws on a malformed URL, before it is kept
  if (url) localStorage.setItem(TILES_KEY, url); else localStorage.removeItem(TILES_KEY);
  if (!map) return;
  if (tiles) { tiles.remove(); tiles = null; }
  if (url) tiles = L.tileLayer(url, { maxZoom: 19, attribution: `fond de carte : ${host}` }).addTo(map);
}

export function tilesUrl() { return localStorage.getItem(TILES_KEY) || ""; }

/** Draw `devices` (those with coordinates); `onOpen(device)` when a marker is chosen.
 * Returns how many were placed. */
export function drawDevices(devices, alerting, onOpen) {
  ensureMap();
  map.invalidateSize();
  layer.clearLayers();
  const points = [];
  for (const d of devices) {
    if (typeof d.lat !== "number" || typeof d.lon !== "number") continue;
    const s = statusOf(d, alerting);
    const m = L.circleMarker([d.lat, d.lon], {
      radius: s === "alert" ? 9 : 7, color: "#fff", weight: 1.5, fillColor: COLOURS[s], fillOpacity: 0.9,
      className: `device-marker status-${s}`,
    });
    m.bindTooltip(tip(d, s));
    m.on("click", () => onOpen(d));
    m.addTo(layer);
    const path = m.getElement();
    if (path) { path.dataset.id = d.device_id; path.setAttribute("aria-label", `${d.device_id}, ${statusLabel(s)}`); }
    points.push([d.lat, d.lon]);
  }
  if (points.length === 1) map.setView(points[0], 15);
  else if (points.length > 1) map.fitBounds(points, { padding: [24, 24], maxZoom: 17 });
  return points.length;
}

/** Recolour the markers after alerts changed, without moving the view. */
export function recolour(devices, alerting) {
  if (!layer) return;
  const byId = new Map(devices.map((d) => [d.device_id, d]));
  layer.eachLayer((m) => {
    const path = m.getElement();
    const d = path && byId.get(path.dataset.id);
    if (!d) return;
    const s = statusOf(d, alerting);
    m.setStyle({ fillColor: COLOURS[s], radius: s === "alert" ? 9 : 7 });
    path.setAttribute("class", `device-marker status-${s} leaflet-interactive`);
    path.setAttribute("aria-label", `${d.device_id}, ${statusLabel(s)}`);
    m.setTooltipContent(tip(d, s));
  });
}

/** Forget the map's markers (on logout). */
export function clearMap() { if (layer) layer.clearLayers(); }
