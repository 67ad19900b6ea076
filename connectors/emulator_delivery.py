"""The delivery thread both emulators use to push events at Baton (HubSpot's webhooks,
Salesforce's Outbound Messages): one background thread, one condition, flush and stop."""
from __future__ import annotations

import threading
import time


class BackgroundDelivery:
    """Subclasses implement `_run()` (the delivery loop, honouring `_stopping`) and
    `_busy()` (anything queued, waiting for a retry or on the wire), both under `_condition`."""

    thread_name = "emulator-delivery"

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def _start(self) -> None:
        """Start the thread once; call with `_condition` held."""
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        raise NotImplementedError

    def _busy(self) -> bool:
        raise NotImplementedError

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
