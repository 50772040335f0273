"""The dashboard's web app: server-rendered pages, their JSON twins under /api/, the
actions on types, jobs and hosts and the purge of finished jobs (POST, CSRF-checked) and
/metrics; Starlette routes over queries.py.

The database is read on a small pool of threads of its own: the backend keeps one
connection per thread, so the pool bounds the connections the dashboard holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import states, timeline
from ..app import App
from ..errors import (
    InvalidArgument,
    InvalidTransition,
    JobNotFound,
    KojoError,
    ServerNotFound,
    UnknownJobType,
)
from . import metrics, queries
from .charts import Bar, bar_chart
from .security import COOKIE, CSRF_FIELD, CSRF_HEADER, Guard
from .snapshot import CountSnapshot

log = logging.getLogger("kojo.dashboard")
T = TypeVar("T")
DB_THREADS = 4
TYPE_ACTIONS = ("pause", "resume", "enable", "disable")
JOB_ACTIONS = tuple(queries.JOB_ACTIONS)
HOST_ACTIONS = ("scale", "drain")
FINISHED_STATES = sorted(s.value for s in states.TERMINAL_STATES)  # what purge deletes
RECENT_PANICS = 5  # on the overview, newest first
COUNTED_AT = "X-Kojo-Counted-At"  # /api/stats: when its counts were taken (ISO-8601, UTC)
MAX_FORM = 64 * 1024  # an action's form is a few fields


def to_json(value: Any) -> Any:
    """As `kojo ... --json` writes what JSON has no type for."""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


class KojoJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=to_json).encode()


def when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return "-" if value is None else str(value)


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, default=to_json, ensure_ascii=False)


def first_line(error: str | None) -> str:
    """What a traceback says went wrong: its last non-empty line (`RuntimeError: ...`)."""
    lines = [line for line in (error or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("kojo.dashboard", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = when
    env.filters["pretty"] = pretty
    env.filters["first_line"] = first_line
    env.filters["by"] = timeline.by
    return env


class Dashboard:
    """One dashboard over one App: its routes, templates and secrets."""

    def __init__(self, app: App, guard: Guard, db_threads: int = DB_THREADS) -> None:
        self.app = app
        self.guard = guard
        self.env = templates()
        self.pool = ThreadPoolExecutor(db_threads, thread_name_prefix="kojo-dashboard-db")
        # Jobs per type and state, counted in the background (snapshot.py); the
        # refresher's counts run on the pool like every other read.
        self.counts = CountSnapshot(
            partial(queries.job_counts, app), run=lambda count: self.pool.submit(count).result()
        )
        self.registry = metrics.registry_for(app, self.counts)

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a database read or action on the dashboard's own threads."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, partial(fn, *args))

    # -- rendering --------------------------------------------------------------------

    def page(self, request: Request, name: str, code: int = 200, **context: Any) -> Response:
        # An error page (a 401 included) carries no CSRF token: only pages shown to those
        # allowed in do.
        csrf = self.guard.csrf() if code < 400 else ""
        html = self.env.get_template(name).render(
            request=request, csrf=csrf, csrf_field=CSRF_FIELD, **context
        )
        return HTMLResponse(html, status_code=code)

    def error(self, request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            return KojoJSON({"error": message}, status_code=status)
        return self.page(request, "error.html", status, status=status, message=message)

    async def guarded(
        self, request: Request, action: Callable[[], Awaitable[Response]]
    ) -> Response:
        """Errors as one line: 400 for a bad value, 404 for what is not there, 503 for a
        database that cannot answer."""
        try:
            return await action()
        except (JobNotFound, UnknownJobType, ServerNotFound) as exc:
            return self.error(request, 404, str(exc))
        except InvalidArgument as exc:
            return self.error(request, 400, str(exc))
        except InvalidTransition as exc:
            return self.error(request, 409, str(exc))
        except KojoError as exc:
            return self.error(request, 503, f"{type(exc).__name__}: {exc}")

    # -- pages and their JSON twins ----------------------------------------------------

    async def overview(self, request: Request) -> Response:
        async def show() -> Response:
            counted = await self.db(self.counts.read)
            counts = counted.rows
            if request.url.path.startswith("/api/"):
                return KojoJSON(counts, headers={COUNTED_AT: counted.at.isoformat()})
            hosts = await self.db(queries.process_counts, self.app)
            types = await self.db(queries.job_types, self.app)
            points = (await self.db(queries.throughput, self.app))["points"]
            table = queries.count_table(counts)
            panics: list[dict[str, Any]] = []
            if table.state_totals.get("panicked"):  # else the newest-first walk finds none
                panics, _ = await self.db(
                    queries.jobs_page, self.app, None, "panicked", RECENT_PANICS
                )
            return self.page(
                request,
                "overview.html",
                table=table,
                counted_ago=counted.age_seconds(),
                hosts=hosts,
                cron=[t for t in types if t["cron_expression"]],
                panics=panics,
                charts=throughput_charts(points),
            )

        return await self.guarded(request, show)

    async def throughput(self, request: Request) -> Response:
        async def show() -> Response:
            return KojoJSON(await self.db(queries.throughput, self.app))

        return await self.guarded(request, show)

    async def types(self, request: Request) -> Response:
        async def show() -> Response:
            rows = await self.db(queries.job_types, self.app)
            if request.url.path.startswith("/api/"):
                return KojoJSON(rows)
            return self.page(request, "types.html", types=rows, actions=TYPE_ACTIONS)

        return await self.guarded(request, show)

    async def form(self, request: Request) -> dict[str, str] | Response:
        """The fields of an action's form once its CSRF token is checked, else the 403."""
        # Forms are urlencoded: parsed here, without python-multipart.
        fields = parse_qs((await request.body())[:MAX_FORM].decode("utf-8", "replace"))
        form = {name: values[0] for name, values in fields.items()}
        if not self.guard.allows_csrf(form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)):
            return self.error(request, 403, "missing or wrong CSRF token: reload the page")
        return form

    def logged(self, request: Request, what: str) -> None:
        client = request.client.host if request.client else "?"
        log.info("dashboard: %s (from %s)", what, client)

    async def type_action(self, request: Request) -> Response:
        code = request.path_params["code"]
        action = request.path_params["action"]
        form = await self.form(request)
        if isinstance(form, Response):
            return form
        if action not in TYPE_ACTIONS:
            return self.error(request, 404, f"no action {action!r}: one of {TYPE_ACTIONS}")

        async def act() -> Response:
            if action in ("pause", "resume"):
                await self.db(self.app.set_type_paused, code, action == "pause")
            else:
                await self.db(self.app.set_type_enabled, code, action == "enable")
            self.logged(request, f"{action} job type {code}")
            return RedirectResponse("/types", status_code=303)

        return await self.guarded(request, act)

    async def job_action(self, request: Request) -> Response:
        action = request.path_params["action"]
        form = await self.form(request)
        if isinstance(form, Response):
            return form
        if action not in queries.JOB_ACTIONS:
            return self.error(request, 404, f"no action {action!r}: one of {JOB_ACTIONS}")

        async def act() -> Response:
            job_id = integer(request.path_params["job_id"], "job id", None)
            assert job_id is not None
            row = await self.db(getattr(self.app, action), job_id)
            self.counts.forget()  # the next overview shows the job's new state
            self.logged(request, f"{action} job {job_id}: now {row['assigned_state']}")
            return RedirectResponse(f"/jobs/{job_id}", status_code=303)

        return await self.guarded(request, act)

    async def purge(self, request: Request) -> Response:
        """`kojo jobs purge --yes`: delete the finished jobs of the form's state, type and
        older-than (each optional; App.purge refuses a bad one before deleting anything),
        then back to /jobs saying how many went."""
        form = await self.form(request)
        if isinstance(form, Response):
            return form
        state = form.get("state") or None
        type_code = form.get("type") or None
        older_than = form.get("older_than", "").strip() or None

        async def act() -> Response:
            deleted = await self.db(self.app.purge, state, type_code, older_than)
            self.counts.forget()
            chosen = f"state={state} type={type_code} older_than={older_than}"
            self.logged(request, f"purge finished jobs ({chosen}): {deleted} deleted")
            return RedirectResponse(f"/jobs?purged={deleted}", status_code=303)

        return await self.guarded(request, act)

    async def host_action(self, request: Request) -> Response:
        host = request.path_params["host"]
        action = request.path_params["action"]
        form = await self.form(request)
        if isinstance(form, Response):
            return form

        async def act() -> Response:
            if action == "drain":
                await self.db(self.app.control.drain, host)
                self.logged(request, f"drain host {host}")
            elif action == "scale":
                processes = integer(form.get("processes"), "processes", None)
                if processes is None:
                    raise InvalidArgument("processes: give the number of job processes")
                await self.db(self.app.control.scale, host, processes)
                self.logged(request, f"scale host {host} to {processes} job processes")
            else:
                return self.error(request, 404, f"no action {action!r}: one of {HOST_ACTIONS}")
            return RedirectResponse("/processes", status_code=303)

        return await self.guarded(request, act)

    async def processes(self, request: Request) -> Response:
        async def show() -> Response:
            rows = await self.db(queries.processes, self.app)
            if request.url.path.startswith("/api/"):
                return KojoJSON(rows)
            return self.page(request, "processes.html", hosts=queries.process_trees(rows))

        return await self.guarded(request, show)

    async def locks(self, request: Request) -> Response:
        async def show() -> Response:
            rows = await self.db(queries.locks, self.app)
            if request.url.path.startswith("/api/"):
                return KojoJSON(rows)
            return self.page(request, "locks.html", locks=rows)

        return await self.guarded(request, show)

    async def jobs(self, request: Request) -> Response:
        async def show() -> Response:
            params = request.query_params
            type_code = params.get("type") or None
            state = params.get("state") or None
            limit = integer(params.get("limit"), "limit", queries.DEFAULT_PAGE)
            before = integer(params.get("before"), "before", None)
            future_cron = params.get("all", "") not in ("", "0")
            text = params.get("q")
            if text == "" and request.url.path.startswith("/api/"):
                raise InvalidArgument("q is empty: give some text of the payloads to find")
            next_before: int | None
            if text:  # the page's form sends an empty q when there is nothing to find
                rows, next_before = await self.db(
                    queries.jobs_search, self.app, text, type_code, state, limit, before
                )
                hidden = 0
            else:
                rows, hidden = await self.db(
                    queries.jobs_page, self.app, type_code, state, limit, before, future_cron
                )
                next_before = rows[-1]["kojo_job_id"] if len(rows) == limit else None
            query = {"type": type_code, "state": state, "q": text, "limit": limit}
            query["all"] = future_cron
            older = None
            if next_before is not None:
                query["before"] = next_before
                older = "?" + urlencode({k: v for k, v in query.items() if v})
            if request.url.path.startswith("/api/"):
                response = KojoJSON(rows)
                if older is not None:  # the next page, as GitHub's API pages
                    response.headers["Link"] = f'</api/jobs{older}>; rel="next"'
                return response
            codes = [r["type_code"] for r in await self.db(queries.job_types, self.app)]
            purged = integer(params.get("purged"), "purged", None)
            return self.page(
                request,
                "jobs.html",
                jobs=rows,
                codes=codes,
                states=queries.STATE_ORDER,
                finished_states=FINISHED_STATES,
                purged=purged,
                chosen={
                    "type": type_code or "",
                    "state": state or "",
                    "q": text or "",
                    "limit": limit,
                },
                future_cron=future_cron,
                hidden=hidden,
                older=None if older is None else "/jobs" + older,
            )

        return await self.guarded(request, show)

    async def job(self, request: Request) -> Response:
        async def show() -> Response:
            job_id = integer(request.path_params["job_id"], "job id", None)
            assert job_id is not None
            row = await self.db(queries.job, self.app, job_id)
            if request.url.path.startswith("/api/"):
                return KojoJSON(row)
            why = (await self.db(queries.why, self.app, job_id)).line()
            actions = queries.job_actions(row)
            steps = row.pop("timeline")
            return self.page(request, "job.html", job=row, why=why, actions=actions, timeline=steps)

        return await self.guarded(request, show)

    async def why(self, request: Request) -> Response:
        async def show() -> Response:
            job_id = integer(request.path_params["job_id"], "job id", None)
            assert job_id is not None
            diagnosis = await self.db(queries.why, self.app, job_id)
            return KojoJSON(diagnosis.as_json())  # `kojo jobs why ID --json`

        return await self.guarded(request, show)

    async def metrics(self, request: Request) -> Response:
        try:
            body = await self.db(metrics.scrape, self.registry)
        except KojoError as exc:
            return Response(f"# {type(exc).__name__}: {exc}\n", 503, media_type="text/plain")
        return Response(body, media_type=metrics.CONTENT_TYPE)

    def routes(self) -> list[Route | Mount]:
        pages = [
            ("/", self.overview, "/api/stats"),
            ("/types", self.types, "/api/types"),
            ("/processes", self.processes, "/api/processes"),
            ("/locks", self.locks, "/api/locks"),
            ("/jobs", self.jobs, "/api/jobs"),
            ("/jobs/{job_id}", self.job, "/api/jobs/{job_id}"),
        ]
        routes: list[Route | Mount] = []
        for path, endpoint, api in pages:
            routes += [Route(path, endpoint), Route(api, endpoint)]
        routes += [
            Route("/types/{code}/{action}", self.type_action, methods=["POST"]),
            Route("/jobs/purge", self.purge, methods=["POST"]),
            Route("/jobs/{job_id}/{action}", self.job_action, methods=["POST"]),
            Route("/hosts/{host}/{action}", self.host_action, methods=["POST"]),
            Route("/api/jobs/{job_id}/why", self.why),
            Route("/api/throughput", self.throughput),
            Route("/metrics", self.metrics),
            Mount("/static", StaticFiles(packages=[("kojo.dashboard", "static")]), name="static"),
        ]
        return routes


def throughput_charts(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The overview's two charts (queries.throughput's points) and their totals."""
    charts: dict[str, Any] = {}
    for key in ("finished", "failed"):
        bars = [Bar(p["at"], int(p[key])) for p in points]
        charts[key] = bar_chart(bars, key, f"chart-{key}")
        charts[f"{key}_total"] = sum(bar.value for bar in bars)
    return charts


def integer(text: str | None, what: str, default: int | None) -> int | None:
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise InvalidArgument(f"{what} must be an integer, got {text[:40]!r}")


def host_name(header: str) -> str:
    """The name in a Host header, without its port: `[::1]:8181` → `::1`."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.partition(":")[0]


class AccessControl(BaseHTTPMiddleware):
    """The Host check (no token: only the loopback names, against DNS rebinding) and the
    token check: every path but /metrics needs the bearer header or the cookie; a GET
    with `?token=T` sets the cookie and redirects to the same page without it."""

    def __init__(self, app: Any, dashboard: Dashboard, allowed_hosts: Sequence[str] | None):
        super().__init__(app)
        self.dashboard = dashboard
        self.guard = dashboard.guard
        self.allowed_hosts = allowed_hosts

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if self.allowed_hosts is not None:
            host = host_name(request.headers.get("host", ""))
            if host not in self.allowed_hosts:
                return self.dashboard.error(request, 400, f"unexpected Host header {host!r}")
        if not self.guard.required or request.url.path == "/metrics":
            return await call_next(request)
        given = request.query_params.get("token")
        if given is not None and request.method == "GET":
            if not self.guard.allows_token(given):
                return self.refuse(request)
            rest = urlencode(
                [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            )
            # "/" + the path without its leading slashes: `//evil.example` must not become
            # a redirect to another site.
            path = "/" + request.url.path.lstrip("/")
            response = RedirectResponse(path + ("?" + rest if rest else ""), 303)
            response.set_cookie(
                COOKIE,
                self.guard.session(),
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
            return response
        if self.guard.allows_cookie(request.cookies.get(COOKIE)) or self.guard.allows_bearer(
            request.headers.get("authorization")
        ):
            return await call_next(request)
        return self.refuse(request)

    def refuse(self, request: Request) -> Response:
        response = self.dashboard.error(
            request, 401, "this dashboard needs its token: open /?token=TOKEN once"
        )
        response.headers["WWW-Authenticate"] = "Bearer"
        return response


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def create_app(
    app: App, token: str | None = None, *, allowed_hosts: Sequence[str] | None = None
) -> Starlette:
    """The dashboard of `app` as an ASGI app. With `token`, every path but /metrics needs
    it; `allowed_hosts`: the Host names accepted (None: any)."""
    dashboard = Dashboard(app, Guard(token))
    hosts = None if allowed_hosts is None else [h.lower() for h in allowed_hosts]

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        return dashboard.error(request, status, f"{detail}: {request.method} {request.url.path}")

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        dashboard.counts.close()

    web = Starlette(
        exception_handlers={HTTPException: not_found},
        routes=dashboard.routes(),
        middleware=[Middleware(AccessControl, dashboard=dashboard, allowed_hosts=hosts)],
        lifespan=lifespan,
    )
    web.state.dashboard = dashboard
    return web


def serve(app: App, host: str, port: int, token: str | None) -> None:
    """Serve the dashboard until interrupted (uvicorn)."""
    import uvicorn

    # Without a token the dashboard is for this machine only: Host names other than the
    # loopback ones (a DNS-rebound page) are refused.
    allowed = None if token else [*LOOPBACK_NAMES, host.strip("[]").lower()]
    web = create_app(app, token, allowed_hosts=allowed)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:  # the job counts, before listening: no page waits for the first count
        web.state.dashboard.counts.refresh()
    except KojoError as exc:  # the first page counts instead (or says 503)
        log.warning("counting jobs failed: %s: %s", type(exc).__name__, exc)
    shown = f"[{host}]" if ":" in host else host
    print(f"kojo dashboard on http://{shown}:{port}/", file=sys.stderr, flush=True)
    # uvicorn stops gracefully on SIGTERM or SIGINT, then raises the signal again under
    # the handlers it found: these, so that a stop asked for is a clean exit (status 0).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(web, host=host, port=port, log_level="info", server_header=False)
