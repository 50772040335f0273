"""Logging: one line per message on stdout, for people (`text`) or machines (`json`).

`kojo server start --log-format text|json|pretty` (else `KOJO_LOG_FORMAT`, else
`text` when stdout is a terminal and `json` when it is not); `KOJO_LOG_LEVEL` =
info (default) or any logging level name. kojo's own lines and the lines workers
write through `job.logger` carry the same metadata.

`json` is one object per line, in Kōjō's shape:

    {"time", "level", "message", "context", "kojo_metadata": {"job", "process", "host"}}

where `job` is the job being worked as {"kojo_job_id", "type_code", "assigned_state"}
(Kōjō logged the whole row: 1,500+ characters a line), or null. `pretty` is the same
object indented over several lines (Kōjō's json_pretty_print).

`text` is one line a message: local date and time with its UTC offset (or
`UTC`), level, process path, the job (`job 12 (send_mail)`), the message and a
short `key=value` context; an exception's traceback follows, indented. It is
coloured when stdout is a terminal, unless `NO_COLOR` is set; `FORCE_COLOR`
colours it anywhere (no-color.org, force-color.org).
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
from typing import IO, Any

LOGGER_NAME = "kojo"
FORMATS = ("json", "pretty", "text")
# What a log line says of the job being worked (the row itself is for `kojo jobs show`).
JOB_KEYS = ("kojo_job_id", "type_code", "assigned_state")


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


def _job(record: logging.LogRecord) -> dict[str, Any] | None:
    """The job a line is about (the record's, else this process's current one), in brief."""
    row = getattr(record, "job", None) or metadata.job
    if not row:
        return None
    return {key: row.get(key) for key in JOB_KEYS}


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
                "job": _job(record),
                "process": process,
                "host": {"host_name": metadata.host_name, "load_average": load},
            },
        }
        return json.dumps(line, default=_jsonable, indent=self.indent)


# Control characters in a text line are written escaped: a message (a job type code, an
# error text a worker chose) must never start a line of its own that looks like kojo's.
_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(32), 127] if code != 9}
_ESCAPES.update({10: "\\n", 13: "\\r"})
CONTEXT_VALUE_CHARS = 80  # a text line shows each context value up to this long
TRACEBACK_INDENT = "    "
_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_BOLD = "\x1b[1m"
_LEVEL_COLOURS = {
    "DEBUG": "\x1b[2m",
    "INFO": "\x1b[32m",
    "WARNING": "\x1b[33m",
    "ERROR": "\x1b[31m",
    "CRITICAL": "\x1b[1;31m",
}


def local_time(created: float) -> str:
    """`2026-11-30 20:04:05.123 +01:00` in this host's zone; `... UTC` when that is UTC."""
    stamp = datetime.fromtimestamp(created).astimezone()
    offset = stamp.strftime("%z")
    zone = "UTC" if offset in ("+0000", "-0000", "") else f"{offset[:3]}:{offset[3:]}"
    return f"{stamp:%Y-%m-%d %H:%M:%S}.{stamp.microsecond // 1000:03d} {zone}"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=_jsonable)
    if len(text) > CONTEXT_VALUE_CHARS:
        text = text[: CONTEXT_VALUE_CHARS - 3] + "..."
    return text.translate(_ESCAPES)


def wants_colour(stream: IO[str], environ: Mapping[str, str] = os.environ) -> bool:
    """Colour for a terminal that takes it: never with NO_COLOR, always with FORCE_COLOR."""
    if environ.get("NO_COLOR"):
        return False
    if environ.get("FORCE_COLOR"):
        return True
    try:
        return stream.isatty() and environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


class TextFormatter(logging.Formatter):
    """One line a message, for a person; a traceback follows it, indented."""

    def __init__(self, colour: bool = False) -> None:
        super().__init__()
        self.colour = colour

    def _paint(self, code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if self.colour else text

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname
        parts = [
            self._paint(_DIM, local_time(record.created)),
            self._paint(_LEVEL_COLOURS.get(level, ""), f"{level:<8}"),
            str(metadata.process.get("path") or f"[{os.getpid()}]").translate(_ESCAPES),
        ]
        job = _job(record)
        if job is not None:
            label = f"job {job['kojo_job_id']} ({job['type_code']})".translate(_ESCAPES)
            parts.append(self._paint(_BOLD, label))
        parts.append(record.getMessage().translate(_ESCAPES))
        exc = record.exc_info[1] if record.exc_info else None
        context = dict(getattr(record, "context", None) or {})
        if exc is not None:
            context.pop("exception", None)  # the traceback below says it better
        if context:
            parts.append(" ".join(f"{key}={_short(value)}" for key, value in context.items()))
        line = "  ".join(parts)
        return line + _traceback(exc) if exc is not None else line


def _traceback(exc: BaseException) -> str:
    """The traceback, each line indented (so none can pass for a line of kojo's own)."""
    text = "".join(traceback.format_exception(exc)).rstrip("\n")
    return "".join(f"\n{TRACEBACK_INDENT}{line.translate(_ESCAPES)}" for line in text.split("\n"))


def default_format(stream: IO[str] | None = None) -> str:
    """`KOJO_LOG_FORMAT`, else text for a terminal and json for anything else."""
    chosen = os.environ.get("KOJO_LOG_FORMAT")
    if chosen:
        return chosen.lower()
    try:
        return "text" if (stream or sys.stdout).isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def formatter(fmt: str, stream: IO[str]) -> logging.Formatter:
    if fmt == "text":
        return TextFormatter(colour=wants_colour(stream))
    return JsonFormatter(pretty=fmt == "pretty")


def configure(fmt: str | None = None, level: str | None = None) -> None:
    """Send kojo's log lines to stdout in the chosen format (default: default_format())."""
    fmt = (fmt or default_format()).lower()
    level_name = (level or os.environ.get("KOJO_LOG_LEVEL") or "info").upper()
    if fmt not in FORMATS:
        raise ValueError(f"KOJO_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    numeric = logging.getLevelName(level_name)
    if not isinstance(numeric, int):
        raise ValueError(f"not a log level: {level_name!r}")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter(fmt, sys.stdout))
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
