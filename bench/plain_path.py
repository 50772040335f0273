"""The plain path before and after: a real server's drain of no-op jobs with this
checkout's `src` and with an older tree, in alternating rounds on the same machine.

    python bench/plain_path.py --before SRC [--backend sqlite|postgres|both]
                               [--jobs 20000] [--rounds 3] [--processes 2]
                               [--postgres URL]

SRC is a source tree to compare with, e.g. the last commit before issue 14's features:
`mkdir /tmp/old && git archive 456ddb0 src | tar -x -C /tmp/old` then `--before
/tmp/old/src`. Each round runs, per backend, both trees (the order alternates from round
to round, so that a machine growing busier does not favour one) and, on PostgreSQL, a raw
loop of 2 processes claiming 100 rows per transaction with SELECT … FOR UPDATE SKIP
LOCKED and updating them (issue 12's floor). Each tree runs in its own process
(`PYTHONPATH=tree`): a fresh database, `kojo server start` with `--processes` job
processes and bench/plain_app.py, bulk enqueue, then the drain from the enqueue's commit
to the last completion recorded in the database. Also measured: CPU of the server's
process tree per job (µs; PostgreSQL's own processes not counted).

Printed: every run, then medians and after/before ratios, both of the medians and round
by round (the median of the rounds' ratios and their middle half). Written to
bench/results/plain_path-<time>.json. Run it alone on the machine (other load blurs it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import ROOT, database, timed_workers

CHILD_FLAG = "--child"


# -- one drain, in a process importing kojo from the tree under test -------------------------


def child(url: str, jobs: int, processes: int) -> None:
    """Start a server on `url`, drain `jobs` no-op jobs, print the measures as JSON."""
    import plain_app
    from harness import descendants, job_processes, last_completed_at, server, wait_drained

    client = plain_app.app.__class__(database=url)
    for job_type in plain_app.app.job_types.values():
        client.add_job_type(job_type)
    client.install()
    client.register_job_types()
    with server(url, processes, {"KOJO_APP": "plain_app:app"}) as pid:
        deadline = time.monotonic() + 30
        while job_processes(client) != processes:
            if time.monotonic() > deadline:
                raise TimeoutError("job processes did not register")
            time.sleep(0.05)
        time.sleep(0.5)  # let the tree settle
        tree = descendants(pid)
        cpu_before = _cpu_seconds(tree)
        client.schedule_many("bench.plain", [None] * jobs)
        committed_at = datetime.now(UTC)
        wait_drained(client, "bench.plain", jobs, 600)
        cpu = _cpu_seconds(tree) - cpu_before
        drain = (last_completed_at(client, "bench.plain") - committed_at).total_seconds()
    client.backend.close()
    print(json.dumps({"jobs_per_s": jobs / drain, "cpu_us_per_job": cpu / jobs * 1e6}))


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended; its CPU is lost to both trees alike
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def drain(tree: Path, url: str, jobs: int, processes: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(ROOT / "bench")])}
    out = subprocess.run(
        [sys.executable, __file__, CHILD_FLAG, url, str(jobs), str(processes)],
        env=env,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    measured: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return measured


# -- PostgreSQL's floor: raw batches of 100 --------------------------------------------------

RAW_BATCH = 100


def _raw_setup(url: str, jobs: int) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_queue (id bigserial PRIMARY KEY, state text NOT NULL)")
        conn.execute("CREATE INDEX bench_ready ON bench_queue (id) WHERE state = 'ready'")
        conn.execute(
            "INSERT INTO bench_queue (state) SELECT 'ready' FROM generate_series(1, %s)", (jobs,)
        )
        conn.execute("VACUUM ANALYZE bench_queue")


def _raw_worker(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            with conn.transaction():
                ids = [
                    row[0]
                    for row in conn.execute(
                        "SELECT id FROM bench_queue WHERE state = 'ready' ORDER BY id "
                        "LIMIT %s FOR UPDATE SKIP LOCKED",
                        (RAW_BATCH,),
                    )
                ]
                if ids:
                    conn.execute("UPDATE bench_queue SET state = 'done' WHERE id = ANY(%s)", (ids,))
            if not ids:
                return


def raw_floor(url: str, jobs: int, processes: int) -> float:
    """Jobs per second of the raw 100-per-transaction loop."""
    _raw_setup(url, jobs)
    return jobs / timed_workers(_raw_worker, url, processes)


# -- rounds -----------------------------------------------------------------------------------


def quartiles(values: list[float]) -> tuple[float, float]:
    """The first and third quartiles (the values themselves when there are fewer than 2)."""
    if len(values) < 2:
        return values[0], values[0]
    low, _, high = statistics.quantiles(values, n=4)
    return low, high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="source tree to compare with")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--postgres", default=os.environ.get("KOJO_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    if not (args.before / "kojo" / "__init__.py").is_file():
        raise SystemExit(f"--before {args.before}: not a source tree (no kojo/__init__.py)")
    if args.jobs < 1 or args.rounds < 1 or args.processes < 1:
        raise SystemExit("--jobs, --rounds and --processes must be at least 1")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    trees = {"before": args.before.resolve(), "after": ROOT / "src"}
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        backend: {"before": [], "after": [], "raw": []} for backend in backends
    }
    for round_number in range(args.rounds):
        order = ["before", "after"] if round_number % 2 == 0 else ["after", "before"]
        for backend in backends:
            for label in order:
                with database(backend, args.postgres) as url:
                    measured = drain(trees[label], url, args.jobs, args.processes)
                runs[backend][label].append(measured)
                print(
                    f"round {round_number + 1} {backend:8} {label:6} "
                    f"{measured['jobs_per_s']:7.0f} jobs/s  "
                    f"{measured['cpu_us_per_job']:5.0f} µs CPU/job",
                    flush=True,
                )
            if backend == "postgres":
                with database(backend, args.postgres) as url:
                    floor = raw_floor(url, args.jobs, args.processes)
                runs[backend]["raw"].append({"jobs_per_s": floor})
                print(f"round {round_number + 1} postgres raw    {floor:7.0f} jobs/s", flush=True)
    results: dict[str, Any] = {
        "jobs": args.jobs,
        "rounds": args.rounds,
        "processes": args.processes,
        "before": str(trees["before"]),
        "runs": runs,
    }
    for backend in backends:
        medians = {
            label: statistics.median(run["jobs_per_s"] for run in measured)
            for label, measured in runs[backend].items()
            if measured
        }
        cpu = {
            label: statistics.median(run["cpu_us_per_job"] for run in runs[backend][label])
            for label in ("before", "after")
        }
        summary: dict[str, float] = {
            "before_jobs_per_s": medians["before"],
            "after_jobs_per_s": medians["after"],
            "after_over_before": medians["after"] / medians["before"],
            "before_cpu_us_per_job": cpu["before"],
            "after_cpu_us_per_job": cpu["after"],
        }
        # The two trees of a round ran one right after the other: their ratio leaves out
        # the machine's drift between rounds, which the medians above keep.
        paired = sorted(
            after["jobs_per_s"] / before["jobs_per_s"]
            for before, after in zip(runs[backend]["before"], runs[backend]["after"], strict=True)
        )
        summary["paired_after_over_before"] = statistics.median(paired)
        low, high = quartiles(paired)
        line = (
            f"{backend:8} median before {medians['before']:7.0f}  after {medians['after']:7.0f} "
            f"jobs/s  after/before {summary['after_over_before']:.3f}  "
            f"CPU/job {cpu['before']:.0f} -> {cpu['after']:.0f} µs\n"
            f"{'':8} after/before round by round: median {statistics.median(paired):.3f}, "
            f"middle half {low:.3f}-{high:.3f}, all {paired[0]:.3f}-{paired[-1]:.3f}"
        )
        if "raw" in medians:
            summary["raw_jobs_per_s"] = medians["raw"]
            summary["after_over_raw"] = medians["after"] / medians["raw"]
            line += f"  raw {medians['raw']:.0f} (after/raw {summary['after_over_raw']:.2f})"
        results[backend] = summary
        print(line, flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (out / f"plain_path-{stamp}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == CHILD_FLAG:
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
