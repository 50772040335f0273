"""A small kojo application that shows work flowing: `python -m kojo.examples.demo`.

- `demo.heartbeat`, a cron type (every minute): logs and schedules a crawl.
- `demo.crawl`, dynamic: "fetches" a few pages by scheduling one
  `demo.page` job per page (dynamic jobs scheduling follow-ups).
- `demo.page`, dynamic and parallel: pretends to work, sometimes fails and is
  retried with backoff.
- `demo.reindex`, non-parallel (`can_work_in_parallel=False`): never more
  than one runs in the whole cluster; it takes a mutex and logs its fencing token.
"""

from __future__ import annotations

import os
import random
import sys
import time

import kojo

app = kojo.App()


@app.job_type("demo.heartbeat", cron_expression="* * * * *", schedule_limit=1)
def heartbeat(job: kojo.Job) -> None:
    job.logger.info("heartbeat: scheduling a crawl")
    job.schedule("demo.crawl", payload={"pages": random.randint(3, 8)})


@app.job_type("demo.crawl")
def crawl(job: kojo.Job) -> None:
    pages = int((job.payload or {}).get("pages", 5))
    with job.transaction():
        for page in range(pages):
            job.schedule("demo.page", payload={"page": page})
        job.schedule("demo.reindex", delay=1)
        job.complete_success()
    job.logger.info("crawl: scheduled pages", extra={"pages": pages})


@app.job_type("demo.page", max_retries=3)
def page(job: kojo.Job) -> None:
    time.sleep(random.uniform(0.05, 0.3))
    if random.random() < 0.2:
        raise RuntimeError(f"page {job.payload['page']} timed out (retried with backoff)")
    job.logger.info("page: done", extra={"page": job.payload["page"]})


@app.job_type("demo.reindex", can_work_in_parallel=False)
def reindex(job: kojo.Job) -> None:
    with job.mutex("demo-index") as lease:
        job.logger.info("reindex: holding the index", extra={"fencing_token": lease.token})
        time.sleep(0.5)


def main() -> None:
    """Install the schema, seed a crawl so work shows at once, and run the server."""
    from kojo.cli import main as cli

    os.environ.setdefault("KOJO_LOG_FORMAT", "text")
    app.install()
    app.schedule("demo.crawl", payload={"pages": 5})
    args = ["--app", "kojo.examples.demo:app", "server", "start", *sys.argv[1:]]
    if "--max-processes" not in args:
        args += ["--max-processes", "2"]
    cli(args)


if __name__ == "__main__":
    main()
