"""The web page in headless Chromium (Playwright driving the system's browser) on a real
`maillage up`: what each role sees, the alert stream parser, and (issue 17, acceptance 3) login,
devices on the map, an alert arriving live, acknowledged and resolved from the page, a device's
chart, savings, revocation, and a screenshot under the test output; never a request to another
host."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from maillage.registry.tenants import add_tenant
from maillage.registry.tokens import create_token
from tests.e2e.conftest import Device, Publisher, Stack, wait_until

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")  # only the system Chromium
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ROOT = Path(__file__).resolve().parents[2]


def output_dir() -> Path:
    """`$MAILLAGE_TEST_OUTPUT`, else `test-output/` at the repository root (git-ignored)."""
    out = Path(os.environ.get("MAILLAGE_TEST_OUTPUT") or ROOT / "test-output")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs it (Debian package chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Watched:
    """A page whose requests are all noted (the page must ask nothing of any other host)."""

    def __init__(self, browser: Browser, stack: Stack) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR")
        self.page: Page = self.context.new_page()
        self.hosts: set[str] = set()
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.hosts.add(urlsplit(r.url).netloc)
                      if urlsplit(r.url).scheme in ("http", "https", "ws", "wss") else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.api_host = urlsplit(stack.api).netloc

    def foreign(self) -> set[str]:
        return self.hosts - {self.api_host}

    def close(self) -> None:
        self.context.close()


def _tenant(stack: Stack, *roles: str) -> tuple[str, dict[str, str]]:
    """A new tenant and a token per role, made in process with the registry functions the CLI
    calls (a CLI process each is seconds on a loaded machine; the CLI is tested elsewhere)."""
    tenant = f"t{uuid.uuid4().hex[:10]}"
    with psycopg.connect(stack.db(), autocommit=True) as conn:
        add_tenant(conn, tenant_id=tenant)
        return tenant, {r: create_token(conn, tenant=tenant, role=r) for r in roles}


def _add(stack: Stack, admin: str, type_: str, lat: float | None = None,
         lon: float | None = None) -> Device:
    """Register a device through the API (quicker than a CLI process per device)."""
    spec = {"device_id": f"{type_[:4]}-{uuid.uuid4().hex[:6]}", "type": type_, "lat": lat,
            "lon": lon, "commune": "Vitré"}
    r = httpx.post(stack.api + "/v1/devices", json=spec, timeout=30,
                   headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 201, r.text
    out = r.json()
    return Device(out["tenant"], out["device_id"], out["mqtt_username"], out["mqtt_password"],
                  out["topic_prefix"])


_PARSE_CHUNKS = """async () => {
  const { readEvents } = await import("/js/alerts.js");
  const enc = new TextEncoder();
  const e = enc.encode("é");
  const parts = [enc.encode("id: 1\\r"), enc.encode("\\ndata: {\\"a\\""),
    enc.encode(":1}\\r\\n\\r\\n: ping\\r\\n\\r\\nid: 2\\r\\nda"),
    enc.encode("ta: x\\r\\ndata: y"), e.slice(0, 1), e.slice(1), enc.encode("\\r\\n\\r"),
    enc.encode("\\nid: 3\\ndata\\n\\n")];
  const body = new ReadableStream({ start(c) { parts.forEach((p) => c.enqueue(p)); c.close(); } });
  const got = [];
  await readEvents(body, (ev) => got.push(ev));
  return got;
}"""


def test_page_lists_devices_of_the_tenant(stack: Stack, browser: Browser) -> None:
    """An energy manager's token (from a `#token=` link) shows its meter, never the care sensor
    of the same tenant; an opendata token gets no alert feed and no device."""
    _, tokens = _tenant(stack, "admin", "energy_manager", "care_coordinator", "opendata")
    meter = _add(stack, tokens["admin"], "meter")
    care = _add(stack, tokens["admin"], "care_motion")
    w = Watched(browser, stack)
    try:
        page = w.page
        page.goto(f"{stack.api}/#token={tokens['energy_manager']}")
        expect(page.locator("#devices-summary")).to_have_text("1 équipement(s)", timeout=20_000)
        assert page.locator(f'#devices tr[data-id="{meter.device_id}"]').count() == 1
        assert care.device_id not in page.content()
        assert "token=" not in page.url  # the token left the address bar
        expect(page.locator("#alerts-panel")).to_be_visible()
        expect(page.locator("#who")).to_contain_text("gestionnaire énergie")

        # The stream parser, fed chunks cut at awkward places (half a CRLF, inside a field,
        # inside a UTF-8 character), as a proxy may cut them.
        events = page.evaluate(_PARSE_CHUNKS)
        assert events == [{"id": "1", "data": '{"a":1}'}, {"id": "2", "data": "x\nyé"},
                          {"id": "3", "data": ""}], events

        page.goto(f"{stack.api}/#token={tokens['care_coordinator']}")
        page.reload()  # a fresh session in this tab
        expect(page.locator("#devices-summary")).to_have_text("1 équipement(s)", timeout=20_000)
        assert page.locator(f'#devices tr[data-id="{care.device_id}"]').count() == 1
        assert meter.device_id not in page.content()
        expect(page.locator("#alerts-panel")).to_be_visible()
        expect(page.locator("#savings-panel")).to_be_hidden()

        page.goto(f"{stack.api}/#token={tokens['opendata']}")
        page.reload()
        expect(page.locator("#devices-summary")).to_have_text("0 équipement(s)", timeout=20_000)
        expect(page.locator("#alerts-panel")).to_be_hidden()
        expect(page.locator("#savings-panel")).to_be_hidden()
        assert page.locator("button.ack").count() == 0
        assert w.foreign() == set() and w.errors == []
    finally:
        w.close()


def test_map_live_alert_acknowledged_from_the_page(stack: Stack, browser: Browser) -> None:
    """Acceptance 3: log in with a token through the form, see the devices on the map (markers
    counted in the DOM, no tile server), see a fall arrive live from the stream, acknowledge it
    from the page (state checked through the API), screenshot."""
    _, tokens = _tenant(stack, "admin", "care_coordinator")
    admin, token = tokens["admin"], tokens["care_coordinator"]
    placed = [_add(stack, admin, "streetlight", 48.1240 + i * 0.001, -1.2080 + i * 0.0015)
              for i in range(3)]
    placed.append(_add(stack, admin, "meter", 48.1255, -1.2100))
    pendant = _add(stack, admin, "care_button", 48.1262, -1.2050)
    _add(stack, admin, "meter")  # one without coordinates: listed, not on the map
    meter = placed[3]
    now = datetime.now(UTC).timestamp()
    records = [{"ts": int((now - 60 * m) * 1000), "values": {"active_power_w": 400.0 + m}}
               for m in (30, 20, 10)]
    meter_pub = Publisher(stack, meter)
    assert not meter_pub.publish("up/json", orjson.dumps(records)).is_failure
    meter_pub.close()
    w = Watched(browser, stack)
    pub = Publisher(stack, pendant)
    try:
        page = w.page
        page.goto(stack.api + "/")
        page.get_by_label("Jeton d'accès").fill(admin)
        page.get_by_role("button", name="Se connecter").click()
        markers = page.locator("#map path.device-marker")
        expect(markers).to_have_count(len(placed) + 1, timeout=20_000)
        expect(page.locator("#map-summary")).to_contain_text("1 sans coordonnées")
        assert page.locator("#map .leaflet-tile").count() == 0  # offline: no tile layer
        expect(page.locator("#stream-state")).to_have_text(re.compile("en direct"), timeout=20_000)
        expect(page.locator(f'#map path.device-marker[data-id="{pendant.device_id}"]')
               ).to_have_class(re.compile("status-unknown"))

        sent = time.monotonic()
        ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        assert not pub.publish("up/event", orjson.dumps({"ts": ts, "event": "fall_detected"})).is_failure
        item = page.locator("#alerts li.alert", has_text=pendant.device_id)
        # The first message after start-up may wait for the processors to join their groups.
        expect(item).to_have_attribute("data-state", "open", timeout=90_000)
        expect(item).to_contain_text("chute")
        print(f"fall -> alert on the page: {time.monotonic() - sent:.2f} s")  # noqa: T201
        expect(page.locator(f'#map path.device-marker[data-id="{pendant.device_id}"]')
               ).to_have_class(re.compile("status-alert"))
        alert_id = int(item.get_attribute("data-alert-id") or 0)

        item.get_by_role("button", name="Acquitter").click()
        expect(item).to_have_attribute("data-state", "acknowledged", timeout=10_000)
        expect(item.get_by_role("button", name="Acquitter")).to_have_count(0)
        page.screenshot(path=str(output_dir() / "web-page-alert-acknowledged.png"), full_page=True)

        r = stack.get(f"/v1/alerts/{alert_id}", token)  # checked as the coordinator would see it
        assert r.status_code == 200, r.text
        doc = r.json()
        assert (doc["state"], doc["device_id"], doc["kind"]) == ("acknowledged", pendant.device_id, "fall")
        assert [e["action"] for e in doc["events"]].count("acknowledged") == 1
        assert doc["acknowledged_by"] and doc["acknowledged_by"].startswith("token:")

        # The device page: its details and the alert, reached from the list by keyboard.
        page.locator(f'#devices tr[data-id="{pendant.device_id}"]').focus()
        page.keyboard.press("Enter")
        expect(page.locator("#device-page")).to_be_visible()
        expect(page.locator("#device-info")).to_contain_text("chute")
        expect(page.locator("#detail-summary")).not_to_be_empty()  # its readings, or none

        # Resolved from the feed: it leaves the feed (resolved alerts are hidden by default).
        item.get_by_role("button", name="Résoudre").click()
        expect(item).to_have_count(0)
        assert stack.get(f"/v1/alerts/{alert_id}", token).json()["state"] == "resolved"
        page.get_by_label("afficher les alertes résolues").check()
        expect(item).to_have_attribute("data-state", "resolved")

        # The meter's page charts the three readings it published.
        assert wait_until(lambda: len(stack.get(f"/v1/devices/{meter.device_id}/readings", admin)
                                      .json()["items"]) == 3, 60), "readings not stored"
        page.goto(f"{stack.api}/#device={meter.device_id}")  # the device page's own link
        expect(page.locator("#metric")).to_have_value("active_power_w")
        expect(page.locator("#detail-summary")).to_contain_text("3 point(s)")
        points = page.locator("#chart polyline.line").get_attribute("points") or ""
        assert len(points.split()) == 3, points
        page.get_by_role("link", name="← Retour à la carte").click()
        expect(markers).to_have_count(len(placed) + 1)
        expect(page.locator(f'#map path.device-marker[data-id="{pendant.device_id}"]')
               ).not_to_have_class(re.compile("status-alert"))
        paths = httpx.get(stack.api + "/openapi.json", timeout=30).json()["paths"]
        if "/v1/savings" in paths:  # the savings of the commune of the devices (none computed)
            expect(page.locator("#savings tbody th", has_text="Vitré")).to_have_count(1)
        else:
            expect(page.locator("#savings-summary")).to_contain_text("indisponible")

        # Revoked: the live stream ends, its reconnection gets 401, the login form comes back
        # and the token is forgotten.
        [mine] = [t for t in stack.get("/v1/tokens", admin).json()["items"] if t["role"] == "admin"]
        r = httpx.post(f"{stack.api}/v1/tokens/{mine['id']}/revoke", timeout=30,
                       headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 200, r.text
        expect(page.locator("#login")).to_be_visible(timeout=30_000)
        expect(page.locator("#error")).to_contain_text("révoqué")
        assert page.evaluate("sessionStorage.getItem('maillage-token')") is None

        assert w.foreign() == set(), f"requests to other hosts: {w.foreign()}"
        assert w.errors == [], w.errors
    finally:
        pub.close()
        w.close()
