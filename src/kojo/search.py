"""The payload text search of `kojo jobs list --search` and the dashboard's jobs page:
its bounds (docs/dashboard.md). No I/O."""

from __future__ import annotations

from .errors import InvalidArgument

MAX_SEARCH_CHARS = 200  # a value or a key to find, not a document
# Jobs one search call looks at, newest first: a search costs the same at any table
# size, and the next call goes on where it stopped.
SEARCH_SCAN = 20_000


def check_search(text: object) -> str:
    """`text` as a search for payloads; InvalidArgument naming it when it is not a
    non-empty string of at most MAX_SEARCH_CHARS characters without NUL."""
    if not isinstance(text, str):
        raise InvalidArgument(f"search text must be a string, got {text!r:.60}")
    if not text:
        raise InvalidArgument("search text is empty: give some text of the payloads to find")
    if len(text) > MAX_SEARCH_CHARS:
        raise InvalidArgument(
            f"search text {text[:40]!r}... is {len(text)} characters long: "
            f"at most {MAX_SEARCH_CHARS}"
        )
    if "\x00" in text:
        raise InvalidArgument(f"search text {text[:60]!r} contains a NUL character")
    return text
