"""Throughput and latency of a kojo server, beside a raw one-job-per-transaction loop.

    python bench/throughput.py [--backend sqlite|postgres|mysql|both|all] [--jobs 20000]
                               [--processes 2] [--postgres URL] [--mysql URL]
                               [--latency-samples 300]

For each backend, in one run:
- baseline: 2 forked processes claim and complete one job per transaction
  (PostgreSQL, and MySQL / MariaDB at READ COMMITTED: SELECT … FOR UPDATE SKIP
  LOCKED LIMIT 1 + UPDATE; SQLite: BEGIN IMMEDIATE + UPDATE … RETURNING) over the
  same number of rows;
- kojo: bulk enqueue of N no-op jobs (jobs/s), then the drain by a running
  server with 2 job processes, from the enqueue's commit to the last
  completion as recorded in the database (every job claimed and completed
  durably);
- enqueue→start latency on an idle server (p50/p99), from before
  app.schedule() to the worker's first line;
- memory: PSS of the whole server tree (server, root, maintainer, job processes).
Results are printed and written to bench/results/throughput-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from harness import (
    ROOT,
    bench_app_client,
    database,
    descendants,
    job_processes,
    last_completed_at,
    pss_bytes,
    server,
    start_latencies_ms,
    summary,
    timed_workers,
    wait_drained,
    wait_for,
)

import mysql_db

# -- baseline: one job per transaction, raw SQL ---------------------------------------------


def _baseline_setup(url: str, jobs: int) -> None:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE bench_queue (id INTEGER PRIMARY KEY, state TEXT NOT NULL)")
        conn.execute("CREATE INDEX bench_ready ON bench_queue (id) WHERE state = 'ready'")
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO bench_queue (state) VALUES ('ready')", [()] * jobs)
        conn.execute("COMMIT")
        conn.close()
        return
    if url.startswith("mysql"):
        my = mysql_db.connect(url)
        cur = my.cursor()
        cur.execute(
            "CREATE TABLE bench_queue (id bigint AUTO_INCREMENT PRIMARY KEY, "
            "state varchar(8) NOT NULL, KEY bench_ready (state, id)) ENGINE = InnoDB"
        )
        cur.execute("INSERT INTO bench_queue (state) VALUES " + ", ".join(["('ready')"] * jobs))
        my.close()
        return
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_queue (id bigserial PRIMARY KEY, state text NOT NULL)")
        conn.execute("CREATE INDEX bench_ready ON bench_queue (id) WHERE state = 'ready'")
        conn.execute(
            "INSERT INTO bench_queue (state) SELECT 'ready' FROM generate_series(1, %s)", (jobs,)
        )
        conn.execute("VACUUM ANALYZE bench_queue")


def _baseline_worker(url: str) -> None:
    done = 0
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, timeout=60)
        conn.execute("PRAGMA synchronous = NORMAL")
        while True:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "UPDATE bench_queue SET state = 'done' WHERE id = (SELECT id FROM bench_queue "
                "WHERE state = 'ready' ORDER BY id LIMIT 1) RETURNING id"
            ).fetchone()
            conn.execute("COMMIT")
            if row is None:
                break
            done += 1
        return
    if url.startswith("mysql"):
        my = mysql_db.connect(url)
        cur = my.cursor()
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        while True:
            cur.execute("START TRANSACTION")
            cur.execute(
                "SELECT id FROM bench_queue WHERE state = 'ready' ORDER BY id LIMIT 1 "
                "FOR UPDATE SKIP LOCKED"
            )
            found = cur.fetchone()
            if found is not None:
                cur.execute("UPDATE bench_queue SET state = 'done' WHERE id = %s", found)
            cur.execute("COMMIT")
            if found is None:
                break
            done += 1
        my.close()
        return
    with psycopg.connect(url, autocommit=True) as pgconn:
        while True:
            with pgconn.transaction():
                row = pgconn.execute(
                    "SELECT id FROM bench_queue WHERE state = 'ready' ORDER BY id LIMIT 1 "
                    "FOR UPDATE SKIP LOCKED"
                ).fetchone()
                if row is not None:
                    pgconn.execute("UPDATE bench_queue SET state = 'done' WHERE id = %s", row)
            if row is None:
                break
            done += 1


def baseline(url: str, jobs: int, processes: int) -> float:
    """Jobs per second of the raw loop."""
    _baseline_setup(url, jobs)
    return jobs / timed_workers(_baseline_worker, url, processes)


# -- kojo -----------------------------------------------------------------------------------


def kojo_run(url: str, jobs: int, processes: int, samples: int) -> dict[str, Any]:
    app = bench_app_client(url)
    start_log = Path(f"/tmp/kojo-bench-starts-{os.getpid()}.log")
    start_log.unlink(missing_ok=True)
    result: dict[str, Any] = {}
    with server(url, processes, {"KOJO_BENCH_START_LOG": str(start_log)}) as pid:
        wait_for(lambda: job_processes(app) == processes, 30, "job processes")
        time.sleep(0.5)  # let the tree settle before measuring it
        result["pss_idle_bytes"] = pss_bytes(descendants(pid))
        result["processes_in_tree"] = len(descendants(pid))

        # enqueue→start latency on the idle server
        result["latency_ms"] = summary(start_latencies_ms(app, start_log, samples))

        # bulk enqueue, then drain
        started = time.perf_counter()
        app.schedule_many("bench.noop", [None] * jobs)
        enqueued = time.perf_counter()
        committed_at = datetime.now(UTC)
        result["enqueue_jobs_per_s"] = jobs / (enqueued - started)
        wait_drained(app, "bench.noop", jobs, 600)
        drain = (last_completed_at(app, "bench.noop") - committed_at).total_seconds()
        result["drain_seconds"] = drain
        result["drain_jobs_per_s"] = jobs / drain
        result["pss_after_bytes"] = pss_bytes(descendants(pid))
    app.backend.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend", choices=["sqlite", "postgres", "mysql", "both", "all"], default="both"
    )
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument("--postgres", default=os.environ.get("KOJO_TEST_POSTGRES_URL"))
    parser.add_argument("--mysql", default=os.environ.get("KOJO_TEST_MYSQL_URL"))
    args = parser.parse_args()
    groups = {"both": ["sqlite", "postgres"], "all": ["sqlite", "postgres", "mysql"]}
    backends = groups.get(args.backend, [args.backend])
    admin_urls = {"sqlite": None, "postgres": args.postgres, "mysql": args.mysql}
    results: dict[str, Any] = {"jobs": args.jobs, "processes": args.processes}
    for backend in backends:
        with database(backend, admin_urls[backend]) as url:
            base = baseline(url, args.jobs, args.processes)
        with database(backend, admin_urls[backend]) as url:
            measured = kojo_run(url, args.jobs, args.processes, args.latency_samples)
        measured["baseline_jobs_per_s"] = base
        measured["ratio_to_baseline"] = measured["drain_jobs_per_s"] / base
        results[backend] = measured
        lat = measured["latency_ms"]
        print(
            f"{backend:8}  drain {measured['drain_jobs_per_s']:8.0f} jobs/s  "
            f"baseline {base:7.0f} jobs/s  ratio {measured['ratio_to_baseline']:.2f}x  "
            f"enqueue {measured['enqueue_jobs_per_s']:8.0f} jobs/s  "
            f"latency p50 {lat['p50']:.1f} ms p99 {lat['p99']:.1f} ms  "
            f"PSS {measured['pss_idle_bytes'] / 2**20:.1f} MiB "
            f"({measured['processes_in_tree']} processes)",
            flush=True,
        )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (out / f"throughput-{stamp}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
