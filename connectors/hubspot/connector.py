"""The HubSpot connector: Baton's `Connector` port over hubspot-api-client v12.

Wiring only; the work lives next door: `reader.py` (load), `writer.py` (apply),
`schema.py` (install), `transport.py` (pacing, retries, counts), `fields.py` (names and
encodings). See docs/install-hubspot.md for the settings.
"""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Mapping, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hubspot import HubSpot
from hubspot.crm.objects import Filter, FilterGroup, PublicObjectSearchRequest

from adapter.actions import Plan
from adapter.errors import ConfigurationError
from adapter.manifest import load_manifest
from adapter.model import Owner, OwnerDirectory, RecordRef
from adapter.ports import ApplyResult, InstallReport, LoadResult, ScannedRecord

from .fields import CRM, MODIFIED_PROPERTY, PIPELINE_PROPERTY, STAGE_PROPERTY, HubSpotFields, epoch_ms, parse_datetime
from .own_activity import OwnActivityLedger
from .reader import Reader, StageIndex
from .schema import SchemaInstaller
from .pacing import SharedRateLimiter, limiter_key
from .transport import RateLimiter, Transport
from .writer import Writer

#: The search API returns at most this many results per query, however it is paged.
SEARCH_RESULT_CAP = 10_000
SEARCH_PAGE_SIZE = 200


class HubSpotConnector:
    """One HubSpot portal. Every method batches; every call is paced, retried and counted."""

    name = CRM
    object_types = ("deal", "contact", "company", "ticket")
    batch_size = 500  # records per load/apply; reads and writes still go 100 ids per call

    def __init__(self, access_token: str, *, host: str | None = None, portal_id: str | None = None,
                 app_id: str | None = None, manifest: Mapping[str, Any] | None = None,
                 transport: Transport | None = None, marker_search_delay: float = 2.0,
                 search_page_size: int = SEARCH_PAGE_SIZE, search_result_cap: int = SEARCH_RESULT_CAP,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        if not access_token:
            raise ConfigurationError("HUBSPOT_ACCESS_TOKEN is not set")
        self.host, self.portal_id, self.app_id = host, portal_id, app_id
        self.transport = transport or Transport()
        self._client = HubSpot(access_token=access_token, host=host, api_factory=self.transport.api_factory)
        self.fields = HubSpotFields.from_manifest(manifest if manifest is not None else load_manifest())
        self._stages = StageIndex(self._client)
        own_stamps = OwnActivityLedger()  # what a load saw, carried into the apply that follows
        self._reader = Reader(self._client, self.fields, self._stages, portal_id=portal_id, now=now,
                              own_stamps=own_stamps)
        self._writer = Writer(self._client, self.fields, marker_search_delay=marker_search_delay,
                              own_stamps=own_stamps)
        self._installer = SchemaInstaller(self._client)
        self.search_page_size, self.search_result_cap = search_page_size, search_result_cap
        self._owners: OwnerDirectory | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, str], *, redis=None, **overrides) -> "HubSpotConnector":
        """Build from environment-style settings (see docs/install-hubspot.md).

        `redis` (a redis-py client, e.g. the worker queue's): pace through a rate limit shared
        by every process on that Redis (see `pacing.py`); without it, `REDIS_URL` when set;
        else, or with `BATON_HUBSPOT_PACING=process`, this process paces itself alone.
        """
        token = settings.get("HUBSPOT_ACCESS_TOKEN")
        if not token:
            raise ConfigurationError("HUBSPOT_ACCESS_TOKEN is not set: create a private app in HubSpot "
                                     "(docs/install-hubspot.md) and put its access token there")
        calls = _int_setting(settings, "BATON_HUBSPOT_CALLS_PER_10S", 100)
        searches = _int_setting(settings, "BATON_HUBSPOT_SEARCHES_PER_SECOND", 5)
        zone_name = settings.get("HUBSPOT_PORTAL_TIMEZONE") or "UTC"
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(f"HUBSPOT_PORTAL_TIMEZONE: unknown time zone {zone_name!r}") from None
        transport = overrides.pop("transport", None)
        if transport is None:
            limiters = _shared_limiters(settings, redis, token, calls, searches)
            transport = Transport(calls_per_10s=calls, searches_per_second=searches, portal_timezone=zone,
                                  **limiters)
        return cls(token, host=settings.get("BATON_HUBSPOT_HOST") or None,
                   portal_id=settings.get("HUBSPOT_PORTAL_ID") or None,
                   app_id=settings.get("HUBSPOT_APP_ID") or None, transport=transport, **overrides)

    def __repr__(self) -> str:  # never the token
        return f"<HubSpotConnector host={self.host or 'api.hubapi.com'} portal={self.portal_id or '?'}>"

    # -- the Connector port ------------------------------------------------------------------------
    @property
    def calls(self) -> Counter:
        """HTTP requests sent, by "METHOD /path" (ids as {id}); retries count as requests."""
        return self.transport.calls

    @property
    def statuses(self) -> Counter:
        """HTTP requests by answer: status code, "connect-error" or "no-response"."""
        return self.transport.statuses

    def owners(self) -> OwnerDirectory:
        if self._owners is None:
            api = self._client.crm.owners.owners_api
            owners = []
            for archived in (False, True):
                after = None
                while True:
                    page = api.get_page(limit=100, after=after, archived=archived)
                    owners.extend(_owner(o, archived) for o in page.results or ())
                    after = page.paging and page.paging.next and page.paging.next.after
                    if not after:
                        break
            self._owners = OwnerDirectory(owners)
        return self._owners

    def load(self, refs: Sequence[RecordRef]) -> LoadResult:
        return self._reader.load(refs)

    def stored_due(self, due: datetime) -> datetime:
        """`hs_timestamp` keeps milliseconds."""
        return due.replace(microsecond=due.microsecond // 1000 * 1000)

    def records_for(self, activity_refs: Sequence[RecordRef]) -> list[RecordRef]:
        return self._reader.records_for(activity_refs)

    def apply(self, plans: Sequence[Plan]) -> ApplyResult:
        return self._writer.apply(plans)

    def install(self, manifest: Mapping[str, Any], *, dry_run: bool = False) -> InstallReport:
        return self._installer.install(manifest, dry_run=dry_run)

    def record_url(self, ref: RecordRef) -> str | None:
        return self._reader.record_url(ref.object_type, ref.id)

    def scan(self, object_type: str, since: datetime | None = None) -> Iterator[ScannedRecord]:
        """Open records by ascending id, past the search API's 10,000-result cap.

        A query is restarted with `hs_object_id > last id seen` before its paging offset
        would reach the cap, so any number of records can be walked with search alone.
        """
        hubspot_type = self.fields.object_name(object_type)
        modified = MODIFIED_PROPERTY[object_type]
        api = self._client.crm.objects.search_api
        filters = []
        if since is not None:
            filters.append(Filter(property_name=modified, operator="GTE", value=epoch_ms(since)))
        if object_type in PIPELINE_PROPERTY:
            closed = self._stages.closed_stages(hubspot_type)
            if closed:
                filters.append(Filter(property_name=STAGE_PROPERTY[object_type], operator="NOT_IN", values=closed))
        last_id = None
        while True:
            after, seen = None, None
            while True:
                id_filter = [Filter(property_name="hs_object_id", operator="GT", value=last_id)] if last_id else []
                request = PublicObjectSearchRequest(
                    filter_groups=[FilterGroup(filters=filters + id_filter)],
                    sorts=[{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                    properties=[modified], limit=self.search_page_size, after=after)
                page = api.do_search(hubspot_type, request)
                for record in page.results or ():
                    seen = record.id
                    yield ScannedRecord(RecordRef(CRM, object_type, record.id),
                                        parse_datetime((record.properties or {}).get(modified)) or record.updated_at)
                after = page.paging and page.paging.next and page.paging.next.after
                if not after:
                    return
                if not after.isdigit() or int(after) + self.search_page_size > self.search_result_cap:
                    break  # the next page would cross the cap: restart above the last id
            if seen is None:
                return
            last_id = seen


def _owner(model, archived: bool) -> Owner:
    name = " ".join(p for p in (model.first_name, model.last_name) if p).strip()
    return Owner(id=str(model.id), name=name or model.email or f"Owner {model.id}", email=model.email or None,
                 active=not archived and not model.archived)


def _shared_limiters(settings: Mapping[str, str], redis, token: str, calls: int, searches: int) -> dict:
    """The transport's limiters shared through Redis, or {} (in-process pacing)."""
    pacing = (settings.get("BATON_HUBSPOT_PACING") or "shared").strip().lower()
    if pacing not in ("shared", "process"):
        raise ConfigurationError(f"BATON_HUBSPOT_PACING must be shared or process, got {pacing!r}")
    if pacing == "process":
        return {}
    if redis is None:
        url = settings.get("REDIS_URL")
        if not url:
            return {}  # one-shot commands without Redis: pace this process alone
        from redis import Redis

        redis = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    prefix = settings.get("BATON_REDIS_PREFIX") or "baton"
    ids = dict(portal_id=settings.get("HUBSPOT_PORTAL_ID") or None, app_id=settings.get("HUBSPOT_APP_ID") or None,
               token=token)
    return {
        "limiter": SharedRateLimiter(redis, limiter_key(prefix, name="calls", **ids), calls, 10.0,
                                     fallback=RateLimiter(calls, 10.0)),
        "search_limiter": SharedRateLimiter(redis, limiter_key(prefix, name="search", **ids), searches, 1.0,
                                            fallback=RateLimiter(searches, 1.0)),
    }


def _int_setting(settings: Mapping[str, str], key: str, default: int) -> int:
    raw = settings.get(key)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{key} must be a whole number, got {raw!r}") from None
    if value < 1:
        raise ConfigurationError(f"{key} must be at least 1, got {value}")
    return value
