"""The ``wa-relay`` command: arguments, the connector it talks to, and exit codes.

Exit codes: 0 done; 1 the connector refused or could not be reached, or ``link`` ended without the session open; 2 bad
usage; 11 no usable URL or key (as the connector with an invalid configuration); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from connector.cli import commands
from connector.cli.client import Client, CliError
from connector.cli.target import DEFAULT_PORT, TargetError, resolve

EXIT_FAILED = 1
EXIT_CONFIG = 11
EXIT_INTERRUPTED = 130
LINK_TIMEOUT_S = 300.0
"""Longer than WhatsApp's QR window (about 160 s: a first QR for 60 s, then five more for 20 s each), so by default
``link`` reports how the window ended rather than giving up before it does."""

Command = Callable[[Client, argparse.Namespace, TextIO, TextIO], int]


def _plain(run: Callable[[Client, argparse.Namespace, TextIO], int]) -> Command:
    return lambda client, args, out, err: run(client, args, out)


COMMANDS: dict[str, Command] = {
    "sessions list": _plain(commands.sessions_list),
    "sessions create": _plain(commands.sessions_create),
    "sessions show": _plain(commands.sessions_show),
    "sessions logout": _plain(commands.sessions_logout),
    "sessions delete": _plain(commands.sessions_delete),
    "link": commands.link,
    "send": _plain(commands.send),
    "events": commands.events,
}


def parser() -> argparse.ArgumentParser:
    # The connection options are accepted before the command and after it; a leaf's default must not overwrite a
    # value given before the command, hence SUPPRESS there.
    def connection(p: argparse.ArgumentParser, default: str | None) -> None:
        p.add_argument(
            "--url",
            default=default,
            help=f"the connector (default: WA_RELAY_URL, else http://127.0.0.1:${{CONNECTOR_PORT:-{DEFAULT_PORT}}})",
        )
        p.add_argument(
            "--key-file",
            default=default,
            metavar="PATH",
            help="a file holding the API key (default: CONNECTOR_API_KEY, else .data/api-key in this folder or the "
            "nearest one above it within the checkout)",
        )

    common = argparse.ArgumentParser(add_help=False)
    connection(common, argparse.SUPPRESS)
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print the API's JSON answer")

    top = argparse.ArgumentParser(
        prog="wa-relay",
        description="Manage wa-relay's WhatsApp sessions from the terminal through the connector's HTTP API: list and "
        "create sessions, link a phone by QR or pairing code, send a message, watch events.",
        epilog="Run `make up` first for a local relay; this tool then finds its URL and key by itself. "
        "`wa-relay COMMAND --help` tells more about each command.",
    )
    connection(top, None)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sessions = sub.add_parser("sessions", help="list, create, show, log out or delete sessions")
    verbs = sessions.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs.add_parser("list", parents=[common, as_json], help="every session with its state, account and counts")
    for verb, text in (
        ("create", "create a session (it starts and shows a QR; `wa-relay link` shows it to you)"),
        ("show", "everything the connector says about one session"),
        ("logout", "unlink the device on WhatsApp (when connected) and wipe the session"),
        ("delete", "wipe the session; the device stays listed on the phone until removed there"),
    ):
        verbs.add_parser(verb, parents=[common, as_json], help=text, description=text).add_argument(
            "id", metavar="ID", help="the session's name"
        )

    link = sub.add_parser(
        "link",
        parents=[common],
        help="link a phone to a session by QR (or pairing code); returns once it is open",
        description="Create the session if needed and link a WhatsApp account to it: scan the QR drawn here (it is "
        "redrawn as WhatsApp rotates it), or with --phone type the pairing code shown here on the phone. Exits 0 "
        "once the session is open, 1 if the QR window ends, the session is logged out, or --timeout passes.",
    )
    link.add_argument("id", metavar="ID", help="the session's name (created if it does not exist)")
    link.add_argument("--phone", metavar="NUMBER", help="link by pairing code for this number (with country code)")
    link.add_argument(
        "--timeout", type=float, default=LINK_TIMEOUT_S, metavar="S", help="give up after S seconds (default 300)"
    )
    link.add_argument("--print-raw", action="store_true", help="also print each QR's raw text (qr: ...), for scripts")

    send = sub.add_parser(
        "send", parents=[common, as_json], help="send a text message from a session", description="Send a text."
    )
    send.add_argument("id", metavar="ID", help="the session that sends")
    send.add_argument(
        "to", metavar="TO", help="a phone number with country code, or a jid (...@s.whatsapp.net, ...@lid)"
    )
    send.add_argument("text", metavar="TEXT", help="the message (- reads it from standard input)")
    send.add_argument(
        "--idempotency-key", metavar="KEY", help="send at most once per key: a retry with the same key sends nothing"
    )

    events = sub.add_parser(
        "events",
        parents=[common],
        help="follow session and message events as they happen",
        description="Print the connector's events (state changes, QRs, messages received and sent, receipts), one line "
        "each, until Ctrl-C. Reconnects by itself, resuming where it stopped.",
    )
    events.add_argument("--session", action="append", metavar="ID", help="only this session's events (repeatable)")
    events.add_argument("--json", action="store_true", help="each event as one line of JSON")
    events.add_argument("--max-s", type=float, metavar="S", help="stop after S seconds")
    events.add_argument("--replay", action="store_true", help="first print the recent events the connector holds")
    return top


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    cwd: Path | None = None,
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    args = parser().parse_args(argv)
    name = " ".join(filter(None, (args.command, getattr(args, "verb", None))))
    key = ""
    try:
        target = resolve(args.url, args.key_file, os.environ if environ is None else environ, cwd or Path.cwd())
        key = target.key
        client = Client(target.url, target.key, key_source=target.key_source)
        return COMMANDS[name](client, args, out, err)
    except TargetError as e:
        return _fail(err, str(e), key, EXIT_CONFIG)
    except CliError as e:
        return _fail(err, str(e), key, EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail(err, "interrupted", key, EXIT_INTERRUPTED)


def _fail(err: TextIO, message: str, key: str, code: int) -> int:
    if key:  # never expected in a message; checked anyway, as a message may quote what a server answered
        message = message.replace(key, "[the API key]")
    err.write(f"wa-relay: {message}\n")
    err.flush()
    return code
