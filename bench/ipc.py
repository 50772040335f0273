"""Publish→receive latency and messages per second of kojo's pub/sub, beside a raw baseline.

    python bench/ipc.py [--backend sqlite|postgres|mysql|both|all] [--latency-messages 500]
                        [--throughput-messages 5000] [--subscribers 1] [--size 100]
                        [--postgres URL] [--mysql URL] [--table-poll 0.05]

Subscribers run in their own processes (spawned), publishers in this one.

- latency: one message at a time; the next is published once every subscriber
  has received the previous one. Latency = receive time - time just before the
  publish call (CLOCK_MONOTONIC is system-wide, so the two processes agree).
- throughput: `--throughput-messages` published back to back; messages per
  second = count / (last receive anywhere - first publish). Each subscriber
  checks that it got every message once, in order.

Methods, each on a fresh database:

- kojo: `app.publish(channel, message)` / `app.subscribe(channel).messages()`:
  a durable row in kojo_message plus a wake-up, committed per message.
- baseline, PostgreSQL: raw `SELECT pg_notify(channel, payload)` in autocommit
  → a raw `LISTEN` connection's `notifies()` (no table, nothing durable).
- baseline, MySQL (no LISTEN/NOTIFY): a raw polled table, as kojo's wake-ups are:
  `INSERT` of the message in autocommit into a table of its own; the subscriber
  reads the rows past the last id it saw, every `--table-poll` seconds while none
  came (kojo's anchor polls kojo_wakeup every 50 ms while wake-ups come).
- baseline, SQLite: a raw datagram sent to an abstract unix socket bound by
  the subscriber (kojo's doorbell without the table).

Results are printed and written to bench/results/ipc-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

import psycopg
from harness import ROOT, database, mysql_settings, summary

import kojo
import mysql_db

CHANNEL = "bench"
PG_CHANNEL = "kojo_bench"
TABLE = "bench_note"  # the MySQL baseline's messages
RECEIVE_TIMEOUT = 60.0


# -- subscribers (in their own processes) ---------------------------------------------------


def kojo_messages(url: str, ready: Callable[[], None]) -> Iterator[Any]:
    app = kojo.App(database=url)
    with app.subscribe(CHANNEL) as sub:
        ready()
        yield from sub.messages(timeout=RECEIVE_TIMEOUT)


def pg_messages(url: str, ready: Callable[[], None]) -> Iterator[Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"LISTEN {PG_CHANNEL}")  # a fixed identifier
        ready()
        for note in conn.notifies(timeout=RECEIVE_TIMEOUT):
            yield json.loads(note.payload)


def table_messages(url: str, ready: Callable[[], None], poll: float) -> Iterator[Any]:
    conn = mysql_db.connect(url)  # autocommit: each read sees the latest commits
    try:
        cursor = conn.cursor()
        cursor.execute(f"SELECT coalesce(max(id), 0) FROM {TABLE}")  # a fixed name
        (last,) = cursor.fetchone()
        ready()
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < RECEIVE_TIMEOUT:
            cursor.execute(f"SELECT id, payload FROM {TABLE} WHERE id > %s ORDER BY id", (last,))
            rows = cursor.fetchall()
            if not rows:
                time.sleep(poll)
                continue
            quiet_since = time.monotonic()
            last = rows[-1][0]
            for _, payload in rows:
                yield json.loads(payload)
    finally:
        conn.close()


def datagram_messages(address: str, ready: Callable[[], None]) -> Iterator[Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as bell:
        bell.bind(address)
        bell.settimeout(RECEIVE_TIMEOUT)
        ready()
        while True:
            try:
                packet = bell.recv(65536)
            except TimeoutError:
                return
            yield json.loads(packet)


def subscriber(method: str, target: str, pipe: Connection, poll: float) -> None:
    """Receive messages; report each latency (mode "latency") or a summary ("throughput")."""
    sources = {"kojo": kojo_messages, "pg": pg_messages, "datagram": datagram_messages}
    expected_next = 0
    received = 0
    in_order = True
    ready = lambda: pipe.send("ready")  # noqa: E731
    if method == "table":
        messages = table_messages(target, ready, poll)
    else:
        messages = sources[method](target, ready)
    for message in messages:
        now = time.monotonic()
        if message.get("stop"):
            break
        if message["mode"] == "latency":
            pipe.send(now - message["t"])
            continue
        in_order = in_order and message["n"] == expected_next
        expected_next = message["n"] + 1
        received += 1
        if message["n"] == message["of"] - 1:
            pipe.send({"last": now, "received": received, "in_order": in_order})
            expected_next, received, in_order = 0, 0, True
    pipe.close()


# -- publishers (in this process) -------------------------------------------------------------


class Publisher:
    def __init__(self, method: str, url: str, addresses: list[str]) -> None:
        self.method = method
        if method == "kojo":
            self.app = kojo.App(database=url)
        elif method == "pg":
            self.conn = psycopg.connect(url, autocommit=True)
        elif method == "table":
            self.my = mysql_db.connect(url)
            self.cursor = self.my.cursor()
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.addresses = addresses

    def send(self, message: dict[str, Any]) -> None:
        if self.method == "kojo":
            self.app.publish(CHANNEL, message)
        elif self.method == "pg":
            self.conn.execute("SELECT pg_notify(%s, %s)", (PG_CHANNEL, json.dumps(message)))
        elif self.method == "table":
            self.cursor.execute(
                f"INSERT INTO {TABLE} (payload) VALUES (%s)", (json.dumps(message),)
            )
        else:
            packet = json.dumps(message).encode()
            for address in self.addresses:
                self.sock.sendto(packet, address)

    def close(self) -> None:
        if self.method == "kojo":
            self.app.backend.close()
        elif self.method == "pg":
            self.conn.close()
        elif self.method == "table":
            self.my.close()
        else:
            self.sock.close()


@contextmanager
def subscribers(
    method: str, url: str, count: int, poll: float
) -> Iterator[tuple[list[Connection], list[str]]]:
    context = multiprocessing.get_context("spawn")
    pipes, procs, targets = [], [], []
    for index in range(count):
        target = f"\0kojo-bench-{os.getpid()}-{index}" if method == "datagram" else url
        mine, theirs = context.Pipe()
        proc = context.Process(target=subscriber, args=(method, target, theirs, poll), daemon=True)
        proc.start()
        pipes.append(mine)
        procs.append(proc)
        targets.append(target)
    try:
        for pipe in pipes:
            if not pipe.poll(30) or pipe.recv() != "ready":
                raise RuntimeError(f"{method} subscriber did not start")
        yield pipes, targets
    finally:
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()


def run(method: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    padding = "x" * args.size
    if method == "table":
        conn = mysql_db.connect(url)
        try:
            conn.cursor().execute(
                f"CREATE TABLE {TABLE} (id bigint AUTO_INCREMENT PRIMARY KEY, "
                "payload longtext NOT NULL) ENGINE=InnoDB"
            )
        finally:
            conn.close()
    with subscribers(method, url, args.subscribers, args.table_poll) as (pipes, targets):
        publisher = Publisher(method, url, targets)
        try:
            for _ in range(20):  # warm-up: connections, prepared plans
                publisher.send({"mode": "latency", "t": time.monotonic(), "pad": padding})
                for pipe in pipes:
                    pipe.recv()
            latencies: list[float] = []
            for n in range(args.latency_messages):
                publisher.send({"mode": "latency", "n": n, "t": time.monotonic(), "pad": padding})
                for pipe in pipes:
                    if not pipe.poll(RECEIVE_TIMEOUT):
                        raise RuntimeError(f"{method}: message {n} never arrived")
                    latencies.append(pipe.recv())
            total = args.throughput_messages
            started = time.monotonic()
            for n in range(total):
                publisher.send({"mode": "throughput", "n": n, "of": total, "pad": padding})
            published = time.monotonic()
            reports = []
            for pipe in pipes:
                if not pipe.poll(RECEIVE_TIMEOUT):
                    raise RuntimeError(f"{method}: the throughput run never completed")
                reports.append(pipe.recv())
            publisher.send({"stop": True})
        finally:
            publisher.close()
    last = max(r["last"] for r in reports)
    return {
        "latency_ms": {k: v * 1000 for k, v in summary(latencies).items()},
        "messages_per_second": total / (last - started),
        "publishes_per_second": total / (published - started),
        "all_received_in_order": all(r["received"] == total and r["in_order"] for r in reports),
    }


def settings(backend: str, url: str) -> dict[str, Any]:
    if backend == "mysql":
        return mysql_settings(url)
    if backend != "postgres":
        return {"sqlite_synchronous": "NORMAL", "journal_mode": "WAL"}
    with psycopg.connect(url) as conn:
        return {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("server_version", "fsync", "synchronous_commit")
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backend", choices=["sqlite", "postgres", "mysql", "both", "all"], default="both"
    )
    parser.add_argument("--latency-messages", type=int, default=500)
    parser.add_argument("--throughput-messages", type=int, default=5000)
    parser.add_argument("--subscribers", type=int, default=1)
    parser.add_argument("--size", type=int, default=100, help="padding bytes per message")
    parser.add_argument("--postgres", default=os.environ.get("KOJO_TEST_POSTGRES_URL"))
    parser.add_argument("--mysql", default=os.environ.get("KOJO_TEST_MYSQL_URL"))
    parser.add_argument(
        "--table-poll", type=float, default=0.05, help="the MySQL baseline's poll, seconds"
    )
    args = parser.parse_args()
    admin_urls = {"sqlite": None, "postgres": args.postgres, "mysql": args.mysql}
    groups = {"both": ["sqlite", "postgres"], "all": ["sqlite", "postgres", "mysql"]}
    backends = groups.get(args.backend, [args.backend])
    for server in ("postgres", "mysql"):
        if server in backends and not admin_urls[server]:
            if args.backend not in groups:
                parser.error(f"{server} needs --{server} URL or KOJO_TEST_{server.upper()}_URL")
            print(
                f"no --{server} URL nor KOJO_TEST_{server.upper()}_URL: {server} skipped",
                file=sys.stderr,
            )
            backends.remove(server)
    results: dict[str, Any] = {
        "time": datetime.now(UTC).isoformat(),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "parameters": vars(args) | {"postgres": bool(args.postgres), "mysql": bool(args.mysql)},
        "backends": {},
    }
    for backend in backends:
        baseline = {"postgres": "pg", "mysql": "table"}.get(backend, "datagram")
        entry: dict[str, Any] = {}
        for method in (baseline, "kojo"):
            with database(backend, admin_urls[backend]) as url:
                if method == "kojo":
                    kojo.App(database=url).install()
                entry.setdefault("settings", settings(backend, url))
                entry["kojo" if method == "kojo" else "baseline"] = run(method, url, args)
        results["backends"][backend] = entry
        report(backend, baseline, entry)
    out = ROOT / "bench" / "results" / f"ipc-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"written to {out.relative_to(ROOT)}")


def report(backend: str, baseline: str, entry: dict[str, Any]) -> None:
    print(f"{backend} ({', '.join(f'{k}={v}' for k, v in entry['settings'].items())})")
    names = {"baseline": f"baseline ({baseline})", "kojo": "kojo"}
    for key in ("baseline", "kojo"):
        r = entry[key]
        lat = r["latency_ms"]
        print(
            f"  {names[key]:20} latency p50 {lat['p50']:7.3f} ms  p99 {lat['p99']:7.3f} ms  "
            f"max {lat['max']:7.3f} ms   {r['messages_per_second']:9.0f} msg/s received  "
            f"({r['publishes_per_second']:.0f}/s published)  "
            f"{'ok' if r['all_received_in_order'] else 'LOST OR OUT OF ORDER'}"
        )


if __name__ == "__main__":
    main()
