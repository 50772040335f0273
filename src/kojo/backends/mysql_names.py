"""The names of kojo's MySQL named locks (GET_LOCK).

Named locks are server-wide (not per database) and their names at most 64
characters long. Each name is `kojo.<16 hex digits>.<what>`: the digits are a
hash of the database's name, so that kojo installs in two databases of one
server never share a lock, and the longest name (an owner's, with a 20-digit id)
is 5 + 16 + 1 + 1 + 20 = 43 characters.
"""

from __future__ import annotations

import hashlib

MAX_LOCK_NAME = 64


class LockNames:
    def __init__(self, database: str) -> None:
        digest = hashlib.sha1(database.encode()).hexdigest()[:16]
        self.prefix = f"kojo.{digest}."
        self.install = self._checked(self.prefix + "install")

    def owner(self, owner_id: int) -> str:
        """The lock an owner's anchor session holds while it lives."""
        return self._checked(f"{self.prefix}p{int(owner_id)}")

    @staticmethod
    def _checked(name: str) -> str:
        if len(name) > MAX_LOCK_NAME:
            raise ValueError(f"MySQL lock name {name!r} is longer than {MAX_LOCK_NAME} characters")
        return name
