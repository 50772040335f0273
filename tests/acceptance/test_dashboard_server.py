"""`kojo dashboard` as users start it: a real server process on a free port, on both
backends; pages and the API answer, the token guards them, SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

import kojo
from kojo.clock import utcnow

pytest.importorskip("starlette", reason="the dashboard extra is not installed")

from dashboard_server import dashboard, get


@pytest.fixture
def app(database_url: str) -> Iterator[kojo.App]:
    app = kojo.App(database=database_url)
    app.install()
    app.job_type("reports")(print)
    app.register_job_types()
    yield app
    app.backend.close()


def test_the_dashboard_serves_its_pages_and_api(app: kojo.App, tmp_path: Path) -> None:
    job_id = app.schedule("reports", payload={"to": "ops"})
    with dashboard(app.database_url, tmp_path) as base:
        status, page = get(f"{base}/")
        assert status == 200 and "reports" in page
        status, page = get(f"{base}/jobs/{job_id}")
        assert status == 200 and "ops" in page
        status, body = get(f"{base}/api/jobs")
        assert status == 200 and [j["kojo_job_id"] for j in json.loads(body)] == [job_id]
        status, body = get(f"{base}/metrics")
        assert status == 200 and 'kojo_jobs{state="waiting",type="reports"} 1.0' in body


def test_the_job_counts_are_counted_before_the_dashboard_listens(
    app: kojo.App, tmp_path: Path
) -> None:
    app.schedule("reports")
    with dashboard(app.database_url, tmp_path) as base:
        asked = utcnow()  # it listens already: the first request is made now
        with urllib.request.urlopen(f"{base}/api/stats", timeout=10) as response:
            counted = datetime.fromisoformat(response.headers["X-Kojo-Counted-At"])
            assert json.loads(response.read())[0]["count"] == 1
        assert counted < asked


def test_off_loopback_the_token_guards_every_path_but_metrics(
    app: kojo.App, tmp_path: Path
) -> None:
    token = "acceptance-token"
    env = {"KOJO_DASHBOARD_TOKEN": token}
    with dashboard(app.database_url, tmp_path, "--host", "0.0.0.0", env=env) as base:
        assert get(f"{base}/")[0] == 401
        assert get(f"{base}/api/types")[0] == 401
        assert get(f"{base}/metrics")[0] == 200
        status, body = get(f"{base}/api/types", {"Authorization": f"Bearer {token}"})
        assert status == 200 and json.loads(body)[0]["type_code"] == "reports"
