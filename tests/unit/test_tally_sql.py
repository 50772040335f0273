"""PostgreSQL's completion adds to the tally in SQL (job_complete_success): its buckets'
bounds are written there by hand, so they must be tally_store.BOUNDS, in order."""

from __future__ import annotations

import re

from kojo.backends.tally_store import BOUNDS
from kojo.sql import queries


def bounds_in_sql(text: str, column: str) -> list[float]:
    """The upper bounds of `column`'s buckets, from `count(*) FILTER (WHERE ... <= X)`."""
    found = re.findall(rf"FILTER \(WHERE (?:{column} > [\d.]+ AND )?{column} <= ([\d.]+)\)", text)
    return [float(value) for value in found]


def test_postgres_completion_buckets_are_the_tally_bounds() -> None:
    text = queries("postgres")["job_complete_success"]
    assert bounds_in_sql(text, "d") == list(BOUNDS)  # durations
    assert bounds_in_sql(text, "w") == list(BOUNDS)  # waits


def test_each_bucket_starts_where_the_previous_ends() -> None:
    text = queries("postgres")["job_complete_success"]
    for column in ("d", "w"):
        lows = [float(v) for v in re.findall(rf"WHERE {column} > ([\d.]+) AND", text)]
        assert lows == list(BOUNDS[:-1]), column
