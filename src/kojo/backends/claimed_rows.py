"""The rows of a claim, from fewer columns than the table has (SQLite and PostgreSQL).

Fetching a column costs a claimed job more than the claim's SQL does per column, and a
plain job's row is mostly known before it is read: the claim sets some columns from its
parameters, and leaves others at a fresh job's defaults. So job_claim returns the other
columns, and last a flag, `uncommon`, true when a row's left-out columns hold anything
but those defaults; such a row is read again whole, in the claim's transaction. Each row
is then a copy of a template holding every column in the table's order (the values set,
the defaults) updated with the row's own columns: the same dict as `RETURNING *` gave.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

Row = dict[str, Any]

# The columns job_claim's UPDATE sets, taken from its parameters.
CLAIM_SETS = frozenset(
    {"assigned_state", "next_state_request", "last_transition_date_time", "kojo_process_id"}
)
# The columns a plain job leaves at these values (the `uncommon` flag says when not).
CLAIM_DEFAULTS: dict[str, Any] = {
    "completed_at_date_time": None,
    "delete_after_date_time": None,
    "cron_fire_date_time": None,
    "last_error": None,
    "unique_key": None,
    "result": None,
    "progress": None,
    "progress_note": None,
    "started_at_date_time": None,
    "awaited": False,
    "has_children": False,
    "limited": False,
    "concurrency_key": "",
}


def checked(columns: Sequence[str], returned: Sequence[str]) -> tuple[str, ...]:
    """kojo_job's `columns`, once checked against the claim's `returned` ones: each is
    returned, set by the claim, or in CLAIM_DEFAULTS."""
    unknown = set(columns) - set(returned) - CLAIM_SETS - CLAIM_DEFAULTS.keys()
    if unknown:  # a column added to kojo_job but not to job_claim's RETURNING
        raise AssertionError(f"job_claim returns no {', '.join(sorted(unknown))}")
    return tuple(columns)


def template(columns: Sequence[str], now: datetime, owner: int) -> Row:
    """Every column of kojo_job (`columns`, in the table's order: see checked) with the
    values the claim at `now` by `owner` sets and CLAIM_DEFAULTS; the others (None here)
    come from each row. `now` as the database gives it back (UTC, to the microsecond)."""
    row = dict.fromkeys(columns)
    row.update(CLAIM_DEFAULTS)
    row["assigned_state"] = "working"
    row["next_state_request"] = "none"
    row["last_transition_date_time"] = now
    row["kojo_process_id"] = owner
    return row


def filled(
    template: Row, whole: Mapping[int, Row], own: Sequence[str], raw: Sequence[Sequence[Any]]
) -> list[Row]:
    """The claimed rows as dicts, from tuples whose first values are the columns `own`
    (typed already), the first of them the job's id, and the last `uncommon`; an
    uncommon row is the one in `whole`."""
    rows = []
    for values in raw:
        if values[-1]:
            rows.append(whole[values[0]])
            continue
        row = template.copy()
        row.update(zip(own, values, strict=False))
        rows.append(row)
    return rows
