"""Group commit for one Lua script: callers on concurrent threads share round trips to Redis.

A webhook receiver under a threaded server (gunicorn's gthread) has several requests in
flight per process, each ending in one `MARK` script call. Sent one by one, every call pays
a blocking round trip: a write, a wake-up of Redis, a read, and a GIL hand-off on the way
back, which on a small box costs more CPU than the script itself. Here the first caller to
arrive sends its call at once; callers arriving while that round trip is in flight queue up,
and the next of them sends the whole queue as one pipeline when it returns. Under no
contention nothing waits; under load a round trip carries as many calls as arrived during
the previous one.

Each call is still its own `EVALSHA`, run atomically by Redis in arrival order, with its
own result or error, so callers see exactly what a call of their own would have given them.
A connection failure fails every call of that pipeline (each caller gets the error; nothing
was half-applied by Baton, since each script is atomic and either ran or did not). A call
whose arguments redis-py cannot encode fails alone: the group is then sent call by call.
The main thread always sends its own call (see `__call__`).
"""
from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Sequence

from redis import Redis
from redis.commands.core import Script
from redis.exceptions import DataError, NoScriptError

__all__ = ["GroupCommit"]


class _Call:
    __slots__ = ("args", "result", "error", "leads", "wake")

    def __init__(self, args: Sequence[Any]):
        self.args = args
        self.result: Any = None
        self.error: BaseException | None = None
        self.leads = False
        # A plain lock used as a one-shot signal: cheaper than threading.Event per call.
        self.wake = threading.Lock()
        self.wake.acquire()

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


#: Every GroupCommit of this process, reset in a forked child before it runs anything else.
_INSTANCES: "weakref.WeakSet[GroupCommit]" = weakref.WeakSet()


def _reset_after_fork() -> None:
    for instance in list(_INSTANCES):
        instance._reset()


os.register_at_fork(after_in_child=_reset_after_fork)


class GroupCommit:
    """Run `script` (no KEYS, only ARGV) for concurrent callers in shared pipelines."""

    def __init__(self, redis: Redis, script: Script):
        self._redis, self._script = redis, script
        self._reset()
        _INSTANCES.add(self)

    def _reset(self) -> None:
        # A forked child (a gunicorn worker, an rq work horse) starts afresh: the parent's
        # lock or queue may have been mid-use by a thread the child does not have.
        self._guard = threading.Lock()
        self._queue: list[_Call] = []
        self._busy = False  # a leader's round trip is in flight

    def __call__(self, args: Sequence[Any]) -> Any:
        if threading.current_thread() is threading.main_thread():
            # The main thread has no one to share with in a threaded server (requests run on
            # pool threads), and it alone runs signal handlers, whose exceptions (Ctrl-C, a
            # job timeout) could land between any two steps below and strand the queue.
            return self._script(args=args)
        call = _Call(args)
        with self._guard:
            self._queue.append(call)
            leads = not self._busy
            self._busy = True
        if not leads:
            try:
                call.wake.acquire()  # until our result arrives, or we are made the next leader
            except BaseException:  # interrupted while waiting (a signal handler's exception)
                self._abandon(call)
                raise
            if not call.leads:
                return call.outcome()
        with self._guard:
            group, self._queue = self._queue, []
        try:
            self._send(group)
        except BaseException:  # interrupted mid round trip: the others learn it, not a None
            for other in group:
                if other.result is None and other.error is None:
                    other.error = InterruptedError("the round trip carrying this call was interrupted")
            raise
        finally:
            with self._guard:
                self._pass_leadership()
            for other in group:
                if other is not call:
                    other.wake.release()
        return call.outcome()

    def _abandon(self, call: _Call) -> None:
        """Take back a call whose caller stopped waiting, so the queue still moves: out of the
        queue if no leader took it yet, and leadership passed on if it had just been given it
        (a leader that took it along sends it anyway, and nobody reads the answer)."""
        with self._guard:
            if call in self._queue:
                self._queue.remove(call)
            if call.leads:
                self._pass_leadership()

    def _pass_leadership(self) -> None:
        """To the first caller queued, woken to send the queue; or nobody leads. Under `_guard`."""
        if self._queue:
            successor = self._queue[0]
            successor.leads = True
            successor.wake.release()
        else:
            self._busy = False

    def _send(self, group: list[_Call]) -> None:
        if len(group) == 1:
            only = group[0]
            try:
                only.result = self._script(args=only.args)
            except Exception as exc:  # handed to the caller, raised in its own thread
                only.error = exc
            return
        try:
            try:
                results = self._pipeline(group)
            except DataError:  # one call's argument redis-py cannot encode: each on its own
                for call in group:
                    self._send([call])
                return
            # Redis restarted or its scripts were flushed (perhaps mid-pipeline): load the
            # script and send again only the calls that did not run.
            missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
            if missing:
                self._redis.script_load(self._script.script)
                for i, result in zip(missing, self._pipeline([group[i] for i in missing])):
                    results[i] = result
        except Exception as exc:
            for call in group:
                call.error = exc
            return
        for call, result in zip(group, results):
            if isinstance(result, Exception):
                call.error = result
            else:
                call.result = result

    def _pipeline(self, group: list[_Call]) -> list:
        pipe = self._redis.pipeline(transaction=False)
        sha = self._script.sha
        for call in group:
            pipe.evalsha(sha, 0, *call.args)
        return pipe.execute(raise_on_error=False)
