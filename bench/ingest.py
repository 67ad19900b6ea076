"""Webhook ingest benchmark: Baton's app under gunicorn (2 workers) on loopback, clients
sending signed HubSpot batches of 100 events over keep-alive connections.

    .venv/bin/python bench/ingest.py [--batches 5000] [--clients 4] [--conns 4] [--rounds 15] [--threads 8] [--prefill N]

Prints one JSON line:
  events_per_s          accepted events per second, clients sending as fast as answered
  p50_ms / p99_ms       request latency at a paced 50 batches/s
  ceiling_events_per_s  the same load against a flask endpoint that only reads the body and
                        answers 204, under the same gunicorn config: what the stack allows
  ratio                 events_per_s / ceiling_events_per_s
  cpu_ms_per_batch      CPU the gunicorn workers spent per batch (user + system), Baton and
  ceiling_cpu_ms_per_batch  the trivial endpoint: a measure the load on the box does not skew
  redis_cpu_ms_per_batch    and the Redis server's CPU per Baton batch (the de-duplication and
                        pending sets; on this box it competes with the workers and clients)

Both servers run side by side and the throughput phases alternate in short rounds (the median
of the rounds is reported): the box's own speed drifts from one second to the next, and short
alternating rounds let both sides see the same box. Same clients, same payloads, same
gunicorn command line: 2 workers, gthread with the README's 8 threads each. Each server is first warmed up under the measured load's concurrency, so no round
pays for starting threads or connections.

Uses REDIS_URL when set (its own key prefix, deleted afterwards), else an embedded Redis in a
temporary directory. Bounded: every phase sends a fixed number of batches and stops.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.fakes import sign_hubspot_v3  # noqa: E402  (the signing helper the tests use)

SECRET = "bench-secret"
FIRST_OCCURRED = 1_763_305_200_000  # epoch ms of the first event; the others follow, over a few days
PATH = "/webhooks/hubspot"


def ceiling_app():
    """The trivial endpoint: what flask + gunicorn cost with no Baton work at all."""
    from flask import Flask, Response, request

    app = Flask("ceiling")

    @app.post(PATH)
    def receive():
        request.get_data()  # any real endpoint reads what it is sent
        return Response(status=204)

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(target: str, env: dict, port: int, threads: int) -> subprocess.Popen:
    cmd = [os.path.join(os.path.dirname(sys.executable), "gunicorn"), "-w", "2", "-k", "gthread", "--threads", str(threads),
           "--keep-alive", "30", "-b", f"127.0.0.1:{port}", "--log-level", "warning", "--chdir", ROOT, target]
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, start_new_session=True)
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"gunicorn did not start: {target}")


def worker_cpu(proc: subprocess.Popen) -> float:
    """CPU seconds (user + system) of the gunicorn master's worker processes."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == proc.pid:  # ppid
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def make_batch(seed: int, index: int, port: int) -> tuple[bytes, dict]:
    base = (seed * 1_000_000 + index) * 100
    events = [{
        "eventId": base + i, "subscriptionId": 1_900_001, "portalId": 62515, "appId": 1,
        "occurredAt": FIRST_OCCURRED + base + i, "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0, "objectId": (base + i) % 50_000, "propertyName": "hubspot_owner_id",
        "propertyValue": "81273646", "changeSource": "CRM_UI", "sourceId": "userId:5120001",
    } for i in range(100)]
    body = json.dumps(events, separators=(",", ":")).encode()
    ts = int(time.time() * 1000)
    signature = sign_hubspot_v3(body, SECRET, ts, uri=f"http://127.0.0.1:{port}{PATH}")
    headers = {"Content-Type": "application/json", "X-HubSpot-Request-Timestamp": str(ts),
               "X-HubSpot-Signature-v3": signature}
    return body, headers


def client(port: int, seed: int, batches: int, conns: int, interval: float, out, go) -> None:
    """One client process: `conns` keep-alive connections, each sending its share of batches;
    with `interval` > 0 each connection paces itself to one batch per interval."""
    prepared = [make_batch(seed, i, port) for i in range(batches)]
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def run(share):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        next_at = time.perf_counter()
        for body, headers in share:
            if interval:
                delay = next_at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                next_at += interval
            started = time.perf_counter()
            conn.request("POST", PATH, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if response.status >= 300:
                    errors[0] += 1
        conn.close()

    threads = [threading.Thread(target=run, args=(prepared[i::conns],)) for i in range(conns)]
    out.put(("ready", seed))
    go.wait(timeout=120)  # every client starts together, once all have prepared their batches
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(("done", latencies, errors[0]))


def load(port: int, *, batches: int, clients: int, conns: int, interval: float = 0.0) -> dict:
    ctx = multiprocessing.get_context("fork")
    out, go = ctx.Queue(), ctx.Event()
    per_client = batches // clients
    procs = [ctx.Process(target=client, args=(port, seed, per_client, conns, interval, out, go))
             for seed in range(clients)]
    for p in procs:
        p.start()
    for _ in procs:  # wait until every client has prepared its batches
        assert out.get(timeout=120)[0] == "ready"
    started = time.perf_counter()
    go.set()
    latencies, errors = [], 0
    for _ in procs:
        _, lat, err = out.get(timeout=600)
        latencies += lat
        errors += err
    elapsed = time.perf_counter() - started
    for p in procs:
        p.join()
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"events_per_s": per_client * clients * 100 / elapsed, "p50_ms": pick(0.5), "p99_ms": pick(0.99),
            "errors": errors, "batches": per_client * clients}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--conns", type=int, default=4)
    parser.add_argument("--paced-seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=15, help="alternating Baton/ceiling throughput rounds")
    parser.add_argument("--prefill", type=int, default=0, metavar="N",
                        help="first put N event keys in each day's de-duplication set the batches use "
                             "(a Redis holding 48 h of traffic, as a live one does)")
    parser.add_argument("--threads", type=int, default=8,
                        help="gunicorn gthread threads per worker, both servers (README's production line: 8)")
    args = parser.parse_args()

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    data_dir = tempfile.mkdtemp(prefix="baton-bench-")
    env = {"BATON_CRMS": "hubspot", "HUBSPOT_CLIENT_SECRET": SECRET, "BATON_REDIS_PREFIX": prefix,
           "BATON_DATA_DIR": data_dir, "BATON_PUBLIC_URL": ""}
    port, ceiling_port = free_port(), free_port()
    baton = start_gunicorn("webhooks.app:from_env()", env, port, args.threads)
    ceiling = None
    rounds = max(1, args.rounds)
    per_round = max(args.clients, args.batches // rounds)
    try:
        ceiling = start_gunicorn("bench.ingest:ceiling_app()", {}, ceiling_port, args.threads)
        # Warm-up under the measured load's concurrency: imports, script loading, connections,
        # and every gunicorn thread started (gthread starts them as requests need them).
        for target in (port, ceiling_port):
            load(target, batches=50 * args.clients * args.conns, clients=args.clients, conns=args.conns)
        redis = _redis(data_dir)
        _prefill(redis, prefix, args.prefill, args.clients)
        ours, theirs, cpu, ceiling_cpu, redis_cpu = [], [], [], [], []
        for _ in range(rounds):
            before, redis_before = worker_cpu(baton), _redis_cpu(redis)
            run = load(port, batches=per_round, clients=args.clients, conns=args.conns)
            cpu.append((worker_cpu(baton) - before) * 1000 / run["batches"])
            redis_cpu.append((_redis_cpu(redis) - redis_before) * 1000 / run["batches"])
            ours.append(run)
            before = worker_cpu(ceiling)
            run = load(ceiling_port, batches=per_round, clients=args.clients, conns=args.conns)
            ceiling_cpu.append((worker_cpu(ceiling) - before) * 1000 / run["batches"])
            theirs.append(run)
        paced_batches = int(50 * args.paced_seconds)
        # 50 batches/s: 2 client processes x 2 connections, each one batch per 80 ms.
        paced = load(port, batches=paced_batches, clients=2, conns=2, interval=0.08)
    finally:
        stop(baton)
        if ceiling is not None:
            stop(ceiling)
    _cleanup(prefix, data_dir)
    median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    ratios = [a["events_per_s"] / b["events_per_s"] for a, b in zip(ours, theirs)]
    print(json.dumps({
        "events_per_s": round(median([r["events_per_s"] for r in ours])),
        "p50_ms": round(paced["p50_ms"], 2),
        "p99_ms": round(paced["p99_ms"], 2),
        "ceiling_events_per_s": round(median([r["events_per_s"] for r in theirs])),
        "ratio": round(median(ratios), 3),
        "ratios": [round(r, 3) for r in ratios],
        "cpu_ms_per_batch": round(median(cpu), 3),
        "ceiling_cpu_ms_per_batch": round(median(ceiling_cpu), 3),
        "redis_cpu_ms_per_batch": round(median(redis_cpu), 3),
        "errors": sum(r["errors"] for r in ours) + paced["errors"],
        "batches": per_round * rounds, "rounds": rounds,
        "redis": "REDIS_URL" if os.environ.get("REDIS_URL") else "embedded",
    }))


def _redis(data_dir: str):
    """A client of the Redis the app uses (REDIS_URL, or the embedded one in `data_dir`)."""
    from adapter.queue import connect
    from adapter.settings import Settings

    return connect(Settings.from_env(BATON_DATA_DIR=data_dir))


def _prefill(redis, prefix: str, keys_per_day: int, clients: int) -> None:
    """Fill the de-duplication sets of the days `make_batch`'s events occur on (client `seed`
    sends events from `seed` x 10^8 ms on)."""
    from adapter.queue_scripts import SEEN_BUCKET_MS

    first = FIRST_OCCURRED // SEEN_BUCKET_MS
    last = (FIRST_OCCURRED + (clients + 1) * 100_000_000) // SEEN_BUCKET_MS
    for day in range(first, last + 1):
        for start in range(0, keys_per_day, 10_000):
            redis.sadd(f"{prefix}:seen:{day}",
                       *[f"hubspot:1:1:{i}:{i}:{day}" for i in range(start, min(start + 10_000, keys_per_day))])


def _redis_cpu(redis) -> float:
    """CPU seconds the Redis server has used (shared with anything else using it)."""
    info = redis.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


def _cleanup(prefix: str, data_dir: str) -> None:
    from adapter.queue import connect, stop_embedded
    from adapter.settings import Settings
    from tests.fakes import delete_prefix

    settings = Settings.from_env(BATON_DATA_DIR=data_dir)
    delete_prefix(connect(settings), prefix)
    stop_embedded(settings)
    shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
