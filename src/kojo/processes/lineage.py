"""Forking children that know their place in the tree and die with their parent."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

from setproctitle import setproctitle

from ..logs import get_logger, metadata

TITLE_PREFIX = "kojo: "
PR_SET_PDEATHSIG = 1
log = get_logger("process")

_libc: ctypes.CDLL | None = None


def _prctl_pdeathsig(signum: int) -> None:
    global _libc
    if not sys.platform.startswith("linux"):
        return
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    _libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)


@dataclass(frozen=True)
class Lineage:
    """Where a process stands: its path (`/server[8]/root[22]`) and kind."""

    path: str
    kind: str

    def child(self, kind: str, pid: int) -> Lineage:
        return Lineage(f"{self.path}/{kind}[{pid}]", kind)

    def announce(self) -> None:
        """Set the title and the log metadata of the current process."""
        setproctitle(TITLE_PREFIX + self.path)
        metadata.set_process(self.path, self.kind)


def server_lineage() -> Lineage:
    return Lineage(f"/server[{os.getpid()}]", "server")


# Signals a parent may have handled that a fresh child must not inherit.
_RESET = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
    signal.SIGALRM,
)


def fork_child(
    parent: Lineage,
    kind: str,
    run: Callable[[Lineage], int],
    before_run: Callable[[], None] = lambda: None,
) -> int:
    """Fork a child that runs `run(lineage)` and exits with its code; the child's pid.

    In the child: signals are reset, SIGKILL is asked for when the parent dies,
    `before_run` drops what was inherited (connections, owners), and every exit
    path is os._exit so no parent cleanup runs twice.
    """
    parent_pid = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        signal.set_wakeup_fd(-1)
        for signum in _RESET:
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        _prctl_pdeathsig(signal.SIGKILL)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)
        lineage = parent.child(kind, os.getpid())
        lineage.announce()
        before_run()
        code = run(lineage)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        try:
            log.critical(f"{kind} process failed.", exc_info=True)
        except BaseException:
            pass
        code = 70
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    return 0  # not reached


def describe_status(status: int) -> str:
    """A raw wait status in words: 'exit 0', 'signal 9 (SIGKILL)'."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = "?"
        return f"signal {signum} ({name})"
    return f"exit {os.waitstatus_to_exitcode(status)}"
