"""The browser suites run on the end-to-end suite's stack: one relay (``relay``: the local stack and its connector
process) and one test chatbot per module, the same fixtures, not a copy of them; and Debian's Chromium."""

from pathlib import Path

import pytest

from tests.browser.page import CHROMIUM
from tests.e2e.conftest import chatbot
from tests.e2e.conftest import stack as relay

__all__ = ["chatbot", "chromium", "relay"]


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing and could not be installed: run `make browser-deps` (apt-get install chromium)"
        print(reason)
        pytest.skip(reason)
    return CHROMIUM
