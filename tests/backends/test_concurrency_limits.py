"""Concurrency limits (issue 14 item 4), on both backends: at most concurrency_limit jobs of
a type and key are admitted (runnable or working) at once; the others wait as
waiting/limit, outside the claim's index, and are admitted as places free up.

Real processes and kill -9 are in tests/processes/test_concurrency_cluster.py."""

from __future__ import annotations

from typing import Any

import pytest

import kojo
from foundation_helpers import claim, noop, owner_of


@pytest.fixture
def app(database_url: str) -> kojo.App:
    built = kojo.App(database=database_url)
    built.install()
    built.job_type("api", concurrency_limit=2)(noop)
    built.job_type("one_at_a_time", concurrency_limit=1)(noop)
    built.job_type("free")(noop)
    built.register_job_types()
    return built


def requests(app: kojo.App, ids: list[int]) -> list[str]:
    return [app.job(j)["next_state_request"] for j in ids]


def test_only_the_limit_is_admitted_per_key(app: kojo.App) -> None:
    shop_a = [app.schedule("api", concurrency_key="shop:a") for _ in range(4)]
    shop_b = [app.schedule("api", concurrency_key="shop:b") for _ in range(3)]
    assert requests(app, shop_a) == ["working", "working", "limit", "limit"]
    assert requests(app, shop_b) == ["working", "working", "limit"]
    with owner_of(app.backend) as owner:
        claimed = claim(app.backend, owner, limit=100)
    assert sorted(claimed) == sorted(shop_a[:2] + shop_b[:2])  # the others are not read


def test_a_finished_job_admits_the_next_in_selection_order(app: kojo.App) -> None:
    low = app.schedule("api", concurrency_key="k")
    app.schedule("api", concurrency_key="k")
    later_low = app.schedule("api", concurrency_key="k")
    high = app.schedule("api", concurrency_key="k", importance=5)
    assert requests(app, [later_low, high]) == ["limit", "limit"]
    with owner_of(app.backend) as owner:
        (first,) = claim(app.backend, owner, limit=1)
        assert first == low
        app.backend.job_transition(low, kojo.states.COMPLETE_SUCCESS, owner=owner.id)
    assert requests(app, [later_low, high]) == ["limit", "working"]  # priority first


@pytest.mark.parametrize("end", ["cancel", "hold", "fail", "panic"])
def test_every_way_out_frees_the_place(app: kojo.App, end: str) -> None:
    first, second = (app.schedule("one_at_a_time", concurrency_key="k") for _ in range(2))
    assert requests(app, [first, second]) == ["working", "limit"]
    with owner_of(app.backend) as owner:
        assert claim(app.backend, owner) == [first]
        transition: Any = {
            "cancel": kojo.states.COMPLETE_TERMINATED,
            "hold": kojo.states.HOLD,
            "fail": kojo.states.COMPLETE_FAILED,
            "panic": kojo.states.PANIC,
        }[end]
        app.backend.job_transition(first, transition, owner=owner.id)
    assert requests(app, [second]) == ["working"]


def test_a_released_job_waits_for_a_place_again(app: kojo.App) -> None:
    first, second = (app.schedule("one_at_a_time") for _ in range(2))
    app.hold(first)  # frees its place: second is admitted
    assert requests(app, [second]) == ["working"]
    app.release(first)  # no place now
    assert app.job(first)["next_state_request"] == "limit"
    app.cancel(second)
    assert app.job(first)["next_state_request"] == "working"


def test_a_crashed_job_keeps_its_place_and_is_re_run(app: kojo.App) -> None:
    first, second = (app.schedule("one_at_a_time") for _ in range(2))
    with owner_of(app.backend) as owner:
        assert claim(app.backend, owner) == [first]
        app.backend.job_transition(first, kojo.states.CRASH, owner=owner.id)
    assert app.job(first)["assigned_state"] == "crashed"
    assert requests(app, [first, second]) == ["working", "limit"]
    with owner_of(app.backend) as owner:
        assert claim(app.backend, owner) == [first]


def test_a_job_with_parents_is_admitted_once_they_succeed(app: kojo.App) -> None:
    parent = app.schedule("free")
    busy = app.schedule("one_at_a_time")
    child = app.schedule("one_at_a_time", after=[parent])
    assert requests(app, [child]) == ["after"]
    with owner_of(app.backend) as owner:
        assert claim(app.backend, owner, limit=2) == [parent, busy]
        app.backend.job_transition(parent, kojo.states.COMPLETE_SUCCESS, owner=owner.id)
        assert requests(app, [child]) == ["limit"]  # busy holds the place
        app.backend.job_transition(busy, kojo.states.COMPLETE_SUCCESS, owner=owner.id)
    assert requests(app, [child]) == ["working"]


def test_without_a_key_the_limit_is_per_type(app: kojo.App) -> None:
    ids = app.schedule_many("api", [None] * 3)
    assert requests(app, ids) == ["working", "working", "limit"]
    assert app.job(ids[0])["concurrency_key"] == ""


def test_a_type_without_a_limit_ignores_keys(app: kojo.App) -> None:
    ids = [app.schedule("free", concurrency_key="k") for _ in range(5)]
    assert set(requests(app, ids)) == {"working"}


def test_raising_the_limit_admits_more(database_url: str, app: kojo.App) -> None:
    ids = [app.schedule("one_at_a_time") for _ in range(3)]
    assert requests(app, ids) == ["working", "limit", "limit"]
    wider = kojo.App(database=database_url)
    wider.job_type("one_at_a_time", concurrency_limit=3)(noop)
    wider.register_job_types()
    wider.schedule("one_at_a_time")  # the next admission counts with the new limit
    assert requests(app, ids) == ["working", "working", "working"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"concurrency_limit": -1}, "concurrency_limit"),
        ({"concurrency_limit": 10_001}, "at most 10000"),
        ({"concurrency_limit": "2"}, "concurrency_limit"),
        ({"concurrency_limit": 2, "cron_expression": "* * * * *"}, "cannot be combined"),
        ({"concurrency_limit": 2, "schedule_limit": 1}, "cannot be combined"),
    ],
)
def test_bad_limits_are_refused_at_registration(
    tmp_path: Any, fields: dict[str, Any], message: str
) -> None:
    app = kojo.App(database=f"sqlite:///{tmp_path}/k.db")
    with pytest.raises(kojo.InvalidJobType, match=message):
        app.job_type("bad", **fields)(noop)


@pytest.mark.parametrize("key", ["", "x" * 256, "new\nline", 3])
def test_a_bad_concurrency_key_is_refused_naming_it(app: kojo.App, key: Any) -> None:
    with pytest.raises(kojo.InvalidArgument, match="concurrency key"):
        app.schedule("api", concurrency_key=key)
    assert app.jobs() == []
