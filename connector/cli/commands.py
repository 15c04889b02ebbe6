"""What each command asks the connector and how it prints the answer. ``--json`` prints the API's own JSON (one
value, or one event per line) for scripts; without it, lines for people. Every command returns its exit code."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from contextlib import closing
from typing import Any, TextIO

from connector.cli.client import Client, Unreachable
from connector.cli.link import Link, QrScreen, events_path, on_retry, session_path
from connector.cli.sse import Connected, follow

EXIT_OK = 0


def sessions_list(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    sessions = client.call("GET", "/v1/sessions")
    if args.json:
        return _dump(sessions, out)
    if not sessions:
        out.write("no sessions; link one with: wa-relay link NAME\n")
        return EXIT_OK
    rows = [("SESSION", "STATE", "PHONE", "LID", "RECEIVED", "SENT", "NOTE")]
    for s in sessions:
        me, counts = s.get("me") or {}, s.get("messages") or {}
        rows.append(
            (s["id"], s["state"], _phone(me.get("pn")), _user(me.get("lid")), str(counts.get("received", "-")),
             str(counts.get("sent", "-")), _note(s))
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")
    return EXIT_OK


def sessions_create(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    session = client.call("POST", "/v1/sessions", {"session_id": args.id})
    if args.json:
        return _dump(session, out)
    out.write(f"created session {session['id']} ({session['state']}); link a phone with: wa-relay link {args.id}\n")
    return EXIT_OK


def sessions_show(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    session = client.call("GET", session_path(args.id))
    if args.json:
        return _dump(session, out)
    for name, value in _flat(session):
        if name == "qr":
            value = f"(shown by: wa-relay link {args.id})"
        elif name in TIMES and isinstance(value, int | float):
            value = f"{value} ({_local(value)})"
        out.write(f"{name}: {'-' if value is None else value}\n")
    return EXIT_OK


def sessions_logout(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    body = client.call("POST", f"{session_path(args.id)}/logout")
    if args.json:
        return _dump(body, out)
    if body.get("unlinked"):
        out.write(f"logged out session {args.id}: the device was unlinked on WhatsApp and its keys wiped\n")
    else:
        out.write(
            f"logged out session {args.id}: its keys are wiped, but it was not connected, so remove the device "
            "under Linked devices on the phone\n"
        )
    return EXIT_OK


def sessions_delete(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    body = client.call("DELETE", session_path(args.id))
    if args.json:
        return _dump(body, out)
    out.write(
        f"deleted session {args.id}: its keys are wiped; the device stays listed under Linked devices on the "
        "phone until removed there (`wa-relay sessions logout` unlinks it too)\n"
    )
    return EXIT_OK


def send(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else None
    body = client.call("POST", f"{session_path(args.id)}/messages", {"to": args.to, "text": text}, headers=headers)
    if args.json:
        return _dump(body, out)
    out.write(f"sent {body['message_id']}\n")
    return EXIT_OK


def link(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    screen = QrScreen(out, tty=out.isatty(), print_raw=args.print_raw)
    account = Link(client, args.id, screen, phone=args.phone).run(args.timeout, err)
    screen.say(f"session {args.id} is open: linked to {_phone(account) if '@s.' in account else account or '?'}")
    return EXIT_OK


def events(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Until Ctrl-C, or ``--max-s`` seconds. ``--replay`` starts with what the connector still holds (its ids start
    at 1, so replaying after 0 is everything)."""
    wanted = set(args.session or ())
    stream = follow(
        lambda last_id, left: client.stream(events_path(left), last_id=last_id),
        deadline=None if args.max_s is None else time.monotonic() + args.max_s,
        after="0" if args.replay else None,
        retry_on=(Unreachable,),
        on_retry=on_retry(err),
    )
    with closing(stream):
        for item in stream:
            if isinstance(item, Connected):
                continue
            if item.event == "reset":
                err.write("wa-relay: some events were missed (the connector no longer holds them)\n")
                continue
            _print_event(json.loads(item.data), item.data, args.json, wanted, out)
    return EXIT_OK


def _print_event(event: dict[str, Any], raw: str, as_json: bool, wanted: set[str], out: TextIO) -> None:
    if wanted and event.get("session_id") not in wanted:
        return
    if as_json:
        out.write(raw + "\n")
    else:
        at = time.strftime("%H:%M:%S", time.localtime(event.get("at", 0) / 1000))
        kind = str(event.get("kind"))
        summary = SUMMARIES.get(kind, _compact)(event.get("data") or {})
        out.write(f"{at}  {event.get('session_id', '-'):<10}  {kind:<18}  {summary}".rstrip() + "\n")
    out.flush()


# ---- formatting ---------------------------------------------------------------------------------------------------


def _state_change(data: dict[str, Any]) -> str:
    text = f"{data.get('previous') or '-'} -> {data.get('state')}"
    if data.get("state") == "open" and (pn := (data.get("me") or {}).get("pn")):
        text += f" as {_phone(pn)}"
    if error := (data.get("last_error") or {}).get("message"):
        text += f": {error}"
    return text


SUMMARIES: dict[str, Callable[[dict[str, Any]], str]] = {
    "session.created": lambda d: f"state {d.get('state')}",
    "session.deleted": lambda d: "",
    "session.state": _state_change,
    "session.logged_out": _state_change,
    "session.conflict": _state_change,
    "session.qr": lambda d: f"new QR, valid {d.get('valid_s')} s",
    "session.stale": lambda d: f"stale since {_local(d['since'] / 1000)}" if d.get("stale") else "no longer stale",
    "message.received": lambda d: f"{d.get('count')} received (total {d.get('total')})",
    "message.sent": lambda d: f"{d.get('message_id')} to {d.get('to')} (total {d.get('total')})",
    "message.delivered": lambda d: f"{d.get('message_id')} to {d.get('to')}",
    "message.read": lambda d: f"{d.get('message_id')} to {d.get('to')}",
}
"""One line of text per event kind (``connector.contracts.RelayEventKind``); a kind added later prints its data."""

TIMES = frozenset({"last_message_at", "held_until", "stale_since", "last_error.at", "owner.until"})
"""Fields of a session that are Unix seconds."""


def _compact(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _flat(value: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name, item in value.items():
        if isinstance(item, dict):
            out.extend(_flat(item, f"{prefix}{name}."))
        else:
            out.append((f"{prefix}{name}", item))
    return out


def _user(jid: str | None) -> str:
    """The user part of a jid, without the device: ``15550001111:5@s.whatsapp.net`` → ``15550001111``."""
    return jid.split("@", 1)[0].split(":", 1)[0] if jid else "-"


def _phone(jid: str | None) -> str:
    return f"+{_user(jid)}" if jid else "-"


def _note(session: dict[str, Any]) -> str:
    if session.get("stale"):
        return "stale: WhatsApp stopped delivering"
    if session.get("owner"):
        return f"owned by connector {session['owner'].get('id')}"
    if session.get("state") != "open" and (error := (session.get("last_error") or {}).get("message")):
        return _clip(str(error), 60)
    return ""


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _local(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def _dump(body: Any, out: TextIO) -> int:
    json.dump(body, out, indent=2, ensure_ascii=False)
    out.write("\n")
    return EXIT_OK
