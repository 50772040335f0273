"""Cluster control, the client side (`kojo ctl`, `app.control`); docs/ipc.md.

Membership comes from the database: every live kojo process has a
`kojo_process` row whose liveness is probed (anchor lock or flock), so `ping`
knows exactly which servers exist without waiting for replies. Commands that
change a running server (`scale`, `drain`) are "control" notifications, acted
on by the server of the named host; `pause`/`resume` are persisted on the job
type, so they hold across restarts and for servers that start later.

Control notification data (JSON), for the process tree:

    {"command": "scale", "host": HOST, "processes": N}
    {"command": "drain", "host": HOST}
    {"cancel": JOB_ID}                      (sent by App.cancel)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import json_text
from .backends.errors import database_errors
from .errors import InvalidArgument
from .settings import MAX_PROCESSES, check_max_processes

if TYPE_CHECKING:
    from .app import App

TOPIC = "control"


@dataclass(frozen=True)
class Command:
    """A parsed control notification: command is "scale", "drain" or "cancel"."""

    command: str
    host: str | None = None
    processes: int | None = None
    job_id: int | None = None

    def is_for(self, host_name: str) -> bool:
        """True for a host command addressed to `host_name`."""
        return self.host == host_name


def parse_command(data: str) -> Command | None:
    """A control notification's data as a Command; None if it is not a valid one."""
    try:
        value = json.loads(data)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    job_id = value.get("cancel")
    if isinstance(job_id, int) and not isinstance(job_id, bool):
        return Command("cancel", job_id=job_id)
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
                raise InvalidArgument(
                    f"no live kojo server has host name {host!r} (live servers: {live})"
                )
            backend.notify(TOPIC, json_text.dumps(command, "control command"))
