"""Traffic shaping for the emulator: HubSpot's rate limits, and the injected faults both
emulators share (`connectors/emulator_faults.py`)."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from connectors.emulator_faults import Fault, FaultInjector

__all__ = ["RateLimiter", "RateDecision", "Fault", "FaultInjector"]


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    headers: dict[str, str]
    policy: str | None = None  # TEN_SECONDLY_ROLLING or SECONDLY when refused
    retry_after_s: int = 0


class RateLimiter:
    """HubSpot's per-app limits: a rolling 10-second window for every call, plus the search
    API's own per-second limit. Refused calls do not use up the window, as in HubSpot."""

    WINDOW_S = 10.0
    SEARCH_WINDOW_S = 1.0

    def __init__(self, per_ten_seconds: int = 100, search_per_second: int = 5, daily: int = 250_000,
                 enabled: bool = True, clock: Callable[[], float] = time.monotonic):
        self.per_ten_seconds, self.search_per_second, self.daily = per_ten_seconds, search_per_second, daily
        self.enabled, self._clock = enabled, clock
        self._lock = threading.Lock()
        self._calls: deque[float] = deque()
        self._searches: deque[float] = deque()
        self._daily_used = 0

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._searches.clear()
            self._daily_used = 0

    @staticmethod
    def _expire(window: deque[float], now: float, span: float) -> None:
        while window and window[0] <= now - span:
            window.popleft()

    def _headers(self, remaining: int) -> dict[str, str]:
        return {
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(self.WINDOW_S * 1000)),
            "X-HubSpot-RateLimit-Max": str(self.per_ten_seconds),
            "X-HubSpot-RateLimit-Remaining": str(max(remaining, 0)),
            "X-HubSpot-RateLimit-Daily": str(self.daily),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(self.daily - self._daily_used, 0)),
        }

    def peek_headers(self) -> dict[str, str]:
        """The headers of the current window, without using it up (for answers never admitted)."""
        with self._lock:
            self._expire(self._calls, self._clock(), self.WINDOW_S)
            return self._headers(self.per_ten_seconds - len(self._calls))

    def admit(self, *, is_search: bool) -> RateDecision:
        with self._lock:
            now = self._clock()
            self._expire(self._calls, now, self.WINDOW_S)
            self._expire(self._searches, now, self.SEARCH_WINDOW_S)
            if self.enabled:
                if len(self._calls) >= self.per_ten_seconds:
                    wait = self._calls[0] + self.WINDOW_S - now
                    return RateDecision(False, self._headers(0), "TEN_SECONDLY_ROLLING", max(1, math.ceil(wait)))
                if is_search and len(self._searches) >= self.search_per_second:
                    wait = self._searches[0] + self.SEARCH_WINDOW_S - now
                    return RateDecision(False, self._headers(self.per_ten_seconds - len(self._calls)),
                                        "SECONDLY", max(1, math.ceil(wait)))
            self._calls.append(now)
            if is_search:
                self._searches.append(now)
            self._daily_used += 1
            return RateDecision(True, self._headers(self.per_ten_seconds - len(self._calls)))
