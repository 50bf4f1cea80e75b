// Savings per commune from `GET /v1/savings?area=commune&name=C` (one document per area: totals
// of lighting and metered savings in kWh, €, kg CO2) for each commune of the device list, and
// the whole tenant; "indisponible" when this API has no savings route.
import { $, api, el } from "./api.js";

const PERIODS = {
  all: () => ({}),
  year: () => ({ from: `${new Date().getFullYear()}-01-01` }),
  month: () => {
    const d = new Date();
    return { from: `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-01` };
  },
};

function fmt(v, digits = 1) {
  return typeof v === "number" ? v.toLocaleString("fr-FR", { maximumFractionDigits: digits }) : "—";
}

async function one(commune, period) {
  const params = new URLSearchParams(PERIODS[period]());
  if (commune) { params.set("area", "commune"); params.set("name", commune); }
  return api(`/v1/savings?${params}`);
}

function row(label, doc) {
  const tr = el("tr");
  const t = doc.total || {}, l = doc.lighting || {}, m = doc.metered || {};
  const cells = [label, fmt(t.kwh), fmt(t.eur, 2), fmt(t.kg_co2), fmt(l.kwh), fmt(m.kwh),
    typeof m.uncertainty_kwh === "number" ? `± ${fmt(m.uncertainty_kwh)}` : "—"];
  cells.forEach((c, i) => tr.append(el(i ? "td" : "th", i ? { className: "num" } : { scope: "row" }, c)));
  return tr;
}

/** Fill the savings panel for `communes` (names from the device list). */
export async function loadSavings(communes) {
  const summary = $("savings-summary");
  const table = $("savings");
  const period = $("savings-period").value;
  table.hidden = true;
  let whole;
  try {
    whole = await one(null, period);
  } catch (err) {
    summary.textContent = err.status === 404 || err.status === 405
      ? "Économies : indisponible (ce serveur ne calcule pas encore les économies)."
      : `Économies : indisponible (${err.message}).`;
    return;
  }
  const rows = [row("Toute la collectivité", whole)];
  for (const c of communes) {
    try { rows.push(row(c, await one(c, period))); } catch (err) { rows.push(row(`${c} (${err.message})`, {})); }
  }
  table.tHead.replaceChildren(el("tr"));
  for (const h of ["Commune", "Total kWh", "Total €", "kg CO₂ évités", "dont éclairage kWh", "dont compteurs kWh", "incertitude kWh"]) {
    table.tHead.rows[0].append(el("th", { scope: "col" }, h));
  }
  table.tBodies[0].replaceChildren(...rows);
  table.hidden = false;
  summary.textContent = `${communes.length} commune(s) ; économies calculées par le traitement des économies (kWh évités, euros au tarif en vigueur, CO₂ au facteur d'émission).`;
}
