"""The one way kojo turns a value into JSON text: payloads, messages, notifications.

Compact (no spaces) and strict: NaN and Infinity are refused, since PostgreSQL's
jsonb and most other readers refuse them too, and a value that cannot be read back
must be refused where it enters kojo, never stored.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import InvalidPayload

SEPARATORS = (",", ":")


def dumps(
    value: Any, what: str = "value", *, max_bytes: int | None = None, shown: int | None = None
) -> str:
    """The JSON text of `value`; InvalidPayload naming `what` and the value when it is not
    JSON-serialisable, or longer than `max_bytes` once UTF-8 encoded. `shown` cuts the
    value's repr in the message to that many characters (a message may be large)."""
    try:
        text = json.dumps(value, allow_nan=False, separators=SEPARATORS)
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(
            f"{what} is not JSON-serialisable: {_repr(value, shown)} ({exc})"
        ) from None
    except RecursionError:
        raise InvalidPayload(f"{what} is nested too deeply to be JSON") from None
    if max_bytes is not None:
        size = len(text.encode())
        if size > max_bytes:
            raise InvalidPayload(
                f"{what} is too large: {size} bytes of JSON, the limit is {max_bytes}"
            )
    return text


def _repr(value: Any, limit: int | None) -> str:
    text = repr(value)
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - 3] + "..."
