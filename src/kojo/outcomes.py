"""How running a job ended, as runner.run reports it to the process that ran it.

Str-valued: an outcome equals the text it replaced (the name of the transition a
worker requested, "auto_complete", "lost"), so logs and comparisons are unchanged.
"""

from __future__ import annotations

from enum import StrEnum

from . import states


class Outcome(StrEnum):
    # The worker's own request (or the runner's on its behalf): the transition's name.
    RETRY = states.RETRY.name
    HOLD = states.HOLD.name
    COMPLETE_SUCCESS = states.COMPLETE_SUCCESS.name
    COMPLETE_FAILED = states.COMPLETE_FAILED.name
    PANIC = states.PANIC.name
    # Returned without a request, of a type that auto-completes: the caller completes it,
    # in a batch with others.
    AUTO_COMPLETE = "auto_complete"
    # The outcome could not be written: the job was cancelled, held or reaped meanwhile.
    LOST = "lost"

    @classmethod
    def of(cls, transition: states.Transition) -> Outcome:
        """The outcome of a job whose worker requested `transition`."""
        return cls(transition.name)
