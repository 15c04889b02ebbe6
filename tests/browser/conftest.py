"""The browser suite runs on the end-to-end suite's stack: one relay (``relay``: the local stack and its connector
process) and one test chatbot per module, the same fixtures, not a copy of them."""

from tests.e2e.conftest import chatbot
from tests.e2e.conftest import stack as relay

__all__ = ["chatbot", "relay"]
