"""A real `kojo dashboard` process for tests: started on a free port, stopped by SIGTERM
(which must exit 0)."""

from __future__ import annotations

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
