"""A job process leaves the types whose workers it cannot import out of its claims
(job_claim(skip=)), on both backends; the others are claimed as usual."""

from __future__ import annotations

from datetime import timedelta

import pytest

import kojo
from foundation_helpers import T0, make_app, owner_of
from kojo import runner

FAR = T0 + timedelta(days=3650)


def test_claims_leave_the_skipped_types_out(database_url: str) -> None:
    app = make_app(database_url, broken={}, fine={}, serial={"can_work_in_parallel": False})
    broken = [app.schedule("broken", at=T0, importance=9) for _ in range(3)]
    fine = app.schedule("fine", at=T0)
    serial = app.schedule("serial", at=T0)
    later = app.schedule("broken", at=T0 + timedelta(hours=1))
    backend = app.backend
    with owner_of(backend) as owner:
        assert backend.job_next_work_at(T0, ["broken"]) is None
        assert backend.job_next_work_at(T0) == T0 + timedelta(hours=1)
        rows = backend.job_claim(owner.id, 10, T0, skip=["broken", "serial"])
        assert [r["kojo_job_id"] for r in rows] == [fine]
        rows = backend.job_claim(owner.id, 10, T0, skip=["broken"])
        assert [r["kojo_job_id"] for r in rows] == [serial]
        rows = backend.job_claim(owner.id, 10, FAR, skip=[])
        assert [r["kojo_job_id"] for r in rows] == [*broken, later]


def test_running_a_job_whose_worker_cannot_be_imported_changes_nothing(
    database_url: str,
) -> None:
    app = make_app(database_url)
    app.backend.type_register(kojo.JobType(code="gone", worker_uri="kojo_no_such_module:work"))
    job_id = app.schedule("gone", at=T0)
    with owner_of(app.backend) as owner:
        [row] = app.backend.job_claim(owner.id, 1, T0)
        with pytest.raises(kojo.WorkerUnavailable, match="kojo_no_such_module:work") as raised:
            runner.run(app, runner.with_type(app, row), owner.id)
        after = app.job(job_id)  # still claimed, untouched: the caller gives it back
    assert (raised.value.type_code, raised.value.worker_uri) == ("gone", "kojo_no_such_module:work")
    assert "ModuleNotFoundError" in raised.value.why
    assert (after["assigned_state"], after["times_panicked"]) == ("working", 0)
