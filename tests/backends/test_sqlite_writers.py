"""SQLite: kojo's writers queue on a flock (backends/sqlite_writers.py) instead of
sleeping in SQLite's busy handler; the queue never outlives a holder, is never taken in
a folder or file that is not ours, and a forked child does not keep its parent's turn."""

from __future__ import annotations

import fcntl
import os
import signal
import time
from pathlib import Path

import pytest

from foundation_helpers import process_info
from kojo.backends import open_backend, sqlite_writers
from kojo.backends.sqlite import SqliteBackend

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def registered(path: Path) -> SqliteBackend:
    """A backend of a new database with one registered owner (which makes the folder)."""
    backend = open_backend(f"sqlite:///{path}")
    assert isinstance(backend, SqliteBackend)
    backend.install()
    backend.register_owner(process_info())
    return backend


def write_takes(backend: SqliteBackend) -> float:
    """Seconds one empty write transaction took to get in."""
    started = time.monotonic()
    with backend.write():
        pass
    return time.monotonic() - started


def hold_queue_in_child(path: Path, seconds: float) -> int:
    """A child process that holds the queue file's flock for `seconds`; its pid, once it
    holds it."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            fd = os.open(path, os.O_RDWR)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(write, b"x")
            time.sleep(seconds)
        finally:
            os._exit(0)
    os.close(write)  # so that a child that fails reads as end of file, not a hang
    got = os.read(read, 1)
    os.close(read)
    assert got == b"x", "the child could not take the queue's flock"
    return pid


def test_a_writer_waits_its_turn_and_goes_the_moment_the_holder_leaves(
    tmp_path: Path,
) -> None:
    backend = registered(tmp_path / "k.db")
    assert write_takes(backend) < 1.0  # the queue file now exists
    pid = hold_queue_in_child(backend.writers.path, 0.5)
    waited = write_takes(backend)
    os.waitpid(pid, 0)
    assert 0.4 < waited < 5.0, waited


def test_the_turn_of_a_killed_holder_passes_at_once(tmp_path: Path) -> None:
    backend = registered(tmp_path / "k.db")
    write_takes(backend)
    pid = hold_queue_in_child(backend.writers.path, 60.0)
    started = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert write_takes(backend) < 5.0
    assert time.monotonic() - started < 5.0


def test_a_child_forked_inside_a_write_does_not_keep_its_parent_s_turn(
    tmp_path: Path,
) -> None:
    """The parent writes, forks a child that lives on, and is killed mid-transaction:
    the child closed its copy of the queue's descriptor at fork, so the next writer
    gets in at once (SQLite's own lock went with the parent)."""
    path = tmp_path / "k.db"
    registered(path).close()
    read, write = os.pipe()
    parent = os.fork()
    if parent == 0:  # pragma: no cover - the writer, then its child
        backend = open_backend(f"sqlite:///{path}")
        with backend.write():
            child = os.fork()
            if child == 0:
                time.sleep(60)
                os._exit(0)
            os.write(write, f"{child}\n".encode())
            time.sleep(60)
        os._exit(0)
    os.close(write)
    child = int(os.read(read, 64).decode())
    os.close(read)
    try:
        os.kill(parent, signal.SIGKILL)
        os.waitpid(parent, 0)
        other = open_backend(f"sqlite:///{path}")
        assert isinstance(other, SqliteBackend)
        assert write_takes(other) < 5.0
    finally:
        os.kill(child, signal.SIGKILL)


@pytest.mark.parametrize("what", ["symlink", "directory"])
def test_a_queue_file_that_is_not_a_regular_file_of_ours_is_not_used(
    tmp_path: Path, what: str
) -> None:
    path = tmp_path / "k.db"
    registered(path).close()
    backend = open_backend(f"sqlite:///{path}")
    assert isinstance(backend, SqliteBackend)
    queue = backend.writers.path
    queue.unlink()
    if what == "symlink":
        target = tmp_path / "elsewhere"
        target.touch()
        queue.symlink_to(target)
    else:
        queue.mkdir()
    backend.secure_dirs(create=False)
    assert write_takes(backend) < 1.0
    assert getattr(backend.writers._local, "fd", None) is None  # straight to BEGIN IMMEDIATE


def test_no_queue_in_a_folder_no_kojo_process_has_checked(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    backend = open_backend(f"sqlite:///{path}")
    assert isinstance(backend, SqliteBackend)
    backend.install()
    with backend.write():
        pass
    assert not backend.writers.path.exists()


def test_a_writer_stops_queueing_after_the_timeout_and_meets_sqlite_s_own_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A holder that keeps the queue (frozen, say) holds nobody for good: after
    QUEUE_TIMEOUT a writer goes to BEGIN IMMEDIATE, whose busy timeout rules from there
    (here SQLite's lock is free, so it gets in)."""
    monkeypatch.setattr(sqlite_writers, "QUEUE_TIMEOUT", 0.3)
    backend = registered(tmp_path / "k.db")
    write_takes(backend)
    pid = hold_queue_in_child(backend.writers.path, 60.0)
    try:
        waited = write_takes(backend)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert 0.25 < waited < 3.0, waited
