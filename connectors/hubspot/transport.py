"""The HTTP layer under hubspot-api-client: pacing, retries, error classes and call counts.

hubspot-api-client builds one generated `ApiClient` per API class, each with its own urllib3
`PoolManager`. `Transport.api_factory` (the client's documented `api_factory` hook) builds
each API once per connector and points its REST client at this transport, so every request
of every API passes through `Transport.request`:

* it waits for a slot in the app's rolling 10-second budget (and search's per-second one),
  so a large run rarely meets a 429 at all;
* it counts the call by endpoint and by status;
* it retries what is safe to retry: 429 always (HubSpot did not process the request),
  connection failures before the request was sent, and 5xx/timeouts for anything but a
  create. A create whose outcome is unknown raises `OutcomeUnknown` instead, and the
  connector looks for its markers before creating again (see `writer.py`);
* it turns what is left into Baton's errors: `RetriableCrmError`, `DailyLimitReached` or
  `HubSpotApiError` (a `FatalCrmError` carrying HubSpot's error body).

Retries are written here rather than delegated to urllib3's `Retry`: `Retry` cannot read
the 429 body (`policyName` DAILY must not be retried), does not pace its retries through
the budget, hides the attempts from the call counts, and cannot tell "not sent" from
"outcome unknown" per endpoint.
"""
from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections import Counter, deque
from datetime import datetime, timedelta, tzinfo, timezone
from typing import Any, Callable
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError

from adapter.errors import FatalCrmError, RetriableCrmError

log = logging.getLogger(__name__)

_ID_SEGMENT = re.compile(r"^\d+$")
_CREATE_PATH = re.compile(r"^/crm/v3/objects/[^/]+(/batch/create)?$")


class HubSpotApiError(FatalCrmError):
    """HubSpot refused the request (4xx other than 429). `body` is HubSpot's parsed error."""

    def __init__(self, message: str, *, body: dict | None = None, **kwargs):
        self.body = body or {}
        super().__init__(message, **kwargs)

    @property
    def ids(self) -> list[str]:
        """The object ids HubSpot names in the error's context, if any."""
        context = self.body.get("context") or {}
        return [str(i) for i in context.get("ids") or context.get("id") or ()]


class OutcomeUnknown(RetriableCrmError):
    """A create was sent but no answer says whether HubSpot carried it out (5xx, timeout, reset)."""


class DailyLimitReached(RetriableCrmError):
    """The portal's daily API allowance is spent: nothing succeeds until it resets."""


def endpoint_key(method: str, url: str) -> str:
    """ "POST https://api.hubapi.com/crm/v3/objects/deals/123?x=1" -> "POST /crm/v3/objects/deals/{id}"."""
    path = urlsplit(url).path
    segments = ["{id}" if _ID_SEGMENT.match(s) else s for s in path.split("/")]
    return f"{method.upper()} {'/'.join(segments)}"


def is_create(method: str, url: str) -> bool:
    """Creates are the requests a blind retry could duplicate."""
    return method.upper() == "POST" and bool(_CREATE_PATH.match(urlsplit(url).path))


def is_search(url: str) -> bool:
    return urlsplit(url).path.endswith("/search")


class RateLimiter:
    """A rolling-window budget: at most `limit` acquisitions in any `window` seconds."""

    def __init__(self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if limit < 1:
            raise ValueError("a rate limit needs at least one call per window")
        self.limit, self.window = limit, window
        self._clock, self._sleep = clock, sleep
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for a slot; return how long we waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                while self._stamps and self._stamps[0] <= now - self.window:
                    self._stamps.popleft()
                if len(self._stamps) < self.limit:
                    self._stamps.append(now)
                    return waited
                delay = self._stamps[0] + self.window - now
            self._sleep(delay)
            waited += delay


class Transport:
    """Every HubSpot request of one connector: paced, retried, counted, classified."""

    def __init__(self, *, calls_per_10s: int = 100, searches_per_second: int = 5,
                 max_attempts: int = 5, backoff: float = 0.5, max_backoff: float = 30.0,
                 timeout: urllib3.Timeout | None = None, portal_timezone: tzinfo = timezone.utc,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 pool: urllib3.PoolManager | None = None, limiter=None, search_limiter=None):
        # `limiter` / `search_limiter`: anything with `acquire()` and `window`, e.g. a
        # `pacing.SharedRateLimiter` that all worker processes share; by default this process's own.
        self.limiter = limiter or RateLimiter(calls_per_10s, 10.0, clock=clock, sleep=sleep)
        self.search_limiter = search_limiter or RateLimiter(searches_per_second, 1.0, clock=clock, sleep=sleep)
        self.max_attempts, self.backoff, self.max_backoff = max_attempts, backoff, max_backoff
        self.timeout = timeout or urllib3.Timeout(connect=5.0, read=60.0)
        self.portal_timezone = portal_timezone
        self._sleep = sleep
        self._pool = pool or urllib3.PoolManager(num_pools=4, maxsize=4, retries=False)
        self._apis: dict[tuple[str, str], Any] = {}
        self.calls: Counter = Counter()
        self.statuses: Counter = Counter()

    # -- hubspot-api-client wiring ---------------------------------------------------------
    def api_factory(self, package, api_name: str, config: dict):
        """`HubSpot(api_factory=...)`: one API object per class, all requests through `request`."""
        key = (package.__name__, api_name)
        api = self._apis.get(key)
        if api is None:
            configuration = package.Configuration()
            for name, value in config.items():
                if name == "access_token":
                    configuration.access_token = value
                elif name == "host":
                    configuration.host = value.rstrip("/")
            api_client = package.ApiClient(configuration=configuration)
            api_client.user_agent = "baton-crm hubspot-api-client-python"
            # The REST client's only collaborator is a PoolManager-like `request(...)`.
            api_client.rest_client.pool_manager = self
            api = self._apis[key] = getattr(package, api_name)(api_client=api_client)
        return api

    # -- the PoolManager interface the generated REST clients call -------------------------
    def request(self, method: str, url: str, *, body=None, fields=None, headers=None,
                preload_content: bool = True, timeout=None, **kwargs) -> urllib3.BaseHTTPResponse:
        endpoint = endpoint_key(method, url)
        create = is_create(method, url)
        searching = is_search(url)
        last_error: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            self.limiter.acquire()
            if searching:
                self.search_limiter.acquire()
            self.calls[endpoint] += 1
            try:
                response = self._pool.request(method, url, body=body, fields=fields, headers=headers,
                                              preload_content=True, timeout=timeout or self.timeout,
                                              retries=False, **kwargs)
            except (NewConnectionError, ConnectTimeoutError) as exc:
                # Never reached HubSpot: safe to send again, create or not.
                self.statuses["connect-error"] += 1
                last_error = exc
                delay = self._backoff(attempt)
            except HTTPError as exc:
                # Sent; the answer was lost (read timeout, reset, protocol error).
                self.statuses["no-response"] += 1
                if create:
                    raise OutcomeUnknown(f"{endpoint}: no response ({type(exc).__name__})",
                                         endpoint=endpoint) from exc
                last_error = exc
                delay = self._backoff(attempt)
            else:
                self.statuses[response.status] += 1
                if response.status < 400:
                    return response
                last_error = self._error(endpoint, response, create)
                if isinstance(last_error, (HubSpotApiError, DailyLimitReached, OutcomeUnknown)):
                    raise last_error
                delay = self._delay(attempt, response)
            if attempt < self.max_attempts:
                log.info("HubSpot %s failed (%s); retry %d/%d in %.1fs", endpoint,
                         _describe(last_error), attempt, self.max_attempts - 1, delay)
                self._sleep(delay)
        retry_after = getattr(last_error, "retry_after", None)
        raise RetriableCrmError(f"{endpoint}: gave up after {self.max_attempts} attempts "
                                f"({_describe(last_error)})", retry_after=retry_after,
                                status=getattr(last_error, "status", None), endpoint=endpoint)

    # -- classification ----------------------------------------------------------------------
    def _error(self, endpoint: str, response, create: bool) -> Exception:
        body = _json(response.data)
        message = body.get("message") or response.reason or "no message"
        status = response.status
        if status == 429:
            policy = body.get("policyName")
            if policy == "DAILY":
                return DailyLimitReached(
                    f"{endpoint}: HubSpot's daily API limit is spent ({message})",
                    retry_after=self.seconds_until_reset(), status=status, endpoint=endpoint)
            return RetriableCrmError(f"{endpoint}: rate limited ({policy or 'no policy'})",
                                     retry_after=_retry_after(response), status=status, endpoint=endpoint)
        if status >= 500:
            if create:
                return OutcomeUnknown(f"{endpoint}: HubSpot answered {status} ({message})",
                                      status=status, endpoint=endpoint)
            return RetriableCrmError(f"{endpoint}: HubSpot answered {status} ({message})",
                                     retry_after=_retry_after(response), status=status, endpoint=endpoint)
        return HubSpotApiError(f"{endpoint}: HubSpot refused the request ({status}): {message}",
                               body=body, status=status, endpoint=endpoint)

    def _delay(self, attempt: int, response) -> float:
        """Retry-After when HubSpot gives one; the rolling window for TEN_SECONDLY_ROLLING; else backoff."""
        retry_after = _retry_after(response)
        if retry_after is not None:
            return min(retry_after, self.max_backoff * 4)
        if response.status == 429:
            policy = _json(response.data).get("policyName")
            if policy == "TEN_SECONDLY_ROLLING":
                interval = response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
                return float(interval) / 1000 if interval and interval.isdigit() else self.limiter.window
            if policy == "SECONDLY":
                return self.search_limiter.window
        return self._backoff(attempt)

    def _backoff(self, attempt: int) -> float:
        base = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return base / 2 + random.uniform(0, base / 2)  # "equal jitter"

    def seconds_until_reset(self, now: datetime | None = None) -> float:
        """Seconds until midnight in the portal's time zone, when HubSpot resets daily limits."""
        now = (now or datetime.now(timezone.utc)).astimezone(self.portal_timezone)
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(),
                                    tzinfo=self.portal_timezone)
        return max(1.0, (midnight - now).total_seconds())


def _json(data: bytes | None) -> dict:
    try:
        parsed = json.loads(data or b"{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _retry_after(response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: HubSpot does not send these; fall back to backoff


def _describe(error: Exception | None) -> str:
    if error is None:
        return "no error"
    status = getattr(error, "status", None)
    return f"{status}: {error}" if status else f"{type(error).__name__}: {error}"
