"""A server's settings: parsed once from its flags and environment, then passed down.

`kojo server start` builds one frozen `Settings` (`Settings.parse`); the server,
its root, the maintainer and the job processes are forked from it and receive the
same object. Nothing below the command line reads the environment for these.

| Setting                 | Flag                 | Environment                    | Default     |
|-------------------------|----------------------|--------------------------------|-------------|
| database_url            | `--database`         | `KOJO_DATABASE_URL`            | sqlite      |
| host_name               | `--host-name`        | `KOJO_HOST_NAME`               | machine's   |
| max_processes           | `--max-processes`    |                                | CPUs        |
| shutdown_timeout        | `--shutdown-timeout` |                                | 30 s        |
| idle_retire_seconds     |                      | `KOJO_IDLE_RETIRE_SECONDS`     | 300 s       |
| log_format              | `--log-format`       | `KOJO_LOG_FORMAT`              | text, json* |
| log_level               |                      | `KOJO_LOG_LEVEL`               | info        |
| disabled_type_log_level |                      | `KOJO_DISABLED_TYPE_LOG_LEVEL` | warning     |

*text when stdout is a terminal, json when it is not (logs.default_format).

Bounds: max_processes 0..MAX_PROCESSES (1024); shutdown_timeout >= 0; idle retire
> 0; log_format json, pretty or text; levels are logging's names. The database
URL defaults to sqlite:///kojo.db.

A value out of bounds raises InvalidArgument naming it, in one line, before
anything starts. `--app`/`KOJO_APP` selects the App and is the command line's.

The host name that processes register under (`host_name()`) is process-wide: a
server sets it once at start (`use_host_name`) and its forks inherit it; any other
process takes `KOJO_HOST_NAME`, else the machine's name.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

from . import logs
from .errors import InvalidArgument

MAX_PROCESSES = 1024  # job processes per host: the idle board's size, scale's upper bound
DEFAULT_SHUTDOWN_TIMEOUT = 30.0
DEFAULT_IDLE_RETIRE = 300.0  # seconds a surplus job process may stay idle
IDLE_RETIRE_ENV = "KOJO_IDLE_RETIRE_SECONDS"

_server_host_name: str | None = None  # set once by a server; inherited by its forks


def host_name() -> str:
    """The host name this process registers under (its lock and subscriber clients too)."""
    return _server_host_name or os.environ.get("KOJO_HOST_NAME") or socket.gethostname()


def use_host_name(name: str) -> None:
    """Make `name` this process's host name, for itself and every process it forks."""
    global _server_host_name
    _server_host_name = name
    logs.metadata.host_name = name


WORKER_MODULES_ENV = "KOJO_WORKER_MODULES"


def allowed_worker_modules() -> tuple[str, ...] | None:
    """The packages workers may be imported from ($KOJO_WORKER_MODULES, comma-separated),
    or None: any (docs/security.md says who can then choose what a server imports)."""
    text = os.environ.get(WORKER_MODULES_ENV, "").strip()
    if not text:
        return None
    return tuple(name.strip() for name in text.split(",") if name.strip())


def worker_module_allowed(module: str, allowed: tuple[str, ...]) -> bool:
    """True when `module` is one of `allowed` or inside one of those packages."""
    return any(module == name or module.startswith(name + ".") for name in allowed)


def default_max_processes() -> int:
    return min(MAX_PROCESSES, os.cpu_count() or 2)


def check_max_processes(value: object, what: str = "number of processes") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PROCESSES:
        raise InvalidArgument(f"{what} must be an integer from 0 to {MAX_PROCESSES}, got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    host_name: str
    max_processes: int
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    idle_retire_seconds: float = DEFAULT_IDLE_RETIRE
    database_url: str | None = None
    log_format: str = "json"
    log_level: str = "info"
    disabled_type_log_level: int = logging.WARNING

    def __post_init__(self) -> None:
        if not isinstance(self.host_name, str) or not self.host_name.strip():
            raise InvalidArgument(f"host name must be a non-empty string, got {self.host_name!r}")
        check_max_processes(self.max_processes, "max processes")
        if not self.shutdown_timeout >= 0:
            raise InvalidArgument(
                f"shutdown timeout must be a number of seconds >= 0, got {self.shutdown_timeout!r}"
            )
        if not self.idle_retire_seconds > 0:
            raise InvalidArgument(
                f"{IDLE_RETIRE_ENV} must be a positive number, not {self.idle_retire_seconds!r}"
            )
        _check_logging(self.log_format, self.log_level)

    @classmethod
    def parse(
        cls,
        *,
        host_name: str | None = None,
        max_processes: int | None = None,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        database_url: str | None = None,
        log_format: str | None = None,
    ) -> Settings:
        """The flags given, the environment for the rest; checked in the order a server
        used to meet them (log settings first), the first bad one raised."""
        env = os.environ
        log_format = (log_format or logs.default_format()).lower()
        log_level = (env.get("KOJO_LOG_LEVEL") or "info").lower()
        _check_logging(log_format, log_level)
        disabled_level = disabled_type_log_level()  # names KOJO_DISABLED_TYPE_LOG_LEVEL
        return cls(
            host_name=(host_name or env.get("KOJO_HOST_NAME") or socket.gethostname()).strip(),
            max_processes=default_max_processes() if max_processes is None else max_processes,
            shutdown_timeout=shutdown_timeout,
            idle_retire_seconds=_idle_retire(env.get(IDLE_RETIRE_ENV)),
            database_url=database_url,
            log_format=log_format,
            log_level=log_level,
            disabled_type_log_level=disabled_level,
        )


LOG_LEVEL_ENV = "KOJO_DISABLED_TYPE_LOG_LEVEL"
DEFAULT_LOG_LEVEL = logging.WARNING


def disabled_type_log_level(value: str | int | None = None) -> int:
    """The level of "Scheduler skipping disabled job type" lines.

    `value` (a level name or number), else $KOJO_DISABLED_TYPE_LOG_LEVEL, else
    warning. An unknown level raises InvalidArgument naming it: call this once
    at startup so a typo stops the server instead of failing every pass.
    """
    source = "disabled type log level"
    if value is None:
        value = os.environ.get(LOG_LEVEL_ENV) or None
        source = LOG_LEVEL_ENV
    if value is None:
        return DEFAULT_LOG_LEVEL
    if isinstance(value, int) and not isinstance(value, bool):
        if value in logging.getLevelNamesMapping().values():
            return value
    elif isinstance(value, str):
        level = logging.getLevelNamesMapping().get(value.strip().upper())
        if level is not None and level != logging.NOTSET:
            return level
    names = "debug, info, warning, error, critical"
    raise InvalidArgument(f"{source} must be one of {names}, not {value!r}")


def _check_logging(log_format: str, log_level: str) -> None:
    if log_format not in logs.FORMATS:
        raise InvalidArgument(
            f"KOJO_LOG_FORMAT must be one of {', '.join(logs.FORMATS)}, not {log_format!r}"
        )
    if not isinstance(logging.getLevelName(log_level.upper()), int):
        raise InvalidArgument(f"not a log level: {log_level.upper()!r}")


def _idle_retire(text: str | None) -> float:
    if text is None:
        return DEFAULT_IDLE_RETIRE
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:  # NaN too; inf: never retire
        raise InvalidArgument(f"{IDLE_RETIRE_ENV} must be a positive number, not {text!r}")
    return value
