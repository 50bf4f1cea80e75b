// maillage web page: login with a token, device map and table, live alerts, device page, savings.
// Plain JS modules, no build step; Leaflet is vendored (global `L`); no request leaves this server.
import { $, api, ApiError, el, fmtTime, session } from "./js/api.js";
import * as feed from "./js/alerts.js";
import { openDevice, refreshDevice } from "./js/device.js";
import { clearMap, drawDevices, recolour, setTiles, statusLabel, statusOf, tilesUrl } from "./js/map.js";
import { loadSavings } from "./js/savings.js";

let me = null;
let devices = [];

function showError(err) {
  $("error").textContent = err ? String(err.message || err) : "";
}

const ROLES_FR = {
  admin: "administrateur", energy_manager: "gestionnaire énergie",
  care_coordinator: "coordinateur de soins", opendata: "données ouvertes",
};

async function login() {
  showError(null);
  try {
    me = await api("/v1/me");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) logout(`Jeton refusé : ${err.message}`);
    else showError(err);
    return;
  }
  $("login").hidden = true;
  $("session").hidden = false;
  $("who").textContent = `Connecté : ${ROLES_FR[me.role] || me.role}, `
    + (me.tenant ? `collectivité ${me.tenant}` : "toutes les collectivités")
    + (me.label ? ` (${me.label})` : "");
  $("layout").hidden = false;
  $("alerts-panel").hidden = !me.alerts;
  $("savings-panel").hidden = !me.savings;
  if (me.role === "opendata") {
    showError("Ce jeton donne accès aux seules données ouvertes (exports agrégés de l'API), pas à ce tableau de bord.");
  }
  route();
  await loadDevices();
  if (me.alerts) {
    try {
      await feed.start({ canAct: me.alerts, onChange: alertsChanged, onUnauthorized: () => logout("Session expirée ou jeton révoqué."), onError: showError });
    } catch (err) { showError(err); }
  }
  if (me.savings) refreshSavings();
}

function logout(message) {
  feed.stop();
  session.clear();
  me = null;
  devices = [];
  clearMap();
  $("devices").tBodies[0].replaceChildren();
  $("layout").hidden = true;
  $("session").hidden = true;
  $("login").hidden = false;
  $("token").value = "";
  showError(message || null);
  $("token").focus();
}

async function loadDevices() {
  const params = new URLSearchParams({ limit: "2000" });
  if ($("type-filter").value) params.set("type", $("type-filter").value);
  if ($("commune-filter").value) params.set("commune", $("commune-filter").value);
  try {
    const { items, next } = await api(`/v1/devices?${params}`);
    devices = items;
    renderTable();
    $("devices-summary").textContent = next
      ? `${items.length} premiers équipements (filtrez par type ou commune)`
      : `${items.length} équipement(s)`;
    const placed = drawDevices(devices, feed.alertingDevices(), (d) => go(d.device_id));
    const missing = devices.length - placed;
    $("map-summary").textContent = `${placed} équipement(s) sur la carte`
      + (missing ? `, ${missing} sans coordonnées` : "")
      + (tilesUrl() ? "" : " — sans fond de carte (hors ligne)");
  } catch (err) { showError(err); }
}

function renderTable() {
  const alerting = feed.alertingDevices();
  $("devices").tBodies[0].replaceChildren(...devices.map((d) => {
    const s = statusOf(d, alerting);
    const tr = el("tr", { "data-id": d.device_id, tabindex: "0" });
    for (const text of [d.device_id, d.type, d.commune || "—", statusLabel(s), fmtTime(d.last_seen_at)]) {
      tr.append(el("td", {}, text));
    }
    tr.children[3].className = s;
    tr.addEventListener("click", () => go(d.device_id));
    tr.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); go(d.device_id); } });
    return tr;
  }));
}

function refreshSavings() {
  const communes = [...new Set(devices.map((d) => d.commune).filter(Boolean))].sort((a, b) => a.localeCompare(b, "fr"));
  return loadSavings(communes);
}

function alertsChanged() {
  recolour(devices, feed.alertingDevices());
  renderTable();
  refreshDevice();
}

function go(deviceId) { location.hash = `device=${encodeURIComponent(deviceId)}`; }

/** `#device=ID`: the device page; anything else: the overview (map, table, savings). */
function route() {
  if (!me) return;
  const deviceId = new URLSearchParams(location.hash.slice(1)).get("device");
  $("overview").hidden = Boolean(deviceId);
  $("device-page").hidden = !deviceId;
  if (deviceId) {
    openDevice(deviceId, { errors: showError });
    $("detail-title").focus?.();
  } else {
    drawDevices(devices, feed.alertingDevices(), (d) => go(d.device_id));
  }
}

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  session.set($("token").value.trim());
  $("token").value = "";
  login();
});
$("logout").addEventListener("click", () => logout());
$("back").addEventListener("click", (e) => { e.preventDefault(); history.pushState(null, "", location.pathname); route(); });
$("savings-period").addEventListener("change", () => { if (me && me.savings) refreshSavings(); });
$("type-filter").addEventListener("change", loadDevices);
$("commune-filter").addEventListener("change", loadDevices);
$("tiles-url").value = tilesUrl();
$("tiles-form").addEventListener("submit", (e) => {
  e.preventDefault();
  try { setTiles($("tiles-url").value.trim()); showError(null); } catch (err) { showError(err); }
});
window.addEventListener("hashchange", route);

// A token may also come in the fragment (#token=…), which browsers never send to the server.
const hash = new URLSearchParams(location.hash.slice(1));
if (hash.get("token")) {
  session.set(hash.get("token"));
  hash.delete("token");
  history.replaceState(null, "", location.pathname + (hash.toString() ? `#${hash}` : ""));
}
if (session.token) login();
