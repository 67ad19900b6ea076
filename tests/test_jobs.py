"""The worker side against a hand-written fake connector, with rq's SimpleWorker in-process."""
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from rq import SimpleWorker
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from adapter import worker as worker_module
from adapter.model import Event, RecordRef
from adapter.policy import Policy
from adapter.worker import process_batch, run_deadlines, sweep_crm
from tests.fake_crm import BEN, T0, snapshot, task
from tests.fakes import FailingLoadConnector, WorkerFakeConnector, base_settings, prefix, queue, redis_server  # noqa: F401


def deal(i):
    return RecordRef("fake", "deal", str(i))


def members(queue, object_type="deal"):
    return sorted(m.decode() for m in queue.redis.smembers(queue.pending_key("fake", object_type)))


@pytest.fixture
def use(queue, prefix):
    """Wire the process's runtime to this test's queue and a given connector."""
    def wire(connector):
        worker_module.configure(base_settings(prefix), queue=queue, connector_factory=lambda crm, settings: connector)
        return connector
    yield wire
    worker_module._runtime = None


def run_until_idle(queue, rounds=20):
    """Run a burst worker; promote retries scheduled for later so tests need not wait."""
    for _ in range(rounds):
        SimpleWorker([queue.rq], connection=queue.redis).work(burst=True, logging_level="WARNING")
        scheduled = ScheduledJobRegistry(queue=queue.rq)
        ids = scheduled.get_job_ids()
        if not ids and not queue.rq.count:
            return
        for job_id in ids:
            scheduled.remove(job_id)
            queue.rq.enqueue_job(Job.fetch(job_id, connection=queue.redis))


def prompts(connector, ref):
    return [t for t in connector.records[ref].tasks if t.is_prompt]


def test_event_to_reconciled_record(queue, use):
    fake = use(WorkerFakeConnector([snapshot("101"), snapshot("102", tasks=[task(due=datetime.now(timezone.utc) + timedelta(days=10))])]))
    queue.mark_pending([deal(101), deal(102)])
    run_until_idle(queue)
    assert len(prompts(fake, deal(101))) == 1 and prompts(fake, deal(102)) == []
    assert fake.calls["load"] == 1 and fake.calls["apply"] == 1  # one batch, batched calls
    [(ref, at)] = queue.next_deadlines()  # the task falling due soon; the prompt has none
    assert ref == deal(102) and at > datetime.now(timezone.utc)
    assert queue.status()["pending"] == {} and queue.failed.count == 0


def test_loop_safety_our_own_write_comes_back_and_writes_stop(queue, use):
    fake = use(WorkerFakeConnector([snapshot("101")]))
    queue.mark_pending([Event("fake", "deal", "101", "owner_change", key="user-change")])
    run_until_idle(queue)
    # The write-back comes back as a webhook (another event key): reconciled once more, no writes.
    queue.mark_pending([Event("fake", "deal", "101", "property_change", key="echo-of-our-write")])
    run_until_idle(queue)
    queue.mark_pending([Event("fake", "deal", "101", "property_change", key="echo-of-our-write")])  # redelivered
    run_until_idle(queue)
    assert fake.loaded.count(deal(101)) == 2
    assert fake.calls["apply"] == 1
    assert len(prompts(fake, deal(101))) == 1


def test_retriable_failure_is_retried_for_the_failed_records_only(queue, use):
    fake = use(WorkerFakeConnector([snapshot("1"), snapshot("2")], retriable_refs=[deal(2)]))
    queue.mark_pending([deal(1), deal(2)])
    SimpleWorker([queue.rq], connection=queue.redis).work(burst=True, logging_level="WARNING")
    [job_id] = ScheduledJobRegistry(queue=queue.rq).get_job_ids()
    job = Job.fetch(job_id, connection=queue.redis)
    assert job.meta["remaining"] == ["2"] and job.retries_left == 4
    assert job.args[2] == ["1", "2"]  # the arguments stay what was popped
    fake.retriable_refs.clear()
    fake.loaded.clear()
    run_until_idle(queue)
    assert fake.loaded == [deal(2)]
    assert len(prompts(fake, deal(2))) == 1


def test_exhausted_retries_stay_failed_until_retry_failed(queue, use):
    use(FailingLoadConnector([snapshot("1")]))
    queue.mark_pending([deal(1)])
    run_until_idle(queue)
    assert queue.failed.count == 1
    [failed] = queue.status()["failed_jobs"]
    assert failed["args"] == ["fake", "deal", ["1"]] and "429" in failed["reason"]
    fake = use(WorkerFakeConnector([snapshot("1")]))
    assert queue.retry_failed() == 1
    run_until_idle(queue)
    assert queue.failed.count == 0 and len(prompts(fake, deal(1))) == 1


def test_fatal_failures_are_parked_with_their_reason(queue, use):
    fake = use(WorkerFakeConnector([snapshot("1"), snapshot("2")], fail_refs=[deal(2)]))
    queue.mark_pending([deal(1), deal(2)])
    run_until_idle(queue)
    [failed] = queue.status()["failed_jobs"]
    assert failed["args"] == ["fake", "deal", ["2"]] and "refused by the fake" in failed["reason"]
    assert len(prompts(fake, deal(1))) == 1
    fake.fail_refs.clear()
    queue.retry_failed()
    run_until_idle(queue)
    assert len(prompts(fake, deal(2))) == 1 and queue.failed.count == 0


def test_a_record_locked_elsewhere_waits_pending_until_its_holder_unlocks(queue, use):
    fake = use(WorkerFakeConnector([snapshot("1"), snapshot("2")]))
    queue.lock([deal(2)], "another-job")
    queue.mark_pending([deal(1), deal(2)])
    run_until_idle(queue)
    assert fake.loaded == [deal(1)]
    assert members(queue) == ["2"]  # still pending, not handed to a job while held
    queue.unlock([deal(2)], "another-job")  # queues a drain for it
    run_until_idle(queue)
    assert len(prompts(fake, deal(2))) == 1 and members(queue) == []


def test_a_record_a_job_finds_locked_goes_back_to_pending(queue):
    fake = WorkerFakeConnector([snapshot("1"), snapshot("2")])
    queue.lock([deal(2)], "another-job")
    outcome = process_batch(queue, fake, Policy(), [deal(1), deal(2)], token="this-job")
    assert outcome.deferred == [deal(2)] and fake.loaded == [deal(1)]
    assert members(queue) == ["2"]
    queue.unlock([deal(2)], "another-job")
    [job] = queue.drain("fake", "deal")
    assert job.args[2] == ["2"]


def test_two_workers_never_reconcile_one_record_at_once(queue):
    fake = WorkerFakeConnector([snapshot(str(i)) for i in range(6)], load_delay=0.2)
    policy = Policy()
    refs = [deal(i) for i in range(6)]
    outcomes = []
    threads = [threading.Thread(target=lambda t=t: outcomes.append(process_batch(queue, fake, policy, refs, token=t)))
               for t in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fake.overlaps == []
    assert sorted(r for o in outcomes for r in o.reconciled) == refs  # each exactly once
    assert sorted(r for o in outcomes for r in o.deferred) == sorted(refs * 2)


def test_activities_resolve_to_their_records(queue, use):
    fake = use(WorkerFakeConnector([snapshot("101")], records_for_map={
        RecordRef("fake", "task", "T9"): [deal(101)]}))
    queue.mark_pending([Event("fake", "task", "T9", "task", key="task-completed")])
    run_until_idle(queue)
    assert fake.calls["records_for"] == 1
    assert len(prompts(fake, deal(101))) == 1


def test_missing_and_closed_records_drop_their_deadline(queue, use):
    fake = use(WorkerFakeConnector([snapshot("1", closed=True)]))
    queue.schedule({deal(1): T0, deal(404): T0})
    queue.mark_pending([deal(1), deal(404)])
    run_until_idle(queue)
    assert queue.next_deadlines() == []
    assert fake.calls["apply"] <= 1


def test_sweep_feeds_pending_and_moves_the_watermark(queue):
    fake = WorkerFakeConnector([snapshot("1"), snapshot("2"), snapshot("3", object_type="ticket")])
    assert sweep_crm(queue, fake) == {"deal": 2, "contact": 0, "company": 0, "ticket": 1}
    assert members(queue) == ["1", "2"] and members(queue, "ticket") == ["3"]
    assert queue.watermark("fake", "deal") == T0 - timedelta(minutes=1)
    assert sweep_crm(queue, fake, object_types=["deal"], full=True) == {"deal": 2}


def test_due_deadline_turns_into_a_reconcile_without_a_webhook(queue, use):
    fake = use(WorkerFakeConnector([snapshot("1")]))
    queue.schedule({deal(1): datetime.now(timezone.utc) - timedelta(seconds=1)})
    assert run_deadlines(queue)["due"] == 1
    run_until_idle(queue)
    assert fake.loaded == [deal(1)] and len(prompts(fake, deal(1))) == 1


def test_process_batch_reassigns_via_the_shared_cursor(queue):
    fake = WorkerFakeConnector([snapshot("1", owner=None), snapshot("2", owner=None)])
    policy = Policy(routing_pool=("ana@example.com", BEN.email))
    process_batch(queue, fake, policy, [deal(1), deal(2)])
    owners = {fake.records[deal(1)].owner_id, fake.records[deal(2)].owner_id}
    assert owners == {"1", "2"}
    assert int(queue.redis.get(queue.key("cursor", "fake:round_robin"))) == 2



def test_the_runtime_hands_its_redis_to_a_factory_that_takes_it(queue, prefix):
    """Connectors share state across worker processes (HubSpot's rate limit) through the
    queue's Redis; plain two-argument factories keep working."""
    given = {}

    def factory(crm, settings, redis=None):
        given[crm] = redis
        return object()

    try:
        worker_module.configure(base_settings(prefix), queue=queue, connector_factory=factory).connector("fake")
        assert given == {"fake": queue.redis}
        plain = worker_module.configure(base_settings(prefix), queue=queue,
                                        connector_factory=lambda crm, settings: "connector")
        assert plain.connector("fake") == "connector"
    finally:
        worker_module._runtime = None
