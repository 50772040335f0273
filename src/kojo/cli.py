"""The `kojo` command.

A bad argument prints one line and exits 2; a runtime error prints one line
and exits 1 (`--debug` adds the traceback). `--json` prints machine-readable
output whose keys are the table's column names.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from functools import wraps
from typing import Any, NoReturn, TypeVar

import click

from . import bounds, states
from .app import App, check_after, check_concurrency_key, check_unique_key, database_url
from .backends.errors import database_errors
from .clock import utcnow
from .errors import InvalidArgument, InvalidJobType, InvalidPayload, KojoError, ServerNotFound
from .logs import FORMATS
from .search import check_search
from .settings import DEFAULT_SHUTDOWN_TIMEOUT, MAX_PROCESSES, default_max_processes

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    """Options shared by every command, and the App they select."""

    def __init__(self, database: str | None, app_ref: str | None, debug: bool) -> None:
        self.database = database
        self.app_ref = app_ref
        self.debug = debug
        self._app: App | None = None

    def app(self) -> App:
        if self._app is None:
            app = load_app(self.app_ref, self.database)
            # Every command refuses a schema newer than this kojo knows (SchemaTooNew). A
            # database down now is left to the command (`server start` waits for it).
            with database_errors():
                try:
                    app.backend.check_schema()
                except Exception as exc:
                    if not app.backend.is_unavailable(exc):
                        raise
            self._app = app
        return self._app


def load_app(app_ref: str | None, database: str | None) -> App:
    """The App named by --app MODULE:ATTRIBUTE (or KOJO_APP), else a bare App."""
    ref = app_ref or os.environ.get("KOJO_APP")
    if not ref:
        return App(database=database_url(database))
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise click.BadParameter(f"{ref!r}: expected MODULE:ATTRIBUTE", param_hint="--app")
    import_from_current_folder()
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise click.BadParameter(f"cannot load {ref!r}: {exc}", param_hint="--app")
    if not isinstance(target, App):
        raise click.BadParameter(f"{ref!r} is not a kojo.App", param_hint="--app")
    if database or os.environ.get("KOJO_DATABASE_URL"):
        url = database_url(database)
        if url != target.database_url:
            target = rebind(target, url)
    return target


def import_from_current_folder() -> None:
    """Put the current folder first on the import path, as `python -m` does: workers named
    "module:function" (by --app, a YAML file or a stored type) are found where kojo is run
    from, whether it was started as `kojo` or `python -m kojo`."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def rebind(app: App, url: str) -> App:
    """The same job types on another database (--database wins over the app's own)."""
    other = App(database=url)
    for job_type in app.job_types.values():
        other.add_job_type(job_type)
    return other


def fail(message: str, debug: bool = False, code: int = 1) -> NoReturn:
    if debug:
        traceback.print_exc()
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


BAD_VALUES = (InvalidArgument, InvalidJobType, InvalidPayload)


def handle_errors(fn: F) -> F:
    """Errors become one line on stderr: exit 2 for a bad value (an argument, a job type
    of --file or --app, a payload), 1 for a runtime error."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context().find_object(Context)
        debug = bool(ctx and ctx.debug)
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except ServerNotFound as exc:
            fail(str(exc), debug)
        except BAD_VALUES as exc:
            fail(str(exc), debug, code=2)
        except KojoError as exc:
            fail(str(exc), debug)
        except Exception as exc:
            fail(f"{type(exc).__name__}: {exc}", debug)

    return wrapper  # type: ignore[return-value]


def to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


TABLE_WIDTH = 100  # human tables fit a terminal this wide (one column gives way)
MIN_SHRUNK = 8


def emit(
    rows: Sequence[Mapping[str, Any]],
    as_json: bool,
    columns: Sequence[str],
    *,
    headers: Sequence[str] | None = None,
    shrink: str | None = None,
) -> None:
    """Rows as a JSON array (every column) or as an aligned table of the given columns
    (titled `headers`, default their names); when wider than TABLE_WIDTH, the `shrink`
    column's values are cut short."""
    if as_json:
        click.echo(json.dumps(list(rows), default=to_json))
        return
    if not rows:
        click.echo("(none)")
        return
    titles = list(headers or columns)
    table = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(t), *(len(r[i]) for r in table)) for i, t in enumerate(titles)]
    if shrink is not None:
        at = list(columns).index(shrink)
        excess = sum(widths) + 2 * (len(widths) - 1) - TABLE_WIDTH
        if excess > 0:
            widths[at] = max(MIN_SHRUNK, len(titles[at]), widths[at] - excess)
            for r in table:
                r[at] = cut(r[at], widths[at])
    click.echo("  ".join(c.ljust(w) for c, w in zip(titles, widths, strict=True)).rstrip())
    for r in table:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def emit_one(row: Mapping[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(dict(row), default=to_json))
        return
    width = max(len(k) for k in row)
    for key, value in row.items():
        click.echo(f"{key.ljust(width)}  {_cell(value)}")


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def bounded(check: Callable[[Any], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback refusing, as a bad argument (exit 2), a value that `check` refuses
    (the limits of kojo's columns and of dates: kojo.bounds)."""

    def callback(_: click.Context, __: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            check(value)
        except InvalidArgument as exc:
            raise click.BadParameter(str(exc))
        return value

    return callback


job_id_argument = click.argument("job_id", type=int, callback=bounded(bounds.check_job_id))


def kojo_version() -> str:
    """This kojo's version, from the installed package's metadata."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kojo")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def print_version(ctx: click.Context) -> None:
    click.echo(f"kojo {kojo_version()}")
    ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, _, value: print_version(ctx) if value else None,
    help="Print `kojo X.Y.Z` and exit.",
)
@click.option("--database", envvar="KOJO_DATABASE_URL", help="Database URL (KOJO_DATABASE_URL).")
@click.option("--app", "app_ref", envvar="KOJO_APP", help="MODULE:ATTRIBUTE of a kojo.App.")
@click.option("--debug", is_flag=True, help="Print tracebacks of errors.")
@click.pass_context
def cli(ctx: click.Context, database: str | None, app_ref: str | None, debug: bool) -> None:
    """kojo: a distributed task manager (jobs, locks, cron, processes, IPC)."""
    import_from_current_folder()
    ctx.obj = Context(database, app_ref, debug)


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: usage errors are one line and exit 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        click.echo(cli.get_help(click.Context(cli, info_name="kojo")))
        sys.exit(0)
    try:
        cli.main(args=args, prog_name="kojo", standalone_mode=False)
    except click.UsageError as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(1)
    sys.exit(0)


def shared_options(fn: F) -> F:
    """--database/--app accepted after the sub-command too (`kojo jobs list --database X`)."""

    def set_database(ctx: click.Context, _: click.Parameter, value: str | None) -> None:
        if value:
            ctx.ensure_object(Context).database = value

    def set_app(ctx: click.Context, _: click.Parameter, value: str | None) -> None:
        if value:
            ctx.ensure_object(Context).app_ref = value

    fn = click.option(
        "--database", expose_value=False, callback=set_database, help="Database URL."
    )(fn)
    fn = click.option(
        "--app", expose_value=False, callback=set_app, help="MODULE:ATTRIBUTE of a kojo.App."
    )(fn)
    return fn


pass_context = click.make_pass_decorator(Context, ensure=True)


# -- db ---------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Create, upgrade or drop kojo's tables."""


@db.command("install")
@shared_options
@pass_context
@handle_errors
def db_install(ctx: Context) -> None:
    """Create or upgrade the schema (idempotent)."""
    version = ctx.app().install()
    click.echo(f"kojo is installed (schema version {version}).")


@db.command("uninstall")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@shared_options
@pass_context
@handle_errors
def db_uninstall(ctx: Context, yes: bool) -> None:
    """Drop kojo's tables and everything in them."""
    if not yes:
        answer = click.prompt(
            "This deletes every kojo table and job. Type 'delete' to confirm",
            default="",
            show_default=False,
        )
        if answer.strip() != "delete":
            fail("kojo was not uninstalled.")
    ctx.app().uninstall()
    click.echo("kojo was uninstalled.")


# -- types -----------------------------------------------------------------------------


@cli.group()
def types() -> None:
    """Job types."""


TYPE_COLUMNS = (
    "type_code",
    "cron_expression",
    "next_fire",
    "is_enabled",
    "is_paused",
    "can_work_in_parallel",
    "schedule_limit",
    "worker_uri",
)


@types.command("list")
@json_option
@shared_options
@pass_context
@handle_errors
def types_list(ctx: Context, as_json: bool) -> None:
    """Job types stored in the database, with each cron type's next fire time."""
    from .cron import next_fire_of_stored

    rows = ctx.app().backend.type_list()
    now = utcnow()
    for row in rows:
        row["next_fire"] = next_fire_of_stored(row.get("cron_expression"), now)
    emit(rows, as_json, TYPE_COLUMNS)


@types.command("register")
@click.option("--file", "path", type=click.Path(dir_okay=False), help="A YAML file of job types.")
@shared_options
@pass_context
@handle_errors
def types_register(ctx: Context, path: str | None) -> None:
    """Store the app's job types (or a YAML file's) in the database."""
    app = ctx.app()
    codes: Iterable[str] | None = None
    if path:
        codes = [t.code for t in app.load_job_types(path)]
    elif not app.job_types:
        raise InvalidJobType("no job types to register: give --app MODULE:ATTR or --file FILE")
    stored = app.register_job_types(codes)
    click.echo(f"registered {len(stored)} job type(s): {', '.join(stored)}")


@types.command("enable")
@click.argument("code")
@shared_options
@pass_context
@handle_errors
def types_enable(ctx: Context, code: str) -> None:
    """Let new jobs of CODE be made again."""
    ctx.app().set_type_enabled(code, True)
    click.echo(f"job type {code} enabled")


@types.command("disable")
@click.argument("code")
@shared_options
@pass_context
@handle_errors
def types_disable(ctx: Context, code: str) -> None:
    """No new jobs of CODE (cron skips it, scheduling is refused); existing jobs still run."""
    ctx.app().set_type_enabled(code, False)
    click.echo(f"job type {code} disabled")


# -- jobs ------------------------------------------------------------------------------


@cli.group()
def jobs() -> None:
    """Jobs."""


# `jobs list` in words an operator knows: the state with what a waiting job waits for.
JOB_COLUMNS = (
    "kojo_job_id",
    "type_code",
    "status",
    "priority",
    "work_at_date_time",
    "times_worked",
    "times_retried",
    "times_crashed",
)
JOB_HEADERS = ("id", "type", "state", "priority", "run_at (UTC)", "worked", "retried", "crashed")
WAITING_FOR = {
    "schedule_limit_check": "waiting: limit check",
    "after": "waiting: parents",
    "limit": "waiting: concurrency",
}


def status(row: Mapping[str, Any]) -> str:
    """A job's state in one word or two: `waiting: parents`, `crashed: re-run`."""
    state, request = row["assigned_state"], row["next_state_request"]
    if state == "waiting":
        return WAITING_FOR.get(request, "waiting")
    if state == "crashed" and request == "working":
        return "crashed: re-run"
    return str(state)


def parse_at(_: click.Context, __: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO-8601 date-time")
    try:
        return bounds.check_at(parsed)  # within the dates Python holds once in UTC
    except InvalidArgument as exc:
        raise click.BadParameter(str(exc))


def parse_payload(_: click.Context, __: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"{shorten(value)!r} is not JSON ({exc})")
    except RecursionError:
        raise click.BadParameter(f"{shorten(value)!r} is nested too deeply") from None


def shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@jobs.command("schedule")
@click.argument("code")
@click.option("--at", callback=parse_at, help="When to run it (ISO-8601, UTC if no offset).")
@click.option(
    "--delay",
    type=float,
    callback=bounded(lambda delay: bounds.check_delay(utcnow(), delay)),
    help="Run it after this many seconds.",
)
@click.option("--payload", callback=parse_payload, help="A JSON value given to the worker.")
@click.option(
    "--importance",
    type=int,
    callback=bounded(bounds.check_importance),
    help="Overrides the type's default_importance (a 32-bit integer).",
)
@click.option(
    "--unique-key",
    callback=bounded(check_unique_key),
    help="Create nothing if an unfinished job of this type has this key (prints its id).",
)
@click.option(
    "--after",
    "after",
    multiple=True,
    type=int,
    callback=bounded(check_after),
    help="Start only once this job is complete_success (repeatable).",
)
@click.option(
    "--concurrency-key",
    callback=bounded(check_concurrency_key),
    help="Counted under this key by the type's concurrency_limit.",
)
@json_option
@shared_options
@pass_context
@handle_errors
def jobs_schedule(
    ctx: Context,
    code: str,
    at: datetime | None,
    delay: float | None,
    payload: Any,
    importance: int | None,
    unique_key: str | None,
    after: tuple[int, ...],
    concurrency_key: str | None,
    as_json: bool,
) -> None:
    """Create a job of type CODE; prints its id."""
    if at is not None and delay is not None:
        raise click.UsageError("give --at or --delay, not both")
    try:
        options: dict[str, Any] = {
            "payload": payload,
            "at": at,
            "delay": delay,
            "importance": importance,
            "after": after,
            "concurrency_key": concurrency_key,
        }
        if unique_key is None:
            job_id, created = ctx.app().schedule(code, **options), True
        else:
            job_id, created = ctx.app().schedule_unique(code, unique_key, **options)
    except InvalidArgument as exc:  # the options were checked above; this is a backstop
        raise click.UsageError(str(exc))
    if as_json:
        click.echo(
            json.dumps({"id": job_id} if unique_key is None else {"id": job_id, "created": created})
        )
        return
    click.echo(str(job_id))
    if not created:
        click.echo(f"job {job_id} has unique key {unique_key!r} and is unfinished: kept", err=True)


@jobs.command("list")
@click.option("--type", "type_code", help="Only jobs of this type.")
@click.option(
    "--state",
    type=click.Choice(sorted(s.value for s in states.State)),
    help="Only jobs in this state.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1, max=bounds.INT8_MAX),
    default=50,
    show_default=True,
    help="At most this many jobs.",
)
@click.option(
    "--before",
    type=int,
    callback=bounded(bounds.check_job_id),
    help="Only jobs with a lower id: the next page (the footer says which id).",
)
@click.option(
    "--all",
    "future_cron",
    is_flag=True,
    help="Also cron jobs made ahead of their minute (hidden by default).",
)
@click.option(
    "--search",
    callback=bounded(check_search),
    help="Only jobs whose payload's JSON text contains this (case-sensitive). A scan of "
    "the newest jobs: a page may be short while older jobs remain (the footer says).",
)
@json_option
@shared_options
@pass_context
@handle_errors
def jobs_list(
    ctx: Context,
    type_code: str | None,
    state: str | None,
    limit: int,
    before: int | None,
    future_cron: bool,
    search: str | None,
    as_json: bool,
) -> None:
    """Jobs, newest first (highest id first), --limit at a time; --before ID pages back.

    Cron jobs that kojo makes a few minutes ahead of their minute (waiting, not yet due)
    are left out unless --all; the table's footer says how many. The table's state column
    says what a waiting job waits for (`waiting: parents`, `waiting: concurrency`,
    `waiting: limit check`); `kojo jobs why ID` says more. --json prints every column
    of each job (the keys of `jobs show --json` but its timeline), newest first too.

    --search TEXT keeps the jobs whose payload's JSON text contains TEXT, future cron
    jobs included; it scans at most 20,000 jobs per call, newest first, so a page can
    be short, even empty, and still end with `more: --before ID`."""
    if search is not None:
        rows, older = ctx.app().job_search(search, type_code, state, limit, before=before)
        hidden = 0
    else:
        rows, hidden = ctx.app().job_page(
            type_code, state, limit, before=before, future_cron=future_cron
        )
        older = rows[-1]["kojo_job_id"] if len(rows) == limit else None
    if as_json:
        emit(rows, True, ())
        return
    emit(
        [{**row, "status": status(row)} for row in rows],
        False,
        JOB_COLUMNS,
        headers=JOB_HEADERS,
        shrink="type_code",
    )
    if older is not None:
        click.echo(f"more: --before {older}")
    if hidden:
        click.echo(f"{hidden} future cron job(s) not shown; --all shows them")


@jobs.command("show")
@job_id_argument
@json_option
@shared_options
@pass_context
@handle_errors
def jobs_show(ctx: Context, job_id: int, as_json: bool) -> None:
    """Every field of one job, then its timeline: its transitions, oldest first, each with
    who made it (`process ID PATH`, `operator`, `crash`, `dependency`, `maintenance`,
    `kojo`) and a note (an error's last line, `retry 2 of 5`). --json: the fields and
    `timeline`, a list of objects."""
    from .timeline import lines as timeline_lines

    detail = ctx.app().job_detail(job_id)
    if as_json:
        emit_one(detail, True)
        return
    steps = detail.pop("timeline")
    emit_one(detail, False)
    click.echo("timeline:")
    for line in timeline_lines(steps):
        click.echo(f"  {line}")


def _operator_action(name: str, doc: str) -> None:
    @jobs.command(name, help=doc)
    @job_id_argument
    @json_option
    @shared_options
    @pass_context
    @handle_errors
    def action(ctx: Context, job_id: int, as_json: bool) -> None:
        row = getattr(ctx.app(), name)(job_id)
        if as_json:
            click.echo(json.dumps(row, default=to_json))
        else:
            click.echo(f"job {job_id}: {row['assigned_state']}/{row['next_state_request']}")


_operator_action("hold", "Park a waiting or working job until it is released.")
_operator_action("release", "Put a held, panicked or crashed job back to waiting.")
_operator_action("cancel", "Terminate a job (complete_terminated), stopping it if it runs.")


# -- operator commands: jobs why, retry, purge; stats ------------------------------------


@jobs.command("why")
@job_id_argument
@json_option
@shared_options
@pass_context
@handle_errors
def jobs_why(ctx: Context, job_id: int, as_json: bool) -> None:
    """One line: why job ID is not running now.

    Reasons, in the order they are looked for: finished (how it ended), panicked,
    working but waiting for a lock, working (where), on hold; then for a waiting or
    crashed job: waiting for its time, for the jobs it was scheduled after, for the
    schedule-limit check, for a place under its concurrency limit, type paused, serial
    type busy, rate limit reached, no live server, no free job process, crashed awaiting
    re-run. The first
    is the reason; others that apply follow after "also:". Else "nothing stops it".

    --json: {"id", "state", "next_state_request", "reason", "message", "detail": {...},
    "also": [{"reason", "message", "detail"}, ...]}; "reason" is a stable code
    (finished, panicked, lock_wait, working, on_hold, waiting_for_time,
    dependency_pending, schedule_limit_check, schedule_limit_full, concurrency_limit,
    type_paused, serial_type_busy, rate_limit, no_live_server, no_job_process,
    job_processes_busy,
    crashed, runnable), "message" the line's text."""
    diagnosis = ctx.app().why(job_id)
    if as_json:
        click.echo(json.dumps(diagnosis.as_json(), default=to_json))
    else:
        click.echo(diagnosis.line())


@jobs.command("retry")
@job_id_argument
@json_option
@shared_options
@pass_context
@handle_errors
def jobs_retry(ctx: Context, job_id: int, as_json: bool) -> None:
    """Put a panicked, crashed, complete_failed or complete_terminated job back to waiting,
    to run now (any other state: exit 1)."""
    before = ctx.app().job(job_id)["assigned_state"]
    row = ctx.app().retry(job_id)
    if as_json:
        click.echo(json.dumps(row, default=to_json))
    else:
        click.echo(f"job {job_id}: {status(row)} (was {before})")


FINISHED_STATES = sorted(s.value for s in states.TERMINAL_STATES)


def parse_duration_option(_: click.Context, __: click.Parameter, value: str | None) -> str | None:
    from .durations import parse_duration

    if value is None:
        return None
    try:
        parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc).replace(value, shorten(value)))
    return value


def finished_state(_: click.Context, __: click.Parameter, value: str | None) -> str | None:
    if value is not None and value not in FINISHED_STATES:
        raise click.BadParameter(
            f"{shorten(value)!r} is not a finished state: one of {', '.join(FINISHED_STATES)}"
        )
    return value


@jobs.command("purge")
@click.option("--state", callback=finished_state, help="Only jobs that ended in this state.")
@click.option("--type", "type_code", help="Only jobs of this type.")
@click.option(
    "--older-than",
    callback=parse_duration_option,
    metavar="DURATION",
    help="Only jobs that ended longer ago than this ISO-8601 duration (P7D, PT12H).",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@shared_options
@pass_context
@handle_errors
def jobs_purge(
    ctx: Context, state: str | None, type_code: str | None, older_than: str | None, yes: bool
) -> None:
    """Delete finished jobs (complete_success, complete_failed,
    complete_failed_schedule_limit_check, complete_terminated) now, instead of waiting
    for their type's auto_delete_interval_duration. Asks first unless --yes; prints how
    many were deleted. Jobs in any other state are never deleted."""
    app = ctx.app()
    if not yes:
        count = app.purge(state, type_code, older_than, count_only=True)
        if count == 0:
            click.echo("no finished jobs match: nothing to delete")
            return
        try:
            click.confirm(f"Delete {count} finished job(s)?", abort=True)
        except click.Abort:
            click.echo()  # end the question's line
            fail(f"nothing was deleted ({count} job(s) match; --yes skips the question)")
    deleted = app.purge(state, type_code, older_than)
    click.echo(f"deleted {deleted} finished job(s)")


# Short names of the states, as `kojo stats` titles its columns, in the life of a job.
STATE_TITLES = {
    "new": "new",
    "waiting": "waiting",
    "working": "working",
    "hold": "hold",
    "crashed": "crashed",
    "panicked": "panicked",
    "complete_success": "success",
    "complete_failed": "failed",
    "complete_failed_schedule_limit_check": "refused",
    "complete_terminated": "terminated",
}


@cli.command("stats")
@json_option
@shared_options
@pass_context
@handle_errors
def stats(ctx: Context, as_json: bool) -> None:
    """Jobs per type and state: a row per job type, a column per state that has jobs.

    Columns success, failed, refused and terminated are complete_success,
    complete_failed, complete_failed_schedule_limit_check and complete_terminated.
    --json: an array of {"type_code", "assigned_state", "count"}, one per type and state
    that has jobs."""
    app = ctx.app()
    counts = app.stats()
    if as_json:
        click.echo(json.dumps(counts))
        return
    codes = sorted(
        {str(t["type_code"]) for t in app.backend.type_list()}
        | {str(c["type_code"]) for c in counts}
    )
    present = {str(c["assigned_state"]) for c in counts}
    shown = [s for s in STATE_TITLES if s in present]
    shown += sorted(present - set(STATE_TITLES))  # a state this kojo does not know
    by_type: dict[str, dict[str, Any]] = {code: {"type_code": code, "total": 0} for code in codes}
    totals: dict[str, Any] = {"type_code": "(all)", "total": 0}
    for c in counts:
        row = by_type[str(c["type_code"])]
        row[str(c["assigned_state"])] = c["count"]
        row["total"] += c["count"]
        totals[str(c["assigned_state"])] = totals.get(str(c["assigned_state"]), 0) + c["count"]
        totals["total"] += c["count"]
    rows = list(by_type.values()) + ([totals] if len(codes) > 1 else [])
    emit(
        rows,
        False,
        ["type_code", *shown, "total"],
        headers=["type", *(STATE_TITLES.get(s, s) for s in shown), "total"],
        shrink="type_code",
    )


# -- processes --------------------------------------------------------------------------


@cli.group()
def server() -> None:
    """This host's process tree."""


def default_host_name() -> str:
    from .settings import host_name

    return host_name()


@server.command("start")
@click.option(
    "--max-processes",
    type=click.IntRange(min=0, max=MAX_PROCESSES),
    default=lambda: default_max_processes(),
    show_default="number of CPUs",
    help="Job processes to keep running.",
)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    default=DEFAULT_SHUTDOWN_TIMEOUT,
    show_default=True,
    help="Seconds running jobs get to finish on SIGTERM.",
)
@click.option(
    "--host-name",
    default=default_host_name,
    show_default="KOJO_HOST_NAME or the machine's host name",
    help="This server's identity in the cluster.",
)
@click.option("--file", "path", type=click.Path(dir_okay=False), help="A YAML file of job types.")
@click.option(
    "--log-format",
    type=click.Choice(FORMATS, case_sensitive=False),
    help="text: one line a message for people (local time, level, process, job, message, "
    "context; tracebacks indented below; coloured on a terminal unless NO_COLOR is set). "
    "json: one JSON object a line for log collectors. pretty: the same JSON, indented. "
    "Default: KOJO_LOG_FORMAT, else text when stdout is a terminal and json when not.",
)
@shared_options
@pass_context
@handle_errors
def server_start(
    ctx: Context,
    max_processes: int,
    shutdown_timeout: float,
    host_name: str,
    path: str | None,
    log_format: str | None,
) -> None:
    """Run this host's server → root → job process tree in the foreground, logging to
    stdout (see --log-format)."""
    from . import logs
    from .processes.server import Server
    from .settings import Settings, use_host_name

    if not host_name.strip():
        raise click.BadParameter("must not be empty", param_hint="--host-name")
    # Every bad setting stops the start in one line instead of failing in every root.
    settings = Settings.parse(
        host_name=host_name,
        max_processes=max_processes,
        shutdown_timeout=shutdown_timeout,
        log_format=log_format,
    )
    logs.configure(settings.log_format, settings.log_level)
    use_host_name(settings.host_name)  # for lock and subscriber clients in jobs too
    app = ctx.app()
    if path:
        app.load_job_types(path)
    settings = dataclasses.replace(settings, database_url=app.database_url)
    sys.exit(Server(app, settings).run())


@cli.command("work")
@job_id_argument
@click.option("--inline", is_flag=True, required=True, help="Run in this process (no fork).")
@click.option("--file", "path", type=click.Path(dir_okay=False), help="A YAML file of job types.")
@shared_options
@pass_context
@handle_errors
def work(ctx: Context, job_id: int, inline: bool, path: str | None) -> None:
    """Claim and run one job in this process: for debuggers. Exits 0 when the job ends
    complete_success, else 1."""
    from . import logs
    from .inline import work_inline

    logs.configure()
    app = ctx.app()
    if path:
        app.load_job_types(path)
    row = work_inline(app, job_id, default_host_name())
    click.echo(inline_outcome(row), err=True)
    if row["assigned_state"] != states.State.COMPLETE_SUCCESS.value:
        sys.exit(1)  # a script (or CI) running one job learns that it did not succeed


def inline_outcome(row: Mapping[str, Any]) -> str:
    """How `kojo work --inline` ended, in one line, with the next step when it failed."""
    job_id, state = row["kojo_job_id"], row["assigned_state"]
    if state == states.State.COMPLETE_SUCCESS.value:
        return f"job {job_id}: {state}"
    error = str(row.get("last_error") or "").strip().splitlines()
    why = f" ({shorten(error[-1], 200)})" if error else ""
    if state == states.State.WAITING.value:
        return f"job {job_id}: waiting{why}; it will be retried (kojo jobs show {job_id})"
    return f"job {job_id}: {state}{why}; see kojo jobs show {job_id}"


PS_COLUMNS = ("host_name", "process_id", "kind", "path", "jobs", "started_at_date_time")


@cli.command("ps")
@json_option
@shared_options
@pass_context
@handle_errors
def ps(ctx: Context, as_json: bool) -> None:
    """Every live kojo process in the cluster: host, pid, path, current jobs."""
    app = ctx.app()
    emit(app.process_table(), as_json, PS_COLUMNS)


# -- IPC: publish/subscribe and cluster control (docs/ipc.md) ----------------------------


@cli.command("publish")
@click.argument("channel")
@click.argument("message", metavar="JSON", callback=parse_payload)
@json_option
@shared_options
@pass_context
@handle_errors
def publish(ctx: Context, channel: str, message: Any, as_json: bool) -> None:
    """Send a JSON message to every subscriber of CHANNEL; prints its id."""
    from .ipc import check_channel, encode_message

    try:
        check_channel(channel)
    except KojoError as exc:
        raise click.BadParameter(str(exc), param_hint="CHANNEL")
    try:
        encode_message(message)
    except KojoError as exc:
        raise click.BadParameter(str(exc), param_hint="JSON")
    message_id = ctx.app().publish(channel, message)
    click.echo(json.dumps({"id": message_id}) if as_json else str(message_id))


@cli.command("listen")
@click.argument("channel")
@click.option(
    "--timeout", type=click.FloatRange(min=0), help="Stop after this many seconds without one."
)
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many messages.")
@shared_options
@pass_context
@handle_errors
def listen(ctx: Context, channel: str, timeout: float | None, count: int | None) -> None:
    """Print each message published on CHANNEL from now on, one JSON line each."""
    from .ipc import MAX_TIMEOUT, check_channel

    try:
        check_channel(channel)
    except KojoError as exc:
        raise click.BadParameter(str(exc), param_hint="CHANNEL")
    if timeout is not None:
        try:
            timeout = bounds.check_seconds("timeout", timeout, MAX_TIMEOUT)
        except KojoError as exc:
            raise click.BadParameter(str(exc), param_hint="--timeout")
    received = 0
    with ctx.app().subscribe(channel) as subscription:
        click.echo(f"listening on {channel!r}", err=True)  # scripts may wait for this line
        try:
            for message in subscription.messages(timeout=timeout):
                click.echo(json.dumps(message, ensure_ascii=False))
                received += 1
                if count is not None and received >= count:
                    break
        except KeyboardInterrupt:
            pass


@cli.group()
def ctl() -> None:
    """Cluster control: ping, pause/resume a job type, scale or drain a host's server."""


CTL_PING_COLUMNS = (
    "host_name",
    "process_id",
    "job_processes",
    "running_jobs",
    "started_at_date_time",
)


@ctl.command("ping")
@json_option
@shared_options
@pass_context
@handle_errors
def ctl_ping(ctx: Context, as_json: bool) -> None:
    """Every live server: host, pid, job processes, running jobs (from the database)."""
    servers = ctx.app().control.ping()
    if as_json:
        emit(servers, True, ())
        return
    rows = [
        {
            **s,
            "job_processes": len(s["job_processes"]),
            "running_jobs": ",".join(str(j["kojo_job_id"]) for j in s["running_jobs"]) or None,
        }
        for s in servers
    ]
    emit(rows, False, CTL_PING_COLUMNS)


@ctl.command("pause")
@click.argument("code")
@shared_options
@pass_context
@handle_errors
def ctl_pause(ctx: Context, code: str) -> None:
    """No new claims of CODE anywhere in the cluster (persisted) until resume."""
    ctx.app().control.pause(code)
    click.echo(f"job type {code} paused")


@ctl.command("resume")
@click.argument("code")
@shared_options
@pass_context
@handle_errors
def ctl_resume(ctx: Context, code: str) -> None:
    """Claim jobs of CODE again."""
    ctx.app().control.resume(code)
    click.echo(f"job type {code} resumed")


@ctl.command("scale")
@click.argument("host")
@click.argument("processes", metavar="N", type=click.IntRange(min=0, max=MAX_PROCESSES))
@shared_options
@pass_context
@handle_errors
def ctl_scale(ctx: Context, host: str, processes: int) -> None:
    """Ask the server of HOST to run N job processes."""
    ctx.app().control.scale(host, processes)
    click.echo(f"asked {host} to run {processes} job process(es)")


@ctl.command("drain")
@click.argument("host")
@shared_options
@pass_context
@handle_errors
def ctl_drain(ctx: Context, host: str) -> None:
    """Ask the server of HOST to stop gracefully (running jobs finish first)."""
    ctx.app().control.drain(host)
    click.echo(f"asked {host} to drain")


# -- locks (docs/locks.md) -----------------------------------------------------------------

LOCK_COLUMNS = ("state", "name", "slot", "token", "host_name", "process_id", "kojo_job_id", "since")


@cli.command("locks")
@json_option
@shared_options
@pass_context
@handle_errors
def locks(ctx: Context, as_json: bool) -> None:
    """Held mutex and semaphore slots (name, slot, token, holder, since), then waiters."""
    rows = ctx.app().locks()
    if not as_json:
        rows = [{**r, "since": r["acquired_at_date_time"] or r["since_date_time"]} for r in rows]
    emit(rows, as_json, LOCK_COLUMNS)


# -- dashboard (docs/dashboard.md) ---------------------------------------------------------


@cli.command("dashboard")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(min=1, max=65535), default=8181, show_default=True)
@click.option(
    "--token",
    envvar="KOJO_DASHBOARD_TOKEN",
    help="Needed by every page and API call (KOJO_DASHBOARD_TOKEN, better than the "
    "command line, which other users may see); required off loopback.",
)
@shared_options
@pass_context
@handle_errors
def dashboard(ctx: Context, host: str, port: int, token: str | None) -> None:
    """Serve the web dashboard and /metrics over this database."""
    from .dashboard import missing_requirements

    missing = missing_requirements()
    if missing:
        fail(f"kojo dashboard needs {', '.join(missing)}: pip install 'kojo[dashboard]'", code=2)
    from .dashboard.security import check_bind, check_token

    token = check_token(token)
    check_bind(host, token)
    from .dashboard.web import serve

    serve(ctx.app(), host, port, token)


if __name__ == "__main__":  # pragma: no cover
    main()
