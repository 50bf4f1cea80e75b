"""The control process: adaptive lighting (a consumer and a lowering loop) and demand response."""

from __future__ import annotations

import asyncio

from maillage.processors.control import adaptive, demand_response
from maillage.processors.runner import Runner
from maillage.processors.tasks import together


async def run(*, database_url: str, bootstrap: str, stop: asyncio.Event,
              tick_s: float = 0.5, fetch_wait_ms: int = 50) -> None:
    """Until `stop` (or the first failure, raised)."""
    sink = adaptive.PresenceSink(database_url)
    runner = Runner(bootstrap=bootstrap, topics=adaptive.TOPICS, group_id=adaptive.GROUP,
                    sink=sink, flush_ms=20, fetch_wait_ms=fetch_wait_ms)
    tasks = [asyncio.create_task(runner.run(stop)),
             asyncio.create_task(adaptive.lowering_loop(database_url, stop, tick_s=tick_s)),
             asyncio.create_task(demand_response.run(database_url, stop, tick_s=tick_s))]
    try:
        await together(tasks, stop)
    finally:
        sink.close()
