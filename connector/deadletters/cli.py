"""``wa-relay-dlq`` / ``python -m connector.deadletters``: list, show, redrive and delete dead letters.

Exit codes: 0 done; 1 something selected could not be done (an entry skipped or failed, an id not found, AWS
unreachable); 2 bad usage; 11 invalid configuration (as the connector).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aioboto3  # type: ignore[import-untyped]
from botocore.config import Config as BotoConfig  # type: ignore[import-untyped]

from connector.aws import describe_error, open_client
from connector.contracts import DEAD_LETTER_REASON
from connector.deadletters import commands
from connector.deadletters.entries import SOURCES, DeadLetter, Selection, Source, parse_duration, same_id
from connector.deadletters.sources import (
    WAIT_S,
    DeadLetterSource,
    QueueSource,
    SpoolSource,
    max_receive_count,
)
from connector.errors import ConfigError
from connector.resources import INBOUND_QUEUE, OUTBOUND_QUEUE, QueueSpec

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_CONFIG = 11
DEFAULT_LIMIT = 1000
DEFAULT_SPOOL_DIR = Path(".data/spool")
"""The connector's own default (``SPOOL_DIR``), relative to where it runs."""


@dataclass(frozen=True)
class ToolConfig:
    """The connector's own variables the tool needs (``connector/config.py``, ``connector/resources.py``); not the
    connector's ``Config``, which would ask for ``CONNECTOR_API_KEY`` and everything else a running connector needs.
    A queue URL left unset is looked up by the queue's default name (``wa-relay-inbound.fifo`` …)."""

    urls: Mapping[str, str] = field(default_factory=dict)
    """``{INBOUND_QUEUE_URL: url, INBOUND_QUEUE_DLQ_URL: url, …}``: the ones set."""
    spool_dir: Path = DEFAULT_SPOOL_DIR
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = None
    dedup_ttl_s: int = 86400

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ToolConfig:
        def get(name: str) -> str | None:
            value = environ.get(name, "").strip()
            return value or None

        names = [env for spec in (INBOUND_QUEUE, OUTBOUND_QUEUE) for env in (spec.env, spec.dlq_env)]
        raw_ttl = get("DEDUP_TTL_S") or "86400"
        try:
            dedup_ttl_s = int(raw_ttl)
        except ValueError:
            raise ConfigError(f"DEDUP_TTL_S: not a number: {raw_ttl!r}") from None
        return cls(
            urls={name: value for name in names if (value := get(name))},
            spool_dir=Path(get("SPOOL_DIR") or DEFAULT_SPOOL_DIR),
            aws_region=get("AWS_REGION") or get("AWS_DEFAULT_REGION") or "us-east-1",
            aws_endpoint_url=get("AWS_ENDPOINT_URL"),
            dedup_ttl_s=dedup_ttl_s,
        )


# ---- arguments ----------------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--queue",
        action="append",
        choices=SOURCES,
        help="where to look: the inbound or outbound DLQ, or the spool's rejected entries (repeatable; default all)",
    )
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, help=f"entries to read per source at most (default {DEFAULT_LIMIT})"
    )
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--session", action="append", default=[], help="session id (repeatable)")
    filters.add_argument(
        "--chat", action="append", default=[], help="chat jid in any form, or a bare phone number (repeatable)"
    )
    filters.add_argument(
        "--reason", action="append", default=[], help="reason, or its first word (redrive, malformed …; repeatable)"
    )
    filters.add_argument("--older-than", type=_duration, help="only entries older than this (90s, 15m, 2h, 3d)")
    filters.add_argument("--newer-than", type=_duration, help="only entries at most this old")
    dry_run = argparse.ArgumentParser(add_help=False)
    dry_run.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")

    top = argparse.ArgumentParser(
        prog="wa-relay-dlq",
        description="List, show, redrive and delete wa-relay's dead letters: the inbound and outbound DLQs and the "
        "spool's rejected entries. Settings come from the connector's variables (INBOUND_QUEUE_URL, "
        "INBOUND_QUEUE_DLQ_URL, OUTBOUND_QUEUE_URL, OUTBOUND_QUEUE_DLQ_URL, SPOOL_DIR, AWS_REGION, AWS_ENDPOINT_URL, "
        "DEDUP_TTL_S).",
    )
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("list", parents=[common, filters], help="one line per dead letter (no message text)")
    show = sub.add_parser("show", parents=[common], help="everything about the given entries, body included")
    show.add_argument("ids", nargs="+", metavar="ID", help="entry id (or a prefix of at least 8 characters)")
    redrive = sub.add_parser(
        "redrive", parents=[common, filters, dry_run], help="put entries back on their queue (answered at most once)"
    )
    redrive.add_argument("ids", nargs="*", metavar="ID", help="entry ids (default: every entry the filters select)")
    redrive.add_argument("--all", action="store_true", help="redrive every entry (required without ids or filters)")
    delete = sub.add_parser("delete", parents=[common, dry_run], help="remove the given entries for good")
    delete.add_argument("ids", nargs="+", metavar="ID", help="entry id (or a prefix of at least 8 characters)")
    return top


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def selection_of(args: argparse.Namespace) -> Selection:
    return Selection(
        ids=frozenset(getattr(args, "ids", None) or ()),
        sessions=frozenset(getattr(args, "session", None) or ()),
        chats=frozenset(getattr(args, "chat", None) or ()),
        reasons=frozenset(getattr(args, "reason", None) or ()),
        older_than_s=getattr(args, "older_than", None),
        newer_than_s=getattr(args, "newer_than", None),
    )


# ---- running ------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One command's sources, opened from the configuration: an SQS client only when an SQS queue is needed."""

    cfg: ToolConfig
    stack: AsyncExitStack
    session: Any = None
    wait_s: int = WAIT_S
    _client: Any = None

    async def client(self) -> Any:
        if self._client is None:
            session = self.session or aioboto3.Session()
            self._client, stack = await open_client(
                session,
                "sqs",
                region=self.cfg.aws_region,
                endpoint_url=self.cfg.aws_endpoint_url,
                config=BotoConfig(
                    connect_timeout=5, read_timeout=WAIT_S + 15, retries={"mode": "standard", "total_max_attempts": 3}
                ),
            )
            self.stack.push_async_callback(stack.aclose)
        return self._client

    async def url(self, spec: QueueSpec, dlq: bool) -> str:
        env, name = (spec.dlq_env, spec.dlq_name) if dlq else (spec.env, spec.name)
        if env in self.cfg.urls:
            return self.cfg.urls[env]
        client = await self.client()
        try:
            return str((await client.get_queue_url(QueueName=name))["QueueUrl"])
        except Exception as e:
            raise ConfigError(f"{env} is not set and the queue {name} was not found ({describe_error(e)})") from None

    async def sources(self, names: Sequence[Source], *, sending: bool) -> list[DeadLetterSource]:
        """``sending``: the command puts entries back, so the queues they go to are needed too."""
        out: list[DeadLetterSource] = []
        for name in names:
            if name == "spool":
                if sending:
                    out.append(
                        SpoolSource(self.cfg.spool_dir, await self.client(), await self.url(INBOUND_QUEUE, False))
                    )
                else:
                    out.append(SpoolSource(self.cfg.spool_dir))
                continue
            spec = INBOUND_QUEUE if name == "inbound" else OUTBOUND_QUEUE
            client = await self.client()
            source_url = await self.url(spec, False)
            out.append(
                QueueSource(
                    client,
                    name,
                    await self.url(spec, True),
                    source_url,
                    redrive_receives=await max_receive_count(client, source_url, spec.max_receive_count),
                    wait_s=self.wait_s,
                )
            )
        return out


async def run(
    args: argparse.Namespace, cfg: ToolConfig, out: TextIO, err: TextIO, *, session: Any = None, wait_s: int = WAIT_S
) -> int:
    now = time.time()
    selection = selection_of(args)
    names: list[Source] = list(dict.fromkeys(args.queue or SOURCES))
    async with AsyncExitStack() as stack:
        opened = Run(cfg, stack, session=session, wait_s=wait_s)
        sending = args.command == "redrive" and not args.dry_run
        sources = await opened.sources(names, sending=sending)
        if args.command in ("list", "show"):
            entries, notes = await commands.gather(sources, selection, limit=args.limit, now=now)
            missing = [i for i in selection.ids if not any(_named(i, e) for e in entries)]
            if args.command == "list":
                print_list(entries, now, out, as_json=args.json)
            else:
                print_show(entries, now, out, as_json=args.json)
            for note in notes + [f"not found: {i}" for i in missing]:
                print(note, file=err)
            return EXIT_INCOMPLETE if missing else EXIT_OK
        if args.command == "redrive":
            outcomes, notes = await commands.redrive(
                sources, selection, limit=args.limit, now=now, dry_run=args.dry_run, dedup_ttl_s=cfg.dedup_ttl_s
            )
        else:
            outcomes, notes = await commands.delete(sources, selection, limit=args.limit, now=now, dry_run=args.dry_run)
        missing = [i for i in selection.ids if not any(_named(i, o.entry) for o in outcomes)]
        print_outcomes(outcomes, out, as_json=args.json, dry_run=args.dry_run)
        for note in notes + [f"not found: {i}" for i in missing]:
            print(note, file=err)
        incomplete = missing or any(o.status in ("skipped", "failed") for o in outcomes)
        return EXIT_INCOMPLETE if incomplete else EXIT_OK


def _named(wanted: str, entry: DeadLetter) -> bool:
    return same_id(wanted, entry.id)


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    session: Any = None,
    wait_s: int = WAIT_S,
) -> int:
    """``session``/``wait_s``: an aioboto3 session and the receives' long poll (tests shorten it)."""
    out, err = out or sys.stdout, err or sys.stderr
    args = parser().parse_args(argv)
    if args.command == "redrive" and not (args.all or args.ids or not selection_of(args).everything):
        print("wa-relay-dlq redrive: give entry ids, a filter (--session, --chat, …) or --all", file=err)
        return 2
    if args.limit < 1:
        print("wa-relay-dlq: --limit must be at least 1", file=err)
        return 2
    try:
        cfg = ToolConfig.from_env(os.environ if environ is None else environ)
        return asyncio.run(run(args, cfg, out, err, session=session, wait_s=wait_s))
    except ConfigError as e:
        print(f"wa-relay-dlq: {e}", file=err)
        return EXIT_CONFIG
    except Exception as e:  # AWS unreachable, access denied …: say what, not a stack trace
        print(f"wa-relay-dlq: {describe_error(e)}", file=err)
        return EXIT_INCOMPLETE


# ---- output -------------------------------------------------------------------------------------------------------


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def print_list(entries: Sequence[DeadLetter], now: float, out: TextIO, *, as_json: bool) -> None:
    if as_json:
        json.dump([e.summary(now) for e in entries], out, indent=2)
        out.write("\n")
        return
    rows = [("SOURCE", "ID", "AGE", "REASON", "SESSION", "CHAT", "REDRIVE")]
    for e in entries:
        reason = e.reason if not e.detail or e.reason == e.detail else f"{e.reason} ({e.detail})"
        rows.append(
            (e.source, e.id, age_text(e.age_s(now)), _clip(reason, 60), e.session or "-", e.chat or "-",
             "yes" if e.problem is None else "no")
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")
    by_source = {name: sum(e.source == name for e in entries) for name in SOURCES}
    out.write(f"{len(entries)} dead letters ({', '.join(f'{k} {v}' for k, v in by_source.items())})\n")


def print_show(entries: Sequence[DeadLetter], now: float, out: TextIO, *, as_json: bool) -> None:
    if as_json:
        json.dump([e.full(now) for e in entries], out, indent=2, ensure_ascii=False)
        out.write("\n")
        return
    for e in entries:
        full = e.full(now)
        body = full.pop("body")
        out.write(f"== {e.source} {e.id}\n")
        for key, value in full.items():
            if value not in (None, "", [], {}):
                out.write(
                    f"{key}: {json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value}\n"
                )
        try:
            pretty = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
        except ValueError:
            pretty = body
        out.write(f"body:\n{pretty}\n\n")


def print_outcomes(outcomes: Sequence[commands.Outcome], out: TextIO, *, as_json: bool, dry_run: bool) -> None:
    if as_json:
        json.dump(
            {
                "dry_run": dry_run,
                "outcomes": [
                    {
                        "source": o.entry.source,
                        "id": o.entry.id,
                        "status": o.status,
                        "why": o.why,
                        "target": o.target,
                        "event_id": o.entry.event_id,
                        "reply_id": o.entry.reply_id,
                        DEAD_LETTER_REASON: o.entry.reason,
                        "notes": list(o.notes),
                    }
                    for o in outcomes
                ],
            },
            out,
            indent=2,
        )
        out.write("\n")
        return
    for o in outcomes:
        where = f" -> {o.target}.fifo" if o.target and o.status in ("redriven", "would redrive") else ""
        why = f": {o.why}" if o.why else ""
        out.write(f"{o.status:<13} {o.entry.source:<8} {o.entry.id}{where}{why}\n")
        for note in o.notes:
            out.write(f"{'':<14}note: {note}\n")
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in counts.items()) or "nothing selected"
    out.write(f"{summary}{' (dry run: nothing changed)' if dry_run else ''}\n")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


if __name__ == "__main__":
    sys.exit(main())
