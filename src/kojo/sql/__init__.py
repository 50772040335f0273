"""Named SQL queries.

Every `sql/*.sql` file holds queries shared by both dialects (one file per
concern: jobs, locks, messages...); `sql/<dialect>/*.sql` files (other than
schema_N.sql) override a shared query of the same name, or add one.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^-- name: ([a-z_0-9]+)\s*$", re.M)


def _parse(text: str) -> dict[str, str]:
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
        queries[name] = "\n".join(lines).strip()
    return queries


def _read(path: str) -> str:
    return resources.files("kojo.sql").joinpath(path).read_text()


def _query_files(folder: str) -> list[str]:
    base = resources.files("kojo.sql")
    if folder:
        base = base.joinpath(folder)
    names = sorted(
        entry.name
        for entry in base.iterdir()
        if entry.name.endswith(".sql") and not entry.name.startswith("schema_")
    )
    return [f"{folder}/{name}" if folder else name for name in names]


@cache
def queries(dialect: str) -> dict[str, str]:
    """Every named query for `dialect` ("sqlite" or "postgres")."""
    merged: dict[str, str] = {}
    for path in _query_files(""):
        for name, text in _parse(_read(path)).items():
            if name in merged:
                raise ValueError(f"query {name!r} is defined twice ({path})")
            merged[name] = text
    for path in _query_files(dialect):
        merged.update(_parse(_read(path)))
    return merged


@cache
def schema(dialect: str, version: int) -> str:
    return _read(f"{dialect}/schema_{version}.sql")


SCHEMA_VERSION = 1
