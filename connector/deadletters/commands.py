"""What the commands do over any mix of sources: gather (``list``/``show``), redrive, delete. No output here."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Literal

from connector.deadletters.entries import DeadLetter, Outgoing, Selection, Target, plan_redrive, same_id
from connector.deadletters.sources import DeadLetterSource

Status = Literal["redriven", "would redrive", "skipped", "failed", "deleted", "would delete"]


@dataclass(frozen=True)
class Outcome:
    entry: DeadLetter
    status: Status
    why: str | None = None
    target: Target | None = None
    notes: tuple[str, ...] = ()


def _all_found(selection: Selection, found: Sequence[DeadLetter]) -> bool:
    """Whether every id asked for matched an entry (a scan for ids stops there)."""
    return bool(selection.ids) and all(any(same_id(wanted, e.id) for e in found) for wanted in selection.ids)


def truncation_note(source: DeadLetterSource, limit: int) -> str:
    return f"{source.name}: stopped after {limit} entries (--limit); there may be more"


async def _selected(
    sources: Sequence[DeadLetterSource], selection: Selection, *, limit: int, now: float, notes: list[str]
) -> AsyncGenerator[tuple[DeadLetterSource, list[DeadLetter]], None]:
    """The selected entries of every source, batch by batch, for the caller to act on before the next batch is read.
    Each source is closed after its scan, a scan cut short by ``limit`` adds a note, and a scan for ids stops once
    all of them were seen."""
    found: list[DeadLetter] = []
    for source in sources:
        try:
            async with aclosing(source.batches(limit)) as batches:
                async for batch in batches:
                    chosen = [e for e in batch if selection.matches(e, now)]
                    yield source, chosen
                    found.extend(chosen)
                    if _all_found(selection, found):
                        break
        finally:
            await source.close()
        if source.truncated:
            notes.append(truncation_note(source, limit))


async def gather(
    sources: Sequence[DeadLetterSource], selection: Selection, *, limit: int, now: float
) -> tuple[list[DeadLetter], list[str]]:
    """The selected entries of every source, and notes on what a scan could not see."""
    found: list[DeadLetter] = []
    notes: list[str] = []
    async with aclosing(_selected(sources, selection, limit=limit, now=now, notes=notes)) as scan:
        async for _, chosen in scan:
            found.extend(chosen)
    return found, notes


async def redrive(
    sources: Sequence[DeadLetterSource],
    selection: Selection,
    *,
    limit: int,
    now: float,
    dry_run: bool,
    dedup_ttl_s: float,
) -> tuple[list[Outcome], list[str]]:
    """Put every selected entry that can be put back on its queue: send the copy first, take the entry out only
    once the copy was accepted. Entries that cannot be put back stay where they are, with why."""
    outcomes: list[Outcome] = []
    notes: list[str] = []
    async with aclosing(_selected(sources, selection, limit=limit, now=now, notes=notes)) as scan:
        async for source, chosen in scan:
            copies: list[Outgoing] = []
            for entry in chosen:
                plan = plan_redrive(entry)
                if isinstance(plan, str):
                    outcomes.append(Outcome(entry, "skipped", plan))
                else:
                    copies.append(plan)
            if dry_run:
                outcomes.extend(
                    Outcome(c.entry, "would redrive", target=c.target, notes=_notes(c, now, dedup_ttl_s))
                    for c in copies
                )
            else:
                outcomes.extend(await _put_back(source, copies, now, dedup_ttl_s))
    return outcomes, notes


async def _put_back(source: DeadLetterSource, copies: list[Outgoing], now: float, dedup_ttl_s: float) -> list[Outcome]:
    not_sent = await source.put_back(copies) if copies else {}
    sent = [c for c in copies if c.entry.id not in not_sent]
    not_taken_out = await source.take_out([c.entry for c in sent]) if sent else {}
    outcomes = []
    for copy in copies:
        entry_id = copy.entry.id
        if entry_id in not_sent:
            outcomes.append(Outcome(copy.entry, "failed", not_sent[entry_id], copy.target))
            continue
        notes = _notes(copy, now, dedup_ttl_s)
        if entry_id in not_taken_out:
            notes += (
                f"put back, but still in {source.name} ({not_taken_out[entry_id]}); redriving it again sends the "
                "same copy, which is answered at most once",
            )
        outcomes.append(Outcome(copy.entry, "redriven", target=copy.target, notes=notes))
    return outcomes


def _notes(copy: Outgoing, now: float, dedup_ttl_s: float) -> tuple[str, ...]:
    age = copy.entry.age_s(now)
    if copy.target == "inbound" and age is not None and age > dedup_ttl_s:
        return (
            f"received {age / 3600:.1f} h ago, longer than DEDUP_TTL_S: if it was answered after all, the function "
            "no longer remembers and answers it again",
        )
    return ()


async def delete(
    sources: Sequence[DeadLetterSource], selection: Selection, *, limit: int, now: float, dry_run: bool
) -> tuple[list[Outcome], list[str]]:
    """Take the selected entries out for good (only by id: the caller makes sure ``selection.ids`` is set)."""
    if not selection.ids:
        raise ValueError("delete works on explicit ids only")
    outcomes: list[Outcome] = []
    notes: list[str] = []
    async with aclosing(_selected(sources, selection, limit=limit, now=now, notes=notes)) as scan:
        async for source, chosen in scan:
            if dry_run:
                outcomes.extend(Outcome(e, "would delete") for e in chosen)
                continue
            failed = await source.take_out(chosen) if chosen else {}
            outcomes.extend(
                Outcome(e, "failed", failed[e.id]) if e.id in failed else Outcome(e, "deleted") for e in chosen
            )
    return outcomes, notes
