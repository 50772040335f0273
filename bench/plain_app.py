"""The one job type bench/plain_path.py drains: a no-op using no feature, so that the
same module runs on today's kojo and on a tree from before the features (456ddb0)."""

from __future__ import annotations

import kojo

app = kojo.App()


@app.job_type("bench.plain")
def plain(job: kojo.Job) -> None:
    pass
