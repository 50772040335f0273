"""A text log line stays one line whatever its message holds."""

from __future__ import annotations

import logging

from kojo.logs import TextFormatter


def test_a_newline_in_a_message_cannot_forge_a_second_text_line() -> None:
    message = "Skipped job type [q\n12:00:00.000000 | error    | /server[1] | forged]\r\x1b[2K"
    record = logging.LogRecord("kojo.cron", logging.WARNING, __file__, 1, message, None, None)
    line = TextFormatter().format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line.endswith("[q\\n12:00:00.000000 | error    | /server[1] | forged]\\r\\x1b[2K")


def test_tabs_and_text_are_kept_as_they_are() -> None:
    record = logging.LogRecord("kojo", logging.INFO, __file__, 1, "a\tb ü", None, None)
    assert TextFormatter().format(record).endswith("| a\tb ü")
