"""Job types for bench/cron.py (`KOJO_APP=cron_app:app`).

- `bench.cron.N` (N < $KOJO_BENCH_CRON_TYPES): `* * * * *`, records when it starts;
- `bench.at`: the baseline, a dynamic job made ahead with `at=` the same minute;
- `bench.busy`: sleeps `payload.seconds`, then schedules its own successor (unless
  the stop file exists), so every job process stays busy with a short backlog.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import kojo

TYPES = int(os.environ.get("KOJO_BENCH_CRON_TYPES", "10"))
RECORD = os.environ.get("KOJO_BENCH_CRON_LOG", "/tmp/kojo-bench-cron.log")
STOP = Path(os.environ.get("KOJO_BENCH_CRON_STOP", "/tmp/kojo-bench-cron.stop"))

app = kojo.App()


def started(job: kojo.Job) -> None:
    """One line per start: kind, job id, the due minute, the start time (epoch seconds)."""
    now = time.time()
    row = job.row
    due = row.get("cron_fire_date_time") or row["work_at_date_time"]
    kind = "cron" if row.get("cron_fire_date_time") else "at"
    fd = os.open(RECORD, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{kind} {job.id} {due.timestamp():.6f} {now:.6f}\n".encode())
    finally:
        os.close(fd)


def busy(job: kojo.Job) -> None:
    payload = job.payload if isinstance(job.payload, dict) else {}
    time.sleep(float(payload.get("seconds", 0.02)))
    if not STOP.exists():
        job.schedule("bench.busy", payload=payload)


for number in range(TYPES):
    app.job_type(f"bench.cron.{number}", cron_expression="* * * * *")(started)
app.job_type("bench.at")(started)
app.job_type("bench.busy")(busy)
