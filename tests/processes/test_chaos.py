"""The CI cut of bench/chaos.py: kill -9 of random kojo processes (job, root, maintainer,
server) every second on each backend, servers restarted as a supervisor would, with
mutex clients and a cron type (MySQL: a database of its own on the server of
``KOJO_TEST_MYSQL_URL``). The run checks its own invariants (nothing lost,
nothing panicked, no mutex overlap, tokens increasing, no job run by two live
processes at once, nothing left behind) and exits non-zero when one fails. The
database faults have their own tests (test_database_faults.py); the longer run is
`python bench/chaos.py`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"])
def test_kill_9_of_any_kojo_process_loses_nothing(
    backend: str, request: pytest.FixtureRequest
) -> None:
    if backend != "sqlite":  # skips, saying why, without a server of that kind
        request.getfixturevalue(f"{backend}_admin_url")
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "chaos.py"),
            "--quick",
            "--only",
            f"kill-9/{backend}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "all invariants held" in done.stdout
    # The table's row (the last line naming the scenario; progress lines come before it).
    row = [line for line in done.stdout.splitlines() if line.startswith(f"kill-9/{backend}")][-1]
    faults = int(row.split()[-2])
    assert faults >= 5, row  # the kills really happened
