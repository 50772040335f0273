"""How many PostgreSQL connections a server's host holds (docs/architecture.md, "Connections
per host"): one session (the server's anchor) and one query connection per process.

Each connection of the tree is found from both ends: the TCP sockets in the processes'
/proc/<pid>/fd, matched by port to this database's rows of pg_stat_activity.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from workers_harness import TITLE, Server, Tree, descendants, wait_for

from pg import database_name


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, PermissionError):
        return inodes
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def _local_ports_to(server_port: int) -> dict[int, int]:
    """Socket inode → local port, for this host's TCP connections to `server_port`."""
    ports = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], int(fields[9])
            if int(remote.rsplit(":", 1)[1], 16) == server_port and inode:
                ports[inode] = int(local.rsplit(":", 1)[1], 16)
    return ports


def _kind(cmdline: str) -> str:
    match = TITLE.match(cmdline)
    if match is None:
        return "other"
    return match["kind"] or ("root" if match["root"] else "server")


def connections_by_kind(url: str, server: Server) -> Counter[str]:
    """The tree's live connections to this database, by the kind of process holding them."""
    parts = urlsplit(url)
    assert parts.port is not None
    by_inode = _local_ports_to(parts.port)
    holders = [(server.pid, "server")] + [
        (p.pid, _kind(p.cmdline)) for p in descendants(server.pid) if p.alive
    ]
    port_kind: dict[int, str] = {}
    for pid, kind in holders:
        for inode in _socket_inodes(pid) & by_inode.keys():
            port_kind[by_inode[inode]] = kind
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT client_port FROM pg_stat_activity WHERE datname = %s AND client_port = ANY(%s)",
            (database_name(url), list(port_kind)),
        ).fetchall()
    return Counter(port_kind[port] for (port,) in rows)


@pytest.mark.parametrize("job_processes", [4, 16])
def test_a_host_holds_one_session_and_a_query_connection_per_process(
    pg_tree: Tree, job_processes: int
) -> None:
    if urlsplit(pg_tree.url).port is None:
        pytest.skip("counting connections by port needs a TCP database URL")
    server = pg_tree.start(max_processes=job_processes)
    # 1 session (the server's anchor) + N+3 query connections.
    expected = Counter({"server": 2, "root": 1, "maintainer": 1, "job": job_processes})

    def settled() -> bool:
        return connections_by_kind(pg_tree.url, server) == expected

    wait_for(settled, 30.0, lambda: f"{expected}, have {connections_by_kind(pg_tree.url, server)}")
