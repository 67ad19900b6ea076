"""What the core decides: a `Plan` of actions per record, carried out by a connector."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from adapter.model import RecordRef
from adapter.visibility import to_second


@dataclass(frozen=True)
class AssignOwner:
    owner_id: str
    rule: str


@dataclass(frozen=True)
class CreateTask:
    """A new task on the record. `source` is Baton's marker: the connector writes it on the task
    and, before creating, looks for an existing task with the same marker so a retried create
    never duplicates."""

    title: str
    due: datetime
    owner_id: str
    source: str
    body: str = ""
    priority: str = "MEDIUM"
    also_associate: tuple[RecordRef, ...] = ()


@dataclass(frozen=True)
class UpdateTask:
    """Reassign, re-date or complete one of Baton's own tasks (never a person's)."""

    task_id: str
    owner_id: str | None = None
    due: datetime | None = None
    completed: bool | None = None


@dataclass(frozen=True)
class SetFields:
    """Baton's visibility fields by neutral name; only values that changed are listed."""

    values: Mapping[str, Any]


@dataclass(frozen=True)
class LogTransfer:
    """An ownership transfer written back as a timestamped activity on the record."""

    from_owner: str
    to_owner: str
    at: datetime
    changed_by: str
    reason: str
    from_id: str | None = None
    to_id: str | None = None

    @property
    def source(self) -> str:
        """Baton's marker for this transfer: the same change always gets the same marker, so
        a transfer whose activity was written but whose record update was lost is not logged twice."""
        return f"baton:transfer:{to_second(self.at):%Y-%m-%dT%H:%M:%S}Z:{self.from_id or '-'}>{self.to_id or '-'}"

    @property
    def title(self) -> str:
        """Names only: the subject line of a task or note; the body carries the emails."""
        return f"Ownership transferred: {_name(self.from_owner)} → {_name(self.to_owner)}"

    @property
    def body(self) -> str:
        return (
            f"Ownership transferred: {self.from_owner} → {self.to_owner}\n"
            f"When: {self.at.isoformat()}\n"
            f"Changed by: {self.changed_by}\n"
            f"Why: {self.reason}\n"
            "Logged by Baton."
        )


def _name(label: str) -> str:
    return label.split(" <", 1)[0]


@dataclass(frozen=True)
class Schedule:
    """Look at the record again at `at` (a deadline: a task falls due, a status turns)."""

    at: datetime
    reason: str


Action = AssignOwner | CreateTask | UpdateTask | SetFields | LogTransfer | Schedule


@dataclass(frozen=True)
class Plan:
    ref: RecordRef
    status: str
    actions: tuple[Action, ...] = ()
    exceptions: tuple[str, ...] = field(default=())
    #: The status as found, before these actions; `status` is the one they leave behind.
    found: str = ""

    def __post_init__(self):
        if not self.found:
            object.__setattr__(self, "found", self.status)

    @property
    def writes(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if not isinstance(a, Schedule))

    @property
    def is_noop(self) -> bool:
        return not self.writes

    @property
    def next_check(self) -> datetime | None:
        times = [a.at for a in self.actions if isinstance(a, Schedule)]
        return min(times) if times else None

    def of(self, kind: type) -> list:
        return [a for a in self.actions if isinstance(a, kind)]

    def describe(self) -> list[str]:
        """Short human descriptions of the writes, for audits and logs."""
        out = []
        for action in self.writes:
            if isinstance(action, AssignOwner):
                out.append(f"assign owner {action.owner_id} ({action.rule})")
            elif isinstance(action, CreateTask):
                out.append(f"create task {action.title!r} due {action.due:%Y-%m-%d %H:%M} for {action.owner_id}")
            elif isinstance(action, UpdateTask):
                changes = []
                if action.owner_id:
                    changes.append(f"owner {action.owner_id}")
                if action.due:
                    changes.append(f"due {action.due:%Y-%m-%d %H:%M}")
                if action.completed:
                    changes.append("complete")
                out.append(f"update task {action.task_id}: {', '.join(changes)}")
            elif isinstance(action, SetFields):
                out.append("set " + ", ".join(sorted(action.values)))
            elif isinstance(action, LogTransfer):
                out.append(f"log transfer {action.from_owner} → {action.to_owner} at {action.at:%Y-%m-%d %H:%M}")
        return out
