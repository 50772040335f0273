"""Passwords out of everything kojo prints: URLs, and driver messages that quote them.

A database URL may carry a password in its user-info part
(`postgresql://bob:secret@host/db`) or, in libpq's URI syntax, as a query parameter
(`?password=secret`). Both are masked by text rules, not by parsing, so that a URL
too broken to parse (a bad port, a bad percent-escape) is masked all the same.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"
_USERINFO = re.compile(r"(?P<head>://[^/?#@:]*:)(?P<secret>[^/?#]*)@")  # to the last @
_QUERY = re.compile(r"(?P<head>[?&]password=)(?P<secret>[^&#]*)", re.IGNORECASE)


def mask_url(url: str) -> str:
    """`url` with every password replaced by ***."""
    url = _USERINFO.sub(lambda m: f"{m['head']}{MASK}@", url)
    return _QUERY.sub(lambda m: f"{m['head']}{MASK}", url)


def secrets_of(url: str) -> list[str]:
    """The passwords in `url`, as written and percent-decoded (longest first)."""
    found = {m["secret"] for pattern in (_USERINFO, _QUERY) for m in pattern.finditer(url)}
    found |= {unquote(secret) for secret in found}
    return sorted((s for s in found if s), key=len, reverse=True)


def redact(text: str, url: str) -> str:
    """`text` (a driver's message) with `url`'s passwords, and any URL, masked."""
    for secret in secrets_of(url):
        text = text.replace(secret, MASK)  # e.g. psycopg quotes a bad percent-escape's token
    return mask_url(text)
