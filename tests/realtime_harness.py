"""What both end-to-end suites (HubSpot and Salesforce) need to drive real rq workers."""
from __future__ import annotations

import time

from rq.job import Job
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from adapter import worker as worker_module
from connectors import get_connector


def connector_factory(crm, settings):
    return get_connector(crm, settings.values)


class WorkerHarness:
    """Mixed into a test stack that has `queue` (RealtimeQueue) and `settings`."""

    def burst(self) -> None:
        """One in-process burst worker, promoting scheduled retries so tests need not wait."""
        scheduled = ScheduledJobRegistry(queue=self.queue.rq)
        for job_id in scheduled.get_job_ids():
            scheduled.remove(job_id)
            self.queue.rq.enqueue_job(Job.fetch(job_id, connection=self.queue.redis))
        worker_module._work(self.settings, burst=True, connector_factory=connector_factory)

    def idle(self) -> bool:
        q = self.queue
        return (not q.status()["pending"] and q.rq.count == 0 and StartedJobRegistry(queue=q.rq).count == 0
                and ScheduledJobRegistry(queue=q.rq).count == 0 and not self._due_soon())

    def _due_soon(self) -> bool:
        return bool(self.queue.redis.zcount(self.queue.deadlines_key, "-inf", time.time() + 6))
