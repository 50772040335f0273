"""What a server imports before its first job: nothing it does not need there.

Every module the server imports is paid for by every start-up (bench/startup.py).
psycopg is only for PostgreSQL; yaml only for `--file`; croniter only for cron types
(the maintainer, or an app that defines one); the operators' views (why a job waits,
its timeline, the dashboard) only when asked for. Each check runs a fresh interpreter,
since this test process has imported them all already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
OPTIONAL = ("psycopg", "yaml", "croniter")
OPERATORS = ("kojo.why", "kojo.timeline", "kojo.dashboard")

# What `kojo server start` imports before forking, up to the job process's module.
SERVER_IMPORTS = """
import json, sys
import kojo.cli
from kojo.processes.server import Server
from kojo.processes.job_process import JobProcess
app = kojo.App(database=sys.argv[1])
watched = {watched}
found = {{w for m in sys.modules for w in watched if m == w or m.startswith(w + ".")}}
print(json.dumps(sorted(found)))
"""

# What `import kojo` (an app, a client) imports of the command line and operators' views.
KOJO_IMPORTS = """
import json, sys
import kojo
watched = {watched}
found = {{w for m in sys.modules for w in watched if m == w or m.startswith(w + ".")}}
print(json.dumps(sorted(found)))
"""


def imported_by_server(url: str, tmp_path: Path) -> set[str]:
    return set(run(SERVER_IMPORTS.format(watched=repr(set(OPTIONAL + OPERATORS))), url, tmp_path))


def run(code: str, url: str, tmp_path: Path) -> list[str]:
    """The JSON list `code` prints, run in a fresh interpreter with `url` as its argument."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", code, url],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=env,
    )
    names: list[str] = json.loads(done.stdout)
    return names


def test_a_sqlite_server_imports_no_driver_yaml_croniter_or_operators_view(tmp_path: Path) -> None:
    assert imported_by_server(f"sqlite:///{tmp_path}/kojo.db", tmp_path) == set()


def test_a_postgres_server_imports_psycopg_only(tmp_path: Path) -> None:
    # No connection is made: opening the backend imports its driver.
    assert imported_by_server("postgresql://nobody@127.0.0.1:1/none", tmp_path) == {"psycopg"}


def test_import_kojo_imports_neither_the_command_line_nor_the_operators_views(
    tmp_path: Path,
) -> None:
    code = KOJO_IMPORTS.format(watched=repr({"click", "kojo.cli", *OPERATORS}))
    assert run(code, "", tmp_path) == []
