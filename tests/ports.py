"""A free TCP port on 127.0.0.1, for the servers the tests start (PostgreSQL, MariaDB,
PgBouncer). The port is released before the server binds it: a race with another
program is possible but rare, and each server's start fails loudly if it loses it."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
