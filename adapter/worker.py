"""What a worker does with the queue, and how it runs.

* `process_batch`: lock the records, reconcile them through `adapter.pipeline`, schedule
  their next look, put back what another worker holds, park what failed for good.
* `sweep_crm`: scan records modified since the watermark (or every open record) into the
  pending sets.
* `tick`: the periodic housekeeping every worker takes turns at (deadlines due, recovery,
  sweeps), at most once per period across all workers.
* `run_worker`: one or more rq workers with rq's scheduler (delayed retries) and a ticker
  (`BATON_DEADLINE_INTERVAL`, default 30 s; `BATON_SWEEP_INTERVAL`, default 900 s, 0 = off).

Nothing here imports a connector: `Runtime.connector(crm)` gets one from the factory the
entry point wired in (`adapter/cli.py` passes `connectors.get_connector`).
"""
from __future__ import annotations

import inspect
import logging
import multiprocessing
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Sequence

from rq import SimpleWorker, get_current_job

from adapter.errors import ConfigurationError, FatalCrmError, RetriableCrmError
from adapter.model import RecordRef
from adapter.pipeline import ACTIVITY_TYPES, make_router, reconcile_refs
from adapter.policy import Policy, load_policy
from adapter.ports import Failure
from adapter.queue import RealtimeQueue
from adapter.settings import Settings

log = logging.getLogger(__name__)

#: Builds the connector for a CRM name; wired in by the entry point (see `adapter/cli.py`).
#: A factory that takes a `redis` keyword is also given the queue's Redis connection, for
#: state its connectors share across worker processes (HubSpot's rate limit).
ConnectorFactory = Callable[..., Any]

DEADLINE_PERIOD = 30.0
SWEEP_PERIOD = 15 * 60.0
SWEEP_OVERLAP = timedelta(minutes=1)
SWEEP_CHUNK = 500


@dataclass
class Runtime:
    """What jobs need, built once per worker process: settings, queue, policy, connectors."""

    settings: Settings
    queue: RealtimeQueue
    connector_factory: ConnectorFactory | None = None
    crm_names: Sequence[str] | None = None
    _policy: Policy | None = None
    _connectors: dict[str, Any] = field(default_factory=dict)

    @property
    def policy(self) -> Policy:
        if self._policy is None:
            self._policy = load_policy(self.settings.policy_path)
        return self._policy

    def connector(self, crm: str):
        if crm not in self._connectors:
            if self.connector_factory is None:
                raise ConfigurationError("this process has no connector factory: start workers with `baton worker`")
            if _accepts_redis(self.connector_factory):
                self._connectors[crm] = self.connector_factory(crm, self.settings, redis=self.queue.redis)
            else:
                self._connectors[crm] = self.connector_factory(crm, self.settings)
        return self._connectors[crm]

    def crms(self) -> list[str]:
        """The CRMs the periodic sweep visits: those the entry point resolved, else `BATON_CRMS`."""
        return list(self.crm_names) if self.crm_names is not None else self.settings.get_list("BATON_CRMS")


def _accepts_redis(factory: Callable) -> bool:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "redis" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


_runtime: Runtime | None = None


def configure(settings: Settings, *, queue: RealtimeQueue | None = None,
              connector_factory: ConnectorFactory | None = None, crms: Sequence[str] | None = None) -> Runtime:
    """Set this process's runtime (forked rq work-horses inherit it). `crms`: the CRMs this
    installation serves, as the entry point resolved them (`connectors.configured_crms`)."""
    global _runtime
    _runtime = Runtime(settings, queue or RealtimeQueue.from_settings(settings), connector_factory, crms)
    return _runtime


def current_runtime() -> Runtime:
    return _runtime if _runtime is not None else configure(Settings.from_env())


@dataclass
class BatchOutcome:
    reconciled: list[RecordRef] = field(default_factory=list)
    writes: int = 0
    deferred: list[RecordRef] = field(default_factory=list)
    resolved: list[RecordRef] = field(default_factory=list)
    parked: list[RecordRef] = field(default_factory=list)
    retriable: list[RecordRef] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {name: (value if isinstance(value, int) else len(value)) for name, value in vars(self).items()}


def process_batch(queue: RealtimeQueue, connector, policy: Policy, refs: Sequence[RecordRef], *,
                  token: str | None = None, now: datetime | None = None) -> BatchOutcome:
    """Reconcile one batch of pending refs as one unit of work.

    Activities (task, note, email, call) are resolved to their records, which go back to the
    pending sets. Records another job holds go back to the pending set too: drains leave them
    there while they are locked, and the holder's unlock queues a drain for them. Failures
    the CRM will not get over are parked in the failed registry with their reason; retriable
    ones raise `RetriableCrmError` so rq retries them with backoff.
    """
    token = token or str(uuid.uuid4())
    outcome = BatchOutcome()
    activities = [r for r in refs if r.object_type in ACTIVITY_TYPES]
    records = [r for r in refs if r.object_type not in ACTIVITY_TYPES]
    if activities:
        outcome.resolved = list(connector.records_for(activities))
        queue.mark_pending(outcome.resolved)
    locked, outcome.deferred = queue.lock(records, token)
    if outcome.deferred:
        queue.mark_pending(outcome.deferred)
    if not locked:
        return outcome
    try:
        owners = connector.owners()
        router = make_router(policy, owners, queue.cursor())
        result = reconcile_refs(connector, locked, policy, now=now, router=router, owners=owners)
    except FatalCrmError as exc:
        _park(queue, locked, str(exc))
        outcome.parked = list(locked)
        return outcome
    finally:
        queue.unlock(locked, token)
    failed = {f.ref: f for f in result.failures}
    outcome.reconciled = [r for r in locked if r not in failed]
    outcome.writes = result.writes
    queue.schedule(result.deadlines, done=outcome.reconciled)
    fatal = [f for f in failed.values() if not f.retriable]
    if fatal:
        _park(queue, [f.ref for f in fatal], _reasons(fatal))
        outcome.parked = [f.ref for f in fatal]
    retriable = [f for f in failed.values() if f.retriable]
    outcome.retriable = [f.ref for f in retriable]
    if retriable:
        error = RetriableCrmError(f"{len(retriable)} record(s) failed and will be retried: {_reasons(retriable)}")
        error.refs = outcome.retriable  # what the retry needs to redo; the rest is done
        raise error
    return outcome


def _reasons(failures: Sequence[Failure]) -> str:
    return "; ".join(f"{f.ref}: {f.reason}" for f in failures)


def _park(queue: RealtimeQueue, refs: Sequence[RecordRef], reason: str) -> None:
    by_type: dict[tuple[str, str], list[str]] = {}
    for ref in refs:
        by_type.setdefault((ref.crm, ref.object_type), []).append(ref.id)
    for (crm, object_type), ids in by_type.items():
        queue.park(crm, object_type, ids, reason)


def sweep_crm(queue: RealtimeQueue, connector, *, full: bool = False, policy: Policy | None = None,
              object_types: Sequence[str] | None = None) -> dict[str, int]:
    """Feed records modified since each type's watermark (every open record with `full`) into
    the pending sets. Returns how many records of each type were found."""
    found: dict[str, int] = {}
    for object_type in object_types or connector.object_types:
        if policy is not None and not policy.for_object(object_type).enabled:
            continue
        since = None if full else queue.watermark(connector.name, object_type)
        newest, chunk, count = None, [], 0
        for scanned in connector.scan(object_type, since=since):
            chunk.append(scanned.ref)
            count += 1
            if scanned.modified_at and (newest is None or scanned.modified_at > newest):
                newest = scanned.modified_at
            if len(chunk) >= SWEEP_CHUNK:
                queue.mark_pending(chunk)
                chunk = []
        queue.mark_pending(chunk)
        if newest is not None:
            # A small overlap: search indexes lag behind writes by a few seconds.
            queue.set_watermark(connector.name, object_type, newest - SWEEP_OVERLAP)
        found[object_type] = count
    return found


def run_deadlines(queue: RealtimeQueue, now: float | None = None) -> dict[str, int]:
    """Due deadlines back to pending, and whatever dead processes left behind put back."""
    released = queue.release_due(now)
    return {"due": released, **queue.recover(now)}


def tick(runtime: Runtime) -> None:
    """Periodic work; each piece runs on one worker per period, whichever gets there first."""
    queue = runtime.queue
    if queue.once_per("deadlines", deadline_period(runtime.settings) * 0.9):
        run_deadlines(queue)
    period = runtime.settings.get_float("BATON_SWEEP_INTERVAL", SWEEP_PERIOD)
    if period > 0 and queue.once_per("sweep", period):
        for crm in runtime.crms():
            queue.rq.enqueue_call("adapter.jobs.sweep", args=(crm,), timeout=3600, result_ttl=3600,
                                  description=f"sweep {crm}")


def deadline_period(settings: Settings) -> float:
    return max(0.1, settings.get_float("BATON_DEADLINE_INTERVAL", DEADLINE_PERIOD))


def current_token() -> str:
    job = get_current_job()
    return job.id if job is not None else str(uuid.uuid4())


# Running workers ------------------------------------------------------------------------------

def _ticker(runtime: Runtime, stop: threading.Event) -> None:
    while not stop.wait(deadline_period(runtime.settings) / 3):
        try:
            tick(runtime)
        except Exception:  # keep ticking through a Redis blip; the next period retries
            log.exception("periodic tick failed")


def _work(settings: Settings, burst: bool, connector_factory: ConnectorFactory | None,
          crms: Sequence[str] | None = None) -> bool:
    runtime = configure(settings, connector_factory=connector_factory, crms=crms)
    queue = runtime.queue
    if burst:
        run_deadlines(queue)
    stop = threading.Event()
    ticker = None
    if not burst:
        ticker = threading.Thread(target=_ticker, args=(runtime, stop), name="baton-ticker", daemon=True)
        ticker.start()
    # Jobs run in the worker process (no fork per job), so a connector's caches (owners,
    # pipelines) and HTTP connections last from one batch to the next. A crash mid-job is
    # covered by rq's abandoned-job handling and the job's retries.
    worker = SimpleWorker([queue.rq], connection=queue.redis, maintenance_interval=60)
    try:
        return worker.work(burst=burst, with_scheduler=True, logging_level=settings.get("BATON_LOG_LEVEL", "INFO"))
    finally:
        stop.set()


def run_worker(settings: Settings, burst: bool = False, count: int = 1,
               connector_factory: ConnectorFactory | None = None, crms: Sequence[str] | None = None) -> int:
    """Run `count` rq workers on Baton's queue (each its own process when count > 1).

    With `burst`, each works until the queue is empty and returns. Returns the number of
    worker processes that exited with an error. `crms`: those the periodic sweep visits.
    """
    if count <= 1:
        _work(settings, burst, connector_factory, crms)
        return 0
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_work, args=(settings, burst, connector_factory, crms), name=f"baton-worker-{i}")
             for i in range(count)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    return sum(1 for proc in procs if proc.exitcode)


def sweep(settings: Settings, crm: str, full: bool = False,
          connector_factory: ConnectorFactory | None = None) -> dict[str, int]:
    """`baton sweep`: feed the pending sets from the CRM now; workers do the reconciling."""
    runtime = configure(settings, connector_factory=connector_factory)
    return sweep_crm(runtime.queue, runtime.connector(crm), full=full, policy=runtime.policy)
