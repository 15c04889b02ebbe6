"""The ``wa-relay`` command against a real connector app (memory stores, the fake bridge) served on a local port: the
CLI's ``main`` runs in the test's thread, the app in a thread of its own, so a blocking command (``link``, ``events``)
can wait while the test drives the fake bridge."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import pytest
from aiohttp import web

from connector.api import EVENTS_KEY, MANAGER_KEY
from connector.app import Stores, create_app
from connector.cli import main
from connector.cli.link import QrScreen
from connector.cli.sse import Connected, Event, Parser, follow
from connector.cli.target import find_key_file
from connector.config import Config
from connector.publish import MemoryPublisher
from tests.connector.fakes import OPEN, FakeBridge, close

KEY = "cli-test-key-5d8e2a7b9c4f1a3e"
QR = "2@ref1,noise,identity,adv"
T = TypeVar("T")


class Served:
    """The connector app on 127.0.0.1, its event loop in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="connector", daemon=True)
        self.thread.start()
        cfg = Config(api_key=KEY, store_backend="memory", session_start_interval_s=0, session_start_jitter_s=0)
        self.app = create_app(cfg, stores=Stores.memory(), publisher=MemoryPublisher(), bridge=FakeBridge)
        self.runner = web.AppRunner(self.app, shutdown_timeout=1)
        self.run(self.runner.setup())
        self.run(web.TCPSite(self.runner, "127.0.0.1", 0).start())
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    @property
    def bridge(self) -> FakeBridge:
        b = self.app[MANAGER_KEY].bridge
        assert isinstance(b, FakeBridge)
        return b

    def emit(self, session: str, data: dict[str, Any]) -> None:
        self.run(self.bridge.emit("connection.update", session, data))

    def state(self, session: str) -> str | None:
        s = self.app[MANAGER_KEY].sessions.get(session)  # type: ignore[call-overload]
        return None if s is None else str(s.state.value)

    def stop(self) -> None:
        self.run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def served() -> Iterator[Served]:
    s = Served()
    yield s
    s.stop()


class Run(NamedTuple):
    code: int
    out: str
    err: str


def cli(served: Served, *argv: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    out, err = io.StringIO(), io.StringIO()
    environ = {"WA_RELAY_URL": served.url, "CONNECTOR_API_KEY": KEY} if env is None else env
    code = main(list(argv), environ, out=out, err=err, cwd=cwd or Path("/"))
    run = Run(code, out.getvalue(), err.getvalue())
    assert KEY not in run.out + run.err, "the key never appears in the output"
    return run


@contextmanager
def in_background(served: Served, *argv: str) -> Iterator[tuple[Future[Run], Callable[[], str]]]:
    """``cli(...)`` in a thread, with a reader of what it printed so far."""
    out = io.StringIO()

    def run() -> Run:
        err = io.StringIO()
        environ = {"WA_RELAY_URL": served.url, "CONNECTOR_API_KEY": KEY}
        code = main(list(argv), environ, out=out, err=err, cwd=Path("/"))
        return Run(code, out.getvalue(), err.getvalue())

    with ThreadPoolExecutor(1) as pool:
        yield pool.submit(run), out.getvalue


def wait_for(cond: Callable[[], object], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if cond():
            return
        threading.Event().wait(0.02)
    raise AssertionError("condition not met in time")


def open_session(served: Served, sid: str = "s1") -> None:
    assert cli(served, "sessions", "create", sid).code == 0
    wait_for(lambda: served.bridge.count("start") >= 1)
    served.emit(sid, OPEN)


# ---- sessions, send --------------------------------------------------------------------------------------------


def test_sessions_create_list_show_delete(served: Served) -> None:
    created = cli(served, "sessions", "create", "s1")
    assert created.code == 0 and "created session s1" in created.out and "wa-relay link s1" in created.out
    wait_for(lambda: served.bridge.count("start") >= 1)
    served.emit("s1", {"qr": QR})
    listed = cli(served, "sessions", "list")
    assert listed.out.splitlines()[0].split() == ["SESSION", "STATE", "PHONE", "LID", "RECEIVED", "SENT", "NOTE"]
    assert listed.out.splitlines()[1].split() == ["s1", "qr", "-", "-", "0", "0"]
    as_json = json.loads(cli(served, "sessions", "list", "--json").out)
    assert [(s["id"], s["state"]) for s in as_json] == [("s1", "qr")]
    shown = cli(served, "sessions", "show", "s1").out.splitlines()
    assert "state: qr" in shown and "qr: (shown by: wa-relay link s1)" in shown and "messages.sent: 0" in shown
    deleted = cli(served, "sessions", "delete", "s1")
    assert deleted.code == 0 and "deleted session s1" in deleted.out
    gone = cli(served, "sessions", "show", "s1")
    assert (gone.code, gone.out) == (1, "")
    assert gone.err == "wa-relay: no session s1 (404 session_not_found)\n"
    assert cli(served, "sessions", "list").out == "no sessions; link one with: wa-relay link NAME\n"


def test_an_existing_session_cannot_be_created_again(served: Served) -> None:
    cli(served, "sessions", "create", "s1")
    again = cli(served, "sessions", "create", "s1")
    assert again.code == 1 and again.err.startswith("wa-relay: ") and "(409 " in again.err
    assert len(again.err.splitlines()) == 1


def test_send_once_per_idempotency_key(served: Served) -> None:
    open_session(served)
    first = cli(served, "send", "s1", "+1 555 777 0001", "hello", "--idempotency-key", "order-1")
    again = cli(served, "send", "s1", "+1 555 777 0001", "hello", "--idempotency-key", "order-1")
    assert first.code == again.code == 0 and first.out == again.out and first.out.startswith("sent ")
    assert [s["to"] for s in served.bridge.sent] == ["15557770001@s.whatsapp.net"]
    as_json = cli(served, "send", "s1", "88887770001@lid", "hi", "--json")
    assert json.loads(as_json.out)["message_id"]
    assert served.bridge.sent[-1]["content"] == {"text": "hi"}


def test_send_from_a_session_that_is_not_open_says_why(served: Served) -> None:
    cli(served, "sessions", "create", "s1")
    refused = cli(served, "send", "s1", "88887770001@lid", "hi")
    assert refused.code == 1 and "(409 " in refused.err and served.bridge.sent == []


def test_logout_says_the_device_was_unlinked(served: Served) -> None:
    open_session(served)
    wait_for(lambda: served.state("s1") == "open")
    done = cli(served, "sessions", "logout", "s1")
    assert done.code == 0 and "unlinked on WhatsApp" in done.out
    assert served.bridge.count("logout") == 1
    assert cli(served, "sessions", "show", "s1").code == 1


# ---- where the URL and the key come from -----------------------------------------------------------------------


def test_a_wrong_key_is_refused_and_never_printed(served: Served) -> None:
    wrong = "wrong-key-0a1b2c3d4e5f"
    refused = cli(served, "sessions", "list", env={"WA_RELAY_URL": served.url, "CONNECTOR_API_KEY": wrong})
    assert refused.code == 1 and refused.out == ""
    assert "(401 unauthorized)" in refused.err and "the key from CONNECTOR_API_KEY" in refused.err
    assert wrong not in refused.err


def test_the_key_file_is_found_from_any_folder_of_the_checkout(served: Served, tmp_path: Path) -> None:
    repo = tmp_path / "outer" / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".data").mkdir()
    (repo / ".data" / "api-key").write_text(KEY + "\n")
    deep = repo / "connector" / "cli"
    deep.mkdir(parents=True)
    assert find_key_file(deep) == repo / ".data" / "api-key"
    assert cli(served, "sessions", "list", env={"WA_RELAY_URL": served.url}, cwd=deep).code == 0

    # Above the repository's root is another project: its key is not used.
    (tmp_path / "outer" / ".data").mkdir()
    (tmp_path / "outer" / ".data" / "api-key").write_text("someone-elses-key\n")
    (repo / ".data" / "api-key").unlink()
    missing = cli(served, "sessions", "list", env={"WA_RELAY_URL": served.url}, cwd=deep)
    assert missing.code == 11 and "no API key" in missing.err and "someone-elses-key" not in missing.err


def test_key_file_option_and_a_stale_key_file(served: Served, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    env = {"WA_RELAY_URL": served.url, "CONNECTOR_API_KEY": "ignored-when-a-file-is-given"}
    assert cli(served, "--key-file", str(key_file), "sessions", "list", env=env).code == 0
    assert cli(served, "sessions", "list", "--key-file", str(key_file), env=env).code == 0
    key_file.write_text("an-old-key-from-a-previous-run")
    stale = cli(served, "sessions", "list", "--key-file", str(key_file), env=env)
    assert stale.code == 1 and f"the key from {key_file}" in stale.err
    assert "an-old-key-from-a-previous-run" not in stale.err
    key_file.write_text("two words")
    assert cli(served, "sessions", "list", "--key-file", str(key_file), env=env).code == 11


def test_nothing_listening_suggests_make_up(served: Served) -> None:
    down = cli(served, "sessions", "list", env={"CONNECTOR_PORT": "1", "CONNECTOR_API_KEY": KEY})
    assert down.code == 1
    assert down.err.startswith("wa-relay: nothing answers at http://127.0.0.1:1 (connection refused)")
    assert "make up" in down.err


# ---- events ----------------------------------------------------------------------------------------------------


def test_events_replay_one_line_each_or_json(served: Served) -> None:
    cli(served, "sessions", "create", "s1")
    cli(served, "sessions", "create", "s2")
    wait_for(lambda: served.bridge.count("start") >= 2)
    served.emit("s1", {"qr": QR})
    lines = cli(served, "events", "--replay", "--max-s", "0", "--session", "s1").out.splitlines()
    assert [line.split()[1:3] for line in lines] == [
        ["s1", "session.created"],
        ["s1", "session.qr"],
        ["s1", "session.state"],
    ]
    assert lines[1].endswith("new QR, valid 60 s") and lines[2].endswith("starting -> qr")
    raw = [json.loads(line) for line in cli(served, "events", "--replay", "--max-s", "0", "--json").out.splitlines()]
    assert {e["session_id"] for e in raw} == {"s1", "s2"}
    assert next(e for e in raw if e["kind"] == "session.qr")["data"]["qr"] == QR


def test_events_follow_the_stream_until_max_s(served: Served) -> None:
    hub = served.app[EVENTS_KEY]
    with in_background(served, "events", "--max-s", "3") as (result, _):
        wait_for(lambda: hub._streams)  # subscribed: what happens from now on is streamed
        cli(served, "sessions", "create", "s1")
        wait_for(lambda: served.bridge.count("start") >= 1)
        served.emit("s1", OPEN)
        run = result.result(10)
    assert run.code == 0, run.err
    kinds = [line.split()[2] for line in run.out.splitlines()]
    assert kinds[0] == "session.created" and kinds[-1] == "session.state"
    assert run.out.splitlines()[-1].endswith("-> open as +15550001111")


# ---- link ------------------------------------------------------------------------------------------------------


def test_link_draws_each_qr_and_returns_once_open(served: Served) -> None:
    with in_background(served, "link", "s1", "--print-raw", "--timeout", "20") as (result, printed):
        wait_for(lambda: served.bridge.count("start") >= 1)
        served.emit("s1", {"qr": QR})
        wait_for(lambda: f"qr: {QR}" in printed())
        served.emit("s1", {"qr": "2@ref2,noise,identity,adv"})
        wait_for(lambda: "qr: 2@ref2" in printed())
        served.emit("s1", OPEN)
        run = result.result(10)
    assert run.code == 0, run.err
    assert "This QR is valid for 60 s" in run.out and "This QR is valid for 20 s" in run.out
    assert "█" in run.out and "\x1b[" not in run.out, "not a terminal: each QR printed, none erased"
    assert run.out.endswith("session s1 is open: linked to +15550001111\n")


def test_link_by_pairing_code(served: Served) -> None:
    with in_background(served, "link", "s1", "--phone", "+1 555 000 1111", "--timeout", "20") as (result, printed):
        wait_for(lambda: served.bridge.count("start") >= 1)
        served.emit("s1", {"qr": QR})
        wait_for(lambda: "pairing code: ABCD1234" in printed())
        served.emit("s1", OPEN)
        run = result.result(10)
    assert run.code == 0, run.err
    assert served.bridge.calls.count(("pairing", ("s1", "15550001111"))) == 1
    assert "█" not in run.out, "no QR when linking by code"


def test_link_fails_when_the_qr_window_ends(served: Served) -> None:
    with in_background(served, "link", "s1", "--timeout", "20") as (result, _):
        wait_for(lambda: served.bridge.count("start") >= 1)
        served.emit("s1", {"qr": QR})
        wait_for(lambda: served.state("s1") == "qr")
        served.emit("s1", close(408))
        run = result.result(10)
    assert run.code == 1
    assert run.err.startswith("wa-relay: session s1 stopped: pairing expired: the QR window ended before pairing")
    assert "`wa-relay link s1` starts over" in run.err


def test_link_starts_an_ended_session_over_and_an_open_one_is_done(served: Served) -> None:
    cli(served, "sessions", "create", "s1")
    wait_for(lambda: served.bridge.count("start") >= 1)
    served.emit("s1", {"qr": QR})
    served.emit("s1", close(408))
    wait_for(lambda: served.state("s1") == "stopped")
    with in_background(served, "link", "s1", "--timeout", "20") as (result, printed):
        wait_for(lambda: "created it again" in printed())
        wait_for(lambda: served.bridge.count("start") >= 2)
        served.emit("s1", OPEN)
        assert result.result(10).code == 0
    done = cli(served, "link", "s1")
    assert done.code == 0 and done.out.endswith("session s1 is open: linked to +15550001111\n")


def test_link_gives_up_after_the_timeout(served: Served) -> None:
    run = cli(served, "link", "s1", "--timeout", "1")
    assert run.code == 1 and "was not linked within 1 s" in run.err


def test_a_new_qr_replaces_the_last_on_a_terminal() -> None:
    out = io.StringIO()
    screen = QrScreen(out, tty=True, print_raw=False)
    screen.qr(QR, 60)
    first = out.getvalue()
    screen.qr("2@ref2,noise,identity,adv", 20)
    assert out.getvalue()[len(first) :].startswith(f"\x1b[{first.count(chr(10))}F\x1b[J")


# ---- the event stream parser -----------------------------------------------------------------------------------


def test_parser_follows_the_sse_rules() -> None:
    parser = Parser()
    lines = ["retry: 500", "", ": keep-alive", "id: 7", "event: session.qr", "data: {", "data:}", "", "event: reset"]
    events = [e for line in [*lines, "data: {}", ""] if (e := parser.feed(line)) is not None]
    assert events == [Event("session.qr", "{\n}", "7"), Event("reset", "{}", "7")]
    assert parser.retry_s == 0.5


def test_follow_reconnects_after_the_last_complete_event() -> None:
    class Done(Exception):
        pass

    plan: list[list[str] | Exception] = [
        ["retry: 1000", "", "id: 1", "data: a", "", "id: 2", "data: b"],  # ends inside event 2
        ConnectionError("connector restarting"),
        ["id: 2", "data: b", "", "id: 3", "data: c", ""],
    ]
    opened: list[str | None] = []
    slept: list[float] = []
    retried: list[float] = []

    def open_stream(last_id: str | None, left: float | None) -> Any:
        opened.append(last_id)
        step = plan.pop(0)
        if isinstance(step, Exception):
            raise step
        return nullcontext(iter(step))

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if not plan:
            raise Done

    seen: list[Event | Connected] = []
    stream = follow(open_stream, retry_on=(ConnectionError,), on_retry=lambda e, w: retried.append(w), sleep=sleep)
    with pytest.raises(Done):
        seen.extend(stream)
    assert opened == [None, "1", "1"], "event 2 was not finished: it is asked for again"
    assert seen == [
        Connected(True), Event("message", "a", "1"),
        Connected(False), Event("message", "b", "2"), Event("message", "c", "3"),
    ]  # fmt: skip
    assert slept == [1.0, 1.0, 1.0] and retried == [1.0]


def test_the_first_stream_failing_is_an_error_not_a_break() -> None:
    def open_stream(last_id: str | None, left: float | None) -> Any:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        next(follow(open_stream, retry_on=(ConnectionError,)))
