"""`kojo dashboard` refusals through the real command (a subprocess): a non-loopback bind
without a token, a token that cannot travel, a missing extra; each one line, exit 2.
The server itself is started in tests/acceptance/test_dashboard_server.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kojo.dashboard.queries import process_trees
from kojo.dashboard.security import is_loopback


def kojo(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, code: str | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KOJO_")}
    full_env["KOJO_DATABASE_URL"] = f"sqlite:///{tmp_path}/kojo.db"
    full_env.update(env or {})
    command = ["-c", code] if code else ["-m", "kojo"]
    return subprocess.run(
        [sys.executable, *command, *args],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "dashboard.example"])
def test_a_non_loopback_bind_without_a_token_is_refused(tmp_path: Path, host: str) -> None:
    line = one_line_error(kojo(tmp_path, "dashboard", "--host", host))
    assert f"refusing to serve the dashboard on {host} without a token" in line
    assert "KOJO_DASHBOARD_TOKEN" in line


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["--token", ""], {}, "must not be empty"),
        (["--token", "two words"], {}, "printable ASCII without spaces"),
        ([], {"KOJO_DASHBOARD_TOKEN": "tab\there"}, "printable ASCII without spaces"),
        (["--host", ""], {}, "--host must not be empty"),
        (["--port", "0"], {}, "--port"),
        (["--port", "65536"], {}, "--port"),
    ],
)
def test_bad_options_are_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str], words: str
) -> None:
    assert words in one_line_error(kojo(tmp_path, "dashboard", *args, env=env))


def test_without_the_extra_the_command_says_what_to_install(tmp_path: Path) -> None:
    # starlette made unimportable, as where kojo[dashboard] was not installed
    code = "import sys; sys.modules['starlette'] = None; from kojo.cli import main; main()"
    line = one_line_error(kojo(tmp_path, "dashboard", code=code))
    assert line == "error: kojo dashboard needs starlette: pip install 'kojo[dashboard]'"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("localhost.example", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_processes_are_shown_as_a_tree_per_host() -> None:
    def proc(host: str, pid: int, parent: int, kind: str) -> dict[str, object]:
        return {"host_name": host, "process_id": pid, "parent_process_id": parent, "kind": kind}

    rows = [
        proc("b", 30, 1, "server"),
        proc("a", 12, 11, "job"),
        proc("a", 10, 1, "server"),
        proc("a", 11, 10, "root"),
        proc("a", 13, 11, "job"),
        proc("a", 99, 98, "client"),
        proc("a", 40, 41, "loop"),  # a pid loop (reused pids) shows each once
        proc("a", 41, 40, "loop"),
    ]
    trees = process_trees(rows)
    assert [t.host_name for t in trees] == ["a", "b"]
    shown = [(depth, row["process_id"]) for depth, row in trees[0].rows]
    assert shown[:5] == [(0, 10), (1, 11), (2, 12), (2, 13), (0, 99)]
    assert sorted(pid for _, pid in shown[5:]) == [40, 41]
    assert [(d, r["process_id"]) for d, r in trees[1].rows] == [(0, 30)]
