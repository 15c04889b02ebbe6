"""The chaos chatbot: the responder of a ``tests.support.chatbot.ChatbotServer``, with failure windows.

Outside a window it answers every ``chaos <tag>`` message with exactly one reply, ``ack <tag>``, so a reply can be
matched to its message on the contact's phone. Inside a window (one at a time, switched from the scenario):

- ``fail500``: 500; ``fail503``: 503; ``fail503-retry-after``: 503 with ``Retry-After: 1``: the function retries
  (tenacity, then SQS), so these calls are retries, not duplicates;
- ``stall``: the right answer, but only after ``stall_s`` (longer than the function's ``CHATBOT_TIMEOUT_S``): the
  function has given up, so the answer is not delivered (the server records that) and the function retries;
- ``garbage``: 200 with a body that is not a chatbot response (not JSON, or JSON of the wrong shape): a permanent
  failure by the contract (DESIGN section 6), so the message is answered with no reply.
"""

from __future__ import annotations

import threading
from typing import Any

from tests.support.chatbot import Answer

TEXT_PREFIX = "chaos "
REPLY_PREFIX = "ack "
GARBAGE: tuple[bytes | dict[str, Any], ...] = (
    b"<html><body>502 Bad Gateway</body></html>",
    {"replies": "not a list"},
    {"reply": {"text": "wrong key"}},
    b'{"replies": [{"text": ',
)


def tag_of(text: str | None) -> str | None:
    """``chaos s0/c1/7`` → ``s0/c1/7``; ``None`` for anything else."""
    if text and text.startswith(TEXT_PREFIX):
        return text[len(TEXT_PREFIX) :].strip()
    return None


class ChaosResponder:
    def __init__(self, stall_s: float) -> None:
        self.stall_s = stall_s
        self.window: str | None = None
        self._garbage = 0
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Answer:
        tag = tag_of((body.get("message") or {}).get("text"))
        window = self.window
        if window == "fail500":
            return Answer(500, {"error": "chaos: internal error"}, label=window)
        if window == "fail503":
            return Answer(503, {"error": "chaos: unavailable"}, label=window)
        if window == "fail503-retry-after":
            return Answer(503, {"error": "chaos: unavailable"}, headers={"Retry-After": "1"}, label=window)
        if window == "garbage":
            with self._lock:
                self._garbage += 1
                payload = GARBAGE[self._garbage % len(GARBAGE)]
            return Answer(200, payload, label=window)
        if tag is None:
            return Answer(204, label="not ours")
        reply = {"replies": [{"text": f"{REPLY_PREFIX}{tag}"}]}
        if window == "stall":
            return Answer(200, reply, delay_s=self.stall_s, label=window)
        return Answer(200, reply, label="ok")
