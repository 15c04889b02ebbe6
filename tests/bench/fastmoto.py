"""``python -m tests.bench.fastmoto -H 127.0.0.1 -p PORT``: moto's server with one helper made cheap, for the
benchmarks' throughput runs.

moto's SQS asks for the current time through ``unix_time_millis()`` (two ``datetime`` constructions and a
subtraction) once per message per check, and checks every message of a queue for visibility a few times per call,
so a FIFO send into a queue holding 1,000 messages costs it ~100 ms on this kind of machine, and the local figure
measures moto rather than the relay. Here the same value comes from ``time.time()``: the emulator's behaviour is
unchanged (a naive UTC datetime minus the epoch is ``time.time()``), only cheaper. It is still O(messages) per call.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import moto.sqs.models as sqs_models
from moto.core import utils


def _now_ms(dt: Any = None) -> float:
    return time.time() * 1000.0 if dt is None else utils.unix_time(dt) * 1000.0


def _now_s(dt: Any = None) -> float:
    return time.time() if dt is None else utils.unix_time(dt)


def main() -> int:
    setattr(sqs_models, "unix_time_millis", _now_ms)  # noqa: B010 - not an exported name
    setattr(sqs_models, "unix_time", _now_s)  # noqa: B010
    from moto.server import main as server_main

    server_main(sys.argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
