"""A rate limiter shared by every process that talks to one HubSpot app, through Redis.

HubSpot's burst limit (e.g. 190 calls per rolling 10 s) belongs to the app, not to a worker
process. An in-process `RateLimiter` per worker can only be given a fixed share of it, so a
busy worker stalls on its share while the others idle. `SharedRateLimiter` keeps one rolling
window for all of them: a sorted set of the last window's call stamps, checked and appended
in one Lua script (so two processes never both take the last slot).

Stamps come from Redis' own clock (`TIME`), so workers on several machines agree on the
window; tests inject a clock instead. If Redis cannot be reached the limiter paces through
its in-process fallback until Redis answers again (a HubSpot 429 is still retried by the
transport), so a Redis blip never stops HubSpot calls.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from typing import Callable

from redis.exceptions import RedisError

log = logging.getLogger(__name__)

#: How long to keep using the in-process fallback after Redis failed, before trying Redis again.
RETRY_REDIS_AFTER = 30.0

# KEYS[1]: the window's sorted set. ARGV: limit, window (µs), now (µs; "" = Redis' clock), member.
# Returns 0 when a slot was taken (the stamp is recorded), else the µs until the oldest stamp
# leaves the window. Same rule as `RateLimiter`: at most `limit` stamps in any `window`.
_ACQUIRE = r"""
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, math.ceil(tonumber(oldest[2]) + window - now))
"""


def limiter_key(prefix: str, *, portal_id: str | None, app_id: str | None, token: str | None, name: str) -> str:
    """`{prefix}:ratelimit:hubspot:{portal}:{app}:{name}`; without ids, a hash of the token
    (never the token itself): one budget per app and portal, whatever process asks."""
    if portal_id or app_id:
        scope = f"{portal_id or '-'}:{app_id or '-'}"
    else:
        scope = "token-" + hashlib.sha256((token or "").encode()).hexdigest()[:16]
    return f"{prefix}:ratelimit:hubspot:{scope}:{name}"


class SharedRateLimiter:
    """At most `limit` acquisitions in any `window` seconds across every instance sharing `key`."""

    def __init__(self, redis, key: str, limit: int, window: float, *, fallback=None,
                 clock: Callable[[], float] | None = None, sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic):
        if limit < 1:
            raise ValueError("a rate limit needs at least one call per window")
        self.redis, self.key, self.limit, self.window = redis, key, limit, window
        self.fallback = fallback
        self._clock, self._sleep, self._monotonic = clock, sleep, monotonic
        self._script = redis.register_script(_ACQUIRE)
        self._member = uuid.uuid4().hex[:12]
        self._count = 0
        self._lock = threading.Lock()
        self._redis_down_until = 0.0

    def try_acquire(self) -> float:
        """Take a slot if one is free (return 0.0), else return the seconds to wait for one."""
        with self._lock:
            self._count += 1
            member = f"{self._member}:{self._count}"
        now = "" if self._clock is None else str(int(self._clock() * 1_000_000))
        wait_us = self._script(keys=[self.key], args=[self.limit, int(self.window * 1_000_000), now, member])
        return int(wait_us) / 1_000_000

    def acquire(self) -> float:
        """Wait for a slot; return how long we waited."""
        waited = 0.0
        while True:
            if self.fallback is not None and self._monotonic() < self._redis_down_until:
                return waited + self.fallback.acquire()
            try:
                delay = self.try_acquire()
            except RedisError as exc:
                if self.fallback is None:
                    raise
                log.warning("shared HubSpot rate limit unavailable (%s): pacing this process alone for %.0f s",
                            exc, RETRY_REDIS_AFTER)
                self._redis_down_until = self._monotonic() + RETRY_REDIS_AFTER
                continue
            if delay <= 0:
                return waited
            self._sleep(delay)
            waited += delay
