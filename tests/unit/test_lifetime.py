"""The shared process scaffold: register, use_owner, loop, close with or without blame."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from kojo.processes.lifetime import Lifetime
from kojo.processes.lineage import Lineage
from kojo.processes.patience import EXIT_REGISTRATION_LOST
from kojo.settings import Settings


class FakeOwner:
    def __init__(self) -> None:
        self.closed: list[bool] = []

    def close(self, *, blame: bool = True) -> None:
        self.closed.append(blame)


class FakeBackend:
    def __init__(self) -> None:
        self.owner = FakeOwner()
        self.infos: list[Any] = []

    def register_owner(self, info: Any) -> FakeOwner:
        self.infos.append(info)
        return self.owner

    def is_unavailable(self, exc: BaseException) -> bool:
        return False


class FakeApp:
    def __init__(self) -> None:
        self.backend = FakeBackend()
        self.owners: list[Any] = []

    def use_owner(self, owner: Any) -> None:
        self.owners.append(owner)


@pytest.fixture
def app() -> Iterator[FakeApp]:
    yield FakeApp()


def life(app: FakeApp) -> Lifetime:
    lineage = Lineage("/server[1]/root[2]/job[3]", "job")
    return Lifetime(app, Settings("host-a", 2), lineage, "Job", logging.getLogger("kojo.test"), [])  # type: ignore[arg-type]


@pytest.mark.parametrize(("code", "blame"), [(0, True), (EXIT_REGISTRATION_LOST, False)])
def test_the_registration_is_used_then_closed(app: FakeApp, code: int, blame: bool) -> None:
    lived = life(app)
    try:
        assert lived.run(lambda owner: code, lambda: False) == code
    finally:
        lived.signals.close()
    info = app.backend.infos[0]
    assert (info.host_name, info.path, info.kind) == ("host-a", "/server[1]/root[2]/job[3]", "job")
    assert app.owners == [app.backend.owner]
    assert app.backend.owner.closed == [blame]


def test_a_failing_loop_still_closes_with_blame(app: FakeApp) -> None:
    lived = life(app)

    def boom(owner: Any) -> int:
        raise RuntimeError("bug")

    try:
        with pytest.raises(RuntimeError):
            lived.run(boom, lambda: False)
    finally:
        lived.signals.close()
    assert app.backend.owner.closed == [True]
