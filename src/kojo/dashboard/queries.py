"""What the dashboard reads, through the App and its backend: one function per page, each
returning rows with the same keys as the matching `kojo ... --json` command.

No web code here: the pages (web.py), their JSON twins and /metrics (metrics.py) all
call these functions, and so can tests and a later CLI.

The operator commands' reads are the App's own: `job_counts` is `kojo stats`
(`App.stats()`), `jobs_page` is `kojo jobs list` (`App.job_page()`), `why` is `kojo jobs
why` (`App.why()`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .. import bounds, states
from ..app import App
from ..backends.errors import database_errors
from ..backends.tally_store import FAILURES, minute_of
from ..clock import utcnow
from ..cron import next_fire_of_stored
from ..why import Diagnosis

Row = dict[str, Any]

DEFAULT_PAGE = 50
MAX_PAGE = 1000  # a page the browser can still render at once
STATE_ORDER = [s.value for s in states.State]  # the columns of the overview, in this order


def job_counts(app: App) -> list[Row]:
    """Jobs per type and state: `{"type_code", "assigned_state", "count"}` for each pair
    that has jobs (`kojo stats --json`)."""
    return app.stats()


def process_counts(app: App) -> list[Row]:
    """Registered processes per host and kind: `{"host_name", "kind", "count"}`."""
    with database_errors():
        rows = app.backend.fetchall("dashboard_process_counts")
    return [{**row, "count": int(row["count"])} for row in rows]


def finish_totals(app: App) -> list[Row]:
    """The running totals of ended attempts per type and outcome since the schema was
    installed (kojo_job_tally: a small table, never kojo_job): `{"type_code", "outcome",
    "finished", "timed", "duration_sum", "wait_sum", "duration_5ms", ...}`."""
    with database_errors():
        rows = app.backend.fetchall("dashboard_tally_totals")
    return [
        {
            key: (value if key in ("type_code", "outcome") else _number(key, value))
            for key, value in row.items()
        }
        for row in rows
    ]


def _number(key: str, value: Any) -> float | int:
    """A summed column: PostgreSQL's sum() of bigint is numeric (a Decimal)."""
    return float(value or 0) if key.endswith("_sum") else int(value or 0)


THROUGHPUT_MINUTES = 60


def throughput(app: App, now: datetime | None = None) -> Row:
    """Jobs finished and failed per minute over the last hour, oldest first, a point per
    minute (0 included; the current minute last): `{"minutes", "points": [{"at",
    "finished", "failed"}]}`. "failed" counts complete_failed*, complete_terminated and
    panicked; retries and crashes are not finishes."""
    now = now or utcnow()
    last = minute_of(now)
    first = last - THROUGHPUT_MINUTES + 1
    with database_errors():
        rows = app.backend.fetchall("dashboard_tally_minutes", {"since": first})
    finished = dict.fromkeys(range(first, last + 1), 0)
    failed = dict(finished)
    for row in rows:
        minute, outcome = int(row["minute"]), str(row["outcome"])
        if minute not in finished or not states.is_finished(outcome):
            continue
        finished[minute] += int(row["finished"])
        if outcome in FAILURES:
            failed[minute] += int(row["finished"])
    points = [
        {
            "at": datetime.fromtimestamp(minute * 60, UTC),
            "finished": finished[minute],
            "failed": failed[minute],
        }
        for minute in finished
    ]
    return {"minutes": THROUGHPUT_MINUTES, "points": points}


def job_types(app: App, now: datetime | None = None) -> list[Row]:
    """Every stored job type with its cron type's next fire (`kojo types list --json`)."""
    now = now or utcnow()
    with database_errors():
        rows = app.backend.type_list()
    for row in rows:
        row["next_fire"] = next_fire_of_stored(row.get("cron_expression"), now)
    return rows


def processes(app: App) -> list[Row]:
    """Every live kojo process with the jobs it works (`kojo ps --json`)."""
    return app.process_table()


def locks(app: App) -> list[Row]:
    """Held slots then waiters, cluster-wide (`kojo locks --json`)."""
    return app.locks()


def jobs_page(
    app: App,
    type_code: str | None = None,
    state: str | None = None,
    limit: int = DEFAULT_PAGE,
    before: int | None = None,
    future_cron: bool = False,
) -> tuple[list[Row], int]:
    """Jobs newest first (highest id first), of `type_code` and in `state` when given, ids
    below `before` when given (the next page), as `kojo jobs list` shows them: cron jobs
    made ahead of their minute only with `future_cron`. The rows, and how many of those
    were left out. InvalidArgument naming a bad value."""
    limit = bounds.check_integer("limit", limit, 1, MAX_PAGE)
    return app.job_page(type_code, state, limit, before=before, future_cron=future_cron)


def job(app: App, job_id: int) -> Row:
    """Every field of one job and its `timeline` (`kojo jobs show --json`); JobNotFound if
    there is none."""
    return app.job_detail(job_id)


def jobs_search(
    app: App,
    text: str,
    type_code: str | None = None,
    state: str | None = None,
    limit: int = DEFAULT_PAGE,
    before: int | None = None,
) -> tuple[list[Row], int | None]:
    """Jobs newest first whose payload's JSON text contains `text` (`kojo jobs list
    --search`): the rows, and the `before` of the next page (None: no older jobs). A page
    scans a bounded number of jobs, so it may be short while older jobs remain."""
    limit = bounds.check_integer("limit", limit, 1, MAX_PAGE)
    return app.job_search(text, type_code, state, limit, before=before)


JOB_ACTIONS = {
    "retry": states.RERUN,
    "hold": states.HOLD,
    "release": states.WAIT_FOR_WORK,
    "cancel": states.COMPLETE_TERMINATED,
}


def job_actions(row: Row) -> list[str]:
    """The operator actions a job in this state allows (`kojo jobs
    retry|hold|release|cancel`)."""
    return [
        name
        for name, transition in JOB_ACTIONS.items()
        if transition.allows(row["assigned_state"], row["next_state_request"])
    ]


def why(app: App, job_id: int) -> Diagnosis:
    """Why the job is not running now (`kojo jobs why`)."""
    return app.why(job_id)


# -- shapes the pages show -------------------------------------------------------------


@dataclass
class CountTable:
    """Job counts as a table: a row per type, a column per state present, with totals."""

    states: list[str]
    types: list[str]
    cells: dict[tuple[str, str], int]
    type_totals: dict[str, int]
    state_totals: dict[str, int]
    total: int


def count_table(counts: list[Row]) -> CountTable:
    cells = {(r["type_code"], r["assigned_state"]): int(r["count"]) for r in counts}
    present = {state for _, state in cells}
    order = [s for s in STATE_ORDER if s in present] + sorted(present - set(STATE_ORDER))
    type_totals: dict[str, int] = defaultdict(int)
    state_totals: dict[str, int] = defaultdict(int)
    for (type_code, state), n in cells.items():
        type_totals[type_code] += n
        state_totals[state] += n
    return CountTable(
        order,
        sorted(type_totals),
        cells,
        dict(type_totals),
        dict(state_totals),
        sum(cells.values()),
    )


@dataclass
class HostTree:
    """One host's processes as `kojo ps` shows them, each with its depth in the tree."""

    host_name: str
    rows: list[tuple[int, Row]] = field(default_factory=list)


def process_trees(rows: list[Row]) -> list[HostTree]:
    """Processes per host, each after its parent (server → root → job), children by pid."""
    by_host: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_host[str(row["host_name"])].append(row)
    trees = []
    for host in sorted(by_host):
        members = sorted(by_host[host], key=lambda r: int(r["process_id"]))
        pids = {int(r["process_id"]) for r in members}
        children: dict[int, list[Row]] = defaultdict(list)
        tops = []
        for row in members:
            parent = int(row["parent_process_id"])
            if parent in pids and parent != int(row["process_id"]):
                children[parent].append(row)
            else:
                tops.append(row)
        tree = HostTree(host)
        shown: set[int] = set()
        for row in tops:
            _walk(tree, children, shown, row, 0)
        tree.rows += [(0, row) for row in members if id(row) not in shown]
        trees.append(tree)
    return trees


def _walk(
    tree: HostTree, children: dict[int, list[Row]], shown: set[int], row: Row, depth: int
) -> None:
    shown.add(id(row))
    tree.rows.append((depth, row))
    for child in children[int(row["process_id"])]:
        if id(child) not in shown:  # a pid reused in a loop must not recurse forever
            _walk(tree, children, shown, child, depth + 1)
