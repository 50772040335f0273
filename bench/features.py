"""What a feature costs: the drain rate of N no-op jobs with a sync worker beside the same
jobs with an `async def` worker, on one server, in the same run.

    python bench/features.py [--backend sqlite|postgres|both] [--jobs 3000]
                             [--processes 2] [--repeat 2] [--postgres URL]

For each backend: one server with 2 job processes; N `bench.noop` jobs (sync) are
enqueued in one transaction and drained (from the enqueue's commit to the last
completion recorded in the database), then N `bench.async_noop` jobs (awaited on the
job process's event loop); the two alternate `--repeat` times and the best rate of each
is kept. PostgreSQL runs when --postgres, KOJO_BENCH_POSTGRES_URL or
KOJO_TEST_POSTGRES_URL names a server. Results are printed and written to
bench/results/features-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
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
    wait_for,
)

import kojo

WORKERS = {"sync": "bench.noop", "async": "bench.async_noop"}


def drain_rate(app: kojo.App, code: str, jobs: int) -> float:
    """Jobs/s of draining `jobs` new jobs of type `code` by the running server."""
    done = completed_jobs(app, code)
    app.schedule_many(code, [None] * jobs)
    committed_at = datetime.now(UTC)
    wait_for(lambda: completed_jobs(app, code) == done + jobs, 300, f"drain of {code}")
    return jobs / (last_completed_at(app, code) - committed_at).total_seconds()


def compare(url: str, jobs: int, processes: int, repeat: int) -> dict[str, float]:
    app = bench_app_client(url)
    rates: dict[str, list[float]] = {name: [] for name in WORKERS}
    with server(url, processes):
        wait_for(lambda: job_processes(app) == processes, 30, "job processes")
        for _ in range(repeat):
            for name, code in WORKERS.items():
                rates[name].append(drain_rate(app, code, jobs))
    app.backend.close()
    best = {f"{name}_jobs_per_s": max(values) for name, values in rates.items()}
    best["async_to_sync"] = best["async_jobs_per_s"] / best["sync_jobs_per_s"]
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
            f"{backend:8}  sync {measured['sync_jobs_per_s']:7.0f} jobs/s  "
            f"async {measured['async_jobs_per_s']:7.0f} jobs/s  "
            f"async/sync {measured['async_to_sync']:.2f}x",
            flush=True,
        )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (out / f"features-{stamp}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
