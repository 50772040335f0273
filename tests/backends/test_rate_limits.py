"""Rate limits (issue 14 item 5), on both backends: a type's `rate_limit` "N/PERIOD" lets at
most N of its jobs start (be claimed) in any interval of that length, cluster-wide. Each
start takes one of N slots until start + period; a claim takes a slot only while it holds
the type's row, so concurrent claims never share one.

Real servers on two hosts are in tests/processes/test_rate_limits_cluster.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pytest

import kojo
from foundation_helpers import T0, claim, noop, owner_of
from kojo.backends import Owner
from kojo.clock import utcnow


@pytest.fixture
def app(database_url: str) -> kojo.App:
    built = kojo.App(database=database_url)
    built.install()
    built.job_type("api", rate_limit="2/PT10S")(noop)
    built.job_type("serial_api", rate_limit="2/PT10S", can_work_in_parallel=False)(noop)
    built.job_type("free")(noop)
    built.register_job_types()
    return built


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("3/PT2S", "3/PT2S"),
        ("3/pt2s", "3/PT2S"),
        (" 100 / PT1M ", "100/PT1M"),
        ("", ""),
        (None, ""),
    ],
)
def test_a_rate_limit_is_kept_in_its_canonical_form(value: str | None, canonical: str) -> None:
    assert kojo.JobType(code="t", worker_uri="m:f", rate_limit=value).rate_limit == canonical  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        "3",
        "3/",
        "/PT1S",
        "0/PT1M",
        "-1/PT1M",
        "x/PT1M",
        "3/PT0S",
        "3/soon",
        "3/P2000Y",
        "10001/PT1S",
        "1/2/PT1S",
        "²/PT1S",
        5,
    ],
)
def test_a_bad_rate_limit_is_refused_naming_it(value: object) -> None:
    with pytest.raises(kojo.InvalidJobType) as caught:
        kojo.JobType(code="t", worker_uri="m:f", rate_limit=value)  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith(f"invalid job type field rate_limit={value!r}:"), message
    assert "\n" not in message


def test_at_most_n_start_in_a_period(app: kojo.App) -> None:
    jobs = [app.schedule("api", at=T0) for _ in range(6)]
    with owner_of(app.backend) as owner:
        # A claim takes as many as there are free slots (and room in its batch).
        assert claim(app.backend, owner, limit=100, now=T0) == jobs[:2]
        assert claim(app.backend, owner, limit=100, now=T0 + timedelta(seconds=9.999)) == []
        assert claim(app.backend, owner, limit=100, now=T0 + timedelta(seconds=10)) == jobs[2:4]


def test_each_slot_frees_one_period_after_its_start(app: kojo.App) -> None:
    jobs = [app.schedule("api", at=T0) for _ in range(5)]
    with owner_of(app.backend) as owner:
        assert claim(app.backend, owner, limit=1, now=T0) == jobs[:1]
        assert claim(app.backend, owner, limit=1, now=T0 + timedelta(seconds=3)) == jobs[1:2]
        assert claim(app.backend, owner, limit=100, now=T0 + timedelta(seconds=9.999)) == []
        # The first slot frees 10 s after the first start, the second after the second.
        assert claim(app.backend, owner, limit=100, now=T0 + timedelta(seconds=10)) == jobs[2:3]
        assert claim(app.backend, owner, limit=100, now=T0 + timedelta(seconds=12)) == []
        assert claim(app.backend, owner, limit=100, now=T0 + timedelta(seconds=13)) == jobs[3:4]


def test_a_rate_limited_type_does_not_hold_up_the_others(app: kojo.App) -> None:
    limited = [app.schedule("api", at=T0, importance=9) for _ in range(3)]
    free = [app.schedule("free", at=T0) for _ in range(3)]
    with owner_of(app.backend) as owner:
        assert claim(app.backend, owner, limit=10, now=T0) == [*limited[:2], *free]
        assert claim(app.backend, owner, limit=10, now=T0) == []


def test_a_full_batch_takes_no_more_than_its_room(app: kojo.App) -> None:
    jobs = [app.schedule("api", at=T0) for _ in range(3)]
    with owner_of(app.backend) as owner:
        assert claim(app.backend, owner, limit=1, now=T0) == jobs[:1]
        assert claim(app.backend, owner, limit=1, now=T0) == jobs[1:2]  # a slot was left
        assert claim(app.backend, owner, limit=1, now=T0) == []


def test_a_rerun_is_a_start_too(app: kojo.App) -> None:
    job = app.schedule("api", at=T0)
    with owner_of(app.backend) as owner:
        assert claim(app.backend, owner, now=T0) == [job]
        app.backend.job_transition(
            job, kojo.states.RETRY, owner=owner.id, work_at=T0, now=T0 + timedelta(seconds=1)
        )
        assert claim(app.backend, owner, now=T0 + timedelta(seconds=1)) == [job]
        app.backend.job_transition(
            job, kojo.states.RETRY, owner=owner.id, work_at=T0, now=T0 + timedelta(seconds=2)
        )
        assert claim(app.backend, owner, now=T0 + timedelta(seconds=2)) == []
        assert claim(app.backend, owner, now=T0 + timedelta(seconds=10)) == [job]


def test_a_serial_rate_limited_type_obeys_both(app: kojo.App) -> None:
    first, second = (app.schedule("serial_api", at=T0) for _ in range(2))
    with owner_of(app.backend) as owner:
        assert claim(app.backend, owner, now=T0) == [first]
        assert claim(app.backend, owner, now=T0) == []  # serial: first is working
        app.backend.job_transition(first, kojo.states.COMPLETE_SUCCESS, owner=owner.id)
        assert claim(app.backend, owner, now=T0) == [second]


def test_the_next_free_slot_wakes_the_job_processes(app: kojo.App) -> None:
    app.schedule("api", at=T0)
    app.schedule("api", at=T0)
    app.schedule("api", at=T0)
    with owner_of(app.backend) as owner:
        claim(app.backend, owner, now=T0)
        claim(app.backend, owner, now=T0 + timedelta(seconds=4))
        assert app.backend.job_next_work_at(T0 + timedelta(seconds=5)) == T0 + timedelta(seconds=10)
        assert app.backend.job_due_count(T0 + timedelta(seconds=5), 100) == 0
        assert app.backend.job_due_count(T0 + timedelta(seconds=10), 100) == 1


def test_changing_the_limit_keeps_the_recent_starts(app: kojo.App) -> None:
    jobs = [app.schedule("api", at=T0) for _ in range(4)]
    with owner_of(app.backend) as owner:
        assert claim(app.backend, owner, now=T0) == jobs[:1]
        app.job_type("api", rate_limit="1/PT10S")(noop)
        app.register_job_types()
        assert claim(app.backend, owner, now=T0 + timedelta(seconds=1)) == []
        app.job_type("api", rate_limit="3/PT10S")(noop)
        app.register_job_types()
        assert claim(app.backend, owner, now=T0 + timedelta(seconds=1)) == jobs[1:2]
        assert claim(app.backend, owner, now=T0 + timedelta(seconds=1)) == jobs[2:3]
        assert claim(app.backend, owner, now=T0 + timedelta(seconds=1)) == []
        app.job_type("api", rate_limit="")(noop)
        app.register_job_types()
        assert claim(app.backend, owner, now=T0 + timedelta(seconds=1)) == jobs[3:4]


def test_kojo_work_by_id_counts_and_obeys_the_limit(app: kojo.App) -> None:
    jobs = [app.schedule("api", at=T0) for _ in range(3)]
    with owner_of(app.backend) as owner:
        for job in jobs[:2]:
            with app.backend.write():
                assert app.backend.job_claim_by_id(job, owner.id, T0) is not None
        with pytest.raises(kojo.RateLimited) as caught, app.backend.write():
            app.backend.job_claim_by_id(jobs[2], owner.id, T0 + timedelta(seconds=1))
    message = str(caught.value)
    assert f"job {jobs[2]} (api)" in message and "2/PT10S" in message, message
    assert "allowed at 2030-01-01T12:00:10+00:00" in message, message
    assert app.job(jobs[2])["assigned_state"] == "waiting"


def race(database_url: str, claimers: int, claims: Callable[[kojo.App, Owner], None]) -> None:
    """`claimers` threads, each with its own App (connection) and owner, run `claims` all
    at once; whatever one of them raised is raised here."""
    errors: list[BaseException] = []
    start = threading.Barrier(claimers)

    def claimer() -> None:
        app = kojo.App(database=database_url)
        try:
            with owner_of(app.backend) as owner:
                start.wait()
                claims(app, owner)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            app.backend.close()

    threads = [threading.Thread(target=claimer) for _ in range(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors


def limited_app(database_url: str, code: str, rate_limit: str, jobs: int) -> list[int]:
    """A type `code` with `rate_limit`, and `jobs` jobs of it due now; their ids."""
    setup = kojo.App(database=database_url)
    setup.install()
    setup.job_type(code, rate_limit=rate_limit)(noop)
    setup.register_job_types()
    ids = setup.schedule_many(code, [None] * jobs)
    setup.backend.close()
    return ids


def test_concurrent_claims_never_share_a_slot(database_url: str) -> None:
    """Eight claimers on their own connections, all at once, for a type that allows three
    starts per hour: exactly three of its jobs are claimed, whatever the interleaving."""
    jobs = limited_app(database_url, "scarce", "3/PT1H", 20)
    claimed: list[int] = []

    def claims(app: kojo.App, owner: Owner) -> None:
        for _ in range(10):
            claimed.extend(claim(app.backend, owner, limit=5, now=utcnow()))

    race(database_url, 8, claims)
    assert len(claimed) == 3 and set(claimed) <= set(jobs), claimed


def test_concurrent_claims_keep_every_window_under_the_limit(database_url: str) -> None:
    """Six claimers racing for 1.5 s against a limit of 2 per 0.1 s: the recorded start
    times (each claim's `now`, what the slots count) never put 3 in any 0.1 s."""
    limited_app(database_url, "pulse", "2/PT0.1S", 200)
    starts: list[float] = []

    def claims(app: kojo.App, owner: Owner) -> None:
        until = time.monotonic() + 1.5
        while time.monotonic() < until:
            with app.backend.write():
                rows = app.backend.job_claim(owner.id, 5, utcnow())
            starts.extend(r["last_transition_date_time"].timestamp() for r in rows)

    race(database_url, 6, claims)
    starts.sort()
    assert len(starts) >= 10, starts  # the limit was reached again and again
    crowded = [(a, b) for a, b in zip(starts, starts[2:], strict=False) if b - a < 0.1]
    assert not crowded, crowded
