"""A small kojo application that shows work flowing: `python -m kojo.examples.demo`.

- `demo.ticker`, dynamic: every few seconds it schedules a crawl and then itself again
  (one ticker at a time: its `unique_key`), so work keeps trickling in.
- `demo.heartbeat`, a cron type (every minute): logs and schedules a bigger crawl.
- `demo.crawl`, dynamic: "fetches" a few pages by scheduling one `demo.page` job
  per page (dynamic jobs scheduling follow-ups).
- `demo.page`, dynamic and parallel: pretends to work, sometimes fails and is
  retried with backoff.
- `demo.reindex`, non-parallel (`can_work_in_parallel=False`): never more than one
  runs in the whole cluster; it takes a mutex and logs its fencing token.

It runs on `KOJO_DATABASE_URL`, else `sqlite:///kojo.db` in the current folder, and
prints which commands to try in a second terminal before it starts the server.
"""

from __future__ import annotations

import os
import random
import sys
import time

import kojo

app = kojo.App()

TICK_SECONDS = 3.0
TICKER_KEY = "demo.ticker"


@app.job_type("demo.ticker")
def ticker(job: kojo.Job) -> None:
    tick = int((job.payload or {}).get("tick", 0)) + 1
    pages = random.randint(2, 5)
    with job.transaction():
        # Completed first, in the same transaction: the next tick's unique key is free.
        job.complete_success()
        job.schedule("demo.crawl", payload={"pages": pages})
        job.schedule(
            "demo.ticker", payload={"tick": tick}, delay=TICK_SECONDS, unique_key=TICKER_KEY
        )
    job.logger.info("ticker: scheduled a crawl", extra={"tick": tick, "pages": pages})


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


def database_hint() -> str:
    """How a second terminal reaches the demo's database."""
    url = app.database_url
    if url.startswith("sqlite:"):
        path = os.path.abspath(getattr(app.backend, "path", "kojo.db"))
        return f"export KOJO_DATABASE_URL=sqlite:///{path}"
    return "export KOJO_DATABASE_URL=...   # the same URL as here"


def max_processes(args: list[str]) -> str:
    """The --max-processes given to the server (the last one wins, as with click)."""
    value = "?"
    for i, arg in enumerate(args):
        if arg == "--max-processes" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--max-processes="):
            value = arg.partition("=")[2]
    return value


def banner(processes: str) -> str:
    return f"""\
kojo demo: a server with {processes} job processes, on {app.backend.safe_url()}.
  demo.ticker     every {TICK_SECONDS:g} s: schedules a crawl, then itself again
  demo.heartbeat  cron, every minute: schedules a bigger crawl
  demo.crawl      schedules one demo.page job per page, then a demo.reindex
  demo.page       sleeps a little; 1 in 5 fails and is retried with backoff
  demo.reindex    one at a time in the whole cluster, under the mutex demo-index

Try in a second terminal:
  {database_hint()}
  kojo ps                      the server, its root, maintainer and job processes
  kojo jobs list --limit 20    the newest jobs (kojo jobs show ID: one job)
  kojo stats                   jobs per type and state
  kojo jobs why ID             why a job is not running now
  kojo locks                   the mutex demo.reindex holds, while it holds it
  kojo ctl pause demo.page     no demo.page job starts (kojo ctl resume demo.page)

Ctrl-C drains (running jobs finish), a second Ctrl-C stops now. The log follows.
"""


def main() -> None:
    """Install the schema, seed a crawl and the ticker, print the banner, run the server."""
    from kojo.cli import main as cli

    os.environ.setdefault("KOJO_LOG_FORMAT", "text")
    args = ["--app", "kojo.examples.demo:app", "server", "start", *sys.argv[1:]]
    if not any(a.split("=")[0] == "--max-processes" for a in args):
        args += ["--max-processes", "2"]
    app.install()
    app.schedule("demo.crawl", payload={"pages": 5})
    app.schedule("demo.ticker", unique_key=TICKER_KEY)  # one ticker, however often it starts
    print(banner(max_processes(args)), flush=True)
    cli(args)


if __name__ == "__main__":
    main()
