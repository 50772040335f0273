"""`kojo dashboard` as users start it: a real server process on a free port, on both
backends; pages and the API answer, the token guards them, SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import kojo

pytest.importorskip("starlette", reason="the dashboard extra is not installed")

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@contextmanager
def dashboard(url: str, cwd: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """A running `kojo dashboard` (stopped by SIGTERM after, which must exit 0); its base
    URL once it answers."""
    port = free_port()
    host = args[args.index("--host") + 1] if "--host" in args else "127.0.0.1"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KOJO_")}
    full_env.update({"KOJO_DATABASE_URL": url, **(env or {})})
    process = subprocess.Popen(
        [sys.executable, "-m", "kojo", "dashboard", "--port", str(port), *args],
        cwd=cwd,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the dashboard did not start listening"
                time.sleep(0.1)
        yield base
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            output, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    assert process.returncode == 0, output
    assert f"kojo dashboard on http://{host}:{port}/" in output


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
