"""Cron lateness: from a job's due minute to its start, on an idle and on a busy server.

    python bench/cron.py [--backend sqlite|postgres|both] [--minutes 3] [--types 10]
                         [--processes 2] [--busy-seconds 0.02] [--postgres URL]

For each backend and each load, a fresh database and a real `kojo server start`:
- idle: nothing else to do;
- busy: every job process busy with short jobs (`--busy-seconds` each, each
  scheduling its successor), so a due job waits for a free process and competes
  with a backlog of older jobs.
`--types` cron types fire every minute (`* * * * *`); beside them, as the
baseline, as many dynamic jobs are made ahead with `at=` the same minutes. The
baseline shows what the job processes' wake-up costs alone; the difference is
what cron itself adds. Minutes counted: the `--minutes` full minutes after the
server is up. Lateness = worker start time - due minute. Results are printed
and written to bench/results/cron-<time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness import ROOT, database, summary, wait_for

import kojo
from kojo.cron import floor_minute

MIN = timedelta(minutes=1)


@contextlib.contextmanager
def cron_server(url: str, processes: int, env: dict[str, str]) -> Iterator[None]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KOJO_")}
    full_env.update(env)
    full_env.update(
        {
            "KOJO_DATABASE_URL": url,
            "KOJO_APP": "cron_app:app",
            "KOJO_LOG_LEVEL": "warning",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "bench"), os.environ.get("PYTHONPATH", "")]),
        }
    )
    args = ["server", "start", "--max-processes", str(processes), "--host-name", "bench-cron"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kojo", *args, "--shutdown-timeout", "5"],
        env=full_env,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(url: str, load: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    record = folder / f"{load}.log"
    stop = folder / f"{load}.stop"
    env = {
        "KOJO_BENCH_CRON_TYPES": str(args.types),
        "KOJO_BENCH_CRON_LOG": str(record),
        "KOJO_BENCH_CRON_STOP": str(stop),
    }
    app = kojo.App(database=url)  # the server registers the job types of cron_app
    app.install()
    with cron_server(url, args.processes, env):
        wait_for(lambda: bool(app.jobs(type_code="bench.cron.0")), 30, "the first cron jobs")
        if load == "busy":
            app.schedule_many("bench.busy", [{"seconds": args.busy_seconds}] * (3 * args.processes))
        first = floor_minute(datetime.now(UTC)) + MIN
        minutes = [first + i * MIN for i in range(args.minutes)]
        for minute in minutes:  # the baseline: made ahead too, due at the same instants
            app.schedule_many("bench.at", [None] * args.types, at=minute)
        end = minutes[-1] + timedelta(seconds=10)
        while datetime.now(UTC) < end:
            time.sleep(1)
        stop.touch()
    lateness: dict[str, list[float]] = {"cron": [], "at": []}
    wanted = {m.timestamp() for m in minutes}
    for line in record.read_text().splitlines():
        kind, _, due, start = line.split()
        if float(due) in wanted:
            lateness[kind].append((float(start) - float(due)) * 1000)
    expected = args.types * args.minutes
    missing = {k: expected - len(v) for k, v in lateness.items() if len(v) != expected}
    if missing:
        raise SystemExit(f"{load}: jobs that did not start in time: {missing}")
    app.backend.close()
    return {kind: summary(values) for kind, values in lateness.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--minutes", type=int, default=3)
    parser.add_argument("--types", type=int, default=10)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--busy-seconds", type=float, default=0.02)
    parser.add_argument("--postgres", default=os.environ.get("KOJO_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    if args.backend == "both" and not args.postgres:
        backends = ["sqlite"]
    else:
        backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results: dict[str, Any] = {k: v for k, v in vars(args).items() if k != "postgres"}
    with tempfile.TemporaryDirectory(prefix="kojo-bench-cron-") as tmp:
        for backend in backends:
            for load in ("idle", "busy"):
                with database(backend, args.postgres) as url:
                    measured = run(url, load, args, Path(tmp))
                results.setdefault(backend, {})[load] = measured
                for kind, label in (("cron", "cron    "), ("at", "baseline")):
                    stats = measured[kind]
                    print(
                        f"{backend:8} {load:4} {label} lateness ms: p50 {stats['p50']:7.1f}  "
                        f"p99 {stats['p99']:7.1f}  max {stats['max']:7.1f}",
                        flush=True,
                    )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (out / f"cron-{stamp}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
