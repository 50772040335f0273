"""Smoke test of bench/scale.py: a --quick run on SQLite loads its backlogs, drains
through a real server, checks that no backlog job ran, and writes its table and JSON;
bad options are refused in one line. The measured run is `python bench/scale.py`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCALE = str(ROOT / "bench" / "scale.py")


def run_scale(*options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, SCALE, *options],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )


def test_quick_run_reports_every_kind(tmp_path: Path) -> None:
    done = run_scale(
        "--quick",
        "--backend",
        "sqlite",
        "--kinds",
        "serial,limited,rated",
        "--output",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (written,) = tmp_path.glob("scale-*.json")
    rows = json.loads(written.read_text())["results"]["sqlite"]["rows"]
    assert [(row["kind"], row["size"]) for row in rows] == [
        ("empty", 0),
        ("serial", 2000),
        ("limited", 2000),
        ("rated", 2000),
    ]
    assert len(rows[0]["runs"]) == 2  # the empty table, first and last
    for row in rows:
        assert row["completed"] == 2000 and row["steady_jobs_per_s"] > 0, row
        assert row["latency_samples"] > 0 and row["latency_ms"]["p50"] > 0, row
        assert row["verdict"].startswith(("PASS", "FAIL"))
        table_line = [line for line in done.stdout.splitlines() if line.startswith(row["kind"])]
        assert table_line, done.stdout


def test_unknown_kind_is_refused_in_one_line() -> None:
    done = run_scale("--kinds", "future,stalled")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].endswith(
        "unknown kind 'stalled'; known: future,paused,serial,finished,after,limited,rated"
    )


def test_bad_size_is_refused_in_one_line() -> None:
    done = run_scale("--sizes", "0,lots")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].endswith("sizes are whole numbers, got '0,lots'")
