"""Who may use the dashboard: the bind check, the access token and the CSRF token.

An open dashboard on a network is how Flower's CVE-2022-30034 happened: a non-loopback
bind needs a token, and with a token every path but /metrics needs it, as a bearer
header or as the cookie that `/?token=T` sets. A POST also needs the CSRF token of its
form, which only pages of this dashboard carry. Secrets are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets

from ..errors import InvalidArgument

TOKEN_ENV = "KOJO_DASHBOARD_TOKEN"
COOKIE = "kojo_dashboard"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
MAX_TOKEN = 4096


def is_loopback(host: str) -> bool:
    """Whether a bind address is reachable from this machine only."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def check_token(token: str | None) -> str | None:
    """The token as given, or None for none; InvalidArgument for one that cannot travel in
    a header or cookie (empty, spaces, control characters, too long)."""
    if token is None:
        return None
    if not token:
        raise InvalidArgument(f"the dashboard token must not be empty (--token or {TOKEN_ENV})")
    if len(token) > MAX_TOKEN:
        raise InvalidArgument(f"the dashboard token must be at most {MAX_TOKEN} characters")
    if not all(33 <= ord(c) <= 126 for c in token):
        raise InvalidArgument(
            f"the dashboard token must be printable ASCII without spaces (--token or {TOKEN_ENV})"
        )
    return token


def check_bind(host: str, token: str | None) -> None:
    """InvalidArgument for a bind that would open the dashboard to a network without a
    token."""
    if not host.strip():
        raise InvalidArgument("--host must not be empty")
    if token is None and not is_loopback(host):
        raise InvalidArgument(
            f"refusing to serve the dashboard on {host} without a token: "
            f"give --token or {TOKEN_ENV}, or bind to 127.0.0.1"
        )


def _mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def same(given: str | None, expected: str) -> bool:
    """Constant-time equality of a secret received and the one expected."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


class Guard:
    """The secrets of one dashboard process: its access token (or None: open, for a
    loopback bind) and a random key for the cookie and CSRF values, new each start."""

    def __init__(self, token: str | None) -> None:
        self.token = check_token(token)
        self._key = secrets.token_bytes(32)

    @property
    def required(self) -> bool:
        return self.token is not None

    def session(self) -> str:
        """The cookie's value: derived from the token, so the cookie is not the token, and
        void once the process restarts."""
        assert self.token is not None
        return _mac(self._key, "session\0" + self.token)

    def csrf(self) -> str:
        """The CSRF value every form of this process carries."""
        return _mac(self._key, "csrf")

    def allows_token(self, given: str | None) -> bool:
        return self.token is None or same(given, self.token)

    def allows_bearer(self, header: str | None) -> bool:
        if self.token is None:
            return True
        scheme, _, value = (header or "").partition(" ")
        return scheme.lower() == "bearer" and same(value.strip(), self.token)

    def allows_cookie(self, value: str | None) -> bool:
        return self.token is None or same(value, self.session())

    def allows_csrf(self, value: str | None) -> bool:
        return same(value, self.csrf())
