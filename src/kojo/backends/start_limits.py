"""What lets a waiting job start, beyond its time and type: a place under its type's
concurrency limit (admission, docs/concurrency-limits.md) and a slot of its type's rate
limit (docs/rate-limits.md). JobStore calls these inside the transactions that schedule,
claim and finish jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ..clock import as_utc
from ..errors import RateLimited
from .driver import Driver, Row
from .later_rows import LaterRows

ADMIT_ALL = 2**31 - 1  # no limit (any more): every waiting job is admitted
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # a rate limit slot free since ever


class StartLimits(Driver):
    """Concurrency admission and rate-limit slots."""

    # -- concurrency limits -----------------------------------------------------------

    def _admit(self, type_code: str, concurrency_key: str, now: datetime) -> None:
        """Inside write(): admit waiting jobs of the type and key while fewer than its
        concurrency_limit are admitted (docs/concurrency-limits.md). Always under the
        key's lock, taken after the rows this transaction changed: a finish that skipped
        it could leave a job queued by a concurrent transaction (which counted the
        finishing job as admitted) waiting with a place free."""
        params = {"type_code": type_code, "concurrency_key": concurrency_key}
        self.lock_limit_key(type_code, concurrency_key)  # admissions of one key, one at a time
        if self.fetchone("limit_queued", params) is None:
            return  # the usual finish: nobody waits, nothing to count
        row = self.fetchone("limit_of_type", params)
        if row is None:
            return
        limit = int(row["concurrency_limit"])
        admitted = 0 if limit == 0 else len(self.fetchall("limit_admitted", params))
        free = ADMIT_ALL if limit == 0 else limit - admitted
        if free > 0 and self.execute("limit_admit", {**params, "free": free, "now": now}):
            self.notify("jobs")

    # -- rate limits ------------------------------------------------------------------

    def _rate_slots_register(self, code: str, count: int) -> None:
        """Inside type registration, which holds the type's row: one slot per start
        allowed per period. Slots kept keep their times, so a limit changed mid-period
        still counts the recent starts."""
        slots = {"type_code": code, "count": count}
        self.execute("rate_slot_trim", slots)
        self.execute("rate_slot_fill", {**slots, "epoch": EPOCH})
        self.execute("rate_free_set", {"type_code": code, "epoch": EPOCH})

    def _rate_limited(self, claimed: LaterRows) -> list[tuple[Row, float]]:
        """The claimed rows of rate-limited types, each with its limit's period in seconds:
        the claim returns it as `rate_seconds` (0: none), taken off the rows here."""
        rated = []
        for row in claimed.rows():
            seconds = row.pop("rate_seconds", None)
            if seconds:
                rated.append((row, float(seconds)))
        return rated

    def _rate_check(self, job_id: int, code: str, now: datetime) -> float:
        """`kojo work ID`, the type's row held: the rate limit's period in seconds (0 for
        none); RateLimited when no slot is free now."""
        rate = self.fetchone("rate_of_type", {"type_code": code}) or {}
        seconds = float(rate["rate_limit_seconds"]) if rate.get("rate_limit_count") else 0.0
        if seconds and as_utc(rate["rate_free_date_time"]) > now:
            allowed = as_utc(rate["rate_free_date_time"]).isoformat(timespec="seconds")
            raise RateLimited(
                f"job {job_id} ({code}): its type's rate limit ({rate['rate_limit']}) is "
                f"reached; the next start is allowed at {allowed}"
            )
        return seconds

    def _rate_start(
        self, row: Row, seconds: float, owner_id: int, room: int, now: datetime
    ) -> list[Row]:
        """Inside the claim's write(), which holds the type's row (docs/rate-limits.md):
        the claimed job of a rate-limited type takes a slot, and as many more of its due
        jobs as the batch has room for and free slots allow are claimed too; those."""
        code = str(row["type_code"])
        self._rate_take(code, seconds, 1, now)
        if room <= 0 or not row["can_work_in_parallel"]:
            return []
        free = self.fetchone("rate_free_count", {"type_code": code, "now": now, "limit": room})
        more = int(free["free"]) if free else 0
        if more <= 0:
            return []
        claimed = self.fetchall(
            "job_claim_type", {"type_code": code, "owner": owner_id, "now": now, "n": more}
        )
        if claimed:
            self._rate_take(code, seconds, len(claimed), now)
        return claimed

    def _rate_take(self, code: str, seconds: float, count: int, now: datetime) -> None:
        """`count` starts of a rate-limited type, the type's row held: each takes a slot
        free since now or earlier until now + the period (`seconds`), free longest first."""
        free_at = now + timedelta(seconds=seconds)
        taken = self.fetchall(
            "rate_slot_take", {"type_code": code, "now": now, "free_at": free_at, "count": count}
        )
        if len(taken) != count:  # the claim counted them under the same lock: cannot happen
            raise AssertionError(f"rate limit of {code!r}: {count} starts, {len(taken)} slots")
        self.execute("rate_free_set", {"type_code": code, "epoch": EPOCH})
