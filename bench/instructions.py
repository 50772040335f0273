"""Instructions per job on the plain path, counted by callgrind: a measure that a busy
2-core machine does not blur, for comparing two source trees.

    python bench/instructions.py [--before SRC] [--jobs 2000] [--limit 50]

One process (this checkout's `src`, and with `--before` another tree, e.g. from
`git archive 456ddb0 src | tar -x -C /tmp/old`) enqueues N no-op jobs on a new SQLite
database with `schedule_many`, then claims up to `--limit` at a time and completes them,
as a job process does, until none is left. It runs under `valgrind --tool=callgrind`
twice, with 1,000 jobs and with 1,000 + N; the difference is the cost of N jobs
(enqueue, claim, complete), imports and set-up taken out. Counted: every instruction of
the process, Python and SQLite's engine (`sqlite3_step`) apart. PostgreSQL's server
works in other processes, so only SQLite is counted.

Needs valgrind (Debian's package). Results are printed and written to
bench/results/instructions-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE_JOBS = 1000

DRAIN = """
import sys, tempfile
import kojo
from kojo.clock import utcnow

def noop(job):
    pass

jobs, limit = int(sys.argv[1]), int(sys.argv[2])
app = kojo.App(database=f"sqlite:///{tempfile.mkdtemp()}/k.db")
app.install()
app.job_type("plain")(noop)
app.register_job_types()
app.schedule_many("plain", [None] * jobs)
backend, owner, rows, done = app.backend, app.owner(), [], 0
while True:
    with backend.write():
        if rows:
            for row in rows:
                row["auto_delete_interval_duration"] = "P1D"
            backend.job_complete_many(rows, owner.id, utcnow())
        rows = backend.job_claim(owner.id, limit, utcnow())
    done += len(rows)
    if not rows:
        break
assert done == jobs, done
"""


def counted(src: Path, jobs: int, limit: int) -> dict[str, int]:
    """Instructions of one drain of `jobs` jobs with kojo from `src`: total, in SQLite."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder, "callgrind.out")
        script = Path(folder, "drain.py")
        script.write_text(DRAIN)
        env = {**os.environ, "PYTHONPATH": str(src)}
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                str(script),
                str(jobs),
                str(limit),
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        report = subprocess.run(
            ["callgrind_annotate", "--inclusive=yes", str(out)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    total = re.search(r"^([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", report, re.M)
    step = re.search(r"^\s*([\d,]+) \([\d.]+%\)\s+\S*:sqlite3_step ", report, re.M)
    if total is None:
        raise RuntimeError("no PROGRAM TOTALS in callgrind_annotate's report")
    return {
        "total": int(total.group(1).replace(",", "")),
        "sqlite": int(step.group(1).replace(",", "")) if step else 0,
    }


def per_jobs(src: Path, jobs: int, limit: int) -> dict[str, int]:
    small = counted(src, BASE_JOBS, limit)
    large = counted(src, BASE_JOBS + jobs, limit)
    return {key: large[key] - small[key] for key in small}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another tree's src folder, to compare")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--limit", type=int, default=50)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (Debian: apt-get install valgrind)")
    trees = {"this": ROOT / "src"}
    if args.before is not None:
        trees = {"before": args.before, **trees}
    results = {name: per_jobs(src, args.jobs, args.limit) for name, src in trees.items()}
    for name, counts in results.items():
        line = (
            f"{name:7} {counts['total'] / 1e6:8.1f} M instructions per {args.jobs} jobs "
            f"({counts['total'] / args.jobs:,.0f} per job), SQLite {counts['sqlite'] / 1e6:.1f} M"
        )
        if name == "this" and "before" in results:
            line += f"  ({counts['total'] / results['before']['total']:.3f}x before)"
        print(line, flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    payload = {"jobs": args.jobs, "limit": args.limit, "results": results}
    (out / f"instructions-{stamp}.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
