"""The exception report: every record that needs attention, as a table, CSV or JSON."""
from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import datetime
from typing import Iterable

from rich.console import Console
from rich.table import Table

from adapter.pipeline import RecordSummary
from adapter.reconcile import CLOSED, DUE_SOON, EXCEPTIONS, IGNORED, ON_TRACK

#: Exceptions first: the order of the report's rows and counts.
STATUS_ORDER = (*EXCEPTIONS, DUE_SOON, ON_TRACK, CLOSED, IGNORED)


def age(since: datetime | None, now: datetime) -> str:
    if since is None:
        return "-"
    seconds = (now - since).total_seconds()
    if seconds < 0:
        return "-"
    days, rest = divmod(int(seconds), 86400)
    return f"{days}d {rest // 3600}h" if days else f"{rest // 3600}h {rest % 3600 // 60}m"


def status_counts(records: Iterable[RecordSummary]) -> dict[str, int]:
    counts = Counter(r.status for r in records)
    return {status: counts[status] for status in STATUS_ORDER if counts[status]}


def as_json(records: Iterable[RecordSummary]) -> str:
    """One JSON object per line per record: id, object, status, owner, actions."""
    return "\n".join(json.dumps({
        "id": r.ref.id, "object": r.ref.object_type, "crm": r.ref.crm, "name": r.name, "status": r.status,
        "owner": r.owner, "since": r.since.isoformat() if r.since else None, "actions": list(r.actions),
    }) for r in records)


def as_csv(records: Iterable[RecordSummary], now: datetime) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["crm", "object", "id", "name", "status", "owner", "age", "actions"])
    for r in records:
        writer.writerow([r.ref.crm, r.ref.object_type, r.ref.id, r.name, r.status, r.owner, age(r.since, now),
                         "; ".join(r.actions)])
    return out.getvalue()


def exceptions_table(records: Iterable[RecordSummary], now: datetime, *, limit: int | None = 50) -> Table:
    rows = sorted((r for r in records if r.status in EXCEPTIONS or r.actions),
                  key=lambda r: (STATUS_ORDER.index(r.status) if r.status in STATUS_ORDER else 99, r.ref))
    table = Table(title=f"Exceptions and planned actions ({len(rows)} records)")
    for column in ("object", "id", "name", "status", "owner", "age"):
        table.add_column(column, no_wrap=True)
    table.add_column("planned actions", overflow="fold")
    for r in rows[:limit]:
        table.add_row(r.ref.object_type, r.ref.id, _clip(r.name, 28), r.status, _clip(r.owner.split(" <")[0], 18),
                      age(r.since, now), _brief(r.actions))
    if limit is not None and len(rows) > limit:
        table.caption = f"... and {len(rows) - limit} more (use --format csv or json for all)"
    return table


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _brief(actions: tuple[str, ...], shown: int = 3) -> str:
    """The planned actions, one short line each, for a terminal table."""
    lines = [_clip(a, 44) for a in actions[:shown]]
    if len(actions) > shown:
        lines.append(f"(+{len(actions) - shown} more)")
    return "\n".join(lines) or "-"


def counts_table(before: dict[str, int], after: dict[str, int] | None = None, title: str = "Records by status") -> Table:
    table = Table(title=title)
    table.add_column("status")
    table.add_column("before" if after is not None else "records", justify="right")
    if after is not None:
        table.add_column("after", justify="right")
    for status in STATUS_ORDER:
        if status in before or (after and status in after):
            row = [status, str(before.get(status, 0))]
            if after is not None:
                row.append(str(after.get(status, 0)))
            table.add_row(*row)
    return table


def render(console: Console, records: list[RecordSummary], now: datetime, fmt: str = "table") -> None:
    if fmt == "json":
        console.print(as_json(records), markup=False, highlight=False, soft_wrap=True)
    elif fmt == "csv":
        console.print(as_csv(records, now), markup=False, highlight=False, end="", soft_wrap=True)
    else:
        console.print(exceptions_table(records, now))
        console.print(counts_table(status_counts(records)))
