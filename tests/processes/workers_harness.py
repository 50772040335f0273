"""Harness for the process-tree tests: real `kojo server start` subprocesses, real signals.

- `wait_for(predicate, timeout)` polls every 20 ms; tests never sleep to synchronise.
- `Tree` is one test's database plus its server subprocesses, the record file
  the workers of `workers_server` append to, and a test-side App to schedule
  and inspect jobs.
- `descendants()` reads /proc: the pytest process is made a child subreaper
  (conftest), so every process a test started, orphans included, is found
  under it.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import workers_server

import kojo

HERE = Path(__file__).resolve().parent
APP_REF = "workers_server:app"
POLL = 0.02
PR_SET_CHILD_SUBREAPER = 36
TITLE = re.compile(
    r"kojo: /server\[(?P<server>\d+)\]"
    r"(?:/root\[(?P<root>\d+)\](?:/(?P<kind>job|maintainer)\[(?P<child>\d+)\])?)?"
)

T = TypeVar("T")

# Server subprocesses that a Popen object owns: only Popen may wait() for them.
MANAGED: set[int] = set()


def wait_for(
    predicate: Callable[[], T | Literal[False] | None],
    timeout: float,
    message: str | Callable[[], object] = "",
) -> T:
    """Poll `predicate` every 20 ms until it returns something truthy; that value.

    `message` (or what it returns) says what was awaited when the time runs out.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = str(message()) if callable(message) else message
            raise AssertionError(f"timed out after {timeout:g} s waiting for: {text or predicate}")
        time.sleep(POLL)


# -- the process table ------------------------------------------------------------------


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    state: str
    comm: str
    cmdline: str

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")


def _read_proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may contain spaces and parentheses: the fields after the last ')' are fixed.
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    cmdline = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return Proc(pid, int(fields[1]), fields[0], comm, cmdline)


def process_table() -> dict[int, Proc]:
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            proc = _read_proc(int(name))
            if proc is not None:
                table[proc.pid] = proc
    return table


def descendants(of: int | None = None) -> list[Proc]:
    """Every process below `of` (default: this one), zombies included."""
    top = os.getpid() if of is None else of
    table = process_table()
    children: dict[int, list[Proc]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc)
    found: list[Proc] = []
    todo = [top]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def reap_orphans() -> None:
    """Reap kojo zombies re-parented to this (subreaper) process.

    Only processes titled `kojo:` (the title sets the kernel's comm too), and not
    the servers that a Popen object reaps itself: other children of pytest
    belong to whoever started them.
    """
    for proc in descendants():
        if (
            proc.ppid == os.getpid()
            and not proc.alive
            and proc.comm.startswith("kojo:")
            and proc.pid not in MANAGED
        ):
            try:
                os.waitpid(proc.pid, os.WNOHANG)
            except ChildProcessError:
                pass


def live_descendants() -> list[Proc]:
    reap_orphans()
    return [p for p in descendants() if p.alive]


def kojo_processes() -> list[Proc]:
    """Live processes of this test whose title is a kojo title."""
    return [p for p in live_descendants() if p.cmdline.startswith("kojo:")]


# -- servers ----------------------------------------------------------------------------


@dataclass
class Server:
    """One `kojo server start` subprocess."""

    popen: subprocess.Popen[bytes]
    host_name: str
    max_processes: int
    log_path: Path
    err_path: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def exited(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float) -> int:
        """The exit code; fails the test if the server is still running after `timeout`."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"server {self.pid} still running after {timeout:g} s; stderr: {self.stderr()}"
            ) from None

    def stderr(self) -> str:
        try:
            return self.err_path.read_text()[-4000:]
        except FileNotFoundError:
            return ""

    def log_lines(self) -> list[dict[str, Any]]:
        """Every stdout line, each of which must be one JSON object."""
        lines = []
        for number, text in enumerate(self.log_path.read_text().splitlines(), 1):
            try:
                line = json.loads(text)
            except ValueError:
                raise AssertionError(f"log line {number} is not JSON: {text!r}") from None
            assert isinstance(line, dict), f"log line {number} is not an object: {text!r}"
            lines.append(line)
        return lines

    def messages(self) -> list[str]:
        return [str(line["message"]) for line in self.log_lines()]

    def tree(self) -> list[Proc]:
        """This server's live descendants (itself excluded)."""
        return [p for p in descendants(self.pid) if p.alive]

    def stop(self) -> None:
        """Stop now (SIGQUIT), then SIGKILL if that does not work; reap."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGQUIT)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        MANAGED.discard(self.pid)


class Tree:
    """One test's database, its servers, the workers' record file and a test-side App."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.url = url
        self.tmp_path = tmp_path
        self.record_path = tmp_path / "record.jsonl"
        self.app = workers_server.register(kojo.App(database=url))
        self.servers: list[Server] = []

    # -- running things ---------------------------------------------------------------

    def env(self, tag: str | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KOJO_")}
        env.update(
            {
                "KOJO_DATABASE_URL": self.url,
                "KOJO_APP": APP_REF,
                "KOJO_LOG_FORMAT": "json",
                "KOJO_LOG_LEVEL": "info",
                workers_server.RECORD_ENV: str(self.record_path),
                "PYTHONPATH": os.pathsep.join(
                    [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]
                ),
            }
        )
        if tag is not None:
            env[workers_server.TAG_ENV] = tag
        env.update(extra or {})
        return env

    def start(
        self,
        *,
        host_name: str = "test-host",
        max_processes: int = 2,
        shutdown_timeout: float = 5.0,
        tag: str | None = None,
        ready: bool = True,
        extra_env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> Server:
        """Start a server (`args`: more options of `kojo server start`); with `ready`, wait
        until its root and job processes are registered."""
        n = len(self.servers)
        log_path = self.tmp_path / f"server{n}.log"
        err_path = self.tmp_path / f"server{n}.err"
        command = [
            sys.executable,
            "-m",
            "kojo",
            "server",
            "start",
            "--max-processes",
            str(max_processes),
            "--shutdown-timeout",
            str(shutdown_timeout),
            "--host-name",
            host_name,
            *args,
        ]
        with open(log_path, "wb") as out, open(err_path, "wb") as err:
            popen = subprocess.Popen(
                command,
                env=self.env(tag, extra_env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.tmp_path,
                start_new_session=True,
            )
        MANAGED.add(popen.pid)
        server = Server(popen, host_name, max_processes, log_path, err_path)
        self.servers.append(server)
        if ready:
            self.wait_ready(server)
        return server

    def wait_ready(self, server: Server, timeout: float = 15.0) -> None:
        """Until the root, the maintainer and every job process have registered. Not all
        at once: the maintainer is forked a moment after the job processes, and with a
        short KOJO_IDLE_RETIRE_SECONDS idle job processes may retire before it comes."""
        seen: Counter[str] = Counter()
        refused: list[str] = []  # why the process table could not be read, last

        def ready() -> bool:
            if server.exited() is not None:
                raise AssertionError(
                    f"server exited with {server.exited()} while starting: {server.stderr()}"
                )
            try:
                rows = self.processes(server.host_name)
            except kojo.KojoError as exc:
                refused[:] = [f"{type(exc).__name__}: {exc}"]
                return False  # the server has not installed the schema yet
            refused.clear()
            seen.update(Counter(r["kind"] for r in rows) - seen)  # the most seen of each
            return (
                seen["root"] == 1
                and seen["maintainer"] == 1
                and seen["job"] == server.max_processes
            )

        wait_for(
            ready,
            timeout,
            lambda: (
                f"server {server.pid} to register its root, maintainer and jobs "
                f"(seen {dict(seen)}"
                + "".join(f"; the table could not be read: {r}" for r in refused)
                + ")"
            ),
        )

    def kojo(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a `kojo` command in a subprocess with this tree's environment."""
        return subprocess.run(
            [sys.executable, "-m", "kojo", *args],
            env=self.env(),
            cwd=self.tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ps(self) -> list[dict[str, Any]]:
        """`kojo ps --json`."""
        done = self.kojo("ps", "--json")
        assert done.returncode == 0, done.stderr
        rows = json.loads(done.stdout)
        assert isinstance(rows, list)
        return rows

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        self.app.backend.close()

    # -- looking at the database --------------------------------------------------------

    def processes(self, host_name: str | None = None) -> list[dict[str, Any]]:
        rows = self.app.process_table()
        return [r for r in rows if host_name is None or r["host_name"] == host_name]

    def job(self, job_id: int) -> dict[str, Any]:
        return self.app.job(job_id)

    def state(self, job_id: int) -> str:
        return str(self.job(job_id)["assigned_state"])

    def wait_state(
        self, job_id: int, states: Iterable[str] | str, timeout: float
    ) -> dict[str, Any]:
        wanted = {states} if isinstance(states, str) else set(states)
        last: dict[str, Any] = {}

        def reached() -> bool:
            nonlocal last
            last = self.job(job_id)
            return last["assigned_state"] in wanted

        wait_for(
            reached,
            timeout,
            lambda: (
                f"job {job_id} to be {sorted(wanted)}; it is "
                f"{last.get('assigned_state')}/{last.get('next_state_request')}"
            ),
        )
        return last

    # -- what the workers recorded -------------------------------------------------------

    def records(self, event: str | None = None, job_id: int | None = None) -> list[dict[str, Any]]:
        try:
            text = self.record_path.read_text()
        except FileNotFoundError:
            return []
        lines = [json.loads(line) for line in text.splitlines() if line]
        return [
            r
            for r in lines
            if (event is None or r["event"] == event) and (job_id is None or r["id"] == job_id)
        ]

    def wait_record(
        self, event: str, job_id: int, timeout: float, count: int = 1
    ) -> list[dict[str, Any]]:
        """Wait until job `job_id` has recorded `event` `count` times; those records."""
        found: list[dict[str, Any]] = []

        def enough() -> bool:
            nonlocal found
            found = self.records(event, job_id)
            return len(found) >= count

        wait_for(
            enough,
            timeout,
            lambda: (
                f"job {job_id} to record {event!r} {count} time(s) (has {len(found)}); "
                f"job is {self.job(job_id)}"
            ),
        )
        return found


class Workers:
    """Forked children; every one is killed and reaped when the test ends."""

    def __init__(self) -> None:
        self.pids: set[int] = set()
        self.failed: list[int] = []

    def start(self, body: Callable[[], None]) -> int:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 0
            try:
                body()
            except BaseException:
                traceback.print_exc()
                code = 1
            os._exit(code)
        self.pids.add(pid)
        return pid

    def join(self, timeout: float) -> None:
        """Wait for every child to exit by itself; each must exit 0."""
        deadline = time.monotonic() + timeout
        while self.pids:
            for pid in list(self.pids):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    self.pids.discard(pid)
                    if os.waitstatus_to_exitcode(status) != 0:
                        self.failed.append(pid)
            assert time.monotonic() < deadline, f"workers still running: {sorted(self.pids)}"
            time.sleep(0.05)
        assert not self.failed, f"workers failed: {self.failed} (see stderr)"

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        self.pids.discard(pid)

    def kill_all(self) -> None:
        for pid in list(self.pids):
            try:
                self.kill(pid)
            except ChildProcessError:
                self.pids.discard(pid)


def assert_killed_by_timeout_and_rerun(
    tree: Tree, server: Server, code: str, earliest: float, latest: float
) -> dict[str, Any]:
    """A job of `code` (a type with a timeout) overruns once: its process is killed (and
    gone, logged as a timeout), the job crashed and worked again `earliest` to `latest`
    seconds after its first start, and completed; its final row."""
    job_id = tree.app.schedule(code)
    final = tree.wait_state(job_id, "complete_success", 15.0)
    first, second = tree.records("start", job_id)
    assert (first["times_crashed"], second["times_crashed"]) == (0, 1)
    assert earliest <= second["t"] - first["t"] < latest
    assert len(tree.records("end", job_id)) == 1
    assert (final["times_crashed"], final["times_worked"]) == (1, 2)
    assert not any(p.pid == first["pid"] for p in server.tree())
    # The log line and last_error say that the timeout killed it, naming the job.
    said = f"Job {job_id} (type {code}) ran past its type's timeout: its job process "
    line = wait_for(
        lambda: next((ln for ln in server.log_lines() if said in str(ln["message"])), None),
        5.0,
        "the timeout to be logged",
    )
    assert line["message"].endswith(
        "the job is crashed and will be re-run (crash 1 of max_crashes=5)."
    )
    assert line["kojo_metadata"]["job"]["kojo_job_id"] == job_id
    assert "ran past its job type's timeout" in final["last_error"]
    return final
