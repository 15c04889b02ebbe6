"""Decrypt-failure stubs: messages Baileys could not decrypt, which the connector does not publish (``inbound``), and
whether their content arrived later under the same id.

Baileys emits a stub (``messageStubType`` ``CIPHERTEXT``, no content) when it cannot decrypt a message, asks the
sender's phone to send it again (a retry receipt), and emits the real content under the same message id when the
retry succeeds. A stub that stays without content is a message the chatbot never sees; these counts make that
visible on ``/metrics`` (``wa_relay_decrypt_stubs_total``, ``…_resolved_total``, ``wa_relay_decrypt_stubs_unresolved``).

Decisions:
- Only ``CIPHERTEXT`` stubs count. Other stub types (group notifications and the like) never get content.
- A stub is *unresolved* once it has waited ``grace_s`` (default 5 minutes) without its content: a retry round
  normally takes seconds, and the sender's phone has to be online for it. It stops counting when its content arrives
  however late (then it counts as resolved).
- In memory and bounded (the ``limit`` newest stubs): a connector restart forgets them, and a stub pushed out by
  newer ones no longer counts as unresolved. It is a signal to look at the logs ("stub message not published" names
  the session, chat and id), not a ledger.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

CIPHERTEXT = 2
"""``proto.WebMessageInfo.StubType.CIPHERTEXT``: the message could not be decrypted."""
CIPHERTEXT_NAMES = frozenset({CIPHERTEXT, "2", "CIPHERTEXT"})
"""How the stub type may arrive (Baileys' enum number, or its name)."""
GRACE_S = 300.0
LIMIT = 10_000


def is_decrypt_stub(stub_type: int | str | None) -> bool:
    return stub_type in CIPHERTEXT_NAMES


class DecryptStubs:
    def __init__(
        self, *, grace_s: float = GRACE_S, limit: int = LIMIT, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.grace_s = grace_s
        self.limit = limit
        self._clock = clock
        self._waiting: OrderedDict[tuple[str, str], float] = OrderedDict()
        """(session, message id) → when its stub was seen, oldest first."""
        self.seen = 0
        self.resolved = 0

    def stub(self, session: str, message_id: str) -> None:
        """A decrypt-failure stub for ``message_id`` was not published."""
        key = (session, message_id)
        if key in self._waiting:
            return  # the same stub again (a re-emit): still the one message
        self.seen += 1
        self._waiting[key] = self._clock()
        while len(self._waiting) > self.limit:
            self._waiting.popitem(last=False)

    def content(self, session: str, message_id: str) -> None:
        """A message with content arrived; if it is a stub's, that stub is resolved."""
        if self._waiting.pop((session, message_id), None) is not None:
            self.resolved += 1

    @property
    def unresolved(self) -> int:
        """Stubs still without content ``grace_s`` after they were seen."""
        cutoff = self._clock() - self.grace_s
        count = 0
        for seen_at in self._waiting.values():
            if seen_at > cutoff:
                break  # oldest first: the rest are younger
            count += 1
        return count
