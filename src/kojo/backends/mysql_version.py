"""Which MySQL-family servers kojo speaks to: MariaDB 10.6 or newer.

kojo's MySQL SQL uses `INSERT ... RETURNING` and `DELETE ... RETURNING` (MariaDB's;
MySQL 8 has neither) and `SKIP LOCKED` (MariaDB 10.6+). Any other server would fail
later, at some query, with an obscure syntax error: it is refused when kojo connects,
in one line naming its version. The version comes from the connection's handshake
(no query), and a version is judged once per process.
"""

from __future__ import annotations

import re
from functools import lru_cache

MINIMUM = (10, 6)
HOWTO = "docs/howto/mysql.md"
# MariaDB 10.x prefixes the version in its handshake with "5.5.5-" (for old clients
# that read 10 as less than 5); VERSION() and MariaDB 11.x do not.
_REPLICATION_PREFIX = "5.5.5-"
_LEADING_VERSION = re.compile(r"(\d+)\.(\d+)")


@lru_cache(maxsize=8)
def refusal(version: str) -> str | None:
    """Why kojo cannot use a server that reports `version` (its handshake's or VERSION()'s),
    in one line; None when it can."""
    shown = version.strip().removeprefix(_REPLICATION_PREFIX)
    needs = f"kojo needs MariaDB {MINIMUM[0]}.{MINIMUM[1]} or newer"
    if "mariadb" not in shown.lower():
        return (
            f"{needs}: this server is MySQL {shown!r} (it lacks INSERT ... RETURNING); see {HOWTO}"
        )
    found = _LEADING_VERSION.match(shown)
    if found is None:
        return f"{needs}: cannot read this server's version {shown!r}; see {HOWTO}"
    if (int(found[1]), int(found[2])) < MINIMUM:
        return f"{needs}: this server is MariaDB {shown!r} (it lacks SKIP LOCKED); see {HOWTO}"
    return None
