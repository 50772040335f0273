"""Memory of a kojo server tree, beside a bare `import kojo`, and a leak test of a job process.

    python bench/memory.py [--backend sqlite|postgres|both] [--only tree|leak]
                           [--processes 2,16] [--jobs 1000000] [--every N]
                           [--limit-mib 5] [--quick] [--postgres URL]

- tree: `kojo server start --max-processes P` (the bench app, bench_app.py) for each P
  of --processes, after each job process has worked a few no-op jobs: the PSS
  (/proc/PID/smaps_rollup) of everything under the server pid (server, root,
  maintainer, job processes), by kind. Baseline, measured in the same run: the PSS of
  `python -c "import kojo; import time; time.sleep(60)"` (and of a bare python).
- leak: one job process (`--max-processes 1`) works --jobs no-op jobs, enqueued in
  chunks ahead of it; every --every jobs (default: a hundredth of --jobs) the job
  process's PSS and RSS are sampled. Growth = the end minus the first sample at 10% of
  the jobs (past the warm-up); over --limit-mib (default 5 MiB) is flagged as a leak
  (exit 1).
  --quick: 20,000 jobs.

PSS counts a page shared by k processes as 1/k in each, so the tree's PSS is what the
tree costs the machine (the job processes are forked from the root and share its pages
until they write them). Results are printed and written to bench/results/memory-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

from harness import ROOT, database, descendants, server, wait_for

import kojo
from foundation_helpers import count_by_state

MIB = 2**20
WARM_JOBS_PER_PROCESS = 20
FEED_CHUNK = 20_000  # jobs enqueued at a time, ahead of the job process
FEED_AHEAD = 40_000  # at most this many waiting


def rollup(pid: int) -> dict[str, int]:
    """Pss and Rss of one process, in bytes (0 when it is gone)."""
    found = {"pss": 0, "rss": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as lines:
            for line in lines:
                key, _, rest = line.partition(":")
                if key in ("Pss", "Rss"):
                    found[key.lower()] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return found


def title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def kind_of(pid: int, server_pid: int) -> str:
    """server, root, maintainer or job, from the process title (`kojo: /server[8]/root[9]/…`)."""
    if pid == server_pid:
        return "server"
    last = title(pid).rsplit("/", 1)[-1]
    return last.split("[", 1)[0] or "other"


def baseline_pss(code: str) -> int:
    """The PSS of `python -c CODE` once it has reached its sleep."""
    proc = subprocess.Popen(
        [sys.executable, "-c", f"{code}; print(1, flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        time.sleep(0.2)
        return rollup(proc.pid)["pss"]
    finally:
        proc.kill()
        proc.wait()


def bench_app_on(url: str) -> kojo.App:
    import bench_app

    app = kojo.App(database=url)
    for job_type in bench_app.app.job_types.values():
        app.add_job_type(job_type)
    app.install()
    app.register_job_types()
    return app


def completed(app: kojo.App) -> int:
    return sum(
        int(row["jobs"])
        for row in count_by_state(app.backend)
        if row["type_code"] == "bench.noop" and row["assigned_state"] == "complete_success"
    )


def job_pids(app: kojo.App) -> list[int]:
    host = f"bench-{os.getpid()}"
    return [
        row.process_id
        for row in app.backend.processes()
        if row.kind == "job" and row.host_name == host
    ]


# -- tree ----------------------------------------------------------------------------------


def measure_tree(url: str, processes: int) -> dict[str, Any]:
    app = bench_app_on(url)
    with server(url, processes) as pid:
        wait_for(lambda: len(job_pids(app)) == processes, 60, f"{processes} job processes")
        jobs = WARM_JOBS_PER_PROCESS * processes
        app.schedule_many("bench.noop", [None] * jobs)
        wait_for(lambda: completed(app) == jobs, 120, "the warm-up jobs")
        time.sleep(1.0)  # let the tree settle
        by_kind: dict[str, dict[str, int]] = {}
        for member in descendants(pid):
            kind = kind_of(member, pid)
            entry = by_kind.setdefault(kind, {"processes": 0, "pss": 0, "rss": 0})
            entry["processes"] += 1
            for key, value in rollup(member).items():
                entry[key] += value
        still = len(job_pids(app))
    app.backend.close()
    total = sum(entry["pss"] for entry in by_kind.values())
    return {"processes": processes, "job_processes_seen": still, "pss": total, "by_kind": by_kind}


def print_tree(backend: str, result: dict[str, Any], base: int) -> None:
    kinds = "  ".join(
        f"{kind} {entry['processes']}x {entry['pss'] / MIB:.1f}"
        for kind, entry in sorted(result["by_kind"].items())
    )
    print(
        f"{backend:8}  {result['processes']:2} job processes  tree PSS "
        f"{result['pss'] / MIB:6.1f} MiB  = {result['pss'] / base:4.1f}x the baseline  "
        f"({kinds} MiB)",
        flush=True,
    )


# -- leak ----------------------------------------------------------------------------------


def measure_leak(url: str, jobs: int, every: int, limit: int) -> dict[str, Any]:
    app = bench_app_on(url)
    samples: list[dict[str, Any]] = []
    with server(url, 1):
        wait_for(lambda: len(job_pids(app)) == 1, 60, "the job process")
        (worker,) = job_pids(app)
        enqueued, done, next_sample = 0, 0, 0
        started = time.monotonic()
        while done < jobs:
            if enqueued < jobs and enqueued - done < FEED_AHEAD:
                chunk = min(FEED_CHUNK, jobs - enqueued)
                app.schedule_many("bench.noop", [None] * chunk)
                enqueued += chunk
            done = completed(app)
            if done >= next_sample:
                memory = rollup(worker)
                if not memory["pss"]:
                    raise SystemExit(f"the job process {worker} is gone (at {done} jobs)")
                samples.append({"jobs": done, "seconds": time.monotonic() - started, **memory})
                next_sample = done + every
            else:
                time.sleep(0.05)
        elapsed = time.monotonic() - started
        final = rollup(worker)
        samples.append({"jobs": done, "seconds": elapsed, **final})
        same_process = worker in job_pids(app)
    app.backend.close()
    # From the first sample at 10% of the jobs (past the warm-up: imports, caches,
    # the allocator's arenas) to the end.
    reference = next(s for s in samples if s["jobs"] >= jobs // 10)
    growth = {key: final[key] - reference[key] for key in ("pss", "rss")}
    return {
        "jobs": jobs,
        "seconds": elapsed,
        "jobs_per_s": jobs / elapsed,
        "job_process": worker,
        "same_process_at_end": same_process,
        "reference_jobs": reference["jobs"],
        "growth": growth,
        "leak": growth["pss"] > limit or growth["rss"] > limit,
        "samples": samples,
    }


def print_leak(backend: str, result: dict[str, Any], limit: int) -> None:
    samples = result["samples"]
    first, last = samples[0], samples[-1]
    print(
        f"{backend:8}  {result['jobs']} no-op jobs in one job process "
        f"({result['jobs_per_s']:.0f} jobs/s): PSS {first['pss'] / MIB:.1f} -> "
        f"{last['pss'] / MIB:.1f} MiB, "
        f"RSS {first['rss'] / MIB:.1f} -> {last['rss'] / MIB:.1f} MiB; "
        f"growth from job {result['reference_jobs']} to the end: "
        f"PSS {result['growth']['pss'] / MIB:+.2f} MiB, "
        f"RSS {result['growth']['rss'] / MIB:+.2f} MiB "
        f"({'LEAK: over' if result['leak'] else 'under'} {limit / MIB:g} MiB)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--only", choices=["tree", "leak"])
    parser.add_argument("--processes", default="2,16", help="job processes per tree measure")
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs of the leak test")
    parser.add_argument("--every", type=int, help="jobs between samples (default jobs/100)")
    parser.add_argument("--limit-mib", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="a 20,000-job leak test")
    parser.add_argument("--postgres", default=os.environ.get("KOJO_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    jobs = 20_000 if args.quick else args.jobs
    every = args.every or max(1, jobs // 100)
    limit = int(args.limit_mib * MIB)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if args.backend == "both" and not args.postgres:
        print("no --postgres URL nor KOJO_TEST_POSTGRES_URL: SQLite only", file=sys.stderr)
        backends = ["sqlite"]
    results: dict[str, Any] = {"parameters": vars(args) | {"postgres": bool(args.postgres)}}
    leaked = False
    if args.only != "leak":
        base = baseline_pss("import kojo, time")
        bare = baseline_pss("import time")
        results["baseline"] = {"import_kojo_pss": base, "bare_python_pss": bare}
        print(
            f"baseline  python importing kojo: PSS {base / MIB:.1f} MiB "
            f"(a bare python: {bare / MIB:.1f} MiB)",
            flush=True,
        )
    for backend in backends:
        results[backend] = {}
        if args.only != "leak":
            for processes in (int(p) for p in args.processes.split(",")):
                with database(backend, args.postgres) as url:
                    tree = measure_tree(url, processes)
                results[backend][f"tree_{processes}"] = tree
                print_tree(backend, tree, results["baseline"]["import_kojo_pss"])
        if args.only != "tree":
            with database(backend, args.postgres) as url:
                leak = measure_leak(url, jobs, every, limit)
            results[backend]["leak"] = leak
            print_leak(backend, leak, limit)
            leaked = leaked or leak["leak"]
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = out / f"memory-{stamp}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"written to {path.relative_to(ROOT)}")
    sys.exit(1 if leaked else 0)


if __name__ == "__main__":
    main()
