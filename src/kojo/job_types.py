"""Job type definitions: fields, validation, worker references and YAML loading."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

from . import bounds, cron, settings
from .clock import utcnow
from .durations import DurationTooLong, format_duration, parse_duration
from .errors import InvalidJobType
from .rows import TypeRow

CODE_PATTERN = re.compile(r"^[a-z0-9_.-]{1,255}$")
CATCH_UP_POLICIES = ("none", "latest", "all")

Worker = Callable[..., Any]
MAX_CONCURRENCY_LIMIT = 10_000
MAX_RATE_LIMIT = 10_000  # starts per period: one slot row each (docs/rate-limits.md)


@dataclass(frozen=True)
class JobType:
    """A validated job type. `worker_uri` is "module:callable"; `worker` the loaded callable."""

    code: str
    worker_uri: str
    name: str = ""
    cron_expression: str | None = None
    can_work_in_parallel: bool = True
    default_importance: int = 0
    schedule_limit: int = 0
    schedule_limit_allowance: int = 0
    is_enabled: bool = True
    auto_complete_success: bool = True
    auto_delete_interval_duration: str = "P1D"
    max_retries: int = 0
    max_crashes: int = 5
    timeout: float | None = None
    catch_up: str = "none"
    catch_up_window: str = "PT1H"
    concurrency_limit: int = 0
    rate_limit: str = ""
    worker: Worker | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        """Every field checked, whoever builds the type (define(), or `kojo.JobType(...)`
        directly): a value that cannot be stored or computed with raises InvalidJobType
        naming the field and the value. Values are kept in their canonical form."""
        for name, value in _checked_fields(self).items():
            object.__setattr__(self, name, value)

    @property
    def auto_delete_interval(self) -> timedelta:
        return parse_duration(self.auto_delete_interval_duration)

    def columns(self) -> dict[str, Any]:
        """The `kojo_job_type` column values of this type."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "worker"}
        values["type_code"] = values.pop("code")
        count, period = rate_limit_parts(self.rate_limit)
        values["rate_limit_count"] = count
        values["rate_limit_seconds"] = period.total_seconds()
        return values

    def is_stored_in(self, row: Mapping[str, Any] | None) -> bool:
        """Whether `row` (of kojo_job_type) holds this definition as registering it would
        write it: every column compared as read back (rows.TypeRow), but `is_enabled`,
        the operator's once the type exists."""
        if row is None:
            return False
        convert = TypeRow.CONVERT
        return all(
            convert[name](value) == convert[name](row[name])
            for name, value in self.columns().items()
            if name != "is_enabled"
        )


def rate_limit_parts(text: str) -> tuple[int, timedelta]:
    """A canonical `rate_limit` ("N/ISO-8601-duration") as (N, period); (0, 0) for none."""
    if not text:
        return 0, timedelta(0)
    count, period = text.split("/", 1)
    return int(count), parse_duration(period)


FIELD_NAMES = tuple(f.name for f in fields(JobType) if f.name not in ("worker", "worker_uri"))


def _bad(name: str, value: object, why: str) -> InvalidJobType:
    return InvalidJobType(f"invalid job type field {name}={value!r}: {why}")


def _int(name: str, value: object, minimum: int = 0) -> int:
    """An integer in [minimum, the int4 maximum]: the columns are PostgreSQL `integer`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name, value, "must be an integer")
    if value < minimum:
        raise _bad(name, value, f"must be >= {minimum}")
    if value > bounds.INT4_MAX:
        raise _bad(name, value, f"must be <= {bounds.INT4_MAX} (a 32-bit integer)")
    return value


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _bad(name, value, "must be true or false")
    return value


def _duration(name: str, value: object) -> str:
    """The canonical text of a duration that dates can be computed with (see bounds)."""
    too_long = f"must be at most {bounds.MAX_DURATION_TEXT} ({bounds.MAX_DURATION.days} days)"
    if isinstance(value, timedelta):
        if value.total_seconds() < 0:
            raise _bad(name, value, "must not be negative")
        if value > bounds.MAX_DURATION:
            raise _bad(name, value, too_long)
        return format_duration(value)
    if not isinstance(value, str):
        raise _bad(name, value, "must be an ISO-8601 duration such as P1D or PT60S")
    try:
        interval = parse_duration(value)
    except DurationTooLong:
        raise _bad(name, value, too_long)
    except ValueError:
        raise _bad(name, value, "must be an ISO-8601 duration such as P1D or PT60S")
    if interval > bounds.MAX_DURATION:
        raise _bad(name, value, too_long)
    return value.strip().upper()


def _cron_expression(expression: object) -> str:
    """A cron expression that is valid and fires at least once from now on."""
    try:
        normalized = cron.normalize(expression)  # type: ignore[arg-type]
    except ValueError:
        raise _bad("cron_expression", expression, "must be 5-field cron or an @macro")
    try:
        cron.next_fire(normalized, utcnow())
    except (ValueError, OverflowError):  # croniter's CroniterBadDateError is a ValueError
        raise _bad("cron_expression", expression, "never fires (no such date)")
    return " ".join(str(expression).split())


def worker_uri_of(worker: Worker) -> str:
    module = getattr(worker, "__module__", None)
    qualname = getattr(worker, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise _bad("worker", worker, "must be a module-level function or callable")
    if module == "__main__":
        module = _main_module_name()
    return f"{module}:{qualname}"


def _main_module_name() -> str:
    """The importable name of the module run as a script (`python app.py` or `python -m
    app`): other processes import workers by name, and "__main__" is theirs, not this one."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:  # python -m package.module
        return str(spec.name).removesuffix(".__main__")
    path = getattr(main, "__file__", None)
    if path and Path(path).suffix == ".py" and Path(path).stem.isidentifier():
        return Path(path).stem  # python app.py: kojo imports `app` from the current folder
    return "__main__"


def import_worker(uri: str) -> Worker:
    """Load "module:callable" (a dotted attribute path after the colon is allowed)."""
    found = load_worker(uri)
    if isinstance(found, str):
        raise _bad("worker", uri, found)
    return found


def load_worker(uri: str) -> Worker | str:
    """The callable "module:callable" names, or why it cannot be had here ("cannot be
    imported (ModuleNotFoundError: ...)", "is not callable", ...)."""
    if not isinstance(uri, str) or uri.count(":") != 1:
        return 'must be "module:callable"'
    module_name, attr_path = uri.split(":")
    allowed = settings.allowed_worker_modules()
    if allowed is not None and not settings.worker_module_allowed(module_name, allowed):
        return f"is outside {settings.WORKER_MODULES_ENV}={','.join(allowed)}"
    try:
        target: Any = importlib.import_module(module_name)
        for attr in attr_path.split("."):
            target = getattr(target, attr)
    except Exception as exc:  # any import-time failure is a bad worker reference
        return f"cannot be imported ({type(exc).__name__}: {exc})"
    if not callable(target):
        return "is not callable"
    # A decorated worker is registered as a JobType holder; unwrap to the function.
    return getattr(target, "__kojo_worker__", target)  # type: ignore[no-any-return]


def define(code: str, worker: Worker | str, **options: Any) -> JobType:
    """Validate every field and build a JobType; InvalidJobType names the bad field and value."""
    unknown = set(options) - set(FIELD_NAMES)
    if unknown:
        first = sorted(unknown)[0]
        raise _bad(first, options[first], "unknown job type field")
    if not isinstance(code, str) or not CODE_PATTERN.match(code):
        raise _bad("code", code, "must match [a-z0-9_.-]{1,255}")
    if isinstance(worker, str):
        worker_uri, worker_fn = worker, import_worker(worker)
    elif callable(worker):
        worker_uri, worker_fn = worker_uri_of(worker), worker
    else:
        raise _bad("worker", worker, 'must be a callable or "module:callable"')

    name: Any = options.get("name")
    if name is None:
        name = code
    if not isinstance(name, str) or not 1 <= len(name) <= 255:
        raise _bad("name", name, "must be a string of 1 to 255 characters")
    options["name"] = name
    # JobType checks every other field (__post_init__).
    return JobType(code=code, worker_uri=worker_uri, worker=worker_fn, **options)


def _checked_fields(job_type: JobType) -> dict[str, Any]:
    """The canonical value of every field of `job_type`; InvalidJobType for a bad one."""
    code = job_type.code
    if not isinstance(code, str) or not CODE_PATTERN.match(code):
        raise _bad("code", code, "must match [a-z0-9_.-]{1,255}")
    uri = job_type.worker_uri
    if not isinstance(uri, str) or uri.count(":") != 1 or not all(uri.split(":")):
        raise _bad("worker", uri, 'must be "module:callable"')
    options = {name: getattr(job_type, name) for name in FIELD_NAMES if name != "code"}
    values: dict[str, Any] = {}
    name: Any = options["name"]
    if name == "" or name is None:  # the default: the code
        name = code
    if not isinstance(name, str) or not 1 <= len(name) <= 255:
        raise _bad("name", name, "must be a string of 1 to 255 characters")
    values["name"] = name

    expression = options["cron_expression"]
    if expression is not None:
        values["cron_expression"] = _cron_expression(expression)

    for key in ("can_work_in_parallel", "is_enabled", "auto_complete_success"):
        values[key] = _bool(key, options[key])
    values["default_importance"] = _int(
        "default_importance", options["default_importance"], bounds.INT4_MIN
    )
    for key in ("schedule_limit", "schedule_limit_allowance", "max_retries", "max_crashes"):
        values[key] = _int(key, options[key])
    for key in ("auto_delete_interval_duration", "catch_up_window"):
        values[key] = _duration(key, options[key])

    timeout = options["timeout"]
    if timeout is not None:
        if isinstance(timeout, timedelta):
            timeout = timeout.total_seconds()
        # `not 0 < t <= max` also refuses NaN, which compares false with everything.
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout <= bounds.MAX_TIMEOUT_SECONDS
        ):
            raise _bad(
                "timeout",
                options["timeout"],
                f"must be a positive number of seconds, at most {bounds.MAX_TIMEOUT_SECONDS} "
                "(365 days)",
            )
        values["timeout"] = float(timeout)

    catch_up = options["catch_up"]
    if catch_up not in CATCH_UP_POLICIES:
        raise _bad("catch_up", catch_up, f"must be one of {', '.join(CATCH_UP_POLICIES)}")

    limit = values["concurrency_limit"] = _int("concurrency_limit", options["concurrency_limit"])
    if limit > MAX_CONCURRENCY_LIMIT:
        raise _bad("concurrency_limit", limit, f"must be at most {MAX_CONCURRENCY_LIMIT}")
    if limit and (expression is not None or values["schedule_limit"]):
        # Their jobs are made and made runnable by paths that do not count the limit.
        raise _bad(
            "concurrency_limit",
            limit,
            "cannot be combined with cron_expression or schedule_limit (not supported yet)",
        )
    values["rate_limit"] = _rate_limit(options["rate_limit"])
    return values


def _rate_limit(value: object) -> str:
    """The canonical "N/DURATION" text of a rate limit, "" for none (None or "")."""
    if value is None or value == "":
        return ""
    shape = 'must be "N/ISO-8601-duration" such as "100/PT1M" (at most N starts per period)'
    if not isinstance(value, str) or value.count("/") != 1:
        raise _bad("rate_limit", value, shape)
    count_text, period_text = (part.strip() for part in value.split("/"))
    digits = count_text.isascii() and count_text.isdigit()
    if not digits or not 1 <= int(count_text) <= MAX_RATE_LIMIT:
        raise _bad("rate_limit", value, f"N must be an integer from 1 to {MAX_RATE_LIMIT}")
    try:
        period = _duration("rate_limit", period_text)
    except InvalidJobType:
        raise _bad("rate_limit", value, shape + f", the period at most {bounds.MAX_DURATION_TEXT}")
    if parse_duration(period) <= timedelta(0):
        raise _bad("rate_limit", value, "the period must be longer than zero")
    return f"{int(count_text)}/{period}"


def load_yaml(path: str | Path) -> list[JobType]:
    """Job types from a YAML file: a list of mappings, or {job_types: [...]}."""
    document = _read_yaml(path)
    if isinstance(document, dict) and "job_types" in document:
        document = document["job_types"]
    if not isinstance(document, list):
        raise InvalidJobType(f"{str(path)!r}: expected a list of job types")
    types: list[JobType] = []
    for entry in document:
        if not isinstance(entry, dict):
            raise InvalidJobType(f"{str(path)!r}: each job type must be a mapping, got {entry!r}")
        options = dict(entry)
        code = options.pop("code", None)
        worker = options.pop("worker", None)
        if worker is None:
            raise _bad("worker", None, f'is required for job type {code!r} ("module:callable")')
        job_type = define(code, worker, **options)
        if any(t.code == job_type.code for t in types):
            raise InvalidJobType(f"{str(path)!r}: job type {job_type.code!r} is defined twice")
        types.append(job_type)
    return types


def _read_yaml(path: str | Path) -> Any:
    """A YAML file's document; InvalidJobType on one line when it cannot be read."""
    import yaml  # only here: a server started without --file never needs it

    where = f"cannot read job types from {str(path)!r}"
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidJobType(f"{where}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InvalidJobType(f"{where}: not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise InvalidJobType(f"{where}: nested too deeply") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InvalidJobType(f"{where}: {exc.problem or exc.context}{at}") from None
    except yaml.YAMLError as exc:
        raise InvalidJobType(f"{where}: {' '.join(str(exc).split())}") from None
