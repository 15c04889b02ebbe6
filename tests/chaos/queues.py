"""Each message's and reply's path through the two queues, read off the wire by the AWS proxy's observer: who sent it,
who received it how many times, every visibility change, the delete. A problem's report then shows, for example, a
reply received five times in a second and never sent, which no log line names (the proxy sees every call; the
services log some).

Messages are told apart by their tag, which both bodies carry: the inbound envelope in its text (``chaos <tag>``),
a reply in its own text (``ack <tag>``). A receipt handle maps later calls (visibility, delete) back to the tag.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from typing import Any

from tests.chaos.chatbot import REPLY_PREFIX, tag_of

HISTORY_MAX = 40
"""Steps kept per message: a reply in a hot loop would otherwise fill the report."""


def body_tag(body: str) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    text = (data.get("message") or {}).get("text") or data.get("text") or ""
    if text.startswith(REPLY_PREFIX):
        return text[len(REPLY_PREFIX) :].strip()
    return tag_of(text)


def queue_name(url: str) -> str:
    return url.rpartition("/")[2].removeprefix("wa-relay-").removesuffix(".fifo")


class QueueWatch:
    def __init__(self) -> None:
        self.history: dict[str, list[str]] = defaultdict(list)
        """By tag: one line per step, both queues (``inbound: …``, ``outbound: …``)."""
        self._handles: dict[str, tuple[str, str]] = {}
        """Receipt handle → (queue, tag)."""
        self._lock = threading.Lock()

    def _add(self, tag: str | None, queue: str, what: str) -> None:
        if tag is None:
            return
        steps = self.history[tag]
        if len(steps) < HISTORY_MAX:
            steps.append(f"{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d} {queue}: {what}")
        elif len(steps) == HISTORY_MAX:
            steps.append("… (more steps left out)")

    def __call__(self, component: str, service: str, op: str, request: bytes, status: int, response: bytes) -> None:
        if service != "sqs" or status != 200:
            return
        try:
            req: dict[str, Any] = json.loads(request or b"{}")
            resp: dict[str, Any] = json.loads(response or b"{}") if response.startswith(b"{") else {}
        except ValueError:
            return
        queue = queue_name(str(req.get("QueueUrl", "")))
        with self._lock:
            self._step(component, op, queue, req, resp)

    def _step(self, component: str, op: str, queue: str, req: dict[str, Any], resp: dict[str, Any]) -> None:
        if op == "SendMessage":
            self._add(body_tag(req.get("MessageBody", "")), queue, f"sent by the {component}")
        elif op == "SendMessageBatch":
            for entry in req.get("Entries", []):
                self._add(body_tag(entry.get("MessageBody", "")), queue, f"sent by the {component} (batch)")
        elif op == "ReceiveMessage":
            for m in resp.get("Messages", []):
                tag = body_tag(m.get("Body", ""))
                if tag is not None:
                    self._handles[m["ReceiptHandle"]] = (queue, tag)
                count = (m.get("Attributes") or {}).get("ApproximateReceiveCount", "?")
                self._add(tag, queue, f"received by the {component} (receive {count})")
        elif op == "ChangeMessageVisibility":
            self._handled(
                req.get("ReceiptHandle"), f"visibility set to {req.get('VisibilityTimeout')} s by the {component}"
            )
        elif op == "ChangeMessageVisibilityBatch":
            for e in req.get("Entries", []):
                self._handled(
                    e.get("ReceiptHandle"), f"visibility set to {e.get('VisibilityTimeout')} s by the {component}"
                )
        elif op == "DeleteMessage":
            self._handled(req.get("ReceiptHandle"), f"deleted by the {component}")
        elif op == "DeleteMessageBatch":
            for e in req.get("Entries", []):
                self._handled(e.get("ReceiptHandle"), f"deleted by the {component}")

    def _handled(self, handle: str | None, what: str) -> None:
        if handle and handle in self._handles:
            queue, tag = self._handles[handle]
            self._add(tag, queue, what)

    def of(self, tag: str) -> list[str]:
        with self._lock:
            return list(self.history.get(tag, []))
