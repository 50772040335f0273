"""What operators ask of the job table (`kojo stats`, `jobs list`, `jobs why`, `jobs
purge`): reads, and the deletion of finished jobs. Dialect-free, like job_store.py; the
queries are sql/operator.sql's.
"""

from __future__ import annotations

import json
from datetime import datetime

from .driver import Driver, Row

PURGE_BATCH = 500  # jobs per deleting transaction: short write locks on a big table
# A state with at most this many jobs is paged through the type/state index (sorting
# them costs little), not by walking the ids down past every job of other states.
FEW_IN_STATE = 5000


class OperatorStore(Driver):
    """Reads and purges for operators."""

    def job_page(
        self,
        type_code: str | None,
        state: str | None,
        limit: int,
        before: int | None,
        now: datetime,
        future_cron: bool,
    ) -> tuple[list[Row], int]:
        """Jobs newest first (ids below `before`), and how many cron jobs made ahead of
        their minute were left out (0 when `future_cron` lists them)."""
        params = {
            "type_code": type_code,
            "state": state,
            "limit": limit,
            "before": before,
            "now": now,
            "future_cron": future_cron,
        }
        rows = self.fetchall(self._page_query(state), params)
        if future_cron:
            return rows, 0
        hidden = self.fetchone("job_page_future_cron", params)
        return rows, int(hidden["future"]) if hidden else 0

    def _page_query(self, state: str | None) -> str:
        """job_page_few for a state with few jobs (counted up to FEW_IN_STATE, a few
        milliseconds at most), else job_page; both return the same rows."""
        if state is None:
            return "job_page"
        row = self.fetchone("job_state_few", {"state": state, "few": FEW_IN_STATE + 1})
        return "job_page_few" if row and int(row["jobs"]) <= FEW_IN_STATE else "job_page"

    def job_search(
        self,
        text: str,
        type_code: str | None,
        state: str | None,
        limit: int,
        before: int | None,
        scan: int,
    ) -> tuple[list[Row], int | None]:
        """Jobs newest first whose payload JSON text contains `text`, among the `scan` newest
        below `before` (a scan, bounded: the same cost at any table size); the rows, and
        where the next page starts (None: every job has been looked at)."""
        escaped = json.dumps(text)[1:-1]  # as json_text.py writes it: \u escapes
        params = {
            "q": text,
            # NULL when it is the same text: a second test of every payload found nothing.
            "q_ascii": escaped if escaped != text else None,
            "type_code": type_code,
            "state": state,
            "limit": limit,
            "before": before,
            "scan": scan,
        }
        # The window first, then the search within it: one walk of the ids, not two.
        window = self.fetchone("job_search_window", params)
        if window is None or window["lowest"] is None:
            return [], None  # no job below `before`
        rows = self.fetchall("job_search", {**params, "lowest": int(window["lowest"])})
        if len(rows) == limit:
            return rows, int(rows[-1]["kojo_job_id"])
        if int(window["scanned"]) < scan:
            return rows, None
        return rows, int(window["lowest"])

    def job_events(self, job_id: int) -> list[Row]:
        """The job's recorded transitions (kojo_job_event), oldest first, with the path of
        the process each names while it is registered (timeline.py adds the others)."""
        return self.fetchall("job_events", {"kojo_job_id": job_id})

    def job_stats(self) -> list[Row]:
        """Jobs per type and state (only pairs that have jobs)."""
        return [{**row, "count": int(row["count"])} for row in self.fetchall("job_stats")]

    def job_purge_count(self, state: str | None, type_code: str | None, cutoff: datetime) -> int:
        """How many finished jobs job_purge would delete now."""
        row = self.fetchone(
            "job_purge_count", {"state": state, "type_code": type_code, "cutoff": cutoff}
        )
        return int(row["purged"]) if row else 0

    def job_purge(self, state: str | None, type_code: str | None, cutoff: datetime) -> int:
        """Delete the finished (complete_*) jobs, of `state` and `type_code` when given,
        completed at or before `cutoff`; how many. In batches, each its own transaction."""
        params = {"state": state, "type_code": type_code, "cutoff": cutoff, "batch": PURGE_BATCH}
        total = 0
        while True:
            with self.write():
                deleted = self.execute("job_purge", params)
            total += deleted
            if deleted < PURGE_BATCH:
                return total

    def job_unique_holder(self, type_code: str, unique_key: str) -> int | None:
        """The unfinished job of the type that has `unique_key`, if any."""
        row = self.fetchone("job_find_unique", {"type_code": type_code, "unique_key": unique_key})
        return None if row is None else int(row["kojo_job_id"])

    # -- what `jobs why` reads (why.py) ----------------------------------------------------

    def job_parent_states(self, job_id: int) -> list[Row]:
        """The jobs `job_id` still waits for: parent_id, assigned_state (None: deleted)."""
        return self.fetchall("job_parent_states", {"kojo_job_id": job_id})

    def job_working_of_type(self, type_code: str) -> list[Row]:
        """A few working jobs of the type, with host_name, process_id and path."""
        return self.fetchall("job_working_of_type", {"type_code": type_code})

    def job_schedule_limit_active(self, type_code: str) -> int:
        """The type's jobs that count against its schedule_limit (working or runnable)."""
        row = self.fetchone("maintenance_active_jobs", {"type_code": type_code})
        return int(row["active"]) if row else 0

    def job_limit_admitted(self, type_code: str, concurrency_key: str) -> list[int]:
        """The ids of the jobs holding a place under the type's concurrency limit and key."""
        rows = self.fetchall(
            "limit_admitted", {"type_code": type_code, "concurrency_key": concurrency_key}
        )
        return sorted(int(r["kojo_job_id"]) for r in rows)

    def job_lock_waits(self, job_id: int) -> list[Row]:
        """The locks the job waits for, one row per current holder (or one with none)."""
        return self.fetchall("job_lock_waits", {"kojo_job_id": job_id})
