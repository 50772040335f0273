"""Prometheus metrics at /metrics, cluster-wide, read from the database at scrape time.

Only cheap reads: the dashboard's snapshot of the jobs per type and state (snapshot.py:
counted in the background every few seconds while scraped, never at scrape time; its
time is `kojo_jobs_counted_timestamp_seconds`), a GROUP BY of the small process table,
the job types, and the running totals of finished jobs (kojo_job_tally,
backends/tally_store.py: a row per type and outcome, plus the last hour's minute rows).
Every registered type gets a `kojo_jobs` series for every state, and a
`kojo_jobs_finished_total` series for every finished state, 0 included, so that an alert
has a series to watch before the first panic.

Finished jobs, durations and waits are never counted from kojo_job (1,000,000 rows): the
job process that finishes a job adds to the tally in the transaction that finishes it,
and purges never lower it. The histograms cover every attempt that ran (those retried or
crashed included); `kojo_job_reruns_total` counts those attempts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .. import states
from ..app import App
from ..backends.tally_store import BOUNDS, CRASHED, DURATION_COLUMNS, RETRIED, WAIT_COLUMNS
from . import queries
from .snapshot import CountSnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The series served (docs/grafana-dashboard.json uses them).
NAMES = (
    "kojo_jobs",
    "kojo_jobs_counted_timestamp_seconds",
    "kojo_jobs_finished_total",
    "kojo_job_reruns_total",
    "kojo_job_duration_seconds",
    "kojo_job_wait_seconds",
    "kojo_processes",
)
FINISHED = sorted(states.FINISHED_STATES)
RERUNS = (RETRIED, CRASHED)


class ClusterCollector(Collector):
    """Reads the cluster's state from the database on each collect()."""

    def __init__(self, app: App, counts: CountSnapshot) -> None:
        self.app = app
        self.counts = counts

    def describe(self) -> list[Metric]:
        return []  # nothing to read at registration: the database is read at scrape time

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "kojo_jobs", "Jobs in the database by type and state.", labels=["type", "state"]
        )
        counted = self.counts.read()
        counts = {(r["type_code"], r["assigned_state"]): r["count"] for r in counted.rows}
        codes = {r["type_code"] for r in queries.job_types(self.app)}
        totals = queries.finish_totals(self.app)
        codes |= {c for c, _ in counts} | {r["type_code"] for r in totals}
        for code in sorted(codes):
            for state in queries.STATE_ORDER:
                jobs.add_metric([code, state], counts.get((code, state), 0))
        yield jobs
        yield GaugeMetricFamily(
            "kojo_jobs_counted_timestamp_seconds",
            "When kojo_jobs was counted (Unix time): the dashboard counts every few seconds.",
            value=counted.at.timestamp(),
        )
        yield from finish_metrics(sorted(codes), totals)
        processes = GaugeMetricFamily(
            "kojo_processes",
            "Registered kojo processes by host and kind (server, root, job, client...).",
            labels=["host", "kind"],
        )
        for row in queries.process_counts(self.app):
            processes.add_metric([row["host_name"], row["kind"]], row["count"])
        yield processes


def finish_metrics(codes: list[str], totals: list[dict[str, Any]]) -> Iterator[Metric]:
    """The counters and histograms of ended attempts, from queries.finish_totals' rows."""
    ended = {(r["type_code"], r["outcome"]): r for r in totals}
    finished = CounterMetricFamily(
        "kojo_jobs_finished",
        "Jobs that reached a finished state (complete_*, panicked), by type and outcome.",
        labels=["type", "outcome"],
    )
    reruns = CounterMetricFamily(
        "kojo_job_reruns",
        "Attempts that ended and will run again: retried by the worker, or crashed.",
        labels=["type", "outcome"],
    )
    duration = HistogramMetricFamily(
        "kojo_job_duration_seconds",
        "How long attempts ran (finish - start), every attempt that ran, by type.",
        labels=["type"],
    )
    wait = HistogramMetricFamily(
        "kojo_job_wait_seconds",
        "How long jobs waited to start once due (start - work_at), by type.",
        labels=["type"],
    )
    for code in codes:
        for outcome in FINISHED:
            row = ended.get((code, outcome))
            finished.add_metric([code, outcome], row["finished"] if row else 0)
        for outcome in RERUNS:
            row = ended.get((code, outcome))
            reruns.add_metric([code, outcome], row["finished"] if row else 0)
        rows = [r for (c, _), r in ended.items() if c == code]
        timed = sum(r["timed"] for r in rows)
        for family, columns, total in (
            (duration, DURATION_COLUMNS, "duration_sum"),
            (wait, WAIT_COLUMNS, "wait_sum"),
        ):
            family.add_metric([code], buckets(rows, columns, timed), sum(r[total] for r in rows))
    yield from (finished, reruns, duration, wait)


def buckets(
    rows: list[dict[str, Any]], columns: tuple[str, ...], timed: int
) -> list[tuple[str, float]]:
    """Cumulative bucket counts (`le` -> count), +Inf last, from per-bucket columns."""
    out: list[tuple[str, float]] = []
    running = 0
    for bound, column in zip(BOUNDS, columns, strict=True):
        running += sum(int(r[column]) for r in rows)
        out.append((str(bound), running))  # as Prometheus writes them: 0.005, 1.0
    out.append(("+Inf", timed))
    return out


def registry_for(app: App, counts: CountSnapshot) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(app, counts))
    return registry


def scrape(registry: CollectorRegistry) -> bytes:
    """The text exposition of every metric, read now."""
    return generate_latest(registry)
