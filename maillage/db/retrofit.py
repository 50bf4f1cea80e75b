"""The retrofit "what if" of the remaining sodium lamps: kWh, €, kg CO2 a year and payback.

Read by `GET /v1/savings/retrofit`. A lamp's hours come from its stored lamp-nights
(`lighting_savings`) when it has enough of them; prices from the parameters, the nights, the
tenant's tariff and factor in force (`db.savings`), or the defaults (docs/lighting_savings.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import psycopg
from psycopg.rows import dict_row

from maillage.db.lighting_savings import system_power_w

SODIUM = ("HPS", "SHP")
"""High-pressure sodium (SHP: its French name) as `lamp_tech` spells it."""
DEFAULT_HOURS_PER_YEAR = 4100.0
"""Full-power hours of a lamp lit all night, dusk to dawn, in metropolitan France."""
MIN_NIGHTS = 30
"""Lamp-nights stored in the last year before a lamp's measured hours replace the default."""
DEFAULT_EUR_PER_KWH = 0.20
DEFAULT_KG_CO2_PER_KWH = 0.052
"""French mix (ADEME Base Empreinte 2022), as the savings tariffs' default factor."""
LED_SHARE_OF_SODIUM = 0.4
"""An LED lantern replacing a sodium lamp draws about 40 % of its nominal power by default."""

_SODIUM_LAMPS = """
SELECT l.device_id, l.site, l.district, l.commune, l.meta ->> 'lamp_tech' AS tech,
       l.meta ->> 'nominal_power_w' AS nominal, l.meta ->> 'system_power_w' AS system,
       s.nights, s.measured_wh, s.priced_wh, s.eur, s.kg_co2
FROM devices l
LEFT JOIN LATERAL (
    SELECT count(*) AS nights, sum(measured_wh) AS measured_wh,
           sum(measured_wh) FILTER (WHERE eur_per_kwh IS NOT NULL) AS priced_wh,
           sum(measured_wh * eur_per_kwh) AS eur, sum(measured_wh * kg_co2_per_kwh) AS kg_co2
    FROM lighting_savings ls
    WHERE ls.tenant_id = l.tenant_id AND ls.device_id = l.device_id
      AND ls.night >= %(since)s AND ls.night < %(today)s
) s ON true
WHERE l.tenant_id = %(tenant)s AND l.type = 'streetlight'
  AND upper(l.meta ->> 'lamp_tech') = ANY (%(sodium)s)
  AND (%(commune)s::text IS NULL OR l.commune = %(commune)s)
ORDER BY l.device_id
"""


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def retrofit(*, conn: psycopg.Connection, tenant: str, commune: str | None, lamp_cost_eur: float,
             led_power_w: float | None, eur_per_kwh: float | None, kg_co2_per_kwh: float | None,
             today: date) -> dict[str, Any]:
    """What replacing the remaining sodium lamps (of a commune, or the tenant) by LED would save.

    Per lamp: full-power hours a year (from its measured nights of the last year when it has
    `MIN_NIGHTS`, else `DEFAULT_HOURS_PER_YEAR`), kWh now (its system power) and with an LED of
    `led_power_w` run the same way, € and kg CO2 a year, payback years of `lamp_cost_eur`.
    Prices: the parameters, else the mean price and factor its nights were stored with, else
    the tariff and factor in force today (base price), else the defaults. Items by payback.
    """
    if lamp_cost_eur < 0:
        raise ValueError("lamp_cost_eur must be 0 or more")
    if led_power_w is not None and led_power_w <= 0:
        raise ValueError("led_power_w must be more than 0")
    since = date.fromordinal(today.toordinal() - 365)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_SODIUM_LAMPS, {"tenant": tenant, "commune": commune, "since": since,
                                           "today": today, "sodium": list(SODIUM)}).fetchall()
    price, factor, source = _prices(conn, tenant=tenant, today=today, rows=rows,
                                    eur_per_kwh=eur_per_kwh, kg_co2_per_kwh=kg_co2_per_kwh)
    items: list[dict[str, Any]] = []
    for r in rows:
        nominal = _float(r["nominal"])
        if not nominal:
            continue
        system = _float(r["system"]) or system_power_w(r["tech"], nominal)
        led = led_power_w if led_power_w is not None else round(LED_SHARE_OF_SODIUM * nominal, 1)
        measured = bool(r["nights"] and r["nights"] >= MIN_NIGHTS and r["measured_wh"])
        hours = (r["measured_wh"] / system * 365 / r["nights"] if measured
                 else DEFAULT_HOURS_PER_YEAR)
        kwh_now = system * hours / 1000
        kwh_after = min(led, system) * hours / 1000  # an LED drawing more saves nothing
        saved = kwh_now - kwh_after
        eur = saved * price
        items.append({
            "device_id": r["device_id"], "site": r["site"], "district": r["district"],
            "commune": r["commune"], "tech": r["tech"], "nominal_power_w": nominal,
            "system_power_w": system, "led_power_w": led, "hours_per_year": hours,
            "hours_source": "measured" if measured else "default",
            "kwh_per_year_now": kwh_now, "kwh_per_year_after": kwh_after,
            "kwh_saved_per_year": saved, "eur_saved_per_year": eur,
            "kg_co2_saved_per_year": saved * factor,
            "payback_years": lamp_cost_eur / eur if eur > 0 else None})
    items.sort(key=lambda i: (i["payback_years"] is None, i["payback_years"] or 0.0,
                              i["device_id"]))
    kwh_saved = sum(i["kwh_saved_per_year"] for i in items)
    eur_saved = kwh_saved * price
    investment = lamp_cost_eur * len(items)
    return {
        "tenant": tenant, "commune": commune, "lamps": len(items),
        "lamp_cost_eur": lamp_cost_eur, "led_power_w": led_power_w,
        "eur_per_kwh": price, "kg_co2_per_kwh": factor, "price_source": source,
        "kwh_per_year_now": sum(i["kwh_per_year_now"] for i in items),
        "kwh_per_year_after": sum(i["kwh_per_year_after"] for i in items),
        "kwh_saved_per_year": kwh_saved, "eur_saved_per_year": eur_saved,
        "kg_co2_saved_per_year": kwh_saved * factor, "investment_eur": investment,
        "payback_years": investment / eur_saved if eur_saved > 0 else None,
        "items": items,
    }


def _prices(conn: psycopg.Connection, *, tenant: str, today: date, rows: Sequence[dict[str, Any]],
            eur_per_kwh: float | None, kg_co2_per_kwh: float | None) -> tuple[float, float, str]:
    """(€/kWh, kg CO2/kWh, where they come from) for the retrofit "what if"."""
    sources: list[str] = []
    price, factor = eur_per_kwh, kg_co2_per_kwh
    if price is not None:
        sources.append("eur: parameter")
    if factor is not None:
        sources.append("co2: parameter")
    priced = sum(r["priced_wh"] or 0.0 for r in rows)
    measured = sum(r["measured_wh"] or 0.0 for r in rows)
    if price is None and priced > 0:
        price = sum(r["eur"] or 0.0 for r in rows) / priced
        sources.append("eur: stored nights")
    if factor is None and measured > 0:
        factor = sum(r["kg_co2"] or 0.0 for r in rows) / measured
        sources.append("co2: stored nights")
    if price is None or factor is None:
        # The tenant's tariffs and factors through the savings module (ordered by date); imported
        # here so that the rest of the what-if does not depend on that module's tables.
        from maillage.db import savings

        tariff = [t for t in savings.list_tariffs(conn=conn, tenant=tenant)
                  if t["valid_from"] <= today][-1:]
        if price is None and tariff and tariff[0]["base_eur_kwh"] is not None:
            price = float(tariff[0]["base_eur_kwh"])
            sources.append("eur: tariff in force")
        elif price is None and tariff:
            sources.append("eur: the tariff in force has peak and off-peak prices, pass "
                           "eur_per_kwh")
        in_force = [f for f in savings.list_factors(conn=conn, tenant=tenant)
                    if f["valid_from"] <= today][-1:]
        if factor is None and in_force:
            factor = float(in_force[0]["kg_co2_per_kwh"])
            sources.append("co2: factor in force")
    if price is None:
        price = DEFAULT_EUR_PER_KWH
        sources.append("eur: default")
    if factor is None:
        factor = DEFAULT_KG_CO2_PER_KWH
        sources.append("co2: default")
    return price, factor, "; ".join(sources)
