"""rq entry points, referenced by import path (``adapter.jobs.drain``). Thin on purpose: each
takes plain, serialisable arguments, gets the process's `Runtime` and calls `adapter.worker`.

Connectors come from the factory the worker's entry point wired in (`adapter/cli.py`).
"""
from __future__ import annotations

from adapter.errors import RetriableCrmError
from adapter.model import RecordRef
from adapter.worker import current_runtime, current_token, process_batch, run_deadlines as _run_deadlines, sweep_crm


def drain(crm: str, object_type: str) -> int:
    """Hand the pending ids of one crm/type to `reconcile_batch` jobs; returns how many jobs."""
    return len(current_runtime().queue.drain(crm, object_type))


def reconcile_batch(crm: str, object_type: str, ids: list[str]) -> dict[str, int]:
    """Reconcile up to 100 records. A retry after a partial failure redoes only the records
    that failed (kept in the job's meta as ``remaining``)."""
    from rq import get_current_job

    runtime, job = current_runtime(), get_current_job()
    if job is not None and job.meta.get("remaining"):
        ids = job.meta["remaining"]
    refs = [RecordRef(crm, object_type, str(i)) for i in ids]
    try:
        outcome = process_batch(runtime.queue, runtime.connector(crm), runtime.policy, refs, token=current_token())
    except RetriableCrmError as error:
        if job is not None and getattr(error, "refs", None):
            job.meta["remaining"] = [r.id for r in error.refs]
            job.save_meta()
        raise
    return outcome.as_dict()


def run_deadlines() -> dict[str, int]:
    """Due records back to pending; what dead workers left behind put back."""
    return _run_deadlines(current_runtime().queue)


def sweep(crm: str, full: bool = False) -> dict[str, int]:
    """Scan one CRM into the pending sets (incremental unless `full`)."""
    runtime = current_runtime()
    return sweep_crm(runtime.queue, runtime.connector(crm), full=full, policy=runtime.policy)
