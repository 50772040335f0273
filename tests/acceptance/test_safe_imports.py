"""Safe imports (issue 15): the current folder is on the import path of every command,
and a worker that cannot be imported is a setup error, never the job's fault.

Commands run as `python -P -m kojo`: -P keeps Python from putting the current folder on
the path itself, as the installed `kojo` console script does not either; so these
tests see what a user running `kojo` sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from cli_runner import Kojo

WORKERS = textwrap.dedent(
    """
    import kojo

    app = kojo.App()

    @app.job_type("greet")
    def greet(job):
        return {"hello": job.payload}
    """
)
TYPES_YAML = textwrap.dedent(
    """
    - code: greet
      worker: greet_jobs:greet
    """
)


def cli(url: str, cwd: Path) -> Kojo:
    """As the installed console script runs: -P, the current folder not on the path."""
    return Kojo(url, cwd, python_options=["-P"])


def kojo(url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(url, cwd)(*args)


def ok(url: str, cwd: Path, *args: str) -> str:
    return cli(url, cwd).ok(*args)


def job(url: str, cwd: Path, job_id: int) -> dict[str, Any]:
    row = json.loads(ok(url, cwd, "jobs", "show", str(job_id), "--json"))
    assert isinstance(row, dict)
    return row


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "greet_jobs.py").write_text(WORKERS)
    (folder / "types.yml").write_text(TYPES_YAML)
    return folder


def test_python_dash_p_does_not_see_the_current_folder(tmp_path: Path) -> None:
    """The premise of these tests: without kojo's help the module is not found."""
    folder = _folder(tmp_path)
    done = subprocess.run(
        [sys.executable, "-P", "-c", "import greet_jobs"], cwd=folder, capture_output=True
    )
    assert done.returncode == 1


def test_app_and_yaml_workers_are_found_in_the_current_folder(
    sqlite_url: str, tmp_path: Path
) -> None:
    folder = _folder(tmp_path)
    ok(sqlite_url, folder, "db", "install")
    assert "greet" in ok(sqlite_url, folder, "types", "register", "--file", "types.yml")
    assert "greet" in ok(sqlite_url, folder, "--app", "greet_jobs:app", "types", "register")
    job_id = int(ok(sqlite_url, folder, "jobs", "schedule", "greet", "--payload", '"you"'))
    # No --app: the stored worker reference is imported from the current folder.
    ok(sqlite_url, folder, "work", str(job_id), "--inline")
    assert job(sqlite_url, folder, job_id)["assigned_state"] == "complete_success"


def test_work_inline_of_a_job_whose_worker_cannot_be_imported(
    database_url: str, tmp_path: Path
) -> None:
    """One line naming the job, the type, the worker and the import error; exit 1; the
    job is left waiting as it was (not panicked, nothing counted), and runs once the
    module is there."""
    folder = _folder(tmp_path)
    ok(database_url, folder, "db", "install")
    ok(database_url, folder, "types", "register", "--file", "types.yml")
    job_id = int(ok(database_url, folder, "jobs", "schedule", "greet"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    done = kojo(database_url, elsewhere, "work", str(job_id), "--inline")
    assert done.returncode == 1, (done.stdout, done.stderr)
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: job {job_id} (type 'greet') was not run"), line
    for part in ("'greet'", "greet_jobs:greet", "ModuleNotFoundError", "No module named"):
        assert part in line, line
    row = job(database_url, folder, job_id)
    assert (row["assigned_state"], row["next_state_request"]) == ("waiting", "working")
    counters = ("times_worked", "times_retried", "times_crashed", "times_panicked")
    assert [row[c] for c in counters] == [0, 0, 0, 0]

    ok(database_url, folder, "work", str(job_id), "--inline")
    row = job(database_url, folder, job_id)
    assert (row["assigned_state"], row["times_worked"]) == ("complete_success", 1)


def test_a_script_registers_its_workers_under_its_module_name(
    sqlite_url: str, tmp_path: Path
) -> None:
    """`python greet_jobs.py` stores `greet_jobs:greet`, not `__main__:greet` (which no
    other process could import): the README's tour schedules its first job this way."""
    folder = _folder(tmp_path)
    script = WORKERS + textwrap.dedent(
        """
        if __name__ == "__main__":
            app.install()
            print(app.schedule("greet", payload="script"))
        """
    )
    (folder / "greet_jobs.py").write_text(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOJO_")}
    env["KOJO_DATABASE_URL"] = sqlite_url
    done = subprocess.run(
        [sys.executable, "greet_jobs.py"], cwd=folder, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    job_id = int(done.stdout)
    assert job(sqlite_url, folder, job_id)["worker_uri"] == "greet_jobs:greet"
    ok(sqlite_url, folder, "work", str(job_id), "--inline")  # no --app
    assert job(sqlite_url, folder, job_id)["assigned_state"] == "complete_success"
