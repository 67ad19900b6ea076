"""The CRM-neutral picture of a record that the core reasons about.

Connectors translate a CRM's objects into these types and back; nothing here knows which
CRM a value came from, except as data (`RecordRef.crm`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping

#: Prefix of every marker Baton writes on the tasks it creates, so it can recognise them
#: again (idempotent creates, "the prompt does not count as a next action").
SOURCE_PREFIX = "baton:"
PROMPT_SOURCE = "baton:prompt"


def commitment_source(activity_id: str, index: int) -> str:
    return f"baton:commitment:{activity_id}:{index}"


def confirm_source(activity_id: str) -> str:
    return f"baton:confirm:{activity_id}"


def stored_marker(source: str, ref: "RecordRef") -> str:
    """What a connector writes on a Baton task: its source and the record it was made for."""
    return f"{source}|{ref.key}"


def read_marker(raw: str | None, ref: "RecordRef") -> tuple[str | None, bool]:
    """(source, foreign) back from a stored marker, as seen from the record `ref`."""
    if not raw:
        return None, False
    source, _, key = raw.partition("|")
    return source or None, bool(key) and key != ref.key


@dataclass(frozen=True, order=True)
class RecordRef:
    """Identifies one record: which CRM, which neutral object type, which id."""

    crm: str
    object_type: str
    id: str

    @property
    def key(self) -> str:
        return f"{self.crm}:{self.object_type}:{self.id}"

    @classmethod
    def parse(cls, key: str) -> "RecordRef":
        crm, object_type, record_id = key.split(":", 2)
        if not (crm and object_type and record_id):
            raise ValueError(f"not a record key: {key!r}")
        return cls(crm, object_type, record_id)

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True)
class Owner:
    """A person or a queue that can own records.

    `active` is False for archived HubSpot owners and deactivated Salesforce users: they
    cannot hold a record any more.
    """

    id: str
    name: str
    email: str | None = None
    active: bool = True
    is_queue: bool = False

    @property
    def label(self) -> str:
        return f"{self.name} <{self.email}>" if self.email else self.name

    @property
    def is_active_person(self) -> bool:
        """Someone who can be given a record or a task now: not departed, not a queue."""
        return self.active and not self.is_queue


class OwnerDirectory:
    """The owners of one CRM account, looked up by id or email."""

    def __init__(self, owners: Iterable[Owner] = ()):
        self._by_id: dict[str, Owner] = {}
        self._by_email: dict[str, Owner] = {}
        for owner in owners:
            self._by_id[owner.id] = owner
            if owner.email:
                # Several users may share an email across archived duplicates: prefer active.
                known = self._by_email.get(owner.email.lower())
                if known is None or (owner.active and not known.active):
                    self._by_email[owner.email.lower()] = owner

    def get(self, owner_id: str | None) -> Owner | None:
        return self._by_id.get(owner_id) if owner_id else None

    def by_email(self, email: str) -> Owner | None:
        return self._by_email.get(email.lower())

    def by_name(self, name: str) -> Owner | None:
        """Find an active person by first name or full name (for "Maria will call them")."""
        wanted = name.strip().lower()
        matches = [o for o in self.people() if o.name.lower() == wanted or o.name.lower().split(" ")[0] == wanted]
        return matches[0] if len(matches) == 1 else None

    def label(self, owner_id: str | None) -> str:
        if not owner_id:
            return "(no owner)"
        owner = self.get(owner_id)
        return owner.label if owner else f"(unknown owner {owner_id})"

    def people(self) -> list[Owner]:
        return [o for o in self._by_id.values() if o.is_active_person]

    def __iter__(self):
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)


@dataclass(frozen=True)
class Task:
    """A task associated with a record. `source` is Baton's marker, None for people's tasks."""

    id: str
    title: str
    due: datetime | None
    owner_id: str | None
    completed: bool = False
    source: str | None = None
    body: str = ""
    completed_at: datetime | None = None
    #: Baton created this task for another record and linked it here too (a deal's
    #: commitment shown on its contact): it is not this record's next action.
    foreign: bool = False

    @property
    def is_prompt(self) -> bool:
        return self.source == PROMPT_SOURCE

    @property
    def is_batons(self) -> bool:
        return bool(self.source and self.source.startswith(SOURCE_PREFIX))


@dataclass(frozen=True)
class OwnerChange:
    """One entry of a record's owner history: who held it from `at`, and who made the change."""

    owner_id: str | None
    at: datetime
    changed_by: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class Activity:
    """A note, email or call logged on a record.

    `direction` is "note" for a rep's own note, "outbound" for mail or calls to the customer,
    "inbound" for the customer's mail or calls.
    """

    id: str
    kind: str
    at: datetime
    body: str
    direction: str = "note"
    author_owner_id: str | None = None
    is_html: bool = False
    url: str | None = None
    #: Baton's marker when Baton itself wrote this activity (a transfer note): never mined.
    source: str | None = None
    #: When the CRM stored it. `at` is when it happened and may be earlier: a backdated note,
    #: an email that synced late. "Read up to" watermarks compare this, not `at`.
    logged_at: datetime | None = None

    @property
    def stored_at(self) -> datetime:
        return self.logged_at or self.at


@dataclass(frozen=True)
class Snapshot:
    """Everything the core needs to decide about one record, as the CRM holds it now.

    `fields` holds Baton's visibility fields by neutral name, parsed to Python values
    (datetime, int, bool, str) or None when empty.
    """

    ref: RecordRef
    name: str
    owner_id: str | None
    is_closed: bool = False
    stage: str | None = None
    created_at: datetime | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    tasks: tuple[Task, ...] = ()
    owner_history: tuple[OwnerChange, ...] = ()
    owner_history_tracked: bool = True
    activities: tuple[Activity, ...] = ()
    related: tuple[RecordRef, ...] = ()
    url: str | None = None
    #: A time on the CRM's own clock, no later than this load, up to which every note, email
    #: and call of the record was loaded (or known not to exist); None when unknown.
    activities_known_at: datetime | None = None

    def field(self, name: str) -> Any:
        return self.fields.get(name)


@dataclass(frozen=True)
class Event:
    """A webhook or sweep hint normalised across CRMs: "look at this record again".

    `key` de-duplicates deliveries of the same event; `raw` keeps the CRM's own payload.
    """

    crm: str
    object_type: str
    object_id: str
    kind: str
    occurred_at: datetime | None = None
    key: str = ""
    property_name: str | None = None
    property_value: str | None = None
    change_source: str | None = None
    source_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def ref(self) -> RecordRef:
        return RecordRef(self.crm, self.object_type, self.object_id)
