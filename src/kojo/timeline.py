"""A job's timeline: its transitions, oldest first, as `kojo jobs show` and the dashboard's
job page show them. No I/O.

Only the rare transitions have rows in kojo_job_event (backends/events.py); the common
ones are read back from the job's own columns: its creation (created_at), its last claim
(last_transition while it works, started_at once it succeeded; a claim that a recorded
transition ended is recorded with it) and its last transition (previous_state →
assigned_state at last_transition, unless the last event is it). So a
job that ran once and succeeded has a timeline of three steps and no event row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import states

WAITING = states.State.WAITING.value
WORKING = states.State.WORKING.value
# A claim takes a job from one of these.
CLAIMED_FROM = frozenset({WAITING, states.State.CRASHED.value})

Step = dict[str, Any]


def step(
    at: Any,
    transition: str,
    from_state: str | None,
    to_state: str,
    actor: str,
    process: Any = None,
    note: str | None = None,
) -> Step:
    return {
        "at": at,
        "transition": transition,
        "from_state": from_state,
        "to_state": to_state,
        "actor": actor,
        "kojo_process_id": process,
        "path": None,
        "note": note,
        "recorded": False,
    }


def timeline(job: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> list[Step]:
    """The steps of `job` (a kojo_job row) given its recorded `events` (job_events rows),
    each {at, transition, from_state, to_state, actor, kojo_process_id, path, note,
    recorded}: `recorded` is False for the steps read back from the job's columns."""
    steps = [step(job["created_at_date_time"], "created", "new", WAITING, "kojo")]
    for event in events:
        recorded = step(
            event["at_date_time"],
            event["transition"],
            event["from_state"],
            event["to_state"],
            event["actor"],
            event["kojo_process_id"],
            event["note"],
        )
        steps.append({**recorded, "path": event["path"], "recorded": True})
    last = steps[-1]
    state = str(job["assigned_state"])
    # A recorded transition out of working records the claim it ended (events.py): the
    # last claim is missing only while the job works, or once it succeeded.
    if state == WORKING:
        started = job["last_transition_date_time"]
    elif state == states.State.COMPLETE_SUCCESS.value:
        started = job.get("started_at_date_time")  # None: completed before schema 5
    else:
        started = None
    claim_recorded = any(s["transition"] == states.WORK.name and s["at"] == started for s in steps)
    if started is not None and not claim_recorded:
        origin = last["to_state"] if last["to_state"] in CLAIMED_FROM else WAITING
        attempt = f"attempt {job['times_worked']}" if job.get("times_worked") else None
        steps.append(
            step(
                started,
                states.WORK.name,
                origin,
                WORKING,
                "process",
                job["kojo_process_id"],
                attempt,
            )
        )
    if steps[-1]["to_state"] != state:
        steps.append(
            step(
                job["last_transition_date_time"],
                state,
                job["previous_state"],
                state,
                "process" if state == states.State.COMPLETE_SUCCESS.value else "kojo",
                job["kojo_process_id"] if job["previous_state"] == WORKING else None,
            )
        )
    return steps


def by(step_: Mapping[str, Any]) -> str:
    """Who made a step: `operator`, `process 12 /server[8]/root[22]/job[30]`, `kojo`..."""
    who = str(step_["actor"])
    if step_["kojo_process_id"] is not None:
        who += (
            f" {step_['kojo_process_id']}"
            if who == "process"
            else f" of process {step_['kojo_process_id']}"
        )
        if step_["path"]:
            who += f" {step_['path']}"
    return who


def lines(steps: Sequence[Mapping[str, Any]]) -> list[str]:
    """The steps as `kojo jobs show` prints them, one a line."""
    out = []
    for s in steps:
        at = s["at"].strftime("%Y-%m-%d %H:%M:%S") if s["at"] is not None else "-"
        moved = f"{s['from_state']} -> {s['to_state']}"
        line = f"{at}  {s['transition']:<16} {moved:<32} by {by(s)}"
        out.append(line + (f": {s['note']}" if s["note"] else ""))
    return out
