"""Named SQL queries.

`sql/*.sql` hold the queries whose text is the same in every dialect, one file
per concern (jobs, locks, cron, maintenance, messages). `sql/<dialect>/<concern>.sql`
hold the queries whose text differs: every dialect defines the same names there,
so code above the drivers can run any of them on any database. Only
`sql/<dialect>/driver.sql` is a dialect's own: queries its driver module runs
(advisory-lock probes, wake-ups...). No name is defined twice for a dialect.

A `-- fragment: NAME` block is SQL text that several queries of a dialect share
(written `{{NAME}}` inside them, in any of its files); it is not a query of its own.

A `-- override: NAME` block, in `sql/<dialect>/<concern>.sql` only, replaces the shared
query NAME of the same concern for that dialect: for a database whose SQL the shared
text is not (MySQL has no ON CONFLICT, no UPDATE ... RETURNING). It defines no new name.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_BLOCK = re.compile(r"^-- (name|fragment|override): ([a-z_0-9]+)\s*$", re.M)
_USE = re.compile(r"\{\{([a-z_0-9]+)\}\}")
# Quoted text (kept as it is) or a run of whitespace (made one space): see compact().
_QUOTED_OR_SPACE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\s+")


KINDS = ("name", "fragment", "override")


def _blocks(text: str) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """The named queries, the fragments and the overrides of one file, without comments."""
    parts = _BLOCK.split(text)
    found: tuple[dict[str, str], dict[str, str], dict[str, str]] = ({}, {}, {})
    for kind, name, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
        found[KINDS.index(kind)][name] = "\n".join(lines).strip()
    return found


@cache
def overrides(dialect: str) -> dict[str, str]:
    """The shared queries `dialect` replaces, and the file of each replacement."""
    shared = {name: path for path in _query_files("") for name in _parse(_read(path))}
    found: dict[str, str] = {}
    for path in _query_files(dialect):
        for name in _blocks(_read(path))[2]:
            if shared.get(name) != path.rpartition("/")[2]:
                raise ValueError(f"{path} overrides {name!r}, not a shared query of its concern")
            found[name] = path
    return found


def _parse(text: str) -> dict[str, str]:
    return _blocks(text)[0]


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


DRIVER_FILE = "driver.sql"


@cache
def query_files(dialect: str) -> dict[str, str]:
    """The file (relative to sql/) that defines each named query of `dialect`."""
    found: dict[str, str] = {}
    for path in _query_files("") + _query_files(dialect):
        for name in _parse(_read(path)):
            if name in found:
                raise ValueError(f"query {name!r} is defined twice ({found[name]}, {path})")
            found[name] = path
    return found


@cache
def queries(dialect: str) -> dict[str, str]:
    """Every named query for `dialect` ("sqlite", "postgres" or "mysql")."""
    merged: dict[str, str] = {}
    fragments: dict[str, str] = {}
    for path in _query_files("") + _query_files(dialect):
        named, shared, _ = _blocks(_read(path))
        for name, text in named.items():
            if name in merged:
                raise ValueError(f"query {name!r} is defined twice ({path})")
            merged[name] = text
        fragments.update(shared)
    for path in set(overrides(dialect).values()):
        merged.update(_blocks(_read(path))[2])
    return {name: _expand(q, fragments) for name, q in merged.items()}


def _expand(text: str, fragments: dict[str, str]) -> str:
    """`text` with every {{fragment}} written in (fragments may use fragments)."""
    for _ in range(len(fragments) + 1):
        expanded = _USE.sub(lambda m: fragments[m.group(1)], text)
        if expanded == text:
            return text
        text = expanded
    raise ValueError("SQL fragments use each other in a circle")


@cache
def schema(dialect: str, version: int) -> str:
    return _read(f"{dialect}/schema_{version}.sql")


SCHEMA_VERSION = 6


def compact(text: str) -> str:
    """`text` with each run of whitespace outside quotes made one space. psycopg parses
    a query of more than 4,096 characters again on every execution (it caches shorter
    ones), and the indentation of the longest (job_claim, job_complete_success) took
    them past that."""
    return _QUOTED_OR_SPACE.sub(lambda m: m[0] if m[0][0] in "'\"" else " ", text).strip()
