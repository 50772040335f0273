"""The dashboard's pages, JSON twins, actions, token and CSRF checks and /metrics, on both
backends, through Starlette's TestClient (in process; the real server is in
test_dashboard_server.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the dashboard extra is not installed")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx")

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

import kojo
from kojo.clock import utcnow
from kojo.dashboard.metrics import NAMES
from kojo.dashboard.web import COUNTED_AT, create_app, to_json
from kojo.inline import work_inline

TOKEN = "s3cret-token"


def report(job: kojo.Job) -> dict[str, Any]:
    job.progress(0.5, note="half way")
    return {"rows": 3}


def broken(job: kojo.Job) -> None:
    raise RuntimeError("disk full")


def idle(job: kojo.Job) -> None:
    """Never run here."""


@pytest.fixture
def app(database_url: str) -> Iterator[kojo.App]:
    app = kojo.App(database=database_url)
    app.install()
    app.job_type("reports")(report)
    app.job_type("broken", max_retries=0)(broken)
    app.job_type("nightly", cron_expression="@hourly")(idle)
    app.register_job_types()
    yield app
    app.backend.close()


OPENED: list[Any] = []  # the dashboards a test made: their count refreshers stop after it


@pytest.fixture(autouse=True)
def stop_refreshers() -> Iterator[None]:
    yield
    while OPENED:
        OPENED.pop().state.dashboard.counts.close()


def client(app: kojo.App, token: str | None = None, **options: Any) -> TestClient:
    web = create_app(app, token, **options)
    OPENED.append(web)
    return TestClient(web, follow_redirects=False)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert found, "no CSRF field in the page"
    return found.group(1)


# -- pages and their JSON twins -----------------------------------------------------------


def test_every_page_renders_what_the_database_holds(app: kojo.App) -> None:
    done = app.schedule("reports", payload={"month": "2026-11"})
    work_inline(app, done, "test-host")
    failed = app.schedule("broken")
    work_inline(app, failed, "test-host")
    waiting = app.schedule("reports", payload={"month": "2026-12"})
    web = client(app)
    overview = web.get("/")
    assert overview.status_code == 200
    assert "reports" in overview.text and "complete_success" in overview.text
    assert f'href="/jobs/{failed}"' in overview.text  # a recent panic, with its error
    assert "RuntimeError: disk full" in overview.text
    assert "@hourly" in overview.text  # the cron type and its next fire
    jobs = web.get("/jobs")
    assert jobs.status_code == 200
    assert f'href="/jobs/{waiting}"' in jobs.text and "disk full" in jobs.text
    page = web.get(f"/jobs/{done}")
    assert page.status_code == 200
    assert "2026-11" in page.text and "&#34;rows&#34;: 3" in page.text  # payload and result
    assert "half way" in page.text and 'value="0.5"' in page.text  # progress
    assert "RuntimeError: disk full" in web.get(f"/jobs/{failed}").text  # last error
    types = web.get("/types")
    assert types.status_code == 200
    assert "nightly" in types.text and "@hourly" in types.text
    for path in ("/processes", "/locks"):
        assert web.get(path).status_code == 200, path
    assert web.get("/static/kojo.css").status_code == 200


def test_the_json_twins_have_the_keys_of_the_cli(app: kojo.App) -> None:
    first = app.schedule("reports", payload={"n": 1})
    web = client(app)
    stats = web.get("/api/stats").json()
    assert stats == [{"type_code": "reports", "assigned_state": "waiting", "count": 1}]
    [job] = web.get("/api/jobs").json()
    assert set(job) == set(app.jobs()[0]) and job["payload"] == {"n": 1}
    detail = web.get(f"/api/jobs/{first}").json()  # `kojo jobs show --json`
    assert {k: v for k, v in detail.items() if k != "timeline"} == job
    assert [step["transition"] for step in detail["timeline"]] == ["created"]
    types = {t["type_code"]: t for t in web.get("/api/types").json()}
    assert set(types) == {"broken", "nightly", "reports"}
    assert set(types["reports"]) == {*app.backend.type_list()[0], "next_fire"}
    assert types["reports"]["next_fire"] is None
    assert types["nightly"]["next_fire"].endswith(":00:00+00:00")  # @hourly, ISO-8601
    owner = app.owner()  # a registered client process
    with app.mutex("ledger"):
        processes = web.get("/api/processes").json()
        assert [p["kojo_process_id"] for p in processes] == [owner.id]
        assert set(processes[0]) == set(app.process_table()[0])
        [lock] = web.get("/api/locks").json()
        assert lock["name"] == "ledger" and lock["state"] == "held"
        assert set(lock) == set(app.locks()[0])
        assert "ledger" in web.get("/locks").text
        assert "client" in web.get("/processes").text


def test_jobs_are_listed_newest_first_and_paged_back(app: kojo.App) -> None:
    ids = app.schedule_many("reports", [{"n": n} for n in range(5)])
    other = app.schedule("broken")
    web = client(app)
    listed = [j["kojo_job_id"] for j in web.get("/api/jobs").json()]
    assert listed == [other, *reversed(ids)]
    page = web.get("/api/jobs", params={"type": "reports", "limit": 2}).json()
    assert [j["kojo_job_id"] for j in page] == [ids[4], ids[3]]
    page = web.get("/api/jobs", params={"type": "reports", "limit": 2, "before": ids[3]}).json()
    assert [j["kojo_job_id"] for j in page] == [ids[2], ids[1]]
    html = web.get("/jobs", params={"type": "reports", "limit": 2}).text
    assert f"before={ids[3]}" in html  # the link to the older page
    assert web.get("/api/jobs", params={"state": "working"}).json() == []
    assert len(web.get("/api/jobs", params={"state": "waiting"}).json()) == 6


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/api/jobs?state=bogus", 400, "unknown state 'bogus'"),
        ("/api/jobs?limit=0", 400, "limit"),
        ("/api/jobs?limit=1001", 400, "limit"),
        ("/api/jobs?limit=ten", 400, "limit must be an integer"),
        ("/api/jobs?before=-1", 400, "job id"),
        ("/api/jobs/abc", 400, "job id must be an integer"),
        ("/api/jobs/999999", 404, "no job with id 999999"),
        ("/jobs/999999", 404, "no job with id 999999"),
        ("/jobs?state=bogus", 400, "unknown state"),
        ("/api/jobs?q=", 400, "q is empty"),
        ("/api/jobs?q=" + "x" * 201, 400, "'xxxxxxxxxx"),
        ("/jobs?q=" + "y" * 300, 400, "300 characters long: at most 200"),
        ("/api/jobs?q=a%00b", 400, "contains a NUL character"),
        ("/api/nothing", 404, "Not Found: GET /api/nothing"),
        ("/nothing", 404, "Not Found: GET /nothing"),
    ],
)
def test_a_bad_value_is_one_clear_error(app: kojo.App, path: str, status: int, words: str) -> None:
    response = client(app).get(path)
    assert response.status_code == status
    if path.startswith("/api/"):
        assert words in response.json()["error"]
    else:
        assert words in response.text


# -- actions --------------------------------------------------------------------------------


def test_type_actions_change_the_type_with_the_csrf_token(app: kojo.App) -> None:
    web = client(app)
    csrf = csrf_of(web.get("/types").text)
    for action, column, value in [
        ("pause", "is_paused", True),
        ("resume", "is_paused", False),
        ("disable", "is_enabled", False),
        ("enable", "is_enabled", True),
    ]:
        response = web.post(f"/types/reports/{action}", data={"csrf_token": csrf})
        assert response.status_code == 303 and response.headers["location"] == "/types"
        row = app.backend.type_get("reports")
        assert row is not None and row[column] is value, action
    response = web.post("/types/nope/pause", data={"csrf_token": csrf})
    assert response.status_code == 404 and "unknown job type" in response.text
    assert web.post("/types/reports/explode", data={"csrf_token": csrf}).status_code == 404


@pytest.mark.parametrize("form", [{}, {"csrf_token": "0" * 64}, {"csrf_token": ""}])
def test_an_action_without_the_right_csrf_token_is_refused(
    app: kojo.App, form: dict[str, str]
) -> None:
    response = client(app).post("/types/reports/pause", data=form)
    assert response.status_code == 403 and "CSRF" in response.text
    row = app.backend.type_get("reports")
    assert row is not None and row["is_paused"] is False


def test_the_csrf_token_of_another_dashboard_process_is_refused(app: kojo.App) -> None:
    csrf = csrf_of(client(app).get("/types").text)
    response = client(app).post("/types/reports/pause", data={"csrf_token": csrf})
    assert response.status_code == 403


# -- the token ----------------------------------------------------------------------------

PATHS = ["/", "/jobs", "/jobs/1", "/types", "/processes", "/locks", "/static/kojo.css"]
API = ["/api/stats", "/api/jobs", "/api/jobs/1", "/api/types", "/api/processes", "/api/locks"]


def test_with_a_token_every_path_but_metrics_needs_it(app: kojo.App) -> None:
    app.schedule("reports")
    web = client(app, TOKEN)
    csrf = web.app.state.dashboard.guard.csrf()
    for path in PATHS:
        response = web.get(path)
        assert response.status_code == 401, path
        assert "token" in response.text and csrf not in response.text
    for path in API:
        response = web.get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
        assert "token" in response.json()["error"]
    assert web.get("/metrics").status_code == 200
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for path in PATHS + API:
        assert web.get(path, headers=bearer).status_code == 200, path
    for wrong in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer "):
        assert web.get("/api/stats", headers={"Authorization": wrong}).status_code == 401


def test_visiting_with_the_token_sets_a_strict_httponly_cookie(app: kojo.App) -> None:
    app.schedule("reports")
    web = client(app, TOKEN)
    response = web.get("/", params={"token": TOKEN})
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert TOKEN not in cookie  # the cookie is derived from the token, not the token
    for path in PATHS + API:
        assert web.get(path).status_code == 200, path  # the client keeps the cookie
    deep = web.get("/jobs", params={"token": TOKEN, "state": "waiting"})
    assert deep.headers["location"] == "/jobs?state=waiting"  # the token leaves the URL
    elsewhere = web.get(f"http://testserver//attacker.example/?token={TOKEN}")
    assert elsewhere.headers["location"] == "/attacker.example/"  # never off this site
    web.cookies.clear()
    assert web.get("/").status_code == 401
    assert client(app, TOKEN).get("/", params={"token": "wrong"}).status_code == 401
    web.cookies.set("kojo_dashboard", "forged")
    assert web.get("/").status_code == 401


def test_with_a_token_an_action_needs_both_the_token_and_the_csrf_token(app: kojo.App) -> None:
    web = client(app, TOKEN)
    web.get("/", params={"token": TOKEN})
    csrf = csrf_of(web.get("/types").text)
    assert web.post("/types/reports/pause").status_code == 403
    anonymous = client(app, TOKEN)
    assert anonymous.post("/types/reports/pause", data={"csrf_token": csrf}).status_code == 401
    row = app.backend.type_get("reports")
    assert row is not None and row["is_paused"] is False
    assert web.post("/types/reports/pause", data={"csrf_token": csrf}).status_code == 303
    row = app.backend.type_get("reports")
    assert row is not None and row["is_paused"] is True


def test_without_a_token_only_loopback_host_names_are_served(app: kojo.App) -> None:
    web = client(app, allowed_hosts=["127.0.0.1", "localhost", "::1"])
    for host in ("127.0.0.1:8181", "localhost:8181", "[::1]:8181", "localhost"):
        assert web.get("/api/stats", headers={"Host": host}).status_code == 200, host
    response = web.get("/api/stats", headers={"Host": "attacker.example:8181"})
    assert response.status_code == 400 and "Host" in response.json()["error"]


# -- /metrics -------------------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_jobs_by_type_and_state_and_processes_by_host_and_kind(
    app: kojo.App,
) -> None:
    app.schedule_many("reports", [1, 2, 3])
    work_inline(app, app.schedule("broken"), "test-host")
    other = kojo.App(database=app.database_url)
    other.owner()  # a client process, alive
    response = client(app, TOKEN).get("/metrics")  # no token needed
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {family.name for family in text_string_to_metric_families(response.text)}
    assert families == {name.removesuffix("_total") for name in NAMES}  # (the parser's names)
    found = samples(response.text)
    assert found[("kojo_jobs", (("state", "waiting"), ("type", "reports")))] == 3
    assert found[("kojo_jobs", (("state", "working"), ("type", "reports")))] == 0
    ended = [
        v
        for (name, labels), v in found.items()
        if name == "kojo_jobs" and ("type", "broken") in labels and v
    ]
    assert ended == [1]
    assert found[("kojo_jobs", (("state", "panicked"), ("type", "nightly")))] == 0
    processes = {labels: v for (name, labels), v in found.items() if name == "kojo_processes"}
    assert sum(processes.values()) == len(app.process_table()) >= 1
    assert all(dict(labels)["host"] and dict(labels)["kind"] for labels in processes)
    other.backend.close()


def waiting_reports(web: TestClient) -> tuple[int, int, datetime]:
    """The waiting reports jobs as /api/stats and /metrics count them, and when counted."""
    stats = web.get("/api/stats")
    [count] = [r["count"] for r in stats.json() if r["assigned_state"] == "waiting"]
    scraped = samples(web.get("/metrics").text)
    gauge = scraped[("kojo_jobs", (("state", "waiting"), ("type", "reports")))]
    return count, int(gauge), datetime.fromisoformat(stats.headers[COUNTED_AT])


def test_job_counts_are_a_snapshot_shown_with_its_age_until_a_refresh(app: kojo.App) -> None:
    app.schedule("reports")
    web = client(app)
    assert waiting_reports(web)[:2] == (1, 1)
    ago = re.search(r'id="counted"[^>]*>counted (\d+) s ago<', web.get("/").text)
    assert ago and int(ago.group(1)) < 60
    first = waiting_reports(web)[2]
    assert utcnow() - timedelta(minutes=1) < first <= utcnow()
    scraped = samples(web.get("/metrics").text)
    assert scraped[("kojo_jobs_counted_timestamp_seconds", ())] == first.timestamp()
    app.schedule_many("reports", [2, 3])  # not through the dashboard: the snapshot stays
    assert waiting_reports(web) == (1, 1, first)
    web.app.state.dashboard.counts.refresh()  # what the refresher does every few seconds
    count, gauge, second = waiting_reports(web)
    assert (count, gauge) == (3, 3) and second >= first


def test_an_action_through_the_dashboard_shows_in_the_next_counts(app: kojo.App) -> None:
    job_id = app.schedule("reports")
    web = client(app)
    assert web.get("/api/stats").json()[0]["assigned_state"] == "waiting"
    csrf = csrf_of(web.get(f"/jobs/{job_id}").text)
    assert web.post(f"/jobs/{job_id}/cancel", data={"csrf_token": csrf}).status_code == 303
    assert web.get("/api/stats").json() == [
        {"type_code": "reports", "assigned_state": "complete_terminated", "count": 1}
    ]


# -- job and host actions -------------------------------------------------------------------


def test_job_actions_hold_release_cancel_and_retry_a_job(app: kojo.App) -> None:
    job_id = app.schedule("reports")
    web = client(app)
    page = web.get(f"/jobs/{job_id}").text
    assert f'action="/jobs/{job_id}/hold"' in page and f'action="/jobs/{job_id}/cancel"' in page
    assert f'action="/jobs/{job_id}/release"' not in page  # a waiting job is not released
    csrf = csrf_of(page)
    for action, state in [
        ("hold", "hold"),
        ("release", "waiting"),
        ("cancel", "complete_terminated"),
        ("retry", "waiting"),
        ("cancel", "complete_terminated"),
    ]:
        response = web.post(f"/jobs/{job_id}/{action}", data={"csrf_token": csrf})
        assert response.status_code == 303, (action, response.text)
        assert response.headers["location"] == f"/jobs/{job_id}"
        assert app.job(job_id)["assigned_state"] == state, action
    page = web.get(f"/jobs/{job_id}").text
    assert f'action="/jobs/{job_id}/retry"' in page and f"/jobs/{job_id}/hold" not in page
    refused = web.post(f"/jobs/{job_id}/hold", data={"csrf_token": csrf})
    assert refused.status_code == 409 and str(job_id) in refused.text
    assert web.post(f"/jobs/{job_id}/explode", data={"csrf_token": csrf}).status_code == 404
    assert web.post("/jobs/999999/hold", data={"csrf_token": csrf}).status_code == 404
    other = app.schedule("reports")
    assert web.post(f"/jobs/{other}/hold").status_code == 403  # no CSRF token
    assert app.job(other)["assigned_state"] == "waiting"


def test_host_actions_scale_and_drain_a_live_server(app: kojo.App) -> None:
    from foundation_helpers import process_info
    from kojo.control import CHANNEL

    web = client(app)
    csrf = csrf_of(web.get("/types").text)
    missing = web.post("/hosts/test-host/drain", data={"csrf_token": csrf})
    assert missing.status_code == 404 and "no live kojo server" in missing.text
    server = kojo.App(database=app.database_url)
    owner = server.backend.register_owner(process_info("server"))
    try:
        page = web.get("/processes").text
        assert 'action="/hosts/test-host/scale"' in page
        with app.subscribe(CHANNEL) as commands:
            scaled = web.post("/hosts/test-host/scale", data={"csrf_token": csrf, "processes": "3"})
            assert scaled.status_code == 303
            drained = web.post("/hosts/test-host/drain", data={"csrf_token": csrf})
            assert drained.status_code == 303
            received = []
            for message in commands.messages(timeout=10):
                received.append(message)
                if len(received) == 2:
                    break
        assert {"command": "scale", "host": "test-host", "processes": 3} in received
        assert {"command": "drain", "host": "test-host"} in received
        bad = web.post("/hosts/test-host/scale", data={"csrf_token": csrf, "processes": "x"})
        assert bad.status_code == 400 and "processes must be an integer" in bad.text
        assert web.post("/hosts/test-host/drain").status_code == 403
    finally:
        owner.close()
        server.backend.close()


def test_a_job_page_says_why_it_is_not_running_as_jobs_why_does(app: kojo.App) -> None:
    job_id = app.schedule("reports", delay=3600)
    web = client(app)
    diagnosis = app.why(job_id)
    assert diagnosis.line() in web.get(f"/jobs/{job_id}").text.replace("&#39;", "'")
    answer = web.get(f"/api/jobs/{job_id}/why").json()
    expected = json.loads(json.dumps(diagnosis.as_json(), default=to_json))  # as the CLI's
    assert set(answer) == set(expected) and answer["id"] == job_id
    assert answer["state"] == "waiting" and answer["reason"] == expected["reason"]
    assert web.get("/api/jobs/999999/why").status_code == 404


def test_future_cron_jobs_are_listed_only_when_asked(app: kojo.App) -> None:
    from datetime import timedelta

    from foundation_helpers import update_job
    from kojo.clock import utcnow

    app.schedule("reports")
    ahead = utcnow() + timedelta(hours=2)
    cron_job = app.schedule("nightly", at=ahead)
    update_job(app.backend, cron_job, cron_fire_date_time=ahead)
    web = client(app)
    assert [j["type_code"] for j in web.get("/api/jobs").json()] == ["reports"]
    assert len(web.get("/api/jobs", params={"all": "1"}).json()) == 2
    assert "1 cron job(s) made ahead of their minute not shown" in web.get("/jobs").text


def test_a_job_page_shows_its_timeline(app: kojo.App) -> None:
    job_id = app.schedule("broken")
    app.hold(job_id)
    app.release(job_id)
    work_inline(app, job_id, "test-host")
    web = client(app)
    timeline = web.get(f"/api/jobs/{job_id}").json()["timeline"]
    assert [(s["transition"], s["to_state"], s["actor"]) for s in timeline] == [
        ("created", "waiting", "kojo"),
        ("hold", "hold", "operator"),
        ("wait_for_work", "waiting", "operator"),
        ("work", "working", "process"),
        ("panic", "panicked", "process"),
    ]
    page = web.get(f"/jobs/{job_id}").text
    table = page.split('<table id="timeline">')[1].split("</table>")[0]
    rows = table.split("<tr")[2:]  # after the header's
    assert len(rows) == 5
    assert "hold" in rows[1] and "operator" in rows[1]
    assert "RuntimeError: disk full" in rows[4] and "panicked" in rows[4]
    assert 'class="derived"' in rows[0] and 'class="derived"' not in rows[4]  # recorded


def test_jobs_are_found_by_text_in_their_payload_and_paged(app: kojo.App) -> None:
    ids = app.schedule_many("reports", [{"order": f"A-{n}"} for n in range(5)])
    b1 = app.schedule("reports", payload={"order": "B-1"})
    a9 = app.schedule("broken", payload={"order": "A-9"})
    web = client(app)
    found = web.get("/api/jobs", params={"q": "A-", "type": "reports", "limit": 2})
    assert [j["kojo_job_id"] for j in found.json()] == [ids[4], ids[3]]
    assert found.headers["link"] == (
        f'</api/jobs?type=reports&q=A-&limit=2&before={ids[3]}>; rel="next"'
    )
    older = web.get("/api/jobs", params={"q": "A-", "type": "reports", "before": ids[3]})
    assert [j["kojo_job_id"] for j in older.json()] == [ids[2], ids[1], ids[0]]
    assert "link" not in older.headers  # every job looked at
    assert [j["payload"] for j in web.get("/api/jobs", params={"q": "B-"}).json()] == [
        {"order": "B-1"}
    ]
    assert web.get("/api/jobs", params={"q": "no such text"}).json() == []
    page = web.get("/jobs", params={"q": "A-", "limit": 2}).text
    assert 'value="A-"' in page  # the form keeps the search
    assert f'href="/jobs/{a9}"' in page and f'href="/jobs/{b1}"' not in page
    assert f"before={ids[4]}" in page  # the older page keeps the search
    assert "q=A-" in page.split('id="older"')[1]
    assert "No jobs match" in web.get("/jobs", params={"q": "zzz"}).text


def test_a_search_finds_non_ascii_text_and_quoted_keys(app: kojo.App) -> None:
    zurich = app.schedule("reports", payload={"city": "Zürich"})
    other = app.schedule("reports", payload={"town": "Zug"})
    web = client(app)

    def found(text: str) -> list[int]:
        return [j["kojo_job_id"] for j in web.get("/api/jobs", params={"q": text}).json()]

    assert found("Zürich") == [zurich]  # stored as \u00fc on SQLite, as ü on PostgreSQL
    assert found('"city"') == [zurich] and found("Zug") == [other]
    assert found("Z") == [other, zurich]


def test_a_search_scans_a_bounded_window_and_says_where_to_go_on(
    app: kojo.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kojo.app.SEARCH_SCAN", 3)
    match = app.schedule("reports", payload={"needle": 1})
    newer = app.schedule_many("reports", [{"hay": n} for n in range(4)])
    web = client(app)
    first = web.get("/api/jobs", params={"q": "needle"})
    assert first.json() == []  # only the 3 newest were looked at
    assert f"before={newer[1]}" in first.headers["link"]
    html = web.get("/jobs", params={"q": "needle"}).text
    assert "look at older jobs" in html and f"before={newer[1]}" in html
    second = web.get("/api/jobs", params={"q": "needle", "before": newer[1]})
    assert [j["kojo_job_id"] for j in second.json()] == [match]
    assert "link" not in second.headers


# -- finished jobs: /metrics' counters and histograms, the overview's charts ----------------


def test_metrics_serve_finished_totals_and_histograms_from_the_tally(app: kojo.App) -> None:
    for _ in range(2):
        work_inline(app, app.schedule("reports"), "test-host")
    work_inline(app, app.schedule("broken"), "test-host")  # max_retries=0: panicked
    app.cancel(app.schedule("reports"))  # never ran
    found = samples(client(app).get("/metrics").text)

    def value(name: str, **labels: str) -> float:
        return found[(name, tuple(sorted(labels.items())))]

    finished = "kojo_jobs_finished_total"
    assert value(finished, type="reports", outcome="complete_success") == 2
    assert value(finished, type="reports", outcome="complete_terminated") == 1
    assert value(finished, type="broken", outcome="panicked") == 1
    assert value(finished, type="nightly", outcome="panicked") == 0  # a series before any
    assert value("kojo_job_reruns_total", type="reports", outcome="retried") == 0
    for name in ("kojo_job_duration_seconds", "kojo_job_wait_seconds"):
        # The cancelled job never ran: 2 timed attempts of reports, 1 of broken.
        assert value(f"{name}_count", type="reports") == 2
        assert value(f"{name}_bucket", type="reports", le="+Inf") == 2
        assert value(f"{name}_count", type="broken") == 1
        assert value(f"{name}_count", type="nightly") == 0
        cumulative = [
            v
            for (n, labels), v in found.items()
            if n == f"{name}_bucket" and ("type", "reports") in labels
        ]
        assert cumulative == sorted(cumulative)  # buckets only grow with `le`
        assert value(f"{name}_sum", type="reports") >= 0
    # Inline runs take well under a minute: every one falls in the 60 s bucket.
    assert value("kojo_job_duration_seconds_bucket", type="reports", le="60.0") == 2


def test_throughput_json_and_the_overview_charts_show_the_last_hour(app: kojo.App) -> None:
    for _ in range(3):
        work_inline(app, app.schedule("reports"), "test-host")
    work_inline(app, app.schedule("broken"), "test-host")
    web = client(app)
    body = web.get("/api/throughput").json()
    assert body["minutes"] == 60 and len(body["points"]) == 60
    assert sum(p["finished"] for p in body["points"]) == 4
    assert sum(p["failed"] for p in body["points"]) == 1
    now = body["points"][-1]
    assert now["at"].endswith(":00+00:00") and now["finished"] >= 1
    overview = web.get("/").text
    assert overview.count('<svg class="chart') == 2
    assert "Finished: 4" in overview and "Failed, terminated or panicked: 1" in overview
    assert "<script" not in overview.split("<main>")[1]  # charts drawn on the server


# -- purge --------------------------------------------------------------------------------


def finished_and_not(app: kojo.App) -> tuple[list[int], list[int]]:
    """Two finished reports jobs, a panicked broken one, and two unfinished ones."""
    reports = [app.schedule("reports") for _ in range(2)]
    for job_id in reports:
        work_inline(app, job_id, "test-host")
    failed = app.schedule("broken")
    work_inline(app, failed, "test-host")
    held = app.schedule("reports")
    app.hold(held)
    return [*reports, failed], [app.schedule("reports"), held]


def job_ids(app: kojo.App) -> set[int]:
    return {job["kojo_job_id"] for job in app.jobs(limit=1000)}


def test_purge_deletes_the_matching_finished_jobs_only(app: kojo.App) -> None:
    (first, second, failed), unfinished = finished_and_not(app)
    assert app.job(failed)["assigned_state"] == "panicked"  # finished, but not purged
    app.cancel(terminated := app.schedule("broken"))
    web = client(app)
    page = web.get("/jobs").text
    assert 'action="/jobs/purge"' in page and 'data-confirm="delete the finished' in page
    form = {"csrf_token": csrf_of(page), "state": "complete_success", "type": "reports"}
    response = web.post("/jobs/purge", data={**form, "older_than": "P1D"})
    assert response.status_code == 303 and response.headers["location"] == "/jobs?purged=0"
    assert job_ids(app) == {first, second, failed, terminated, *unfinished}
    response = web.post("/jobs/purge", data={**form, "older_than": ""})
    assert response.status_code == 303 and response.headers["location"] == "/jobs?purged=2"
    assert job_ids(app) == {failed, terminated, *unfinished}
    shown = web.get(response.headers["location"]).text
    assert 'id="purged">Deleted 2 finished job(s).' in shown
    response = web.post("/jobs/purge", data={"csrf_token": form["csrf_token"]})
    assert response.headers["location"] == "/jobs?purged=1"  # any finished state, any type
    assert job_ids(app) == {failed, *unfinished}


@pytest.mark.parametrize("form", [{}, {"csrf_token": "0" * 64}])
def test_a_purge_without_the_right_csrf_token_deletes_nothing(
    app: kojo.App, form: dict[str, str]
) -> None:
    finished, unfinished = finished_and_not(app)
    response = client(app).post("/jobs/purge", data=form)
    assert response.status_code == 403 and "CSRF" in response.text
    assert job_ids(app) == {*finished, *unfinished}


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("state", "waiting", "state 'waiting' is not a finished state"),
        ("state", "bogus", "state 'bogus' is not a finished state"),
        ("older_than", "7 days", "not an ISO-8601 duration: '7 days'"),
        ("type", "nope", "unknown job type 'nope'"),
    ],
)
def test_a_purge_with_a_bad_value_is_refused_naming_it(
    app: kojo.App, field: str, value: str, words: str
) -> None:
    finished, unfinished = finished_and_not(app)
    web = client(app)
    csrf = csrf_of(web.get("/jobs").text)
    response = web.post("/jobs/purge", data={"csrf_token": csrf, field: value})
    assert response.status_code == 400
    assert words.replace("'", "&#39;") in response.text
    assert job_ids(app) == {*finished, *unfinished}


def test_with_a_token_a_purge_needs_both_the_token_and_the_csrf_token(app: kojo.App) -> None:
    finished, unfinished = finished_and_not(app)
    web = client(app, TOKEN)
    web.get(f"/?token={TOKEN}")
    csrf = csrf_of(web.get("/jobs").text)
    anonymous = client(app, TOKEN)
    assert anonymous.post("/jobs/purge", data={"csrf_token": csrf}).status_code == 401
    assert job_ids(app) == {*finished, *unfinished}
    response = web.post("/jobs/purge", data={"csrf_token": csrf, "type": "reports"})
    assert response.headers["location"] == "/jobs?purged=2"
    assert job_ids(app) == {finished[2], *unfinished}
