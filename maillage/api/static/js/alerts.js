// The live alert feed: the latest alerts, then each change from the server-sent event stream
// `/v1/alerts/stream`, read with fetch() so the token travels in the Authorization header as on
// every other call (EventSource cannot send one, and a token in a URL ends up in logs).
import { $, api, authHeaders, el, fmtTime } from "./api.js";

const KINDS_FR = {
  spike: "pic de consommation", night_overconsumption: "surconsommation nocturne",
  zero_consumption: "consommation nulle", meter_stuck: "compteur figé",
  voltage_out_of_range: "tension hors plage", over_subscribed_power: "dépassement de puissance souscrite",
  baseline_shift: "changement de niveau", unexpected_export: "injection inattendue",
  lamp_failure: "lampe en panne", day_burner: "allumée de jour", dimming_not_applied: "gradation non appliquée",
  cabinet_overconsumption: "armoire en surconsommation", burning_hours: "heures de fonctionnement",
  fall: "chute", panic_button: "bouton d'appel", long_inactivity: "inactivité prolongée",
  night_wandering: "déambulation nocturne", indoor_heat: "chaleur au domicile", indoor_cold: "froid au domicile",
  battery_low: "pile faible", device_offline: "équipement silencieux", group_offline: "groupe silencieux",
  unusual_value: "valeur inhabituelle", malformed_payload: "message illisible", duplicate: "doublon",
  out_of_order: "hors d'ordre", late_reading: "mesure en retard", clock_skew: "horloge décalée",
};
const STATES_FR = { open: "ouverte", acknowledged: "acquittée", resolved: "résolue" };
const SEVERITIES_FR = { info: "info", warning: "avertissement", critical: "critique" };
export const kindLabel = (k) => KINDS_FR[k] || k;

const RETRY_MS = 3000;
const alerts = new Map(); // id -> latest snapshot
let controller = null;
let options = { canAct: false, onChange: () => {}, onUnauthorized: () => {}, onError: () => {} };

/** Device ids with an alert not yet resolved. */
export function alertingDevices() {
  return new Set([...alerts.values()].filter((a) => a.state !== "resolved").map((a) => a.device_id));
}

/** The alerts of one device, latest first. */
export function alertsOf(deviceId) {
  return [...alerts.values()].filter((a) => a.device_id === deviceId).sort(byLatest);
}

function byLatest(a, b) { return (b.last_at || "").localeCompare(a.last_at || "") || b.id - a.id; }

/** Load the latest alerts and follow the stream until `stop()`. */
export async function start(opts) {
  stop();
  options = { ...options, ...opts };
  controller = new AbortController();
  const { signal } = controller;
  // The stream first (it starts at the latest change), then the list: nothing falls between.
  const opened = new Promise((resolve) => { follow(signal, resolve); setTimeout(resolve, 5000); });
  await opened;
  const { items } = await api("/v1/alerts?limit=100");
  for (const a of items) merge(a);
  render();
  options.onChange();
}

const RANK = { open: 0, acknowledged: 1, resolved: 2 };

/** Keep the later of two snapshots of an alert: its state, count and last time only go up, so
 * the list and the stream may arrive in any order. */
function merge(snapshot) {
  const known = alerts.get(snapshot.id);
  const key = (a) => [RANK[a.state] ?? 0, a.count || 0, a.last_at || "", a.escalation_level || 0];
  if (known) {
    const [x, y] = [key(known), key(snapshot)];
    const i = x.findIndex((v, j) => v !== y[j]);
    if (i >= 0 && x[i] > y[i]) return false;
  }
  alerts.set(snapshot.id, snapshot);
  return true;
}

export function stop() {
  if (controller) controller.abort();
  controller = null;
  alerts.clear();
  $("alerts").replaceChildren();
}

function setState(text, live) {
  $("stream-state").textContent = text;
  $("stream-state").className = live ? "live" : "muted";
}

async function follow(signal, onOpen) {
  let lastId = null;
  while (!signal.aborted) {
    try {
      const headers = authHeaders({ Accept: "text/event-stream" });
      if (lastId) headers["Last-Event-ID"] = lastId;
      const resp = await fetch("/v1/alerts/stream", { headers, signal, cache: "no-store" });
      if (resp.status === 401) { setState("session expirée", false); onOpen(); options.onUnauthorized(); return; }
      if (!resp.ok) throw new Error(`flux d'alertes : HTTP ${resp.status}`);
      setState("● en direct", true);
      onOpen();
      await readEvents(resp.body, (ev) => {
        if (ev.id) lastId = ev.id;
        if (ev.data) receive(JSON.parse(ev.data));
      });
    } catch (err) {
      if (signal.aborted) return;
      options.onError(err);
    }
    onOpen(); // (a failed first try: the list is loaded all the same)
    if (signal.aborted) return;
    setState("flux interrompu, reconnexion…", false);
    await new Promise((r) => setTimeout(r, RETRY_MS));
  }
}

/** Parse a text/event-stream body (WHATWG rules: fields per line, an empty line ends an event). */
export async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let ev = { id: "", data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    const cut = buf.endsWith("\r") ? buf.length - 1 : buf.length; // a CR may be half a CRLF
    const lines = buf.slice(0, cut).split(/\r\n|\r|\n/);
    buf = lines.pop() + buf.slice(cut); // an unfinished line
    for (const line of lines) {
      if (line === "") {
        if (ev.data.length) onEvent({ id: ev.id, data: ev.data.join("\n") });
        ev = { id: ev.id, data: [] };
        continue;
      }
      if (line.startsWith(":")) continue; // heartbeat comment
      const i = line.indexOf(":");
      const field = i < 0 ? line : line.slice(0, i);
      const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
      if (field === "data") ev.data.push(val);
      else if (field === "id") ev.id = val;
    }
  }
}

function receive(snapshot) {
  if (!merge(snapshot)) return;
  render(snapshot.id);
  options.onChange();
}

async function act(alert, action) {
  try {
    merge(await api(`/v1/alerts/${alert.id}/${action}`, { method: "POST" }));
  } catch (err) {
    options.onError(err); // e.g. 409: someone else acknowledged or resolved it first
    try { merge(await api(`/v1/alerts/${alert.id}`)); } catch { /* shown above */ }
  }
  render();
  options.onChange();
}

function render(fresh) {
  const showResolved = $("show-resolved").checked;
  const list = [...alerts.values()].filter((a) => showResolved || a.state !== "resolved").sort(byLatest);
  // Keep the keyboard focus on the same button across a re-render.
  const focused = document.activeElement;
  const li = focused && focused.closest && focused.closest("#alerts li");
  const keep = li && focused.tagName === "BUTTON" ? [li.dataset.alertId, focused.className] : null;
  $("alerts").replaceChildren(...list.map((a) => item(a, a.id === fresh)));
  $("alerts-empty").hidden = list.length > 0;
  if (keep) {
    const again = $("alerts").querySelector(`li[data-alert-id="${keep[0]}"] button[class="${keep[1]}"]`)
      || $("alerts").querySelector(`li[data-alert-id="${keep[0]}"] button`);
    if (again) again.focus();
  }
}

function item(a, fresh) {
  const li = el("li", { className: `alert sev-${a.severity} state-${a.state}${fresh ? " fresh" : ""}`, "data-alert-id": a.id, "data-state": a.state });
  const title = el("p", { className: "alert-title" });
  title.append(el("strong", {}, kindLabel(a.kind)), ` — `, el("a", { href: `#device=${encodeURIComponent(a.device_id)}` }, a.device_id));
  li.append(title);
  li.append(el("p", { className: "muted" },
    `${SEVERITIES_FR[a.severity] || a.severity} · ${STATES_FR[a.state] || a.state}` +
    `${a.count > 1 ? ` · ${a.count} fois` : ""} · ${fmtTime(a.last_at)}` +
    `${a.escalation_level ? ` · escaladée (niveau ${a.escalation_level})` : ""}`));
  if (options.canAct && a.state !== "resolved") {
    const actions = el("div", { className: "actions" });
    if (a.state === "open") {
      const ack = el("button", { type: "button", className: "ack", "aria-label": `Acquitter l'alerte ${a.id} (${kindLabel(a.kind)}, ${a.device_id})` }, "Acquitter");
      ack.addEventListener("click", () => { ack.disabled = true; act(a, "ack"); });
      actions.append(ack);
    }
    const res = el("button", { type: "button", className: "resolve secondary", "aria-label": `Résoudre l'alerte ${a.id} (${kindLabel(a.kind)}, ${a.device_id})` }, "Résoudre");
    res.addEventListener("click", () => { res.disabled = true; act(a, "resolve"); });
    actions.append(res);
    li.append(actions);
  }
  return li;
}

$("show-resolved").addEventListener("change", () => render());
