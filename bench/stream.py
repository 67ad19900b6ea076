"""Real-time latency benchmark: the HubSpot emulator emits owner changes as users would,
Baton's app receives the signed webhooks, rq workers reconcile through the HubSpot connector.

    .venv/bin/python bench/stream.py [--changes 5000] [--seconds 60] [--deals 1000] [--workers 2] [--rate-limit 190]

BATON_DRAIN_WINDOW in the environment reaches the workers (default 0.5 s).

Before the measured minute every deal (open and closed) is reconciled once under a policy
that routes ownerless deals round robin, as an installed Baton would have done: the
minute measures steady state, not Baton's first look at each deal (which reads its whole
recent activity once).

Prints one JSON line:
  p50_ms / p95_ms    from a user's owner change to Baton's write-back of
                     baton_owner_of_record = the new owner (as the emulator's store sees both)
  calls_per_event    HubSpot API calls Baton made during the run / owner changes made
  collapsed          changes superseded by a later change of the same deal before Baton wrote
                     (their latency is not measured: the later change's is)
  unchanged          last changes that restored the owner Baton had already written (A -> B -> A
                     before Baton looked): correct with no write, so no latency to measure
  missing            last changes Baton's state does not reflect at the end (should be 0)
  batches / refs_per_batch / calls_per_batch
                     reconcile_batch jobs run during the measured part, their mean size and
                     HubSpot calls per job; top_calls: the most frequent endpoints

Targets: p95 < 2 s, calls_per_event <= 0.2. Needs REDIS_URL or runs on an embedded Redis.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from adapter import worker as worker_module  # noqa: E402
from adapter.manifest import load_manifest  # noqa: E402
from adapter.model import RecordRef  # noqa: E402
from adapter.queue import RealtimeQueue, connect, stop_embedded  # noqa: E402
from adapter.settings import Settings  # noqa: E402
from connectors import get_connector  # noqa: E402
from connectors.demo import demo_policy_mapping  # noqa: E402
from connectors.demo_realtime import receiver  # noqa: E402
from connectors.hubspot.emulator import HubSpotEmulator  # noqa: E402
from connectors.hubspot.emulator_catalog import PORTAL_USERS  # noqa: E402
from tests.fakes import delete_prefix  # noqa: E402

TOKEN, SECRET = "pat-bench-stream", "bench-stream-secret"
OWNERS = [u[0] for u in PORTAL_USERS if not u[6]]


class WriteBacks:
    """Store listener: when Baton (an integration) wrote baton_owner_of_record, and to what."""

    def __init__(self, app_id: str):
        self.app_id = app_id
        self.seen: dict[tuple[str, str], list[float]] = {}  # every write of that value, in order
        self.lock = threading.Lock()

    def __call__(self, change) -> None:
        if (change.property_name == "baton_owner_of_record" and change.actor.source_type == "INTEGRATION"
                and change.object_type == "deals"):
            with self.lock:
                self.seen.setdefault((change.object_id, change.property_value), []).append(time.perf_counter())

    def first_after(self, deal: str, owner: str, at: float) -> float | None:
        """When Baton first wrote `owner` on `deal` at or after `at` (an owner can come back:
        A -> B -> A, and the baseline sweep wrote every deal's first owner)."""
        with self.lock:
            return next((t for t in self.seen.get((deal, owner), ()) if t >= at), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--deals", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate-limit", type=int, default=190,
                        help="the emulated app's HubSpot allowance per 10 s (HubSpot's default: 190)")
    args = parser.parse_args()

    prefix = f"bench-stream-{uuid.uuid4().hex[:8]}"
    data_dir = tempfile.mkdtemp(prefix="baton-stream-")
    emu = HubSpotEmulator(token=TOKEN, validate=False, rate_limit=args.rate_limit).start()
    values = {
        "BATON_CRMS": "hubspot", "BATON_REDIS_PREFIX": prefix, "BATON_DATA_DIR": data_dir,
        "HUBSPOT_ACCESS_TOKEN": TOKEN, "BATON_HUBSPOT_HOST": emu.url, "HUBSPOT_PORTAL_ID": str(emu.portal_id),
        "HUBSPOT_APP_ID": str(emu.app_id), "HUBSPOT_CLIENT_SECRET": SECRET,
        # The app's whole HubSpot allowance: the workers pace through one limit shared in Redis.
        "BATON_HUBSPOT_CALLS_PER_10S": str(args.rate_limit),
        "BATON_SWEEP_INTERVAL": "0", "BATON_DEADLINE_INTERVAL": "5", "BATON_LOG_LEVEL": "WARNING",
    }
    if os.environ.get("REDIS_URL"):
        values["REDIS_URL"] = os.environ["REDIS_URL"]
    settings = Settings(values)
    queue = RealtimeQueue(connect(settings), prefix)
    served = ExitStack()
    base_url = served.enter_context(receiver(settings, queue))  # no access log line per webhook batch
    workers = []
    try:
        factory = lambda crm, s, redis=None: get_connector(crm, s.values, redis=redis)  # noqa: E731  (what `baton worker` wires in)
        connector = factory("hubspot", settings)
        connector.install(load_manifest())
        # The portal's admin routes ownerless deals round robin, as an installed Baton would.
        policy_path = os.path.join(data_dir, "policy.yml")
        with open(policy_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(demo_policy_mapping(connector), f)
        values["BATON_POLICY"] = policy_path
        settings = Settings(values)
        worker_module.configure(settings, queue=queue, connector_factory=factory)
        emu.seed(args.deals, object_types=("deals",))
        deal_ids = [r["hs_object_id"] for r in emu.records("deals")]
        # Baseline: every deal reconciled once (closed ones too: users reassign those as well),
        # so the measured run sees steady state rather than Baton's first look at each deal.
        queue.mark_pending([RecordRef("hubspot", "deal", i) for i in deal_ids])
        env = {**os.environ, **values, "PYTHONPATH": ROOT}
        workers = [subprocess.Popen([sys.executable, "-m", "adapter.cli", "worker"], env=env, cwd=ROOT,
                                    start_new_session=True)
                   for _ in range(args.workers)]
        _wait_idle(queue, timeout=600)

        writes = WriteBacks(str(emu.app_id))
        emu.store.listeners.append(writes)
        emu.webhooks.configure(f"{base_url}/webhooks/hubspot", SECRET, app_id=emu.app_id)
        emu.reset_calls()
        started_at = time.time()
        rng = random.Random(1)
        changed: dict[tuple[str, str], float] = {}
        last_change: dict[str, tuple[str, float]] = {}
        interval = args.seconds / args.changes
        start = time.perf_counter()
        for i in range(args.changes):
            due = start + i * interval
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            deal = rng.choice(deal_ids)
            current = (emu.record("deals", deal) or {}).get("hubspot_owner_id")
            owner = rng.choice([o for o in OWNERS if o != current])
            at = time.perf_counter()
            emu.user_set_owner("deals", deal, owner, by_owner_id=OWNERS[0])
            changed[(deal, owner)] = at
            last_change[deal] = (owner, at)
        emu.webhooks.flush(timeout=60)
        _wait_idle(queue, timeout=300)
        calls = emu.calls_total
        sizes = _batch_sizes(queue, since=started_at)
        top_calls = emu.calls.most_common(12)

        latencies, collapsed, unchanged, missing = [], 0, 0, 0
        for (deal, owner), at in changed.items():
            written = writes.first_after(deal, owner, at)
            if written is not None:
                latencies.append(written - at)
            elif last_change[deal][0] != owner or last_change[deal][1] != at:
                collapsed += 1
            elif (emu.record("deals", deal) or {}).get("baton_owner_of_record") == owner:
                unchanged += 1  # changed back (A -> B -> A) before Baton looked: nothing to write
            else:
                missing += 1
        latencies.sort()
        pick = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 1) if latencies else None  # noqa: E731
        print(json.dumps({
            "p50_ms": pick(0.5), "p95_ms": pick(0.95), "calls_per_event": round(calls / args.changes, 3),
            "changes": args.changes, "measured": len(latencies), "collapsed": collapsed, "unchanged": unchanged, "missing": missing,
            "deals": args.deals, "workers": args.workers, "seconds": args.seconds, "rate_limit": args.rate_limit,
            "drain_window": float(os.environ.get("BATON_DRAIN_WINDOW", "0.5")),
            "rate_limited": emu.rate_limited,
            "batches": len(sizes), "refs_per_batch": round(sum(sizes) / len(sizes), 1) if sizes else 0,
            "calls_per_batch": round(calls / len(sizes), 1) if sizes else None,
            "top_calls": {k: n for k, n in top_calls},
        }))
    finally:
        for proc in workers:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in workers:
            proc.wait(timeout=30)
        served.close()
        emu.stop()
        delete_prefix(queue.redis, prefix)
        stop_embedded(settings)  # without REDIS_URL: the benchmark's own server


def _batch_sizes(queue: RealtimeQueue, since: float) -> list[int]:
    """Records per `reconcile_batch` job enqueued since `since` (rq keeps them an hour)."""
    from rq.job import Job
    from rq.registry import FinishedJobRegistry

    sizes = []
    for job in Job.fetch_many(FinishedJobRegistry(queue=queue.rq).get_job_ids(), connection=queue.redis):
        if job is not None and job.func_name == "adapter.jobs.reconcile_batch" and job.enqueued_at \
                and job.enqueued_at.timestamp() >= since:
            sizes.append(len(job.args[2]))
            if os.environ.get("BENCH_DEBUG"):
                print("batch", job.args[1], len(job.args[2]), round(job.enqueued_at.timestamp() - since, 2),
                      round((job.started_at - job.enqueued_at).total_seconds(), 2) if job.started_at else None,
                      round((job.ended_at - job.started_at).total_seconds(), 2) if job.ended_at and job.started_at else None,
                      job.worker_name, file=sys.stderr)
    return sizes


def _wait_idle(queue: RealtimeQueue, timeout: float) -> None:
    from rq.registry import StartedJobRegistry

    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        status = queue.status()
        busy = status["pending"] or status["queued"] or StartedJobRegistry(queue=queue.rq).count
        quiet = 0 if busy else quiet + 1
        if quiet >= 3:
            return
        time.sleep(0.2)
    raise SystemExit(f"workers did not catch up within {timeout} s: {queue.status()}")


if __name__ == "__main__":
    main()
