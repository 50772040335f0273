"""Helpers for the cron and maintenance tests (tests/ is on sys.path)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import kojo
from foundation_helpers import make_app, noop  # noqa: F401  (shared with these tests)
from kojo.backends import Backend
from kojo.logs import get_logger

# A Friday, far from the real clock: tests inject `now`, never sleep.
T0 = datetime(2030, 3, 1, 12, 0, 0, tzinfo=UTC)


def run_sql(backend: Backend, sql: str, **params: Any) -> int:
    """Run a statement written by a test (as an operator's SQL would); rows changed."""
    with backend.write() as conn:
        cur = conn.execute(backend._prepare(sql), backend._convert_params(params))
        return int(cur.rowcount)


def cron_fires(app: kojo.App, code: str) -> list[datetime]:
    """The cron_fire_date_time of every cron-made job of `code`, sorted (duplicates kept)."""
    rows = app.jobs(type_code=code, limit=100_000)
    return sorted(r["cron_fire_date_time"] for r in rows if r["cron_fire_date_time"] is not None)


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def captured(name: str) -> Iterator[list[logging.LogRecord]]:
    """Records of kojo's logger `name` (whatever handlers logs.configure() installed)."""
    logger = get_logger(name)
    handler = ListHandler()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _child(conn: Any, barrier: Any, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        barrier.wait(timeout=60)
        conn.send(("ok", target(*args)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()
        os._exit(0)


def in_processes(
    count: int, target: Callable[..., Any], *args: Any, timeout: float = 180
) -> list[Any]:
    """Run target(*args) in `count` forked processes started together; their results.

    A child that raises fails the test with its traceback. Children open their
    own database connections (make a new App inside `target`).
    """
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(count)
    pipes = []
    procs = []
    for _ in range(count):
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(child_end, barrier, target, args))
        proc.start()
        child_end.close()
        pipes.append(parent_end)
        procs.append(proc)
    results = []
    try:
        for pipe in pipes:
            if not pipe.poll(timeout):
                raise AssertionError(f"a child process gave no result within {timeout} s")
            status, value = pipe.recv()
            if status != "ok":
                raise AssertionError(f"a child process failed:\n{value}")
            results.append(value)
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return results
