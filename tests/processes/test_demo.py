"""`python -m kojo.examples.demo`, as a new user starts it: a banner that says what it
shows and what to try, work that keeps completing, and a clean exit on Ctrl-C."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import kojo

SRC = str(Path(kojo.__file__).resolve().parent.parent)


def test_the_demo_prints_its_banner_keeps_working_and_stops_on_sigint(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOJO_")}
    env["PYTHONPATH"] = os.pathsep.join([SRC, *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.Popen(
        [sys.executable, "-m", "kojo.examples.demo"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 20
        while not any("Try in a second terminal" in line for line in lines):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "no banner:\n" + "".join(lines)
            time.sleep(0.05)
        banner = "".join(lines)
        database = tmp_path / "kojo.db"
        assert f"export KOJO_DATABASE_URL=sqlite:///{database}" in banner
        for command in ("kojo ps", "kojo jobs list", "kojo stats", "kojo jobs why ID"):
            assert command in banner
        assert "kojo locks" in banner and "kojo ctl pause demo.page" in banner

        # Jobs keep completing: some in each of four 3-second windows (the ticker
        # schedules a crawl every 3 s; the first burst alone would leave windows empty).
        app = kojo.App(database=f"sqlite:///{database}")

        def completed() -> int:
            return len(app.jobs(state="complete_success", limit=100_000))

        counts = [completed()]
        for _ in range(4):
            time.sleep(3.0)
            counts.append(completed())
        assert all(b > a for a, b in itertools.pairwise(counts)), counts
        tickers = app.jobs(type_code="demo.ticker", limit=100_000)
        assert sum(r["assigned_state"] == "waiting" for r in tickers) == 1  # one ticker
        app.owners.close()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=35)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        reader.join(5)
    assert code == 0, "".join(lines[-20:])
    assert "Server stopped." in lines[-1], "".join(lines[-20:])
