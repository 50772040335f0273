"""Brand-new PostgreSQL databases made ahead and dropped behind, off the tests' path.

CREATE DATABASE copies template1 and DROP DATABASE removes its files, each up to a
second or more on a busy CI machine, mostly waiting on the disk; a test suite that waited
for both around every PostgreSQL test spent minutes doing so. A helper *process* (this
file run as a script) keeps one database ready and drops used ones while the tests run;
each test still gets a database nobody used before, dropped when the test is over. A
process, not a thread: tests fork, and a fork must not catch a thread inside libpq.

    spares = Spares(admin_url)
    url = spares.take()      # a fresh, empty database
    spares.give_back(url)    # dropped soon, in the helper
    spares.close()           # waits for every drop; raises if one failed

Protocol on the helper's stdin/stdout, a line each: ``take`` -> ``ok URL`` or
``error MESSAGE``; ``drop URL`` -> no answer. End of input: the ready database is
dropped, pending drops are finished, and the exit status is 1 if any drop failed.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from pathlib import Path

if __name__ == "__main__":  # run as the helper: tests/ is not on its path yet
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import pg


class Spares:
    """The tests' side of the helper process."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self._helper = subprocess.Popen(
            [sys.executable, __file__, admin_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            # Not in the terminal's process group: a Ctrl-C stops the tests, and the helper
            # still drops what they leave (it sees its input end).
            start_new_session=True,
        )

    def _send(self, line: str) -> None:
        assert self._helper.stdin is not None
        self._helper.stdin.write(line + "\n")
        self._helper.stdin.flush()

    def take(self) -> str:
        """A URL to a database created for the caller alone."""
        self._send("take")
        assert self._helper.stdout is not None
        answer = self._helper.stdout.readline().rstrip("\n")
        kind, _, rest = answer.partition(" ")
        if kind != "ok":
            raise RuntimeError(f"no spare database from tests/pg_spares.py: {answer or 'exited'}")
        return rest

    def give_back(self, url: str) -> None:
        """Have ``url``'s database dropped (WITH (FORCE)) by the helper."""
        self._send(f"drop {url}")

    def close(self) -> None:
        """Wait until every database given back is dropped; raise if a drop failed."""
        assert self._helper.stdin is not None
        self._helper.stdin.close()
        status = self._helper.wait(timeout=300)
        if status != 0:
            raise RuntimeError(
                f"tests/pg_spares.py exited {status}: a test database was not dropped "
                "(its error is above)"
            )


def _serve(admin_url: str) -> int:
    ready: queue.Queue[str | Exception] = queue.Queue(maxsize=1)
    drops: queue.Queue[str | None] = queue.Queue()
    failed = threading.Event()
    stopping = threading.Event()

    def make() -> None:
        while not stopping.is_set():
            try:
                item: str | Exception = pg.create_database(admin_url)
            except Exception as exc:  # answered to the next take
                item = exc
            ready.put(item)  # blocks while one is ready and not taken

    def drop() -> None:
        while (url := drops.get()) is not None:
            try:
                pg.drop_database(admin_url, url)
            except Exception as exc:
                print(f"pg_spares: cannot drop {url}: {exc}", file=sys.stderr, flush=True)
                failed.set()

    maker = threading.Thread(target=make, daemon=True)
    dropper = threading.Thread(target=drop)
    maker.start()
    dropper.start()
    for line in sys.stdin:
        command, _, argument = line.rstrip("\n").partition(" ")
        if command == "take":
            item = ready.get()
            answer = f"ok {item}" if isinstance(item, str) else f"error {item}".replace("\n", " ")
            print(answer, flush=True)
        elif command == "drop":
            drops.put(argument)
        else:
            print(f"error unknown command {line!r}", flush=True)
    stopping.set()
    # The maker may be creating one more, or blocked on a full queue: drain until it stops.
    while maker.is_alive() or not ready.empty():
        try:
            left = ready.get(timeout=0.1)
        except queue.Empty:
            continue
        if isinstance(left, str):
            drops.put(left)
    drops.put(None)
    dropper.join()
    return 1 if failed.is_set() else 0


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1]))
