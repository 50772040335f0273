"""`kojo types list` with a cron type whose stored row was edited by hand into an expression
that never fires (or is not cron): that type shows no next fire, the others list as ever.
Through a real subprocess, on both backends."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

import kojo
from cli_runner import run
from maintenance_helpers import run_sql


@pytest.mark.parametrize("stored", ["0 0 31 2 *", "0 0 30 2 *", "nonsense"])
def test_types_list_survives_one_type_edited_by_hand(
    database_url: str, tmp_path: Path, stored: str
) -> None:
    module = f"stored_rows_workers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text("def work(job):\n    pass\n")
    path = tmp_path / "types.yml"
    path.write_text(
        f"- code: bad\n  worker: {module}:work\n  cron_expression: '* * * * *'\n"
        f"- code: good\n  worker: {module}:work\n  cron_expression: '*/5 * * * *'\n"
        f"- code: plain\n  worker: {module}:work\n"
    )
    for args in (("db", "install"), ("types", "register", "--file", str(path))):
        assert run(database_url, tmp_path, *args).returncode == 0
    app = kojo.App(database=database_url)
    sql = "UPDATE kojo_job_type SET cron_expression = :value WHERE type_code = 'bad'"
    assert run_sql(app.backend, sql, value=stored) == 1
    app.backend.close()

    listed = run(database_url, tmp_path, "types", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["type_code"]: row for row in json.loads(listed.stdout)}
    assert (rows["bad"]["cron_expression"], rows["bad"]["next_fire"]) == (stored, None)
    assert rows["good"]["next_fire"] is not None
    assert rows["plain"]["next_fire"] is None
    table = run(database_url, tmp_path, "types", "list")
    assert table.returncode == 0 and "good" in table.stdout and stored in table.stdout
