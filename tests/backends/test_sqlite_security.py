"""SQLite: only the user who owns the database can reach its wake-up sockets or use its
files (issue 13). The tests run as root and play the other local user by forking a
child that switches to uid 65534 (`nobody`)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import kojo
from foundation_helpers import process_info
from kojo.backends import open_backend
from kojo.backends.sqlite import SqliteBackend

NOBODY = 65534

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork") or os.geteuid() != 0, reason="needs root to play another user"
)


def as_nobody(action: Callable[[], None]) -> int:
    """Run `action` in a child as uid/gid 65534; its exit status (0: it ran through)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            action()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def send_from_nobody(address: str, packet: bytes) -> None:
    def send() -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.sendto(packet, address)

    assert as_nobody(send) == 0, "the other user could not even send"


def bound_name(fileno: int) -> str:
    sock = socket.socket(fileno=os.dup(fileno))
    try:
        name = sock.getsockname()
    finally:
        sock.close()
    return name.decode() if isinstance(name, bytes) else str(name)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder other users can enter (pytest's tmp_path is root's 0700)."""
    path = Path(tempfile.mkdtemp(prefix="kojo-sec-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def installed(path: Path) -> SqliteBackend:
    backend = open_backend(f"sqlite:///{path}")
    assert isinstance(backend, SqliteBackend)
    backend.install()
    return backend


# -- sockets -------------------------------------------------------------------------------


def test_doorbell_drops_another_users_datagram(tmp_path: Path) -> None:
    backend = installed(tmp_path / "kojo.db")
    owner = backend.register_owner(process_info())
    try:
        address = bound_name(owner.fileno())
        send_from_nobody(address, b'["control", "{\\"command\\": \\"stop\\"}"]')
        assert owner.wait(0.3) == []
        backend.notify("mine", "hello")  # the owner's own user still gets through
        notes = owner.wait(5.0)
        assert [(n.topic, n.data) for n in notes] == [("mine", "hello")]
    finally:
        owner.close()


def test_lock_bell_drops_another_users_datagram(tmp_path: Path) -> None:
    backend = installed(tmp_path / "kojo.db")
    ringer = backend.ringer()
    bell = ringer.bell(backend)
    try:
        bell.prepare()
        send_from_nobody("\0" + bell.address, b"!")
        started = time.monotonic()
        assert bell.wait(0.3) is False
        assert time.monotonic() - started >= 0.25  # waited out its time, not woken early
        ringer.ring_after_commit([bell.address], 1)
        assert bell.wait(5.0) is True
    finally:
        bell.close()


def test_predictable_doorbell_names_cannot_be_squatted(shared_dir: Path) -> None:
    """Main derived doorbell names from the database path and owner id; binding them first
    made registration fail with a raw EADDRINUSE."""
    path = shared_dir / "kojo.db"
    backend = installed(path)
    digest = hashlib.sha1(os.path.realpath(path).encode()).hexdigest()[:16]
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the squatter
        try:
            os.close(ready_r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            held = []
            for owner_id in range(1, 50):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.bind(f"\0kojo.{digest}.{owner_id}")
                held.append(sock)
            os.write(ready_w, b"!")
            time.sleep(60)
        finally:
            os._exit(0)
    os.close(ready_w)
    try:
        assert os.read(ready_r, 1) == b"!"
        owner = backend.register_owner(process_info())  # no OSError
        try:
            backend.notify("mine", "hello")
            assert [n.topic for n in owner.wait(5.0)] == ["mine"]
        finally:
            owner.close()
    finally:
        os.close(ready_r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_a_taken_name_is_redrawn_and_an_all_taken_one_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kojo.backends import sqlite_bells

    backend = installed(tmp_path / "kojo.db")
    squatter = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    squatter.bind("\0" + backend.bell_prefix + "taken")
    tokens = iter(["taken", "free"])
    monkeypatch.setattr(sqlite_bells.secrets, "token_hex", lambda n: next(tokens))
    owner = backend.register_owner(process_info())
    try:
        assert bound_name(owner.fileno()) == "\0" + backend.bell_prefix + "free"
    finally:
        owner.close()
    monkeypatch.setattr(sqlite_bells.secrets, "token_hex", lambda n: "taken")
    with pytest.raises(kojo.DatabaseError, match="all in use") as caught:
        backend.register_owner(process_info())
    assert "\n" not in str(caught.value)
    squatter.close()


# -- files ---------------------------------------------------------------------------------


def test_new_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        backend = installed(tmp_path / "kojo.db")
        owner = backend.register_owner(process_info())
    finally:
        os.umask(old)
    try:
        mode = {
            name: stat.S_IMODE(os.stat(path).st_mode)
            for name, path in {
                "db": backend.path,
                "wal": Path(f"{backend.path}-wal"),
                "state": backend.state_dir,
                "owners": backend.owners_dir,
                "owner": backend.owner_file(owner.id),
            }.items()
        }
        assert mode == {
            "db": 0o600,
            "wal": 0o600,
            "state": 0o700,
            "owners": 0o700,
            "owner": 0o600,
        }
    finally:
        owner.close()
    # A folder this user made before, 0700, is used as it is.
    again = open_backend(f"sqlite:///{backend.path}")
    again.register_owner(process_info()).close()


@pytest.mark.parametrize("which", ["state", "owners"])
@pytest.mark.parametrize("how", ["world-writable", "another user's"])
def test_unsafe_owner_folder_is_refused(tmp_path: Path, which: str, how: str) -> None:
    backend = installed(tmp_path / "kojo.db")
    folder = backend.state_dir if which == "state" else backend.owners_dir
    folder.mkdir(parents=True, mode=0o700)
    if how == "world-writable":
        folder.chmod(0o777)
    else:
        os.chown(folder, NOBODY, NOBODY)
    with pytest.raises(kojo.DatabaseError) as caught:
        backend.register_owner(process_info())
    message = str(caught.value)
    assert str(folder) in message and "\n" not in message
    assert ("write" in message) if how == "world-writable" else ("uid 65534" in message)


def test_other_user_cannot_make_a_live_holder_look_dead(shared_dir: Path) -> None:
    """The attacker makes `<db>.kojo/owners/` first, then deletes the owner file."""
    backend = installed(shared_dir / "kojo.db")
    shared_dir.chmod(0o1777)  # like /tmp: others may create folders beside the database

    def premake() -> None:
        os.mkdir(backend.state_dir, 0o777)
        os.mkdir(backend.owners_dir, 0o777)
        os.chmod(backend.state_dir, 0o777)
        os.chmod(backend.owners_dir, 0o777)

    assert as_nobody(premake) == 0
    try:
        owner = backend.register_owner(process_info())
    except kojo.DatabaseError as exc:
        assert str(backend.state_dir) in str(exc)
        return
    try:
        path = backend.owner_file(owner.id)
        as_nobody(lambda: os.unlink(path))
        assert not backend.owner_is_dead(owner.id), "a live holder looked dead"
    finally:
        owner.close()


def test_symlinked_owner_folder_is_refused(tmp_path: Path) -> None:
    backend = installed(tmp_path / "kojo.db")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    backend.state_dir.symlink_to(elsewhere)
    with pytest.raises(kojo.DatabaseError, match="symlink"):
        backend.register_owner(process_info())
    assert list(elsewhere.iterdir()) == []


def test_symlinked_owner_file_is_not_followed(tmp_path: Path) -> None:
    backend = installed(tmp_path / "kojo.db")
    backend.register_owner(process_info()).close()  # makes the folders
    target = tmp_path / "precious"
    target.write_text("keep me")
    planted = backend.owner_file(999)
    planted.symlink_to(target)
    with pytest.raises(kojo.DatabaseError, match="symlink"):
        backend.owner_is_dead(999)
    with pytest.raises(kojo.DatabaseError, match=str(planted)):
        backend._owner_forgotten(999)
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("how", ["world-writable", "another user's"])
def test_unsafe_database_file_is_refused(tmp_path: Path, how: str) -> None:
    path = tmp_path / "kojo.db"
    installed(path)
    if how == "world-writable":
        path.chmod(0o666)
    else:
        os.chown(path, NOBODY, NOBODY)
    with pytest.raises(kojo.DatabaseError) as caught:
        installed(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_files_an_older_kojo_left_readable_are_made_private(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = installed(tmp_path / "kojo.db")  # its open connection keeps -wal and -shm
    first.register_owner(process_info()).close()
    loose = {
        first.path: 0o644,
        Path(f"{first.path}-wal"): 0o644,
        Path(f"{first.path}-shm"): 0o640,
        first.state_dir: 0o755,
        first.owners_dir: 0o750,
    }
    for path, mode in loose.items():
        path.chmod(mode)
    with caplog.at_level("WARNING", logger="kojo.sqlite"):
        again = open_backend(f"sqlite:///{first.path}")
        again.register_owner(process_info()).close()
    modes = {path: stat.S_IMODE(os.stat(path).st_mode) for path in loose}
    assert modes == {path: 0o700 if path.is_dir() else 0o600 for path in loose}
    lines = [r.getMessage() for r in caplog.records if "private" in r.getMessage()]
    expected = f"made sqlite database {first.path} private: mode 0644 -> 0600"
    assert any(line.startswith(expected) for line in lines), lines
    assert len(lines) == len(loose), lines  # one line per file, once


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_a_readable_file_of_another_user_is_refused_and_left_alone(
    tmp_path: Path, suffix: str
) -> None:
    first = installed(tmp_path / "kojo.db")
    path = Path(f"{first.path}{suffix}")
    os.chown(path, NOBODY, NOBODY)
    path.chmod(0o644)
    with pytest.raises(kojo.DatabaseError) as caught:
        open_backend(f"sqlite:///{first.path}").schema_version()
    message = str(caught.value)
    assert str(path) in message and "uid 65534" in message and "\n" not in message
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def test_checking_the_files_keeps_this_process_s_sqlite_locks(tmp_path: Path) -> None:
    """Closing any real descriptor of a file drops the process's POSIX locks on it: the
    checks of a second connection must not release the write lock the first one holds."""
    holder = installed(tmp_path / "kojo.db")
    try_write = (
        "import sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1], timeout=0)\n"
        "try:\n"
        "    conn.execute('BEGIN IMMEDIATE')\n"
        "except sqlite3.OperationalError as exc:\n"
        "    sys.exit(3 if 'locked' in str(exc) else 4)\n"
    )
    with holder.write():
        open_backend(f"sqlite:///{holder.path}").schema_version()  # a new connection's checks
        other = subprocess.run([sys.executable, "-c", try_write, str(holder.path)], timeout=60)
    assert other.returncode == 3  # still locked: the holder kept its lock
