"""kojo.json_text: the one JSON encoder of payloads and messages, and its refusals."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

import kojo
from kojo import json_text
from kojo.app import encode_payload
from kojo.ipc import MAX_MESSAGE_BYTES, encode_message


def test_compact_and_unchanged_text() -> None:
    assert json_text.dumps({"a": [1, 2.5, None, "é"]}) == '{"a":[1,2.5,null,"\\u00e9"]}'
    assert encode_payload({"x": 1}) == '{"x":1}'
    assert encode_payload(None) is None  # no payload: NULL, not the text "null"
    assert encode_message(["m", 2]) == '["m",2]'


@pytest.mark.parametrize("value", [math.nan, math.inf, {"when": datetime(2030, 1, 1, tzinfo=UTC)}])
def test_values_that_are_not_json_are_refused_naming_them(value: object) -> None:
    with pytest.raises(kojo.InvalidPayload) as raised:
        json_text.dumps(value, "payload")
    assert str(raised.value).startswith(f"payload is not JSON-serialisable: {value!r} (")
    with pytest.raises(kojo.InvalidPayload, match=r"^payload is not JSON-serialisable"):
        encode_payload(value)
    with pytest.raises(kojo.InvalidPayload, match=r"^message is not JSON-serialisable"):
        encode_message(value)


def test_a_long_value_is_cut_in_the_message() -> None:
    with pytest.raises(kojo.InvalidPayload) as raised:
        json_text.dumps([math.nan] * 100, "message", shown=20)
    assert str(raised.value).startswith("message is not JSON-serialisable: [nan, nan, nan, n... (")


def test_too_large() -> None:
    assert json_text.dumps("x" * 10, max_bytes=12) == '"' + "x" * 10 + '"'
    with pytest.raises(kojo.InvalidPayload, match=r"^value is too large: 13 bytes of JSON"):
        json_text.dumps("x" * 11, max_bytes=12)
    with pytest.raises(kojo.InvalidPayload, match=f"the limit is {MAX_MESSAGE_BYTES}$"):
        encode_message("x" * MAX_MESSAGE_BYTES)
