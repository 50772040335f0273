"""Start-up: from spawning `kojo server start` to its first job's worker starting.

    python bench/startup.py [--backend sqlite|postgres|both] [--repeat 10]
                            [--processes 2] [--postgres URL] [--timeline]
                            [--no-bytecode-cache] [--before SRC]

Per backend, a database holding one ready no-op job (`bench.latency` of bench_app.py,
whose worker writes `time.time()` to a file as its first act). Each repetition spawns
the real server as a user would (`python -m kojo server start --max-processes 2`, a
subprocess), waits for that file, and takes the time from just before the spawn to
the worker's timestamp; then drains the server (SIGTERM) and schedules the next job.

Python runs as installed: bytecode is cached (in a temporary PYTHONPYCACHEPREFIX, so
nothing is written beside the sources) and one untimed run per backend comes first;
`--no-bytecode-cache` writes no bytecode: the installed packages use their own
`__pycache__`, and kojo's sources are compiled at every start unless the tree has one
(what PYTHONDONTWRITEBYTECODE=1 does to a source checkout).

CPU: at the first job's start (seen within ~10 ms), the CPU time (user+sys) the server's
whole tree has used so far, from each thread's /proc/PID/task/TID/schedstat (Linux):
the start-up's cost, less noisy on a busy host than the wall time, which also waits
for the CPUs and the disk.

Baseline, in the same run and interleaved with the servers: the wall time of a bare
interpreter (`python -c pass`), of `python -c "import kojo"` and, with PostgreSQL, of
`python -c "import psycopg"`: the floor any Python server pays before it can do
anything (so the ratio means something on a busy host). Per case: p50, min, max over
the repetitions.

`--before SRC` also starts servers from another kojo source tree (e.g. an export of
main's `src/`), interleaved with this one's, so a change is measured against what it
changes under the same load. `--timeline` also keeps the servers' debug logs and
prints, for the median run, when each process logged its lines, relative to the spawn.
Results are printed and written to bench/results/startup-<time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import ROOT, bench_app_client, database, wait_for

import kojo

JOB_TYPE = "bench.latency"  # bench_app.py: writes "<job id> <time.time()>" when it starts
SERVER_TIMEOUT = 30.0


PYTHON_ENV: dict[str, str] = {}  # how every interpreter of the run caches bytecode


@dataclass(frozen=True)
class Case:
    """A server to start: on which backend, from which kojo source tree."""

    name: str
    backend: str
    src: Path


def _env(extra: dict[str, str], src: Path = ROOT / "src") -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    paths = [str(src), str(ROOT / "bench"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.update(PYTHON_ENV)
    env.update(extra)
    return env


def use_bytecode_cache(folder: Path, cached: bool) -> None:
    """Cache bytecode under `folder` (not beside the sources), or write none: then the
    installed packages still use their own `__pycache__`, and a source tree without
    one is compiled at every start."""
    if cached:
        PYTHON_ENV["PYTHONPYCACHEPREFIX"] = str(folder / "pycache")
    else:
        PYTHON_ENV["PYTHONDONTWRITEBYTECODE"] = "1"


def interpreter_seconds(code: str) -> dict[str, float]:
    """Wall time of `python -c CODE`, spawn to exit, and its CPU time (user+sys)."""
    env = _env({})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    seconds = time.time() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return {"seconds": seconds, "cpu": cpu}


def server_start_seconds(
    case: Case, app: kojo.App, processes: int, folder: Path, timeline: bool, run: int
) -> dict[str, Any]:
    """One spawn → first job start of a server over `app`'s database (one ready job)."""
    tag = f"{case.name.replace(' ', '-')}-{run}"
    marker = folder / f"start-{tag}.log"
    job_id = app.schedule(JOB_TYPE)
    log_path = folder / f"server-{tag}.log"
    env = _env(
        {
            "KOJO_DATABASE_URL": app.database_url,
            "KOJO_APP": "bench_app:app",
            "KOJO_LOG_LEVEL": "debug" if timeline else "warning",
            "KOJO_BENCH_START_LOG": str(marker),
        },
        case.src,
    )
    command = [
        sys.executable,
        *("-m", "kojo", "server", "start", "--max-processes", str(processes)),
        *("--shutdown-timeout", "5", "--host-name", f"startup-bench-{os.getpid()}"),
    ]
    with open(log_path, "wb") as log:
        spawned = time.time()
        proc = subprocess.Popen(command, env=env, stdout=log)
        try:
            wait_for(
                lambda: marker.exists() and marker.stat().st_size > 0,
                SERVER_TIMEOUT,
                "the first job to start",
            )
            cpu = tree_cpu_seconds(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
    started_id, started_at = marker.read_text().split()
    if int(started_id) != job_id:
        raise SystemExit(f"the server started job {started_id}, not the ready job {job_id}")
    if code != 0:
        raise SystemExit(f"the server exited with {code} (log: {log_path})")
    row = app.backend.job_get(job_id)
    if row is None or row["assigned_state"] != "complete_success":
        raise SystemExit(f"job {job_id} did not complete: {row}")
    result: dict[str, Any] = {"seconds": float(started_at) - spawned, "cpu": cpu}
    if timeline:
        result["timeline"] = _timeline(log_path, spawned)
    return result


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user+sys) used so far by process `pid`, its threads and descendants."""
    total = 0.0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return 0.0  # exited meanwhile
    children: set[int] = set()
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[0]) / 1e9
            children.update(int(c) for c in (task / "children").read_text().split())
        except FileNotFoundError:
            continue
    return total + sum(tree_cpu_seconds(child) for child in children)


def _timeline(log_path: Path, spawned: float) -> list[str]:
    """Each debug line's time after the spawn, with the process that wrote it."""
    lines = []
    for text in log_path.read_text().splitlines():
        try:
            entry = json.loads(text)
        except ValueError:
            continue
        at = datetime.fromisoformat(entry["time"]).timestamp() - spawned
        path = entry.get("kojo_metadata", {}).get("process", {}).get("path", "?")
        lines.append(f"{at * 1000:7.1f} ms  {path}  {entry['message']}")
    return lines


def stats(values: list[float]) -> dict[str, Any]:
    return {
        "p50": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "all": values,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--postgres", default=os.environ.get("KOJO_TEST_POSTGRES_URL"))
    parser.add_argument("--timeline", action="store_true", help="print the median run's logs")
    parser.add_argument(
        "--no-bytecode-cache", action="store_true", help="write no bytecode (see above)"
    )
    parser.add_argument(
        "--before",
        type=Path,
        metavar="SRC",
        help="another kojo source tree (its src/), measured interleaved in the same run",
    )
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, not {args.repeat}")
    if args.before is not None and not (args.before / "kojo" / "__init__.py").is_file():
        parser.error(f"--before {args.before}: no kojo package in it")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    cases = [Case(b, b, ROOT / "src") for b in backends]
    if args.before is not None:
        cases += [Case(f"{b} before", b, args.before.resolve()) for b in backends]
    baselines = {"python -c pass": "pass", "python -c 'import kojo'": "import kojo"}
    if "postgres" in backends:  # what any Python process pays to use PostgreSQL
        baselines["python -c 'import psycopg'"] = "import psycopg"
    times: dict[str, list[dict[str, float]]] = {name: [] for name in baselines}
    runs: dict[str, list[dict[str, Any]]] = {case.name: [] for case in cases}
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kojo-startup-")))
        use_bytecode_cache(folder, cached=not args.no_bytecode_cache)
        apps = {}
        for backend in backends:
            apps[backend] = bench_app_client(stack.enter_context(database(backend, args.postgres)))
        for case in cases:  # untimed: fills the bytecode cache and the OS's caches
            server_start_seconds(case, apps[case.backend], args.processes, folder, False, -1)
        for run in range(args.repeat):
            for name, code in baselines.items():
                times[name].append(interpreter_seconds(code))
            for case in cases:
                measured = server_start_seconds(
                    case, apps[case.backend], args.processes, folder, args.timeline, run
                )
                runs[case.name].append(measured)
        for app in apps.values():
            app.backend.close()
    results: dict[str, Any] = {
        "repeat": args.repeat,
        "processes": args.processes,
        "bytecode_cache": not args.no_bytecode_cache,
        "python": sys.version.split()[0],
        "before": None if args.before is None else str(args.before),
    }
    results["baseline"] = {}
    for name, measured in times.items():
        results["baseline"][name] = summary = stats([m["seconds"] for m in measured])
        summary["cpu"] = stats([m["cpu"] for m in measured])
    floor = results["baseline"]["python -c pass"]["p50"]
    for name, summary in results["baseline"].items():
        print(_line(name, summary, floor), flush=True)
    for name, measured in runs.items():
        summary = stats([m["seconds"] for m in measured])
        summary["cpu"] = stats([m["cpu"] for m in measured])
        results[name] = summary
        print(_line(f"kojo {name}", summary, floor), flush=True)
        if args.timeline:
            median = sorted(measured, key=lambda m: m["seconds"])[len(measured) // 2]
            summary["timeline"] = median["timeline"]
            print(f"  timeline of the median {name} run:")
            for line in median["timeline"]:
                print(f"    {line}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (out / f"startup-{stamp}.json").write_text(json.dumps(results, indent=2))


def _line(name: str, summary: dict[str, Any], floor: float) -> str:
    cpu = summary["cpu"]
    return (
        f"{name:26}  p50 {summary['p50'] * 1000:6.0f} ms  min {summary['min'] * 1000:6.0f} ms  "
        f"max {summary['max'] * 1000:6.0f} ms  ({summary['p50'] / floor:.1f}x python -c pass)  "
        f"CPU p50 {cpu['p50'] * 1000:4.0f} ms  min {cpu['min'] * 1000:4.0f} ms"
    )


if __name__ == "__main__":
    main()
