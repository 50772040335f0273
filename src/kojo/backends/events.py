"""A job's rare transitions, written to kojo_job_event as they are made (timeline.py
reads them back with the common ones).

The plain drain (claim, auto-completion) writes no event: those transitions are read back
from the job's own columns (created_at, last_transition and previous_state, and
started_at, which a success copies from the last transition: its claim's time), so they
cost nothing where kojo spends its time. Every transition made one job at a time
through JobStore._apply is recorded, but for the ones as common as the drain's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import states
from .driver import Driver

# Read back from the job's row: a claim (the drain's, or one given back untouched) and
# a success (auto-completed in batches, or asked for by the worker).
UNRECORDED = frozenset({states.WORK.name, states.UNCLAIM.name, states.COMPLETE_SUCCESS.name})
WORKING = states.State.WORKING.value
NOTE_CHARS = 200  # a note is one line: the end of a traceback, "retry 2 of 5"


def error_line(text: Any) -> str | None:
    """What a last_error says went wrong: its last non-empty line (a traceback's
    `ValueError: ...`), cut to NOTE_CHARS."""
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    return lines[-1][:NOTE_CHARS] if lines else None


def note_for(name: str, row: Mapping[str, Any], changes: Mapping[str, Any]) -> str | None:
    """The short note of a transition: which retry it is, and the error that caused it."""
    error = error_line(changes.get("last_error"))
    if name == states.RETRY.name:
        retry = f"retry {changes['times_retried']}"
        if row.get("max_retries") is not None:
            retry += f" of {row['max_retries']}"
        return f"{retry}: {error}" if error else retry
    return error


def is_recorded(name: str, row: Mapping[str, Any], changes: Mapping[str, Any]) -> bool:
    if name in UNRECORDED:
        return False
    # A schedule-limit check passed leaves the job waiting: a change of request only.
    return not (
        name == states.WAIT_FOR_WORK.name and row["assigned_state"] == changes["assigned_state"]
    )


class EventWriter(Driver):
    """Writes the timeline rows of JobStore's transitions."""

    def record_event(
        self,
        row: Mapping[str, Any],
        changes: Mapping[str, Any],
        name: str,
        actor: str,
        process: int | None,
    ) -> None:
        """Inside the transition's transaction, once it is made: its event row, after the
        claim it ended (a working job's last transition) since claims have none of their
        own."""
        if not is_recorded(name, row, changes):
            return
        job_id = row["kojo_job_id"]
        started = row.get("last_transition_date_time")
        if row["assigned_state"] == WORKING and started is not None:
            self.execute(
                "job_event_insert",
                {
                    "kojo_job_id": job_id,
                    "at": started,
                    "transition": states.WORK.name,
                    "from_state": row["previous_state"],
                    "to_state": WORKING,
                    "actor": "process",
                    "process": row.get("kojo_process_id"),
                    "note": f"attempt {row['times_worked']}" if "times_worked" in row else None,
                },
            )
        self.execute(
            "job_event_insert",
            {
                "kojo_job_id": job_id,
                "at": changes["last_transition_date_time"],
                "transition": name,
                "from_state": row["assigned_state"],
                "to_state": changes["assigned_state"],
                "actor": actor,
                "process": process,
                "note": note_for(name, row, changes),
            },
        )
