"""moto's server, with its SQS FIFO receive made to keep a message group's order as SQS does. Development and tests
only (``infra.local.emulators.MotoServer`` runs ``python -m infra.local.moto_sqs``); AWS runs real SQS.

moto (5.x) decides which FIFO groups are blocked from a snapshot of its in-flight messages taken when a receive
starts, and takes a message that became visible again (its visibility ran out, or was set to 0) out of the in-flight
set only when the receive reaches it in queue order. Two ways a group then comes out of order, both seen in the chaos
suite: a long poll that started while the group was in flight keeps skipping its released first messages for the rest
of its wait; and when several messages of a group become visible together, the first ones are skipped because the
later ones still count as in flight, until the last one clears the group and is handed out ahead of them. Here every
receive first drops the messages that are visible again from the in-flight set, and a long poll is a series of
short receives, each with a fresh snapshot.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from moto.server import main
from moto.sqs.models import SQSBackend

POLL_EVERY_S = 0.02

_receive_message = SQSBackend.receive_message


def receive_message(
    self: SQSBackend,
    queue_name: str,
    count: int,
    wait_seconds_timeout: int,
    visibility_timeout: int,
    message_attribute_names: list[str] | None = None,
) -> Any:
    deadline = time.time() + (wait_seconds_timeout or 0)
    while True:
        queue = self.get_queue(queue_name)
        for message in list(queue.pending_messages):
            if message.visible:
                queue.pending_messages.discard(message)
        result = _receive_message(self, queue_name, count, 0, visibility_timeout, message_attribute_names)
        if result or time.time() >= deadline:
            return result
        time.sleep(POLL_EVERY_S)


SQSBackend.receive_message = receive_message  # type: ignore[method-assign]

if __name__ == "__main__":
    main(sys.argv[1:])
