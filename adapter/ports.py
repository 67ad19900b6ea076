"""The port the core talks to: what every CRM connector provides.

The core never imports a connector; `connectors.get_connector(name, settings)` returns an
object satisfying `Connector`, wired in `adapter/cli.py` or `webhooks/app.py`.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterator, Mapping, Protocol, Sequence, runtime_checkable

from adapter.actions import Plan
from adapter.model import OwnerDirectory, RecordRef, Snapshot


@dataclass(frozen=True)
class Failure:
    """One record whose work did not go through. `retriable` failures are retried by the
    queue; the others are kept for `baton retry-failed` with their reason."""

    ref: RecordRef
    reason: str
    retriable: bool = False


@dataclass
class LoadResult:
    snapshots: list[Snapshot] = field(default_factory=list)
    missing: list[RecordRef] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


@dataclass
class ApplyResult:
    applied: list[RecordRef] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    def merge(self, other: "ApplyResult") -> "ApplyResult":
        self.applied.extend(other.applied)
        self.failures.extend(other.failures)
        return self


@dataclass
class InstallReport:
    """What `install` did; `created`/`updated` empty means the CRM already matched."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)


@dataclass(frozen=True)
class ScannedRecord:
    ref: RecordRef
    modified_at: datetime | None


@runtime_checkable
class Connector(Protocol):
    """Everything Baton needs from one CRM account. Every method batches its calls."""

    #: Registry name, also the `crm` of every RecordRef this connector produces.
    name: str
    #: Neutral object types this CRM has, e.g. ("deal", "contact", "company", "ticket").
    object_types: tuple[str, ...]
    #: Records per load/apply batch. The connector splits it into API calls of the size its
    #: CRM takes (HubSpot 100, Salesforce 200); a larger batch lets it pool partial calls.
    batch_size: int

    def owners(self) -> OwnerDirectory:
        """Every owner, active and departed, and queues where the CRM has them (cached)."""

    def load(self, refs: Sequence[RecordRef]) -> LoadResult:
        """Current state of the records: fields, owner history, tasks, recent activities."""

    def stored_due(self, due: datetime) -> datetime:
        """The due time a task created with `due` reads back as (Salesforce keeps only a date),
        so the core plans with what the CRM will hold and a second pass changes nothing."""

    def records_for(self, activity_refs: Sequence[RecordRef]) -> list[RecordRef]:
        """The records that tasks, notes, emails or calls (refs of those types) belong to."""

    def apply(self, plans: Sequence[Plan]) -> ApplyResult:
        """Carry out the plans' writes in batches; one record's failure never loses another's."""

    def scan(self, object_type: str, since: datetime | None = None) -> Iterator[ScannedRecord]:
        """Open records of a type (modified since `since` when given), however many there are."""

    def install(self, manifest: Mapping[str, Any], *, dry_run: bool = False) -> InstallReport:
        """Create Baton's fields from the manifest; a second run changes nothing."""

    @property
    def calls(self) -> Counter:
        """API calls made so far, by endpoint."""
