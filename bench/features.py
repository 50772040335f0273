"""What the features of issue 14 cost, each beside the plain path in the same run.

    python bench/features.py [--backend sqlite|postgres|both] [--jobs 3000]
                             [--processes 2] [--repeat 2] [--postgres URL]

For each backend, one server with 2 job processes:
- drain rates: N `bench.noop` jobs (sync, the plain path) enqueued in one transaction
  and drained (from the enqueue's commit to the last completion recorded in the
  database), then N `bench.async_noop` jobs (awaited on the job process's event loop),
  then N `bench.keyed` jobs with a concurrency key (a limit of 10,000 that never binds:
  the cost of admission), then N `bench.rated` jobs of a type with a rate limit that
  never binds (10,000 per ms: one job per claim and a slot taken each); they alternate
  `--repeat` times and the best rate of each is kept;
- enqueue: 500 single `schedule()` calls, then 500 with a unique key each (the cost of
  the unique index and its ON CONFLICT), per call;
- `app.result()` latency: schedule one no-op job and wait for its result, 100 times
  (p50, p99), which includes the subscription `app.result` makes.

PostgreSQL runs when --postgres, KOJO_BENCH_POSTGRES_URL or KOJO_TEST_POSTGRES_URL names
a server. Results are printed and written to
bench/results/features-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime
from typing import Any

from harness import (
    ROOT,
    bench_app_client,
    completed_jobs,
    database,
    job_processes,
    last_completed_at,
    server,
    summary,
    wait_drained,
    wait_for,
)

import kojo

WORKERS = {
    "sync": "bench.noop",
    "async": "bench.async_noop",
    "keyed": "bench.keyed",
    "rated": "bench.rated",
}
ENQUEUES = 500
RESULTS = 100


def drain_rate(app: kojo.App, code: str, jobs: int) -> float:
    """Jobs/s of draining `jobs` new jobs of type `code` by the running server."""
    done = completed_jobs(app, code)
    key = "bench" if code == WORKERS["keyed"] else None
    app.schedule_many(code, [None] * jobs, concurrency_key=key)
    committed_at = datetime.now(UTC)
    wait_drained(app, code, done + jobs, 300)
    return jobs / (last_completed_at(app, code) - committed_at).total_seconds()


def enqueue_us(app: kojo.App, unique: bool) -> float:
    """Microseconds per single schedule() call (with a fresh unique key each, or none);
    the jobs are paused meanwhile, and deleted by the caller's drain later."""
    started = time.perf_counter()
    for n in range(ENQUEUES):
        key = f"bench-{time.monotonic_ns()}-{n}" if unique else None
        app.schedule("bench.paused", unique_key=key)
    return (time.perf_counter() - started) / ENQUEUES * 1e6


def result_latencies_ms(app: kojo.App) -> list[float]:
    """Schedule a no-op and wait for its result: milliseconds, RESULTS times."""
    samples = []
    for _ in range(RESULTS):
        started = time.perf_counter()
        app.result(app.schedule("bench.noop"), timeout=30)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def compare(url: str, jobs: int, processes: int, repeat: int) -> dict[str, float]:
    app = bench_app_client(url)
    app.set_type_paused("bench.paused", True)
    rates: dict[str, list[float]] = {name: [] for name in WORKERS}
    enqueues: dict[str, list[float]] = {"plain": [], "unique": []}
    with server(url, processes):
        wait_for(lambda: job_processes(app) == processes, 30, "job processes")
        for _ in range(repeat):
            for name, code in WORKERS.items():
                rates[name].append(drain_rate(app, code, jobs))
            enqueues["plain"].append(enqueue_us(app, unique=False))
            enqueues["unique"].append(enqueue_us(app, unique=True))
        latencies = result_latencies_ms(app)
    app.backend.close()
    best = {f"{name}_jobs_per_s": max(values) for name, values in rates.items()}
    best["async_to_sync"] = best["async_jobs_per_s"] / best["sync_jobs_per_s"]
    best["keyed_to_sync"] = best["keyed_jobs_per_s"] / best["sync_jobs_per_s"]
    best["rated_to_sync"] = best["rated_jobs_per_s"] / best["sync_jobs_per_s"]
    best["enqueue_plain_us"] = min(enqueues["plain"])
    best["enqueue_unique_us"] = min(enqueues["unique"])
    best["unique_to_plain"] = best["enqueue_unique_us"] / best["enqueue_plain_us"]
    best.update({f"result_{k}_ms": v for k, v in summary(latencies).items()})
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("KOJO_BENCH_POSTGRES_URL")
        or os.environ.get("KOJO_TEST_POSTGRES_URL"),
    )
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if args.backend == "both" and not args.postgres:
        backends = ["sqlite"]
        print("postgres: skipped (no --postgres URL)", flush=True)
    results: dict[str, Any] = {"jobs": args.jobs, "processes": args.processes}
    for backend in backends:
        with database(backend, args.postgres) as url:
            measured = compare(url, args.jobs, args.processes, args.repeat)
        results[backend] = measured
        print(
            f"{backend:8}  drain: sync {measured['sync_jobs_per_s']:7.0f} jobs/s, "
            f"async {measured['async_jobs_per_s']:7.0f} ({measured['async_to_sync']:.2f}x), "
            f"keyed {measured['keyed_jobs_per_s']:7.0f} ({measured['keyed_to_sync']:.2f}x), "
            f"rated {measured['rated_jobs_per_s']:7.0f} ({measured['rated_to_sync']:.2f}x)\n"
            f"{'':8}  schedule(): {measured['enqueue_plain_us']:.0f} us, with unique_key "
            f"{measured['enqueue_unique_us']:.0f} us ({measured['unique_to_plain']:.2f}x)\n"
            f"{'':8}  app.result() round trip: p50 {measured['result_p50_ms']:.1f} ms, "
            f"p99 {measured['result_p99_ms']:.1f} ms",
            flush=True,
        )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (out / f"features-{stamp}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
