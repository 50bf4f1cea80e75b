"""Checks that need more than the payload: measurement times against now and the device's age."""

from __future__ import annotations

from datetime import datetime, timedelta

from maillage.envelope import Envelope
from maillage.errors import DlqReason, PayloadError


def check_times(envelopes: list[Envelope], *, now: datetime, since: datetime,
                max_future: timedelta) -> None:
    """Reject a message whose times are too far in the future or before the device existed.

    Late readings (even days late) are fine: they are stored where they belong.
    """
    limit = now + max_future
    for env in envelopes:
        if env.ts > limit:
            raise PayloadError(DlqReason.FUTURE_TIMESTAMP,
                               f"ts {env.ts.isoformat()} is more than {max_future} after receipt")
        if env.ts < since:
            raise PayloadError(DlqReason.BEFORE_DEVICE,
                               f"ts {env.ts.isoformat()} is before the device was installed "
                               f"or its clock was set ({since.isoformat()})")
