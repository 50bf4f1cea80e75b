"""The commands process: four tasks sharing one fate (one failing stops the others).

    API / rules --(commands + command_targets, one transaction)--> outbox
    relay.py     outbox --------------------------------------------> maillage.commands
    dispatch.py  maillage.commands --(accepted)--> MQTT …/down/cmd (retries, time-outs)
    acks.py      maillage.events (kind=ack, from …/up/ack via the gateway) --> done / failed
"""

from __future__ import annotations

import asyncio
import threading

from maillage.processors.commands import acks, dispatch
from maillage.processors.commands.relay import Relay
from maillage.processors.commands.settings import CommandSettings
from maillage.processors.runner import Runner
from maillage.processors.tasks import together


async def run(*, database_url: str, bootstrap: str, account: dispatch.MqttAccount,
              settings: CommandSettings, stop: asyncio.Event, fetch_wait_ms: int = 50) -> None:
    """Relay, dispatcher and the two consumers until `stop` (or the first failure, raised)."""
    wake = threading.Event()
    accept = dispatch.AcceptSink(database_url, wake)
    ack_sink = acks.AckSink(database_url)
    runners = [Runner(bootstrap=bootstrap, topics=dispatch.TOPICS, group_id=dispatch.GROUP,
                      sink=accept, flush_ms=20, fetch_wait_ms=fetch_wait_ms),
               Runner(bootstrap=bootstrap, topics=acks.TOPICS, group_id=acks.GROUP,
                      sink=ack_sink, flush_ms=20, fetch_wait_ms=fetch_wait_ms)]
    tasks = [asyncio.create_task(r.run(stop)) for r in runners]
    tasks.append(asyncio.create_task(Relay(database_url, bootstrap).run(stop)))
    tasks.append(asyncio.create_task(
        dispatch.Dispatcher(database_url, account, settings, wake).run(stop)))
    try:
        await together(tasks, stop)
    finally:
        accept.close()
        ack_sink.close()

