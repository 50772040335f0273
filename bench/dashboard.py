"""How long the dashboard's pages, JSON twins and /metrics take with many jobs stored.

    python bench/dashboard.py [--backend sqlite|postgres|both] [--jobs 1000000]
                              [--repeat 5] [--postgres URL]

Loads `--jobs` finished jobs (bench/backlog.py's set-based copy, as kojo writes them) and
a few waiting ones, and the running totals of finished jobs as a busy hour leaves them
(kojo_job_tally: a row per job process, minute and outcome, plus the folded rows), then
times each path in process through Starlette's TestClient
(routing, the database reads and the rendering; no network). The best of `--repeat`
requests is kept, after one warm-up request. Issue 16's budgets: every page under
100 ms, a scrape under 200 ms at 1,000,000 jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import backlog
import harness
from starlette.testclient import TestClient

import kojo
from kojo.backends.tally_store import Group, minute_of
from kojo.clock import utcnow
from kojo.dashboard import metrics, queries
from kojo.dashboard.web import create_app

PATHS = (
    "/",
    "/api/stats",
    "/jobs",
    "/api/jobs",
    "/jobs?state=waiting",
    "/jobs?state=panicked",  # a state with no job: no walk past 1,000,000 others
    "/api/jobs?q=no-such-text",  # a search's worst case: its whole scan window, no match
    "/jobs?q=no-such-text",
    "/jobs/1",
    "/types",
    "/processes",
    "/locks",
    "/metrics",
    "/api/throughput",
)
WAITING = 1000
TALLY_WRITERS = 16  # job processes that finished jobs in each minute of the last hour
FINISH_SERIES = "/metrics: finish series only"
RECOUNT = "job counts, one recount"  # what the refresher does in the background


def seed_tally(app: kojo.App, type_code: str) -> int:
    """The tally rows a busy hour leaves: every writer, every minute, two outcomes, each
    for 100 jobs that waited 0.1 s and ran 0.01 s, plus a folded row; how many rows."""
    now = utcnow()
    group = Group()
    for _ in range(100):
        group.durations.append(0.01)
        group.waits.append(0.1)
    group.finished = 100
    params = group.params()
    rows = 0
    with app.backend.write():
        for ago in range(60):
            minute = minute_of(now) - ago
            for writer in range(1, TALLY_WRITERS + 1):
                for outcome in ("complete_success", "complete_failed"):
                    app.backend.execute(
                        "tally_add",
                        {
                            **params,
                            "minute": minute,
                            "type_code": type_code,
                            "outcome": outcome,
                            "writer": writer,
                        },
                    )
                    rows += 1
        app.backend.execute(
            "tally_add",
            {
                **params,
                "minute": 0,
                "type_code": type_code,
                "outcome": "complete_success",
                "writer": 0,
            },
        )
    return rows + 1


def finish_series(app: kojo.App) -> None:
    """What /metrics adds for finished jobs: the tally's sums, made into the families."""
    totals = queries.finish_totals(app)
    list(metrics.finish_metrics(sorted({r["type_code"] for r in totals}), totals))


# With --payload, every backlog job gets this (about 100 bytes), so that a search
# (`?q=`) reads payloads as it would in use; the backlog's own jobs have none.
PAYLOAD = '{"order":"ORD-0000000","customer":{"id":12345,"country":"FR"},"lines":[1,2,3]}'


def give_payloads(app: kojo.App) -> None:
    kind = "jsonb" if app.backend.dialect == "postgres" else "text"
    sql = f"UPDATE kojo_job SET payload = CAST(:p AS {kind}) WHERE payload IS NULL"
    with app.backend.write() as conn:
        conn.execute(
            app.backend._prepare(sql),
            app.backend._convert_params({"p": PAYLOAD}),
        )


def vacuum(url: str) -> None:
    """What autovacuum does soon after the payloads' UPDATE: without it, every row of the
    table has a dead version that index scans step over, which no table of inserted jobs
    has for long."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE kojo_job")


def measure(url: str, jobs: int, repeat: int, payload: bool = False) -> dict[str, Any]:
    app = kojo.App(database=url)
    app.install()
    app.job_type("bench.waiting")(print)
    app.job_type(backlog.RUNNABLE_TYPE)(print)  # the finished backlog's type
    app.register_job_types()
    loaded = backlog.load(app, url, "finished", jobs)
    if payload:
        give_payloads(app)
        if app.backend.dialect == "postgres":
            vacuum(url)
    app.schedule_many("bench.waiting", list(range(WAITING)))
    tally_rows = seed_tally(app, backlog.RUNNABLE_TYPE)
    dashboard = create_app(app)
    web = TestClient(dashboard)
    timings: dict[str, float] = {}
    for name, step in (
        (FINISH_SERIES, lambda: finish_series(app)),
        (RECOUNT, dashboard.state.dashboard.counts.refresh),
    ):
        best = float("inf")
        for _ in range(repeat + 1):
            started = time.perf_counter()
            step()
            best = min(best, time.perf_counter() - started)
        timings[name] = round(best * 1000, 1)
    for path in PATHS:
        assert web.get(path).status_code == 200, path  # warm-up, and a check
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            response = web.get(path)
            best = min(best, time.perf_counter() - started)
            assert response.status_code == 200, path
        timings[path] = round(best * 1000, 1)
    dashboard.state.dashboard.counts.close()
    app.backend.close()
    return {
        "jobs": jobs,
        "tally_rows": tally_rows,
        "load_seconds": round(loaded, 1),
        "milliseconds": timings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--payload", action="store_true", help="a payload on every job")
    parser.add_argument("--postgres", default=os.environ.get("KOJO_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if args.backend == "both" and not args.postgres:
        backends = ["sqlite"]
    for backend in backends:
        with harness.database(backend, args.postgres) as url:
            result = measure(url, args.jobs, args.repeat, args.payload)
        print(f"{backend}: {args.jobs:,} finished jobs (loaded in {result['load_seconds']} s)")
        for path, ms in result["milliseconds"].items():
            if path == RECOUNT:  # not a request: the refresher's work every few seconds
                print(f"  {path:<22} {ms:>8.1f} ms  (in the background)")
                continue
            budget = 200 if path.startswith("/metrics") else 100
            print(f"  {path:<22} {ms:>8.1f} ms  {'ok' if ms < budget else 'OVER ' + str(budget)}")
        print(json.dumps({"backend": backend, **result}))


if __name__ == "__main__":
    main()
