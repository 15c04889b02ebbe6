"""The golden protocol examples in tests/fixtures/bridge/ parse with the Python side's models.

The bridge's own tests load the same files with its TypeScript validators, so both sides agree on every shape.
File names are ``<kind>.<name>.json``: ``request.<method>``, ``response.<method>``, ``error.<code>``,
``event.<event>[.variant]``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connector.sidecar.errors import RESPONSE_ERRORS
from connector.sidecar.types import (
    EVENT_MODELS,
    REQUEST_MODELS,
    RESULT_MODELS,
    EventMessage,
    RequestMessage,
    ResponseMessage,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bridge"
FILES = sorted(FIXTURES.glob("*.json"))


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def test_there_are_fixtures_for_every_modelled_message() -> None:
    names = {p.stem for p in FILES}
    missing = [f"request.{m}" for m in REQUEST_MODELS if f"request.{m}" not in names]
    missing += [e for e in EVENT_MODELS if not any(n == f"event.{e}" or n.startswith(f"event.{e}.") for n in names)]
    assert not missing, f"no golden fixture for {missing}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_fixture_matches_the_contract(path: Path) -> None:
    kind, _, name = path.stem.partition(".")
    msg = load(path)
    if kind == "request":
        req = RequestMessage.model_validate(msg)
        assert req.method == name
        if name in REQUEST_MODELS:
            REQUEST_MODELS[name].model_validate(req.params)
    elif kind == "response":
        resp = ResponseMessage.model_validate(msg)
        assert resp.error is None
        if name in RESULT_MODELS:
            RESULT_MODELS[name].model_validate(resp.result)
    elif kind == "error":
        resp = ResponseMessage.model_validate(msg)
        assert resp.error is not None and resp.error.code == name
        assert name in RESPONSE_ERRORS, f"no exception class for bridge error code {name}"
    elif kind == "event":
        event = EventMessage.model_validate(msg)
        assert name == event.event or name.startswith(event.event + ".")
        if event.event in EVENT_MODELS:
            EVENT_MODELS[event.event].model_validate(event.data)
    else:
        pytest.fail(f"unknown fixture kind {kind!r} in {path.name}")
