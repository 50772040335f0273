"""The dashboard in a real browser (Debian's Chromium, driven by Selenium), on both
backends: log in with the token, open every page, follow the links, pause a type, hold
a job and purge finished jobs through their confirmed forms and see each in the database;
a browser without the token is refused. The SQLite run keeps a screenshot of each page in
docs/images/.

Skipped, saying why, where Selenium, Chromium or its driver is missing
(`apt-get install chromium chromium-driver`, `pip install selenium`).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import kojo
from dashboard_server import dashboard
from kojo.inline import work_inline

pytest.importorskip("starlette", reason="the dashboard extra is not installed")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
TOKEN = "browser-test-token"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)


def found(names: tuple[str, ...]) -> str | None:
    return next((path for name in names if (path := shutil.which(name))), None)


def report(job: kojo.Job) -> dict[str, Any]:
    job.progress(1.0, note="sent 3 reports")
    return {"sent": 3}


def broken(job: kojo.Job) -> None:
    raise RuntimeError("SMTP server refused the connection")


def idle(job: kojo.Job) -> None:
    """Never run here."""


@pytest.fixture
def browser() -> Iterator[Any]:
    binary, driver = found(BROWSERS), found(DRIVERS)
    if binary is None or driver is None:
        pytest.skip("no Chromium or chromedriver on PATH: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    profile = tempfile.mkdtemp(prefix="kojo-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    chrome = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver))
    try:
        yield chrome
    finally:
        chrome.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def app(database_url: str) -> Iterator[kojo.App]:
    """A cluster with something on every page: types (one cron), finished, failed and
    waiting jobs, a client process holding a lock."""
    app = kojo.App(database=database_url)
    app.install()
    app.job_type("reports", name="Monthly reports")(report)
    app.job_type("emails", max_retries=0)(broken)
    app.job_type("nightly-cleanup", cron_expression="0 3 * * *")(idle)
    app.register_job_types()
    work_inline(app, app.schedule("reports", payload={"month": "2026-10"}), "web-1")
    work_inline(app, app.schedule("emails", payload={"to": "ops@example.com"}), "web-1")
    app.schedule_many("reports", [{"month": f"2026-{m:02}"} for m in (11, 12)])
    yield app
    app.backend.close()


def shoot(chrome: Any, database_url: str, name: str) -> None:
    if database_url.startswith("sqlite"):
        IMAGES.mkdir(parents=True, exist_ok=True)
        chrome.save_screenshot(str(IMAGES / f"dashboard-{name}.png"))


def heading(chrome: Any) -> str:
    text: str = chrome.find_element(By.TAG_NAME, "h1").text
    return text


def test_a_browser_sees_and_steers_the_cluster(
    app: kojo.App, browser: Any, database_url: str, tmp_path: Path
) -> None:
    client = kojo.App(database=database_url)  # another process's view: holds a lock
    env = {"KOJO_DASHBOARD_TOKEN": TOKEN}
    try:
        with client.mutex("ledger"), dashboard(database_url, tmp_path, env=env) as base:
            browser.get(f"{base}/")
            assert "needs its token" in browser.find_element(By.ID, "error").text
            browser.get(f"{base}/?token={TOKEN}")  # sets the cookie, drops the token
            assert browser.current_url == f"{base}/"
            assert heading(browser) == "Overview"
            counts = browser.find_element(By.ID, "job-counts").text
            assert "reports" in counts and "complete_success" in counts
            shoot(browser, database_url, "overview")

            browser.find_element(By.LINK_TEXT, "Jobs").click()
            assert heading(browser) == "Jobs"
            assert "SMTP server refused the connection" in browser.page_source
            shoot(browser, database_url, "jobs")
            first = app.jobs(type_code="reports", state="complete_success")[0]["kojo_job_id"]
            browser.find_element(By.LINK_TEXT, str(first)).click()
            assert heading(browser).startswith(f"Job {first}")
            assert '"sent": 3' in browser.find_element(By.ID, "result").text
            assert "sent 3 reports" in browser.page_source
            shoot(browser, database_url, "job")

            browser.find_element(By.LINK_TEXT, "Processes").click()
            assert heading(browser) == "Processes" and "client" in browser.page_source
            shoot(browser, database_url, "processes")
            browser.find_element(By.LINK_TEXT, "Locks").click()
            assert "ledger" in browser.find_element(By.ID, "locks").text
            shoot(browser, database_url, "locks")

            browser.find_element(By.LINK_TEXT, "Types").click()
            assert "0 3 * * *" in browser.find_element(By.ID, "types").text
            shoot(browser, database_url, "types")
            row = browser.find_element(By.ID, "type-reports")
            row.find_element(By.CSS_SELECTOR, "button[value=pause]").click()
            WebDriverWait(browser, 10).until(expected_conditions.alert_is_present())
            browser.switch_to.alert.accept()  # "pause job type reports?"
            WebDriverWait(browser, 10).until(
                lambda b: b.find_elements(By.CSS_SELECTOR, "#type-reports button[value=resume]")
            )
            stored = app.backend.type_get("reports")
            assert stored is not None and stored["is_paused"] is True

            waiting = app.jobs(type_code="reports", state="waiting")[0]["kojo_job_id"]
            browser.get(f"{base}/jobs/{waiting}")
            browser.find_element(By.CSS_SELECTOR, "#actions button[value=hold]").click()
            WebDriverWait(browser, 10).until(expected_conditions.alert_is_present())
            browser.switch_to.alert.accept()  # "hold job N?"
            WebDriverWait(browser, 10).until(
                lambda b: b.find_elements(By.CSS_SELECTOR, "#actions button[value=release]")
            )
            assert app.job(waiting)["assigned_state"] == "hold"

            before = {job["kojo_job_id"]: job["assigned_state"] for job in app.jobs()}
            browser.get(f"{base}/jobs")
            purge = browser.find_element(By.ID, "purge")
            Select(purge.find_element(By.NAME, "state")).select_by_value("complete_success")
            Select(purge.find_element(By.NAME, "type")).select_by_value("reports")
            purge.find_element(By.CSS_SELECTOR, "button[value=purge]").click()
            WebDriverWait(browser, 10).until(expected_conditions.alert_is_present())
            browser.switch_to.alert.dismiss()  # said no: nothing is deleted
            assert len(app.jobs()) == len(before)
            purge.find_element(By.CSS_SELECTOR, "button[value=purge]").click()
            WebDriverWait(browser, 10).until(expected_conditions.alert_is_present())
            browser.switch_to.alert.accept()  # "delete the finished jobs that match? ..."
            WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.ID, "purged"))
            assert browser.find_element(By.ID, "purged").text == "Deleted 1 finished job(s)."
            after = {job["kojo_job_id"]: job["assigned_state"] for job in app.jobs()}
            assert after == {i: s for i, s in before.items() if i != first}
            assert before[first] == "complete_success"

            browser.delete_all_cookies()  # a browser without the token sees nothing
            browser.get(f"{base}/jobs")
            assert "needs its token" in browser.find_element(By.ID, "error").text
    finally:
        client.backend.close()
