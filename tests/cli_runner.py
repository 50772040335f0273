"""`python -m kojo ARGS` against one database, as a user runs it (tests/ is on sys.path).

The one runner of the CLI tests: ``run`` for a single command, ``Kojo`` for a test that
runs many against the same database and folder, ``one_line_error`` for what a failing
command must print.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def run(
    url: str,
    cwd: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    input: str = "",
    python_options: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Run `python [python_options] -m kojo ARGS` in ``cwd`` on ``url``, not a terminal.

    The test's own KOJO_* variables are dropped (the command sees only ``url`` and
    ``env``); stdin is ``input``, so a command that asks reads it and never waits.
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KOJO_")}
    full_env["KOJO_DATABASE_URL"] = url
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, *python_options, "-m", "kojo", *args],
        cwd=cwd,
        env=full_env,
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )


class Kojo:
    """`run` bound to one database and one working directory."""

    def __init__(self, url: str, cwd: Path, python_options: Sequence[str] = ()) -> None:
        self.url = url
        self.cwd = cwd
        self.python_options = tuple(python_options)

    def __call__(
        self, *args: str, env: Mapping[str, str] | None = None, input: str = ""
    ) -> subprocess.CompletedProcess[str]:
        return run(
            self.url,
            self.cwd,
            *args,
            env=env,
            input=input,
            python_options=self.python_options,
        )

    def ok(self, *args: str, env: Mapping[str, str] | None = None, input: str = "") -> str:
        """The command's stdout; it must exit 0."""
        done = self(*args, env=env, input=input)
        assert done.returncode == 0, (args, done.returncode, done.stdout, done.stderr)
        return done.stdout

    def json(self, *args: str) -> Any:
        """The command's `--json` answer, parsed."""
        return json.loads(self.ok(*args, "--json"))


def one_line_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The command failed with ``code`` and exactly one `error: ` line on stderr; that line."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]
