"""The delivery thread both emulators use to push events at Baton (HubSpot's webhooks,
Salesforce's Outbound Messages): one background thread, one condition, flush and stop."""
from __future__ import annotations

import threading
import time
from typing import Any


class BackgroundDelivery:
    """The thread takes one piece of work at a time, posts it and settles it. Subclasses implement
    `_wait_for_work()` (block on `_condition` until something is due; None once `_stopping`),
    `_deliver(work)` (post it, outside the lock; True if acknowledged), `_settle(work, delivered)`
    (count it or schedule a retry) and `_queued()` (anything queued or waiting for a retry);
    all but `_deliver` run under `_condition`."""

    thread_name = "emulator-delivery"

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._in_flight = 0  # work taken by the thread and not yet settled

    def _start(self) -> None:
        """Start the thread once; call with `_condition` held."""
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._condition:
                work = self._wait_for_work()
                if work is None:
                    return
                self._in_flight += 1
            delivered = False
            try:
                delivered = self._deliver(work)
            finally:
                with self._condition:
                    self._in_flight -= 1
                    self._settle(work, delivered)
                    self._condition.notify_all()

    def _wait_for_work(self) -> Any:
        raise NotImplementedError

    def _deliver(self, work: Any) -> bool:
        raise NotImplementedError

    def _settle(self, work: Any, delivered: bool) -> None:
        raise NotImplementedError

    def _queued(self) -> bool:
        raise NotImplementedError

    def _busy(self) -> bool:
        return bool(self._in_flight) or self._queued()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued was delivered or given up; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._busy():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(min(remaining, 0.05))
        return True

    def stop(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
