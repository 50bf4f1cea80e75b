"""Input and output shapes of the registry (apart from table rows)."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class DeviceType(StrEnum):
    """Device types of the contract."""

    METER = "meter"
    STREETLIGHT = "streetlight"
    LIGHTING_CABINET = "lighting_cabinet"
    CARE_MOTION = "care_motion"
    CARE_DOOR = "care_door"
    CARE_BED = "care_bed"
    CARE_BUTTON = "care_button"
    CARE_ENV = "care_env"
    CARE_HUB = "care_hub"
    PRESENCE = "presence"
    LUMINOSITY = "luminosity"

    @property
    def is_care(self) -> bool:
        return self.value.startswith("care_")


class Role(StrEnum):
    """API roles (the `device` role is MQTT only and has no token)."""

    ADMIN = "admin"
    ENERGY_MANAGER = "energy_manager"
    CARE_COORDINATOR = "care_coordinator"
    OPENDATA = "opendata"


TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
DEVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


class DeviceSpec(BaseModel):
    """A device to register."""

    model_config = ConfigDict(extra="forbid")

    device_id: str
    type: DeviceType
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    site: str | None = None
    commune: str | None = None
    district: str | None = None
    building: str | None = None
    dwelling: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    expected_interval_s: int | None = Field(default=None, gt=0, lt=2**31)  # an SQL integer
    installed_at: datetime | None = None

    @field_validator("device_id")
    @classmethod
    def _device_id(cls, v: str) -> str:
        if not DEVICE_RE.match(v):
            raise ValueError(
                "device id: 1-128 characters, letters, digits and _ . : - (not starting with one)"
            )
        return v

    @model_validator(mode="after")
    def _no_nul(self) -> DeviceSpec:
        """PostgreSQL stores no NUL character in text or JSON: refused here (422), not a 500."""
        if _has_nul(self.model_dump()):
            raise ValueError("text and meta may not contain the NUL character (\\u0000)")
        return self


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class DeviceCredentials(BaseModel):
    """What a newly registered device needs to connect; the password is shown only once."""

    device_id: str
    tenant: str
    mqtt_username: str
    mqtt_password: str
    topic_prefix: str


def mqtt_username(tenant: str, device_id: str) -> str:
    """Broker username of a device: unique across tenants (':' escaped for the password file)."""
    return f"{tenant}/{device_id}".replace(":", "%3A")
