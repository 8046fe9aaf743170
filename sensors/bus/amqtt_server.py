"""The embedded amqtt broker as a process of its own: `python -m sensors.bus.amqtt_server CONFIG.json`.

`EmbeddedBroker` starts it where mosquitto is not installed. In a process of its own the broker (pure Python)
does not take the GIL from the run's simulation and publisher: bottling 8 h streamed flat out into DuckDB went from
67-69k readings/s (in the run's process) to 92-104k, on 2 cores. It ends on SIGTERM or SIGINT, and by itself
when the process that started it is gone (a run killed with SIGKILL leaves no broker behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

from sensors.bus.payloads import collect_less_often


async def serve(config: dict[str, object], parent: int) -> None:
    """Run the broker until a stop signal, or until the parent process is gone."""
    from amqtt.broker import Broker

    broker = Broker(config)
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set() and os.getppid() == parent:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    await broker.shutdown()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m sensors.bus.amqtt_server CONFIG.json", file=sys.stderr)
        return 2
    config = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    logging.getLogger("amqtt").setLevel(logging.CRITICAL)  # it logs every probe of the protocol version
    collect_less_often()
    asyncio.run(serve(config, os.getppid()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
