"""Cluster control, the client side (`kojo ctl`, `app.control`); docs/ipc.md.

Membership comes from the database: every live kojo process has a
`kojo_process` row whose liveness is probed (anchor lock or flock), so `ping`
knows exactly which servers exist without waiting for replies. `pause`/`resume`
are persisted on the job type, so they hold across restarts and for servers that
start later.

Commands that change a running server (`scale`, `drain`) and the stop of a
cancelled job are rows of kojo_message on the channel CHANNEL, written with the
rights that scheduling needs. A server acts only on what it reads there: the
wake-up that follows a command (a NOTIFY, a datagram) is a hint to look, and a
forged one makes it read the table, nothing more. Each server reads the commands
stored after it started (`CommandFeed`), in order, once.

Commands (JSON):

    {"command": "scale", "host": HOST, "processes": N}
    {"command": "drain", "host": HOST}
    {"cancel": JOB_ID, "process": KOJO_PROCESS_ID}   (stored by App.cancel; the
                                            process is the one whose claim it ended)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import ipc
from .backends import Backend, Notification
from .backends.base import MESSAGE_TOPIC
from .backends.errors import database_errors
from .errors import InvalidArgument, ServerNotFound
from .logs import get_logger
from .settings import MAX_PROCESSES, check_max_processes

if TYPE_CHECKING:
    from .app import App

CHANNEL = "kojo.control"  # the kojo_message channel that holds the commands
log = get_logger("control")


@dataclass(frozen=True)
class Command:
    """A parsed command: command is "scale", "drain" or "cancel"."""

    command: str
    host: str | None = None
    processes: int | None = None
    job_id: int | None = None
    process_id: int | None = None  # cancel: the kojo_process_id that was working the job

    def is_for(self, host_name: str) -> bool:
        """True for a host command addressed to `host_name`."""
        return self.host == host_name


def parse_command(value: Any) -> Command | None:
    """A stored command (its JSON value) as a Command; None if it is not a valid one."""
    if not isinstance(value, Mapping):
        return None
    job_id = value.get("cancel")
    if _is_int(job_id):
        process_id = value.get("process")
        return Command(
            "cancel", job_id=job_id, process_id=process_id if _is_int(process_id) else None
        )
    command, host = value.get("command"), value.get("host")
    if not isinstance(host, str):
        return None
    if command == "drain":
        return Command("drain", host=host)
    processes = value.get("processes")
    if (
        command == "scale"
        and isinstance(processes, int)
        and not isinstance(processes, bool)
        and 0 <= processes <= MAX_PROCESSES
    ):
        return Command("scale", host=host, processes=processes)
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Control:
    """Operator commands for the whole cluster sharing this app's database."""

    def __init__(self, app: App) -> None:
        self.app = app

    def ping(self) -> list[dict[str, Any]]:
        """Every live server: host, pid, its host's job processes and running jobs."""
        with database_errors():
            backend = self.app.backend
            processes = backend.processes()  # live ones only: dead rows are reaped
            running = backend.jobs_running()
        servers = []
        for server in processes:
            if server.kind != "server":
                continue
            host = server.host_name
            servers.append(
                {
                    "host_name": host,
                    "process_id": server.process_id,
                    "kojo_process_id": server.kojo_process_id,
                    "path": server.path,
                    "started_at_date_time": server.started_at_date_time,
                    "info": server.info or {},
                    "job_processes": [
                        {
                            "process_id": p.process_id,
                            "kojo_process_id": p.kojo_process_id,
                            "path": p.path,
                        }
                        for p in processes
                        if p.kind == "job" and p.host_name == host
                    ],
                    "running_jobs": [
                        {
                            "kojo_job_id": j["kojo_job_id"],
                            "type_code": j["type_code"],
                            "process_id": j["process_id"],
                            "kojo_process_id": j["kojo_process_id"],
                            "since": j["last_transition_date_time"],
                        }
                        for j in running
                        if j["host_name"] == host
                    ],
                }
            )
        return servers

    def pause(self, code: str) -> None:
        """No new claims of jobs of type `code`, anywhere, until resume (persisted)."""
        self.app.set_type_paused(code, True)

    def resume(self, code: str) -> None:
        """Jobs of type `code` are claimed again (waking the servers)."""
        self.app.set_type_paused(code, False)

    def scale(self, host: str, processes: int) -> None:
        """Ask the server of `host` to run `processes` job processes."""
        check_max_processes(processes)
        self._send(host, {"command": "scale", "host": host, "processes": processes})

    def drain(self, host: str) -> None:
        """Ask the server of `host` to stop gracefully (running jobs finish first)."""
        self._send(host, {"command": "drain", "host": host})

    def _send(self, host: str, command: dict[str, Any]) -> None:
        if not isinstance(host, str) or not host:
            raise InvalidArgument(f"host name must be a non-empty string, got {host!r}")
        with database_errors():
            backend = self.app.backend
            hosts = sorted({p.host_name for p in backend.processes() if p.kind == "server"})
            if host not in hosts:
                live = ", ".join(repr(h) for h in hosts) or "none"
                raise ServerNotFound(
                    f"no live kojo server has host name {host!r} (live servers: {live})"
                )
            send_command(backend, command)


def send_command(backend: Backend, command: dict[str, Any]) -> int:
    """Store a command for the servers (at commit, inside a caller's write()); its id.
    Storing it wakes them: they read it from the table."""
    return ipc.publish(backend, CHANNEL, command)


class CommandFeed:
    """The commands stored after this process first looked, each read once, in order.

    A wake-up is only a reason to look (`hint`); what is acted on is read from the
    table, at the latest every LOOK_EVERY seconds (a wake-up can be lost). While the
    database is away, looks are tried again every RETRY seconds.
    """

    LOOK_EVERY = 5.0
    RETRY = 1.0

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.after: int | None = None  # the last id read; None until the first look
        self.pending = False
        self.next_look = 0.0

    def hint(self, note: Notification) -> None:
        """Look soon if `note` may announce a command (a stored message of CHANNEL)."""
        if note.topic != MESSAGE_TOPIC:
            return
        try:
            data = json.loads(note.data)
        except ValueError:
            return
        if isinstance(data, dict) and data.get("channel") == CHANNEL:
            self.pending = True

    def look(self, now: float) -> list[Command]:
        """The commands stored since the last look, when one is due at `now` (monotonic):
        a hint came, or LOOK_EVERY passed. The first look only notes where to start."""
        if not self.pending and now < self.next_look:
            return []
        try:
            if self.after is None:
                self.after = ipc.last_message_id(self.backend, CHANNEL)
                commands = []
            else:
                commands = self._read()
        except Exception as exc:
            if not self.backend.is_unavailable(exc):
                raise
            self.pending = False
            self.next_look = now + self.RETRY
            return []
        self.pending = False
        self.next_look = now + self.LOOK_EVERY
        return commands

    def _read(self) -> list[Command]:
        assert self.after is not None
        commands: list[Command] = []
        while True:
            batch = ipc.messages_after(self.backend, CHANNEL, self.after)
            for message_id, value in batch:
                self.after = message_id
                command = parse_command(value)
                if command is None:
                    log.warning(f"Ignoring stored control message [{message_id}]: not a command.")
                else:
                    commands.append(command)
            if len(batch) < ipc.READ_BATCH:
                return commands
