"""Which moves of a record's "Last activity date" were Baton's own.

HubSpot moves `notes_last_updated` whenever a note or task is logged on a record, Baton's
own transfer notes and prompts included. The reader skips reading a record's notes, emails
and calls when that date has not moved since Baton last read them; without this, every
transfer note Baton logs would cost the next reconcile of that record four association
reads and the reads of its engagements, for nothing.

So the writer stamps each record with when HubSpot stored the objects Baton created for it
(`createdAt` of the create response, epoch ms) in the hidden `baton_own_activity_stamps`
property, written with the record's fields (the commit point of a reconcile). The reader
looks at the date's history: when every move since Baton last read the record is one of
those stamps, nothing new was logged. Any other move — someone's note, even one logged in
the same second as Baton's — makes the record read as before. If HubSpot ever stamps the
date with something other than the object's creation time, no move matches and Baton simply
reads, as it would without stamps: the stamps only ever save reads, never skip one.

Stamps still ahead of the read watermark must survive the next write, which only knows the
objects it creates: `OwnActivityLedger` carries them from the load to the apply of the same
connector. A write with no load before it starts the list afresh, costing one read later.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterable

from adapter.model import RecordRef

#: How many stamps the property keeps, newest first: the ones since the last foreign activity.
KEEP = 50


def encode_stamps(stamps: Iterable[int]) -> str:
    """Epoch-millisecond stamps -> the property value (the newest `KEEP`)."""
    return ",".join(str(ms) for ms in sorted(set(stamps))[-KEEP:])


def decode_stamps(value: str | None) -> frozenset[int]:
    """The property value -> stamps; anything unreadable is left out (a missing stamp only
    costs a read of the record's activities)."""
    return frozenset(int(part) for part in (value or "").split(",") if part.strip().isdigit())


class OwnActivityLedger:
    """Per record, the stamps the last load found still ahead of Baton's read watermark.

    Bounded (oldest records forgotten first) so a long-running worker does not grow."""

    def __init__(self, limit: int = 20_000):
        self._limit = limit
        self._stamps: OrderedDict[RecordRef, frozenset[int]] = OrderedDict()

    def remember(self, ref: RecordRef, stamps: Iterable[int]) -> None:
        self._stamps[ref] = frozenset(stamps)
        self._stamps.move_to_end(ref)
        while len(self._stamps) > self._limit:
            self._stamps.popitem(last=False)

    def carried(self, ref: RecordRef) -> frozenset[int]:
        return self._stamps.get(ref, frozenset())
