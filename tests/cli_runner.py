"""`python -m kojo ARGS` against one database, as a user runs it (tests/ is on sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run(url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOJO_")}
    env["KOJO_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "kojo", *args],
        cwd=cwd,
        env=env,
        input="",
        capture_output=True,
        text=True,
        timeout=120,
    )
