"""Choosing a person for a record that has none (pure, given the rotation cursor).

First version: a round-robin pool of owners named by email, skipping anyone archived or
deactivated, with a fallback owner when nobody in the pool can take the record.
"""
from __future__ import annotations

import threading
from typing import Protocol

from adapter.model import Owner, OwnerDirectory, Snapshot


class RotationCursor(Protocol):
    """Hands out 0, 1, 2, ... per key. Redis-backed (INCR) for workers, in-process otherwise."""

    def next_index(self, key: str) -> int: ...


class InProcessCursor:
    """A cursor for one-shot commands (`baton audit --apply`) and tests."""

    def __init__(self):
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def next_index(self, key: str) -> int:
        with self._lock:
            value = self._counts.get(key, 0)
            self._counts[key] = value + 1
            return value


class RoundRobinRouter:
    """`router(snapshot) -> (owner_id, rule)` or None when nobody can take the record."""

    def __init__(self, pool: tuple[str, ...], fallback: str | None, directory: OwnerDirectory,
                 cursor: RotationCursor | None = None):
        self.pool = tuple(pool)
        self.fallback = fallback
        self.directory = directory
        self.cursor = cursor or InProcessCursor()

    def _person(self, email: str | None) -> Owner | None:
        owner = self.directory.by_email(email) if email else None
        return owner if owner and owner.is_active_person else None

    def __call__(self, snapshot: Snapshot) -> tuple[str, str] | None:
        candidates = [o for o in (self._person(e) for e in self.pool) if o is not None]
        if candidates:
            turn = self.cursor.next_index(f"{snapshot.ref.crm}:round_robin")
            chosen = candidates[turn % len(candidates)]
            return chosen.id, f"round robin ({len(candidates)} active in pool)"
        fallback = self._person(self.fallback)
        if fallback:
            return fallback.id, "fallback owner (nobody in the pool is active)"
        return None
