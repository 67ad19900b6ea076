"""`SalesforceConnector`: Baton's `Connector` for one Salesforce org (simple-salesforce).

Wiring, owners, scan and install; the work lives next door: `reader.py` (load, records_for:
a handful of SOQL queries per object type and 200 records), `writer.py` (apply: sObject
Collections, 200 records per call, with `Sforce-Auto-Assign: FALSE`), `metadata.py`
(install), `fields.py` (names and encodings). Every call goes through `SalesforceApi.call`
(auth.py): session refresh, API-usage reserve, error mapping.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Mapping, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from adapter.actions import Plan
from adapter.errors import ConfigurationError
from adapter.manifest import load_manifest
from adapter.model import Owner, OwnerDirectory, RecordRef
from adapter.ports import ApplyResult, InstallReport, LoadResult, ScannedRecord
from connectors.salesforce import metadata
from connectors.salesforce.auth import SalesforceApi, SalesforceSettings
from connectors.salesforce.fields import CRM, FieldMap, end_of_day, parse_datetime, soql_datetime, soql_in, to_18
from connectors.salesforce.reader import Reader
from connectors.salesforce.writer import Writer

OWNERS_TTL = 600.0
USERS_WHO_CANNOT_OWN = {"AutomatedProcess", "CsnOnly", "Guest"}


class SalesforceConnector:
    name = CRM
    object_types = ("lead", "opportunity", "account", "case")
    batch_size = 200

    def __init__(self, settings: SalesforceSettings, *, api: SalesforceApi | None = None,
                 manifest: Mapping[str, Any] | None = None, clock: Callable[[], datetime] | None = None,
                 sleep: Callable[[float], None] = time.sleep, backoff: Sequence[float] = (1.0, 4.0)):
        self.settings = settings
        self.api = api or SalesforceApi(settings, sleep=sleep, backoff=backoff)
        self.manifest = manifest if manifest is not None else load_manifest()
        self.fields = FieldMap(self.manifest)
        self._now = clock or (lambda: datetime.now(timezone.utc))
        self._owners: tuple[float, OwnerDirectory] | None = None
        self._tz: ZoneInfo | None = None
        self._reader = Reader(self.api, self.fields, settings, object_types=self.object_types,
                              org_timezone=self.timezone, now=self._now)
        self._writer = Writer(self.api, self.fields, org_timezone=self.timezone, now=self._now,
                              sleep=sleep, backoff=backoff)

    @classmethod
    def from_settings(cls, settings: Any, *, redis=None) -> "SalesforceConnector":
        # `redis` (shared pacing) is not used yet: Salesforce limits are per 24 h, not per burst.
        return cls(SalesforceSettings.from_mapping(settings))

    def __repr__(self) -> str:
        return f"SalesforceConnector({self.api!r})"

    @property
    def calls(self):
        return self.api.calls

    # --- owners ----------------------------------------------------------------------------

    def owners(self, *, refresh: bool = False) -> OwnerDirectory:
        """Users (active and deactivated) and queues, cached for ten minutes."""
        if self._owners and not refresh and time.monotonic() - self._owners[0] < OWNERS_TTL:
            return self._owners[1]
        people = [
            Owner(u["Id"], u.get("Name") or u["Id"], u.get("Email"),
                  active=bool(u.get("IsActive")) and u.get("UserType") not in USERS_WHO_CANNOT_OWN)
            for u in self.api.query("SELECT Id, Name, Email, IsActive, UserType FROM User")
        ]
        queues = [
            Owner(g["Id"], g.get("Name") or g["Id"], g.get("Email"), active=True, is_queue=True)
            for g in self.api.query("SELECT Id, Name, Email FROM Group WHERE Type = 'Queue'")
        ]
        directory = OwnerDirectory(people + queues)
        self._owners = (time.monotonic(), directory)
        return directory

    # --- load ----------------------------------------------------------------------------

    def load(self, refs: Sequence[RecordRef]) -> LoadResult:
        return self._reader.load(refs)

    def records_for(self, activity_refs: Sequence[RecordRef]) -> list[RecordRef]:
        return self._reader.records_for(activity_refs)

    def timezone(self) -> ZoneInfo:
        """The timezone of task due dates: BATON_SALESFORCE_TIMEZONE, else the org's (one query)."""
        if self._tz is None:
            name = self.settings.timezone
            if not name:
                rows = self.api.query("SELECT TimeZoneSidKey FROM Organization LIMIT 1")
                name = (rows[0].get("TimeZoneSidKey") if rows else None) or "UTC"
            try:
                self._tz = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigurationError(f"BATON_SALESFORCE_TIMEZONE: unknown timezone {name!r}") from None
        return self._tz

    # --- scan ------------------------------------------------------------------------------

    def scan(self, object_type: str, since: datetime | None = None) -> Iterator[ScannedRecord]:
        sobject = self.fields.sobject(object_type)
        conditions = {
            "Lead": f"IsConverted = false AND Status NOT IN {soql_in(self.settings.lead_closed_statuses)}"
            if self.settings.lead_closed_statuses else "IsConverted = false",
            "Opportunity": "IsClosed = false",
            "Case": "IsClosed = false",
        }
        where = [conditions[sobject]] if sobject in conditions else []
        if since is not None:
            where.append(f"SystemModstamp >= {soql_datetime(since)}")
        soql = f"SELECT Id, SystemModstamp FROM {sobject}"
        soql += (" WHERE " + " AND ".join(where)) if where else ""
        soql += " ORDER BY SystemModstamp ASC"
        for row in self.api.query_iter(soql):
            yield ScannedRecord(RecordRef(CRM, object_type, to_18(row["Id"])), parse_datetime(row.get("SystemModstamp")))

    # --- install ---------------------------------------------------------------------------

    def install(self, manifest: Mapping[str, Any] | None = None, *, dry_run: bool = False,
                enforce: bool = False) -> InstallReport:
        return metadata.install(self.api, manifest if manifest is not None else self.manifest,
                                dry_run=dry_run, enforce=enforce)

    # --- apply -----------------------------------------------------------------------------

    def stored_due(self, due: datetime) -> datetime:
        """A Task keeps only its ActivityDate: it reads back as the end of that day."""
        tz = self.timezone()
        return end_of_day(due.astimezone(tz).date(), tz)

    def apply(self, plans: Sequence[Plan]) -> ApplyResult:
        return self._writer.apply(plans)
