"""Prometheus metrics at /metrics, cluster-wide, read from the database at scrape time.

Only cheap reads: two GROUP BYs (jobs over the kojo_job_type_state index, the small
process table) and the job types. Every registered type gets a `kojo_jobs` series for
every state, 0 included, so that an alert on `kojo_jobs{state="panicked"} > 0` has a
series to watch before the first panic.

Not here yet, by design: `kojo_jobs_finished_total{type,outcome}`,
`kojo_job_duration_seconds` and `kojo_job_wait_seconds` must not come from a scan of
finished jobs at each scrape (1,000,000 rows). The plan: the job process that finishes a
job adds, in the transaction that completes it, to a small table of running totals
keyed by (type_code, outcome, bucket): a count, a sum of durations and the histogram
bucket counters for duration (completed - started) and wait (started - work_at): one
UPSERT per finish (or per batch, for job_complete_many). A scrape reads that table
(a row per type, outcome and bucket), and purges never lower its counters.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..app import App
from . import queries

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NAMES = ("kojo_jobs", "kojo_processes")  # the series served (docs/grafana-dashboard.json)


class ClusterCollector(Collector):
    """Reads the cluster's state from the database on each collect()."""

    def __init__(self, app: App) -> None:
        self.app = app

    def describe(self) -> list[Metric]:
        return []  # nothing to read at registration: the database is read at scrape time

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "kojo_jobs", "Jobs in the database by type and state.", labels=["type", "state"]
        )
        counts = {
            (r["type_code"], r["assigned_state"]): r["count"] for r in queries.job_counts(self.app)
        }
        codes = {r["type_code"] for r in queries.job_types(self.app)}
        for code in sorted(codes | {c for c, _ in counts}):
            for state in queries.STATE_ORDER:
                jobs.add_metric([code, state], counts.get((code, state), 0))
        yield jobs
        processes = GaugeMetricFamily(
            "kojo_processes",
            "Registered kojo processes by host and kind (server, root, job, client...).",
            labels=["host", "kind"],
        )
        for row in queries.process_counts(self.app):
            processes.add_metric([row["host_name"], row["kind"]], row["count"])
        yield processes


def registry_for(app: App) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(app))
    return registry


def scrape(registry: CollectorRegistry) -> bytes:
    """The text exposition of every metric, read now."""
    return generate_latest(registry)
