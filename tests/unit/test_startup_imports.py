"""What a server imports before its first job: nothing it does not need there.

Every module the server imports is paid for by every start-up (bench/startup.py).
psycopg is only for PostgreSQL; yaml only for `--file`; croniter only for cron types
(the maintainer, or an app that defines one). Each check runs a fresh interpreter,
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

# What `kojo server start` imports before forking, up to the job process's module.
SERVER_IMPORTS = """
import json, sys
import kojo.cli
from kojo.processes.server import Server
from kojo.processes.job_process import JobProcess
app = kojo.App(database=sys.argv[1])
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {optional})))
"""


def imported_by_server(url: str, tmp_path: Path) -> set[str]:
    code = SERVER_IMPORTS.format(optional=repr(set(OPTIONAL)))
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
    return {name.split(".")[0] for name in json.loads(done.stdout)}


def test_a_sqlite_server_imports_neither_psycopg_nor_yaml_nor_croniter(tmp_path: Path) -> None:
    assert imported_by_server(f"sqlite:///{tmp_path}/kojo.db", tmp_path) == set()


def test_a_postgres_server_imports_psycopg_only(tmp_path: Path) -> None:
    # No connection is made: opening the backend imports its driver.
    assert imported_by_server("postgresql://nobody@127.0.0.1:1/none", tmp_path) == {"psycopg"}
