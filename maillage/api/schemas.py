"""API response shapes (apart from table rows)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel


class DeviceOut(BaseModel):
    """A registered device as the API shows it."""

    device_id: str
    tenant: str
    type: str
    site: str | None = None
    commune: str | None = None
    district: str | None = None
    building: str | None = None
    dwelling: str | None = None
    lat: float | None = None
    lon: float | None = None
    meta: dict[str, Any] = {}
    expected_interval_s: int | None = None
    installed_at: datetime | None = None
    created_at: datetime
    status: str
    status_at: datetime | None = None
    last_seen_at: datetime | None = None


class DeviceStatusOut(BaseModel):
    """Connectivity of a device."""

    device_id: str
    status: str
    status_at: datetime | None
    last_seen_at: datetime | None


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """A list answer, with the cursor of the next page when there is one."""

    items: list[T]
    next: str | None = None
