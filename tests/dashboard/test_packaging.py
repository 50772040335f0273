"""The dashboard's templates and assets ship in the wheel: each file matches a pattern of
pyproject.toml's package-data (a new folder of assets needs a pattern of its own)."""

from __future__ import annotations

import tomllib
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "kojo"


def test_every_template_and_asset_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["kojo"]
    files = [
        path.relative_to(PACKAGE).as_posix()
        for folder in ("dashboard/templates", "dashboard/static")
        for path in (PACKAGE / folder).rglob("*")
        if path.is_file()
    ]
    assert any(f.endswith(".html") for f in files) and any(f.endswith(".css") for f in files)
    # As setuptools reads them: `*` stays within one folder.
    missing = [f for f in files if not any(PurePosixPath(f).match(p) for p in patterns)]
    assert not missing, f"not in package-data: {missing}"


def test_the_grafana_dashboard_uses_only_the_metrics_kojo_serves() -> None:
    import json
    import re

    from kojo.dashboard.metrics import NAMES

    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs
    used = {name for expr in exprs for name in re.findall(r"\bkojo_[a-z_]+", expr)}
    used = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}  # a histogram's parts
    assert {"kojo_jobs_finished_total", "kojo_job_duration_seconds"} <= used
    assert used and used <= set(NAMES), used - set(NAMES)
