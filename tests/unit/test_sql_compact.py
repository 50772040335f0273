"""sql.compact: whitespace outside quotes made one space, quoted text untouched, and the
claim short enough for psycopg's cache of parsed queries once compacted."""

from __future__ import annotations

import psycopg._queries

from kojo.backends.postgres import to_pyformat
from kojo.sql import compact, queries


def test_whitespace_outside_quotes_becomes_one_space() -> None:
    assert compact("  SELECT a,\n\t  b\n  FROM t\n") == "SELECT a, b FROM t"


def test_quoted_text_is_kept_as_written() -> None:
    text = "SELECT 'two  spaces\n and a line', \"odd  name\", 'it''s  here'  FROM t"
    assert compact(text) == (
        "SELECT 'two  spaces\n and a line', \"odd  name\", 'it''s  here' FROM t"
    )


def test_compacting_twice_changes_nothing_more() -> None:
    for text in queries("postgres").values():
        once = compact(text)
        assert compact(once) == once


def test_the_claim_fits_psycopgs_cache_of_parsed_queries() -> None:
    # Longer, psycopg parses it again on every claim (its text was 4,301 characters).
    limit = psycopg._queries.MAX_CACHED_STATEMENT_LENGTH
    assert len(to_pyformat(queries("postgres")["job_claim"])) <= limit
