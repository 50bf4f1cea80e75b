"""Small rules for the engine and processor tests (the real rule tables are tested apart).

`MAILLAGE_DETECTION_RULES=tests.processors.detection.rules_fixture` makes a detection processor
run these instead of the real modules (the crash test runs it as a subprocess)."""

from __future__ import annotations

from collections.abc import Iterable

from maillage.envelope import Envelope
from maillage.processors.detection.model import DeviceInfo, Finding, Kind, Memory, Severity

HIGH_W = 1000.0


def high_power(device: DeviceInfo, memory: Memory, env: Envelope) -> Iterable[Finding]:
    """Active power above HIGH_W: warning, critical above twice that; the score follows the power."""
    p = env.values.get("active_power_w")
    if p is None:
        return ()
    memory["n"] = memory.get("n", 0) + 1  # proves the memory is checkpointed
    active = p > HIGH_W
    sev = Severity.CRITICAL if p > 2 * HIGH_W else Severity.WARNING
    return (Finding(Kind.OVER_SUBSCRIBED_POWER, active, env.ts_us, sev, min(1.0, p / (4 * HIGH_W)),
                    {"power_w": p, "threshold_w": HIGH_W}),)


def fall(device: DeviceInfo, memory: Memory, env: Envelope) -> Iterable[Finding]:
    """A fall event is an immediate, critical anomaly."""
    if env.kind == "event" and env.event == "fall_detected":
        return (Finding(Kind.FALL, True, env.ts_us, Severity.CRITICAL, 1.0, {"event": env.event}),)
    return ()


def cabinet_sum(device: DeviceInfo, memory: Memory, env: Envelope) -> Iterable[Finding]:
    """Group rule: lamps of one cabinet over 3 with power 0 at once -> an anomaly on the cabinet."""
    p = env.values.get("lamp_power_w")
    if p is None:
        return ()
    dark = set(memory.get("dark", []))
    (dark.add if p == 0 else dark.discard)(device.device_id)
    memory["dark"] = sorted(dark)
    cabinet = str(device.meta["cabinet"])
    return (Finding(Kind.LAMP_FAILURE, len(dark) >= 3, env.ts_us, Severity.WARNING, 0.5,
                    {"dark": len(dark)}, device_id=cabinet),)


def late_seen(device: DeviceInfo, memory: Memory, env: Envelope) -> Iterable[Finding]:
    """Quality rule stand-in: counts every record it sees, late ones included."""
    memory["n"] = memory.get("n", 0) + 1
    return ()


RULES = {"meter": [high_power], "care_button": [fall], "care_hub": [fall]}
GROUP_RULES = {"streetlight": [cabinet_sum]}


def on_rejected(device: DeviceInfo, memory: Memory, reason: str, rx_us: int) -> Iterable[Finding]:
    """A rejected message opens malformed_payload (the quality module's hook, simplified)."""
    memory["rejects"] = memory.get("rejects", 0) + 1
    return (Finding(Kind.MALFORMED_PAYLOAD, True, rx_us, Severity.WARNING, 0.5, {"reason": reason}),)
