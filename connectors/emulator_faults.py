"""Injected faults, shared by both emulators (`emu.faults`): force a status, a body, headers
and/or a delay on chosen requests. Each emulator turns a fault into its own CRM's answer."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

__all__ = ["Fault", "FaultInjector"]


@dataclass
class Fault:
    """An answer to force on matching requests: a status (with an optional body and headers)
    and/or a delay. `status=None` with a `delay` only slows the request down (timeout tests)."""

    method: str | None  # None or "*": any method
    path: str | re.Pattern
    status: int | None = 500
    times: int | None = 1  # None: every matching request, until removed
    delay: float = 0.0
    body: object = None  # None: the emulator's default error body for `status`
    headers: dict[str, str] = field(default_factory=dict)
    hits: int = 0

    def matches(self, method: str, path: str, template: str) -> bool:
        if self.method and self.method != "*" and self.method.upper() != method:
            return False
        if isinstance(self.path, re.Pattern):
            return bool(self.path.fullmatch(path) or self.path.fullmatch(template))
        return fnmatchcase(path, self.path) or fnmatchcase(template, self.path)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


class FaultInjector:
    """Queue failures and slow answers for chosen endpoints.

    `path` is an exact path, a glob ("/crm/v3/objects/*/batch/*", "*/composite/sobjects"),
    a call-count template ("/crm/v3/objects/deals/{objectId}",
    "/services/data/vXX.X/query") or a compiled regex; it is tried against both the real
    path and its template. Faults are tried in the order they were added; each fires
    `times` times (None: until `remove`/`clear`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, method: str | None = None, path: str | re.Pattern = "*", status: int | None = 500,
            times: int | None = 1, delay: float = 0.0, body: object = None,
            headers: dict[str, str] | None = None) -> Fault:
        fault = Fault(method, path, status, times, delay, body, dict(headers or {}))
        with self._lock:
            self._faults.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        with self._lock:
            if fault in self._faults:
                self._faults.remove(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str, template: str) -> Fault | None:
        """The first live fault matching the request, counting the hit."""
        with self._lock:
            for fault in self._faults:
                if not fault.exhausted and fault.matches(method, path, template):
                    fault.hits += 1
                    return fault
        return None

    def __len__(self) -> int:
        with self._lock:
            return sum(not f.exhausted for f in self._faults)
