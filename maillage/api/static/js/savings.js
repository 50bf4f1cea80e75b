// Savings per commune from `GET /v1/savings?area=commune`, shown as a table of whatever figures
// the API gives (kWh, €, kg CO2, by cause); "indisponible" when this API has no savings yet.
import { $, api, el } from "./api.js";

/** Flatten one level of nesting: {lighting: {kwh: 1}} -> {"lighting kwh": 1}. */
function flat(row, prefix = "") {
  const out = {};
  for (const [k, v] of Object.entries(row)) {
    const name = prefix ? `${prefix} ${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v)) Object.assign(out, flat(v, name));
    else if (!Array.isArray(v)) out[name] = v;
  }
  return out;
}

function fmt(v) {
  if (typeof v === "number") return v.toLocaleString("fr-FR", { maximumFractionDigits: 1 });
  return v === null || v === undefined ? "—" : String(v);
}

export async function loadSavings() {
  const summary = $("savings-summary");
  const table = $("savings");
  table.tHead.replaceChildren();
  table.tBodies[0].replaceChildren();
  table.hidden = true;
  let doc;
  try {
    doc = await api("/v1/savings?area=commune");
  } catch (err) {
    summary.textContent = err.status === 404 || err.status === 405
      ? "Économies : indisponible (ce serveur ne calcule pas encore les économies)."
      : `Économies : indisponible (${err.message}).`;
    return;
  }
  const items = Array.isArray(doc) ? doc : doc.items || doc.areas || [];
  if (!items.length) { summary.textContent = "Aucune économie calculée pour l'instant."; return; }
  const rows = items.map((r) => flat(r));
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  table.tHead.append(el("tr", {}));
  table.tHead.rows[0].append(...cols.map((c) => el("th", { scope: "col" }, c)));
  table.tBodies[0].append(...rows.map((r) => {
    const tr = el("tr");
    tr.append(...cols.map((c) => el("td", {}, fmt(r[c]))));
    return tr;
  }));
  table.hidden = false;
  summary.textContent = `${items.length} commune(s)`;
}
