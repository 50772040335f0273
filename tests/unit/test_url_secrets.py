"""Passwords are masked wherever kojo prints a database URL or a driver's message."""

from __future__ import annotations

import pytest

from kojo.backends.url_secrets import mask_url, redact


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://bob:hunter2@db:5432/kojo", "postgresql://bob:***@db:5432/kojo"),
        ("postgresql://bob@db/kojo?password=hunter2", "postgresql://bob@db/kojo?password=***"),
        (
            "postgresql://db/kojo?sslmode=require&PASSWORD=hunter2&application_name=x",
            "postgresql://db/kojo?sslmode=require&PASSWORD=***&application_name=x",
        ),
        ("postgresql://bob:pa%zz@db/kojo", "postgresql://bob:***@db/kojo"),  # a bad escape
        ("postgresql://bob:a@b@db/kojo", "postgresql://bob:***@db/kojo"),  # an unescaped @
        ("pgsql://bob:hunter2@db/kojo", "pgsql://bob:***@db/kojo"),  # a misspelt scheme
        ("postgresql://bob@db/kojo", "postgresql://bob@db/kojo"),
        ("sqlite:///kojo.db", "sqlite:///kojo.db"),
    ],
)
def test_every_password_of_a_url_is_masked(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_a_drivers_message_quoting_the_password_is_redacted() -> None:
    url = "postgresql://bob@db/kojo?password=se%zzcret"
    message = 'invalid percent-encoded token: "se%zzcret"'
    assert redact(message, url) == 'invalid percent-encoded token: "***"'
    decoded = "postgresql://bob:p%40ss@db/kojo"  # the driver may quote it decoded: p@ss
    assert "p@ss" not in redact("password authentication failed: p@ss", decoded)
