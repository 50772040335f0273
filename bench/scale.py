"""Steady drain rate and enqueue→start latency beside backlogs of jobs that cannot run.

    python bench/scale.py [--backend sqlite|postgres|both]
                          [--kinds future,paused,serial,finished,after,limited,rated]
                          [--sizes 0,100000,1000000] [--jobs 10000] [--processes 2]
                          [--repeat 1] [--latency-samples 200] [--latency-budget 60]
                          [--drain-timeout 120] [--quick] [--postgres URL]

Per backend and case, on a fresh database: a backlog of SIZE jobs of KIND at
importance 10 (they sort ahead of the runnable jobs; see backlog.py), then a
real `kojo server start --max-processes 2` (the bench app). On the idle server,
the enqueue→start latency of single jobs scheduled one at a time; then
app.schedule_many() of --jobs runnable no-op jobs at importance 0 and their
drain. The steady rate counts the middle 80% of the completions, by the
completed_at_date_time the database holds (start-up and the tail left out).
Each round runs the empty table first and last and every backlog between; a
run's ratio is its rate to the mean of its round's two empty-table runs, and a
case keeps the medians of its rates and ratios over the rounds and pools its
latency samples. Goals (issue 12): ratio >= 0.90 and
p99 < 50 ms. A drain that does not finish within --drain-timeout is measured on
the completions so far and marked partial; latency sampling stops after
--latency-budget seconds (the samples taken are counted in the table).
Results are printed and written to bench/results/scale-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import backlog
from claim import positive, versions
from harness import (
    ROOT,
    bench_app_client,
    database,
    job_processes,
    server,
    start_latencies_ms,
    summary,
    wait_for,
)

import kojo

GOAL_RATIO = 0.90
GOAL_P99_MS = 50.0
STEADY_SHARE = 0.8  # the middle 80% of the completions
# Defaults of the options left unset; --quick has its own.
DEFAULTS = {
    "sizes": [0, 100_000, 1_000_000],
    "jobs": 10_000,
    "latency_samples": 200,
    "latency_budget": 60.0,
    "drain_timeout": 120.0,
}
QUICK = {
    "sizes": [0, 2000],
    "jobs": 2000,
    "latency_samples": 20,
    "latency_budget": 10.0,
    "drain_timeout": 30.0,
}


# -- one case ---------------------------------------------------------------------------


def completion_times(app: kojo.App, first: int, last: int) -> list[float]:
    """completed_at_date_time of the runnable jobs completed so far, as epoch seconds."""
    # Aliased to the column's name so that SQLite's rows convert it to a datetime.
    cursor = app.backend.connection().execute(
        "SELECT completed_at_date_time AS completed_at_date_time FROM kojo_job "
        f"WHERE kojo_job_id BETWEEN {first} AND {last} AND type_code = '{backlog.RUNNABLE_TYPE}' "
        "AND assigned_state = 'complete_success'"
    )
    return sorted(row["completed_at_date_time"].timestamp() for row in cursor.fetchall())


def completed_count(app: kojo.App, first: int, last: int) -> int:
    cursor = app.backend.connection().execute(
        f"SELECT count(*) AS jobs FROM kojo_job WHERE kojo_job_id BETWEEN {first} AND {last} "
        "AND assigned_state = 'complete_success'"
    )
    return int(cursor.fetchone()["jobs"])


def steady_rate(times: list[float]) -> float:
    """Jobs per second over the middle STEADY_SHARE of the sorted completion times."""
    skip = round(len(times) * (1 - STEADY_SHARE) / 2)
    middle = times[skip : len(times) - skip]
    if len(middle) < 2 or middle[-1] <= middle[0]:
        return float("nan")
    return (len(middle) - 1) / (middle[-1] - middle[0])


def drain(app: kojo.App, jobs: int, timeout: float) -> dict[str, Any]:
    """Enqueue `jobs` runnable no-op jobs and wait for them (or the timeout); the rates."""
    started = time.perf_counter()
    ids = app.schedule_many(backlog.RUNNABLE_TYPE, [None] * jobs)
    committed_at = time.time()
    enqueue_seconds = time.perf_counter() - started
    first, last = min(ids), max(ids)
    deadline = time.monotonic() + timeout
    while completed_count(app, first, last) < jobs and time.monotonic() < deadline:
        time.sleep(0.1)
    times = completion_times(app, first, last)
    result: dict[str, Any] = {
        "completed": len(times),
        "partial": len(times) < jobs,
        "enqueue_jobs_per_s": jobs / enqueue_seconds,
        "steady_jobs_per_s": steady_rate(times),
    }
    if times:
        result["first_completion_s"] = times[0] - committed_at
        result["drain_jobs_per_s"] = len(times) / max(times[-1] - committed_at, 1e-9)
    return result


def run_case(
    backend: str, admin_url: str | None, kind: str, size: int, args: Any
) -> dict[str, Any]:
    with database(backend, admin_url) as url:
        app = bench_app_client(url)
        try:
            load_seconds = backlog.load(app, url, kind, size)
            start_log = Path(f"/tmp/kojo-bench-scale-starts-{os.getpid()}.log")
            start_log.unlink(missing_ok=True)
            with server(url, args.processes, {"KOJO_BENCH_START_LOG": str(start_log)}):
                wait_for(lambda: job_processes(app) == args.processes, 60, "job processes")
                time.sleep(0.5)  # let the tree settle
                latencies = start_latencies_ms(
                    app, start_log, args.latency_samples, budget=args.latency_budget, timeout=60
                )
                result = drain(app, args.jobs, args.drain_timeout)
            start_log.unlink(missing_ok=True)
            states = backlog.blocked_states(app)
        finally:
            app.backend.close()
    if states != backlog.expected_states(kind, size):
        raise SystemExit(f"{backend} {kind} {size}: the backlog changed during the run: {states}")
    result.update(kind=kind, size=size, load_seconds=load_seconds, latencies=latencies)
    return result


# -- the run ----------------------------------------------------------------------------


def run_backend(backend: str, args: Any) -> list[dict[str, Any]]:
    cases = [(kind, size) for kind in args.kinds for size in args.sizes if size > 0]
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for round_number in range(1, args.repeat + 1):
        # The empty table first and last in every round: the reference, and the drift.
        done = []
        for kind, size in [("empty", 0), *cases, ("empty", 0)]:
            print(f"{backend} round {round_number}: {kind} {size:,} ...", flush=True)
            done.append(run_case(backend, args.postgres, kind, size, args))
            runs.setdefault((kind, size), []).append(done[-1])
        # Each run against its own round's empty-table runs: the machine's speed drifts
        # by 10-30% over minutes here, and a ratio between rounds would measure that.
        reference = statistics.fmean([rate(done[0]), rate(done[-1])])
        for run in done:
            run["round"] = round_number
            run["ratio"] = rate(run) / reference if reference > 0 else float("nan")
    rows = [combine(found) for found in runs.values()]
    for row in rows:
        row["backend"] = backend
        row["verdict"] = verdict(row)
    return rows


def rate(run: dict[str, Any]) -> float:
    value = float(run["steady_jobs_per_s"])
    return value if value == value else 0.0  # a NaN rate (too few completions) is the worst


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One table row from a case's runs: the medians of its rates and of its ratios to its
    rounds' empty-table runs, every latency sample."""
    row = {key: value for key, value in runs[0].items() if key not in ("latencies", "round")}
    row["steady_jobs_per_s"] = statistics.median(rate(run) for run in runs)
    row["ratio"] = statistics.median(run["ratio"] for run in runs)
    row["ratios"] = [run["ratio"] for run in runs]
    row["load_seconds"] = statistics.median(run["load_seconds"] for run in runs)
    row["completed"] = min(run["completed"] for run in runs)
    row["partial"] = any(run["partial"] for run in runs)
    pooled = [sample for run in runs for sample in run["latencies"]]
    row["latency_ms"] = summary(pooled)
    row["latency_samples"] = len(pooled)
    row["runs"] = [
        {key: value for key, value in run.items() if key != "latencies"}
        | {"latency_ms": summary(run["latencies"])}
        for run in runs
    ]
    return row


def verdict(row: dict[str, Any]) -> str:
    misses = []
    if row["kind"] != "empty" and not row["ratio"] >= GOAL_RATIO:
        misses.append("rate")
    if not row["latency_ms"]["p99"] < GOAL_P99_MS:
        misses.append("p99")
    return "PASS" if not misses else "FAIL " + "+".join(misses)


def print_table(backend: str, database_text: str, rows: list[dict[str, Any]]) -> None:
    goal = f"goal: ratio >= {GOAL_RATIO:.2f}, p99 < {GOAL_P99_MS:.0f} ms"
    print(f"\n{backend}: {database_text}; {goal}")
    empty = ", ".join(f"{run['steady_jobs_per_s']:.0f}" for run in rows[0]["runs"])
    print(f"empty-table runs: {empty} jobs/s (two a round)")
    print("ratio: the median over the rounds of a run's rate to its round's empty-table mean")
    print(
        f"{'kind':<9} {'size':>9} {'load s':>7} {'steady/s':>9} {'ratio':>6} "
        f"{'ratios':>18} {'p50 ms':>7} {'p99 ms':>7} {'n':>4}  verdict"
    )
    for row in rows:
        lat = row["latency_ms"]
        note = f"  (partial: {row['completed']:,} done)" if row["partial"] else ""
        print(
            f"{row['kind']:<9} {row['size']:>9,} {row['load_seconds']:>7.1f} "
            f"{row['steady_jobs_per_s']:>9.0f} {row['ratio']:>6.2f} "
            f"{' '.join(f'{r:.2f}' for r in row['ratios']):>18} {lat['p50']:>7.1f} "
            f"{lat['p99']:>7.1f} {row['latency_samples']:>4}  {row['verdict']}{note}",
            flush=True,
        )


# -- arguments --------------------------------------------------------------------------


def sizes(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes are whole numbers, got {text!r}") from None
    if any(value < 0 for value in values):
        raise argparse.ArgumentTypeError(f"sizes must be at least 0, got {text!r}")
    return values


def kinds(text: str) -> list[str]:
    chosen = text.split(",")
    unknown = [kind for kind in chosen if kind not in backlog.KINDS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown kind {unknown[0]!r}; known: {','.join(backlog.KINDS)}"
        )
    return chosen


def seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text!r}")
    return value


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--kinds", type=kinds, default=list(backlog.KINDS))
    parser.add_argument("--sizes", type=sizes, help="backlog sizes (default 0,100000,1000000)")
    parser.add_argument("--jobs", type=positive, help="runnable jobs drained (default 10000)")
    parser.add_argument("--processes", type=positive, default=2)
    parser.add_argument("--repeat", type=positive, default=1, help="rounds; medians kept")
    parser.add_argument("--latency-samples", type=positive, help="default 200")
    parser.add_argument("--latency-budget", type=seconds, help="seconds (default 60)")
    parser.add_argument("--drain-timeout", type=seconds, help="seconds (default 120)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("KOJO_TEST_POSTGRES_URL"),
        help="admin URL of a PostgreSQL server (default: KOJO_TEST_POSTGRES_URL)",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    for name, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in args.backends and not args.postgres:
        if args.backend != "both":
            parser.error("postgres needs --postgres URL or KOJO_TEST_POSTGRES_URL")
        print("postgres skipped: give --postgres URL or set KOJO_TEST_POSTGRES_URL")
        args.backends.remove("postgres")
    return args


def main() -> None:
    args = parse_args()
    print(
        f"{args.jobs:,} runnable jobs, {args.processes} job processes; backlogs at importance "
        f"{backlog.IMPORTANCE}: {','.join(args.kinds)} x {','.join(f'{s:,}' for s in args.sizes)}"
    )
    results: dict[str, Any] = {}
    tables = []
    for backend in args.backends:
        database_text = versions(backend, args.postgres)
        rows = run_backend(backend, args)
        results[backend] = {"database": database_text, "rows": rows}
        tables.append((backend, database_text, rows))
    for table in tables:
        print_table(*table)
    args.output.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = args.output / f"scale-{stamp}.json"
    meta = {
        "jobs": args.jobs,
        "processes": args.processes,
        "repeat": args.repeat,
        "kinds": args.kinds,
        "sizes": args.sizes,
        "latency_samples": args.latency_samples,
        "latency_budget": args.latency_budget,
        "drain_timeout": args.drain_timeout,
        "goal_ratio": GOAL_RATIO,
        "goal_p99_ms": GOAL_P99_MS,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "time": stamp,
    }
    path.write_text(json.dumps({"parameters": meta, "results": results}, indent=2) + "\n")
    print(f"written to {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    main()
