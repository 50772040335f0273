"""What the drivers' lock operations return (lock_store.py reads them)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Waiter:
    owner_id: int
    bell: str
    dead: bool | None  # None: unknown (SQLite: a failed ring tells)


@dataclass
class Released:
    """The outcome of releasing a slot."""

    freed: bool  # the slot was ours (lease intact) and is free now
    dead: bool  # the releasing owner was found dead (its lease may have been lost)
    rung: bool  # a waiter was woken by the release itself
    heads: list[Waiter] = field(default_factory=list)  # the oldest waiters looked at
