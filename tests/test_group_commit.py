import threading
import time
import uuid

import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.exceptions import ConnectionError, ResponseError

from adapter.group_commit import GroupCommit
from tests.fakes import prefix, redis_server  # noqa: F401

# Counts calls under its key and answers "<arg>:<count>"; refuses the argument "bad".
SCRIPT = """
if ARGV[2] == 'bad' then return redis.error_reply('refused ' .. ARGV[2]) end
return ARGV[2] .. ':' .. redis.call('INCR', ARGV[1])
"""


def fresh_script(redis):
    """A script Redis has never seen, so the first pipeline meets NOSCRIPT."""
    return redis.register_script(f"-- {uuid.uuid4().hex}\n{SCRIPT}")


class HeldFirstCall:
    """The script, except that its first (leading) call waits for `release` and answers
    "held" without reaching Redis: while it waits, the callers behind it queue up."""

    def __init__(self, script):
        self._script, self.sha, self.script = script, script.sha, script.script
        self.release, self.holding, self._first = threading.Event(), threading.Event(), True

    def __call__(self, args):
        if self._first:
            self._first = False
            self.holding.set()
            assert self.release.wait(10)
            return b"held"
        return self._script(args=args)


class CountingRedis(Redis):
    pipelines = 0

    def pipeline(self, *args, **kwargs):
        type(self).pipelines += 1
        return super().pipeline(*args, **kwargs)


def run_grouped(group, argument_lists):
    """The first argument list leads and is held; the others queue behind it, then all go."""
    held = group._script
    results = {}

    def call(key, args):
        try:
            results[key] = group(args)
        except Exception as exc:  # the caller's own outcome, error or not
            results[key] = exc

    threads = [threading.Thread(target=call, args=(0, argument_lists[0]))]
    threads[0].start()
    assert held.holding.wait(10)
    for i, args in enumerate(argument_lists[1:], 1):
        threads.append(threading.Thread(target=call, args=(i, args)))
        threads[-1].start()
    deadline = time.monotonic() + 10
    while len(group._queue) < len(argument_lists) - 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    held.release.set()
    for thread in threads:
        thread.join(10)
    return [results[i] for i in range(len(argument_lists))]


def test_a_lone_caller_gets_its_own_result(redis_server, prefix):
    group = GroupCommit(redis_server, fresh_script(redis_server))
    assert group([f"{prefix}:n", "a"]) == b"a:1"
    assert group([f"{prefix}:n", "b"]) == b"b:2"


def test_callers_arriving_during_a_round_trip_share_the_next_one(redis_server, prefix):
    client = CountingRedis(connection_pool=redis_server.connection_pool)
    group = GroupCommit(client, HeldFirstCall(fresh_script(client)))
    before = CountingRedis.pipelines
    results = run_grouped(group, [[f"{prefix}:n", "lead"]] + [[f"{prefix}:n", f"c{i}"] for i in range(6)])
    assert results[0] == b"held"
    # Each queued call ran once, in one pipeline (plus its retry after the script was loaded).
    assert sorted(int(r.split(b":")[1]) for r in results[1:]) == [1, 2, 3, 4, 5, 6]
    assert {r.split(b":")[0] for r in results[1:]} == {f"c{i}".encode() for i in range(6)}
    assert CountingRedis.pipelines - before == 2
    assert group([f"{prefix}:n", "after"]) == b"after:7"


def test_an_error_is_its_callers_alone(redis_server, prefix):
    script = fresh_script(redis_server)
    script(args=[f"{prefix}:warm", "x"])  # loaded: the group's pipeline runs once
    group = GroupCommit(redis_server, HeldFirstCall(script))
    results = run_grouped(group, [[f"{prefix}:n", "lead"], [f"{prefix}:n", "a"], [f"{prefix}:n", "bad"],
                                  [f"{prefix}:n", "b"]])
    assert isinstance(results[2], ResponseError) and "refused bad" in str(results[2])
    assert sorted(results[i] for i in (1, 3)) == [b"a:1", b"b:2"]


def test_a_lost_connection_fails_every_caller_of_the_round_trip():
    down = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    script = down.register_script(SCRIPT)
    group = GroupCommit(down, HeldFirstCall(script))
    results = run_grouped(group, [["k", "lead"], ["k", "a"], ["k", "b"]])
    assert results[0] == b"held"
    assert all(isinstance(r, ConnectionError) for r in results[1:])
    with pytest.raises(ConnectionError):
        group(["k", "alone"])



def test_a_forked_child_is_not_stuck_behind_its_parents_round_trip(redis_server, prefix):
    import os
    import signal

    group = GroupCommit(redis_server, fresh_script(redis_server))
    group._guard.acquire()  # a parent thread is mid-call when the process forks
    pid = os.fork()
    if pid == 0:  # the child: its own call must go through
        code = 1
        try:
            code = 0 if group([f"{prefix}:n", "child"]) == b"child:1" else 1
        finally:
            os._exit(code)
    group._guard.release()
    deadline = time.monotonic() + 10
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the child hung on its parent's lock")
    assert os.waitstatus_to_exitcode(done[1]) == 0


class Interrupted(BaseException):
    """What a gevent.Timeout or a signal handler raises in a caller that is waiting its turn."""


def test_a_caller_interrupted_while_waiting_does_not_stall_the_queue(redis_server, prefix, monkeypatch):
    import adapter.group_commit as module

    class GivesUp:
        """A wake-up the caller stops waiting for."""

        def __init__(self):
            self._lock = threading.Lock()

        def acquire(self):
            raise Interrupted()

        def release(self):
            pass

    group = GroupCommit(redis_server, HeldFirstCall(fresh_script(redis_server)))
    leader = threading.Thread(target=group, args=([f"{prefix}:n", "lead"],))
    leader.start()
    assert group._script.holding.wait(10)
    real_call = module._Call

    class ImpatientCall(real_call):
        __slots__ = ()

        def __init__(self, args):
            super().__init__(args)
            self.wake = GivesUp()

    monkeypatch.setattr(module, "_Call", ImpatientCall)
    outcome = []

    def impatient():
        try:
            group([f"{prefix}:n", "gives up"])  # queued behind the held leader
        except Interrupted:
            outcome.append("interrupted")

    waiter = threading.Thread(target=impatient)
    waiter.start()
    waiter.join(10)
    monkeypatch.setattr(module, "_Call", real_call)
    assert outcome == ["interrupted"] and group._queue == []
    group._script.release.set()
    leader.join(10)
    later = []
    thread = threading.Thread(target=lambda: later.append(group([f"{prefix}:n", "later"])), daemon=True)
    thread.start()
    thread.join(10)
    assert later == [b"later:1"]  # the abandoned call was taken back, never sent


def test_an_argument_redis_cannot_take_fails_only_its_caller(redis_server, prefix):
    from redis.exceptions import DataError

    group = GroupCommit(redis_server, HeldFirstCall(fresh_script(redis_server)))
    results = run_grouped(group, [[f"{prefix}:n", "lead"], [f"{prefix}:n", "a"], [f"{prefix}:n", None],
                                  [f"{prefix}:n", "b"]])
    assert isinstance(results[2], DataError)
    assert sorted(results[i] for i in (1, 3)) == [b"a:1", b"b:2"]


def test_the_main_thread_sends_its_own_call(redis_server, prefix):
    """It runs signal handlers, whose exceptions could land mid-queue; it has nobody to share with."""
    group = GroupCommit(redis_server, HeldFirstCall(fresh_script(redis_server)))
    group._script._first = False  # nothing held: the first call is the main thread's own
    group._busy = True  # even while pool threads' round trips are in flight
    assert group([f"{prefix}:n", "main"]) == b"main:1"
