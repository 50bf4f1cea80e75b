"""The gateway's decisions about one MQTT message: parse it, check it against the registry, re-key
what a care hub relays, check its times. No I/O besides registry lookups, so that the live
gateway and `maillage dlq replay` decide alike.

Rules (see docs/ingest.md):
- the topic must be a device topic of a registered device (`unknown_topic`, `unknown_device`);
- an envelope naming a relayed sensor (`attrs["sensor"]`, set by the event and SenML parsers) is
  re-keyed to that sensor when it is registered in the hub's tenant, with `attrs["hub"]` = the
  hub; an unregistered sensor rejects the whole message (`unknown_device`, naming it). Only a
  `care_hub` relays: another device naming a sensor other than itself is `invalid_schema`;
- a relay speaks only for the devices registered under it (`meta.hub`, `meta.cabinet` or
  `meta.relay` naming it): any other registered device rejects the whole message
  (`relay_not_parent`), so a hub cannot forge a meter's index or another home's panic button;
- measurement times may be late (any amount) but not more than `max_future` after receipt
  (`future_timestamp`), nor before the device was installed, or 2010 when the registry has no
  installation date (`before_device`); relayed readings use the sensor's own date.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import ValidationError

from maillage.envelope import MICROSECOND, Envelope, SourceFormat, to_us
from maillage.errors import DlqReason, PayloadError
from maillage.ingest.formats import MessageContext, envelope, parse_message
from maillage.ingest.registry_cache import KnownDevice, RegistryCache
from maillage.topics import KIND_TOPIC, split_device_topic

RELAY_TYPES = frozenset({"care_hub", "lighting_cabinet"})
"""Device types allowed to send data on behalf of other registered devices: a home's care hub
for its sensors, a lighting cabinet's controller for the lamps on its circuits (PLC/DALI)."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message goes to the DLQ, and whose it was (None when the topic names no device)."""

    reason: str
    detail: str
    tenant: str | None
    device_id: str | None
    error: BaseException | None = None
    """Set when a parser failed unexpectedly (a bug, logged with its traceback)."""


@dataclass(slots=True)
class Outcome:
    """What became of one message: envelopes to produce, or a rejection (read-only by
    convention: not frozen, which would cost on every message)."""

    channel: str
    envelopes: list[Envelope] = field(default_factory=list)
    rejection: Rejection | None = None

    def records(self) -> list[tuple[str, bytes, bytes, int]]:
        """`(Kafka topic, key, value, number of values)` of each envelope (none when rejected)."""
        return [(KIND_TOPIC[env.kind], env.key, env.to_kafka(), len(env.values))
                for env in self.envelopes]


def check_times(envelopes: list[Envelope], *, now: datetime, since: datetime,
                max_future: timedelta) -> None:
    """Reject a message whose times are too far in the future or before the device existed.

    Late readings (even days late) are fine: they are stored where they belong.
    """
    _check_times(envelopes, to_us(now) + max_future // MICROSECOND, to_us(since), since,
                 max_future)


def _check_times(envelopes: list[Envelope], limit_us: int, since_us: int, since: datetime,
                 max_future: timedelta) -> None:
    """`check_times` on epoch microseconds."""
    for env in envelopes:
        ts = env.ts_us
        if ts > limit_us:
            raise PayloadError(DlqReason.FUTURE_TIMESTAMP,
                               f"ts {env.ts.isoformat()} is more than {max_future} after receipt")
        if ts < since_us:
            raise PayloadError(DlqReason.BEFORE_DEVICE,
                               f"ts {env.ts.isoformat()} is before the device was installed "
                               f"or its clock was set ({since.isoformat()})")


def status_envelope(payload: bytes, ctx: MessageContext) -> Envelope:
    """`…/status`: `online` or `offline` (the last will), stamped with the receive time."""
    text = payload.decode("utf-8", "replace").strip().lower()
    if text not in ("online", "offline"):
        raise PayloadError(DlqReason.INVALID_SCHEMA,
                           f"status must be online or offline, not {text[:40]!r}")
    return envelope(ctx, SourceFormat.STATUS, ctx.received_at, {}, {}, kind="status", event=text,
                    ts_us=ctx.received_us)


class Ingest:
    """One MQTT message (topic, bytes, receive time) -> envelopes, or a rejection with a reason.

    Registry failures (the database is down) raise: they are not the device's fault, and the
    gateway must not acknowledge the message.
    """

    def __init__(self, registry: RegistryCache, *, max_future: timedelta) -> None:
        self.registry = registry
        self.max_future = max_future
        self._max_future_us = max_future // MICROSECOND

    def convert(self, topic: str, payload: bytes, received: datetime) -> Outcome:
        """Decide about one message."""
        parts = split_device_topic(topic)
        if parts is None:
            return Outcome("?", rejection=Rejection(DlqReason.UNKNOWN_TOPIC, "not a device topic",
                                                    None, None))
        tenant, device_id, channel = parts
        device = self.registry.get(tenant, device_id)
        if device is None:
            return Outcome(channel, rejection=Rejection(
                DlqReason.UNKNOWN_DEVICE, f"{tenant}/{device_id} is not registered",
                tenant, device_id))
        ctx = MessageContext(tenant, device_id, channel, received, device.type)
        try:
            envelopes = self._parse(payload, ctx)
            if len(envelopes) == 1 and ctx.received_us is not None and device.since_us is not None:
                env = envelopes[0]  # the usual message: one envelope of its own, times in bounds
                if ("sensor" not in env.attrs
                        and device.since_us <= env.ts_us <= ctx.received_us + self._max_future_us):
                    return Outcome(channel, envelopes)
            groups = self._relay(envelopes, tenant, device)
            if ctx.received_us is None:  # envelopes were validated: their times are aware
                for group, dev in groups:
                    check_times(group, now=received, since=dev.since, max_future=self.max_future)
            else:
                limit = ctx.received_us + self._max_future_us
                for group, dev in groups:
                    if dev.since_us is None:
                        check_times(group, now=received, since=dev.since,
                                    max_future=self.max_future)
                    else:
                        _check_times(group, limit, dev.since_us, dev.since, self.max_future)
        except PayloadError as exc:
            error = exc.error if isinstance(exc, _ParserFailure) else None
            return Outcome(channel, rejection=Rejection(exc.reason, exc.detail, tenant, device_id,
                                                        error))
        if len(groups) == 1:
            return Outcome(channel, groups[0][0])
        return Outcome(channel, [env for group, _ in groups for env in group])

    def _parse(self, payload: bytes, ctx: MessageContext) -> list[Envelope]:
        """The parsers' envelopes; any failure of theirs becomes a PayloadError."""
        try:
            if ctx.channel == "status":
                return [status_envelope(payload, ctx)]
            return parse_message(payload, ctx)
        except PayloadError:
            raise
        except ValidationError as exc:  # an envelope field out of its bounds
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                                 for e in exc.errors()[:3])
            raise PayloadError(DlqReason.INVALID_SCHEMA, problems[:300]) from exc
        except Exception as exc:
            # Parsers are pure: anything else they raise is a bug of theirs, which must not stop
            # the gateway. The message is kept in the DLQ (replayable once the parser is fixed).
            raise _ParserFailure(exc) from exc

    def _relay(self, envelopes: list[Envelope], tenant: str,
               device: KnownDevice) -> list[tuple[list[Envelope], KnownDevice]]:
        """Re-key relayed envelopes; returns (envelopes, device they are stored under) per
        device: the sender's own, then each relayed sensor's."""
        for env in envelopes:
            if "sensor" in env.attrs:
                break
        else:  # nothing names a sensor
            return [(envelopes, device)]
        own: list[Envelope] = []
        relayed: dict[str, tuple[list[Envelope], KnownDevice]] = {}
        for env in envelopes:
            sensor = env.attrs.get("sensor")
            if not isinstance(sensor, str) or sensor == env.device_id:
                own.append(env)
                continue
            if device.type not in RELAY_TYPES:
                raise PayloadError(DlqReason.INVALID_SCHEMA,
                                   f"names sensor {sensor!r}: only {' and '.join(sorted(RELAY_TYPES))} "
                                   f"relay for other devices, this is a {device.type}")
            if sensor not in relayed:
                target = self.registry.get(tenant, sensor)
                if target is None:
                    raise PayloadError(DlqReason.UNKNOWN_DEVICE,
                                       f"relayed sensor {tenant}/{sensor} is not registered")
                if target.parent != env.device_id:
                    raise PayloadError(DlqReason.RELAY_NOT_PARENT,
                                       f"{tenant}/{sensor} is not registered under this {device.type}"
                                       f" (its relay: {target.parent or 'none'})")
                relayed[sensor] = ([], target)
            attrs = {k: v for k, v in env.attrs.items() if k != "sensor"}
            attrs["hub"] = env.device_id
            relayed[sensor][0].append(env.replace(device_id=sensor, attrs=attrs))
        return [(own, device), *relayed.values()]


class _ParserFailure(PayloadError):
    """A parser raised something else than PayloadError: kept as `malformed`, logged as a bug."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(DlqReason.MALFORMED,
                         f"the parser failed ({type(error).__name__}: {str(error)[:200]})")
        self.error = error
