"""Logging: one JSON object per line on stdout, in Kōjō's shape.

    {"time", "level", "message", "context", "kojo_metadata": {"job", "process", "host"}}

`KOJO_LOG_FORMAT` = json (default) | pretty | text; `KOJO_LOG_LEVEL` = info
(default) or any logging level name. kojo's own lines and the lines workers
write through `job.logger` carry the same metadata.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import traceback
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any

LOGGER_NAME = "kojo"
FORMATS = ("json", "pretty", "text")


class _Metadata:
    """What this process is and which job it works: attached to every log line."""

    def __init__(self) -> None:
        self.process: dict[str, Any] = {}
        self.job: Mapping[str, Any] | None = None
        self.host_name = socket.gethostname()

    def set_process(self, path: str, kind: str, **extra: Any) -> None:
        self.process = {
            "process_id": os.getpid(),
            "parent_process_id": os.getppid(),
            "path": path,
            "type_code": kind,
            **extra,
        }


metadata = _Metadata()


def _memory() -> dict[str, int]:
    try:
        with open(f"/proc/{os.getpid()}/status") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
        rss = int(fields["VmRSS"].split()[0]) * 1024
        peak = int(fields.get("VmHWM", fields["VmRSS"]).split()[0]) * 1024
        return {"memory_usage_bytes": rss, "memory_peak_usage_bytes": peak}
    except (OSError, KeyError, ValueError):
        return {}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _context(record: logging.LogRecord) -> dict[str, Any]:
    context = dict(getattr(record, "context", None) or {})
    if record.exc_info and record.exc_info[1] is not None:
        context["exception"] = normalize_exception(record.exc_info[1])
    return context


def normalize_exception(exc: BaseException) -> dict[str, Any]:
    """An exception as data: class, message, file:line, trace and previous (its cause)."""
    frames = traceback.extract_tb(exc.__traceback__)
    last = frames[-1] if frames else None
    result: dict[str, Any] = {
        "class": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "file": f"{last.filename}:{last.lineno}" if last else None,
        "trace": [f"{f.filename}:{f.lineno} in {f.name}" for f in frames],
    }
    previous = exc.__cause__ or exc.__context__
    if previous is not None and previous is not exc:
        result["previous"] = normalize_exception(previous)
    return result


class JsonFormatter(logging.Formatter):
    def __init__(self, pretty: bool = False) -> None:
        super().__init__()
        self.indent = 2 if pretty else None

    def format(self, record: logging.LogRecord) -> str:
        process = dict(metadata.process) or {
            "process_id": os.getpid(),
            "parent_process_id": os.getppid(),
        }
        process.update(_memory())
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = None
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds"),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
            "context": _context(record),
            "kojo_metadata": {
                "job": getattr(record, "job", None) or metadata.job,
                "process": process,
                "host": {"host_name": metadata.host_name, "load_average": load},
            },
        }
        return json.dumps(line, default=_jsonable, indent=self.indent)


# Control characters in a text line are written escaped: a message (a job type code, an
# error text a worker chose) must never start a line of its own that looks like kojo's.
_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(32), 127] if code != 9}
_ESCAPES.update({10: "\\n", 13: "\\r"})


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        job = getattr(record, "job", None) or metadata.job
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")
        parts = [
            stamp,
            f"{record.levelname.lower():8}",
            f"{metadata.process.get('path', os.getpid())!s:40}",
            f"{(job or {}).get('type_code', '-')!s:20}",
            record.getMessage().translate(_ESCAPES),
        ]
        context = _context(record)
        if context:
            parts.append(json.dumps(context, default=_jsonable))
        return " | ".join(parts)


def configure(fmt: str | None = None, level: str | None = None) -> None:
    """Send kojo's log lines to stdout in the chosen format (env vars as defaults)."""
    fmt = (fmt or os.environ.get("KOJO_LOG_FORMAT") or "json").lower()
    level_name = (level or os.environ.get("KOJO_LOG_LEVEL") or "info").upper()
    if fmt not in FORMATS:
        raise ValueError(f"KOJO_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    numeric = logging.getLevelName(level_name)
    if not isinstance(numeric, int):
        raise ValueError(f"not a log level: {level_name!r}")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(TextFormatter() if fmt == "text" else JsonFormatter(fmt == "pretty"))
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers[:] = [handler]
    logger.setLevel(numeric)
    logger.propagate = False


def get_logger(name: str = "") -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


_JOB_LOGGER = logging.getLogger(f"{LOGGER_NAME}.job")


class JobLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A worker's logger: `extra` becomes the line's context; the job rides along."""

    def __init__(self, job: Mapping[str, Any]) -> None:
        super().__init__(_JOB_LOGGER, {})
        self.job = job

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        context = kwargs.pop("extra", None) or {}
        kwargs["extra"] = {"context": context, "job": self.job}
        return msg, kwargs
