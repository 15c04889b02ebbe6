"""``wa-relay link ID``: link a WhatsApp account to a session from the terminal, by QR or by pairing code.

It follows the event stream (``GET /v1/events``) rather than polling: the stream is opened first and the session read
(or created) after, so no change falls between the two; after every reconnect the session is read again. The QR is
drawn again each time WhatsApp rotates it; on a terminal the new one replaces the old in place.

Decisions written down here:
- A session that does not exist is created. One that ended in ``logged_out`` or ``stopped`` (the QR window closed
  before pairing) is created again when ``link`` starts: asking to link it says to start over. One that ends so while
  ``link`` waits is a failure, with the connector's reason.
- With ``--phone`` the pairing code is requested once the QR window is open (the connector refuses it before), and
  only once: WhatsApp keeps one code valid for the rest of the window.
- ``open`` is success (exit 0); ``logged_out``, ``conflict``, ``stopped``, the session deleted, or the time running out
  are failures (exit 1). Either way the session stays as it is: Ctrl-C or a timeout stops waiting, not the session.
"""

from __future__ import annotations

import io
import json
import time
from contextlib import closing
from typing import Any, TextIO
from urllib.parse import quote

import segno

from connector.cli.client import ApiError, Client, CliError, Unreachable
from connector.cli.sse import Connected, follow

ENDED = {
    "logged_out": "was logged out",
    "conflict": "is in conflict: another client took the account over",
    "stopped": "stopped",
}
"""States a session does not leave by itself, and how the failure says it."""
RESTARTABLE = frozenset({"logged_out", "stopped"})
"""Ended states that ``POST /v1/sessions`` starts over (the connector refuses it while creds are still held)."""
HOW_TO_SCAN = "On the phone: WhatsApp > Settings > Linked devices > Link a device, then scan this QR."
HOW_TO_TYPE = "On the phone: WhatsApp > Settings > Linked devices > Link a device > Link with phone number instead."


class LinkFailed(CliError):
    pass


def session_path(sid: str) -> str:
    return f"/v1/sessions/{quote(sid, safe='')}"


def events_path(max_s: float | None) -> str:
    return "/v1/events" if max_s is None else f"/v1/events?max_s={max(0, int(max_s + 0.999))}"


def on_retry(err: TextIO) -> Any:
    def report(e: Exception, wait: float) -> None:
        err.write(f"wa-relay: {e}; reconnecting in {wait:.0f} s\n")
        err.flush()

    return report


class QrScreen:
    """Where the QR and the progress lines go. On a terminal a new QR first erases what was written since the last
    one (cursor up, clear to the end), so the screen shows the current QR only; elsewhere everything is appended."""

    def __init__(self, out: TextIO, *, tty: bool, print_raw: bool) -> None:
        self.out, self.tty, self.print_raw = out, tty, print_raw
        self._lines = 0
        try:  # half blocks draw two rows of modules per line; without them segno draws with ANSI colours
            "▀▄█".encode(getattr(out, "encoding", None) or "utf-8")
            self.blocks = True
        except (UnicodeEncodeError, LookupError):
            self.blocks = False

    def say(self, text: str) -> None:
        self._write(text + "\n")

    def qr(self, qr: str, valid_s: int | None) -> None:
        if self.tty and self._lines:
            self.out.write(f"\x1b[{self._lines}F\x1b[J")
            self._lines = 0
        drawing = io.StringIO()
        segno.make(qr).terminal(out=drawing, compact=self.blocks, border=2)
        if valid_s is not None:
            until = time.strftime("%H:%M:%S", time.localtime(time.time() + valid_s))
            validity = f"This QR is valid for {valid_s} s (until {until}); a new one follows until the window ends."
        else:
            validity = "WhatsApp rotates the QR; the newest is shown here."
        raw = f"qr: {qr}\n" if self.print_raw else ""
        self._write(f"{drawing.getvalue()}{HOW_TO_SCAN}\n{validity}\n{raw}")

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()
        self._lines += text.count("\n")


class Link:
    def __init__(self, client: Client, sid: str, screen: QrScreen, *, phone: str | None) -> None:
        self.client, self.sid, self.screen, self.phone = client, sid, screen, phone
        self.code: str | None = None
        self.state: str | None = None

    def run(self, timeout: float, err: TextIO) -> str:
        """Waits until the session is open; its phone number. ``LinkFailed`` when it cannot be."""
        how = f"a pairing code for {self.phone}" if self.phone else "a QR"
        self.screen.say(f"Linking session {self.sid} with {how} (waiting up to {timeout:.0f} s; Ctrl-C stops waiting).")
        deadline = time.monotonic() + timeout
        stream = follow(
            lambda last_id, left: self.client.stream(events_path(left), last_id=last_id),
            deadline=deadline,
            retry_on=(Unreachable,),
            on_retry=on_retry(err),
        )
        with closing(stream):
            for item in stream:
                if isinstance(item, Connected):
                    done = self._look(first=item.first)
                elif item.event == "reset":
                    done = self._look(first=False)
                else:
                    done = self._on_event(json.loads(item.data))
                if done is not None:
                    return done
        raise LinkFailed(
            f"session {self.sid} was not linked within {timeout:.0f} s (it is {self.state or 'unknown'}); it is left "
            f"as it is: `wa-relay sessions show {self.sid}`"
        )

    def _look(self, *, first: bool) -> str | None:
        """Read the session (create it at the start when it is missing or ended) and act on what it says."""
        try:
            session = self.client.call("GET", session_path(self.sid))
        except ApiError as e:
            if e.status != 404:
                raise
            if not first:
                raise LinkFailed(f"session {self.sid} was deleted while linking") from None
            session = self._create()
        if first and session["state"] in RESTARTABLE:
            try:
                fresh = self._create()
            except ApiError as e:
                if e.status != 409:  # 409: still holds creds (another connector owns it …): fails below with why
                    raise
            else:
                self.screen.say(f"Session {self.sid} was {session['state']}: created it again.")
                session = fresh
        if session.get("qr") and not self.phone:
            self.screen.qr(session["qr"], None)
        return self._on_state(session["state"], session)

    def _create(self) -> Any:
        return self.client.call("POST", "/v1/sessions", {"session_id": self.sid})

    def _on_event(self, event: dict[str, Any]) -> str | None:
        if event.get("session_id") != self.sid:
            return None
        kind, data = event.get("kind"), event.get("data") or {}
        if kind == "session.deleted":
            raise LinkFailed(f"session {self.sid} was deleted while linking")
        if kind == "session.qr" and data.get("qr"):
            if not self.phone:
                self.screen.qr(data["qr"], data.get("valid_s"))
            elif self.code is None:
                self._request_code()
        if "state" in data:
            return self._on_state(data["state"], data)
        return None

    def _on_state(self, state: str, data: dict[str, Any]) -> str | None:
        changed, self.state = state != self.state, state
        if state == "open":
            me = data.get("me") or {}
            return str(me.get("pn") or me.get("lid") or "")
        if state in ENDED:
            why = (data.get("last_error") or {}).get("message")
            again = f"; `wa-relay link {self.sid}` starts over" if state in RESTARTABLE else ""
            raise LinkFailed(f"session {self.sid} {ENDED[state]}{f': {why}' if why else ''}{again}")
        if state == "qr" and self.phone and self.code is None:
            self._request_code()
        elif changed and state not in ("qr", "pairing_code"):
            self.screen.say(f"Session {self.sid} is {state}...")
        return None

    def _request_code(self) -> None:
        assert self.phone is not None
        try:
            body = self.client.call("POST", f"{session_path(self.sid)}/pairing-code", {"phone": self.phone})
        except ApiError as e:
            if e.status == 409:  # the window closed or is not open yet: asked again on the next qr state
                return
            raise
        self.code = str(body["code"])
        self.screen.say(f"pairing code: {self.code}\n{HOW_TO_TYPE}\nThen type the code there.")
