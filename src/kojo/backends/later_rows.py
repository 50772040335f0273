"""Rows fetched inside a transaction but turned into dicts only when asked for.

On SQLite one writer holds the database at a time, so every microsecond of a claim's
transaction is one the other job processes wait: the claim fetches its rows as plain
tuples and JobStore.job_claim converts them (column names, times, booleans) after COMMIT.
PostgreSQL's claim fetches tuples too (claimed_rows.py); MySQL's rows are converted as
they are fetched (LaterRows.converted).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Row = dict[str, Any]  # driver.Row (which imports this module)
Converter = Callable[[tuple[str, ...], Sequence[Sequence[Any]]], list[Row]]


class LaterRows:
    def __init__(
        self, names: Sequence[str], raw: Sequence[Sequence[Any]], convert: Converter
    ) -> None:
        self._names = tuple(names)
        self._raw = raw
        self._convert = convert
        self._rows: list[Row] | None = None

    @classmethod
    def converted(cls, rows: list[Row]) -> LaterRows:
        """Rows already converted (dialects that convert as they fetch)."""
        later = cls((), (), _converted_already)
        later._rows = rows
        return later

    def __len__(self) -> int:
        return len(self._rows) if self._rows is not None else len(self._raw)

    def column(self, name: str) -> list[Any]:
        """One column's raw values, in row order, without converting the rows."""
        if self._rows is not None:
            return [row[name] for row in self._rows]
        index = self._names.index(name)
        return [values[index] for values in self._raw]

    def rows(self) -> list[Row]:
        """The rows as dicts, converted on the first call; the same dicts afterwards."""
        if self._rows is None:
            self._rows = self._convert(self._names, self._raw)
            self._raw = ()
        return self._rows


def _converted_already(names: tuple[str, ...], raw: Sequence[Sequence[Any]]) -> list[Row]:
    raise AssertionError("LaterRows.converted holds its rows")
