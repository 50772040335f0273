"""Job types for the real-time cron tests (`KOJO_APP=cron_workers:app`)."""

from __future__ import annotations

from workers_server import record

import kojo

app = kojo.App()


@app.job_type("tick", cron_expression="* * * * *")
def tick(job: kojo.Job) -> None:
    """Records its start (with the pid and time) in the test's record file."""
    record(job, "start")


@app.job_type("off", cron_expression="* * * * *", is_enabled=False)
def off(job: kojo.Job) -> None:
    """Disabled: never made, never run."""
    record(job, "start")
