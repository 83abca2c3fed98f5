"""The operator console end to end: Playwright driving Debian's chromium against a real daemon
with a token (tests/control/console_site.py). An operator opens the console, gives the token,
filters a report's history, reads a failed run's error, runs a report now with parameters and
watches it finish live (no reload of the page), redelivers a failed delivery, pauses and
resumes a schedule; no JavaScript error on the way. Screenshots at 1400 and 390 px wide go to
test-artifacts/console/. Without the token the page says how to give one and actions are
refused; a cross-site origin is refused even with the token."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.control import console_site
from tests.control.console_site import TOKEN, Site

playwright_sync = pytest.importorskip("playwright.sync_api")

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "console"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    running = console_site.start(tmp_path_factory.mktemp("console"))
    yield running
    running.stop()
    failed = [line for line in running.daemon.output().splitlines() if "handler failed" in line]
    assert failed == [], failed


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (TESTING.md)")
    with playwright_sync.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _run(site: Site, report: str, body: dict[str, object] | None = None) -> dict[str, object]:
    status, answer = site.api(f"/api/execute/{site.config_id(report)}", body or {})
    assert status == 202, answer
    data = answer["data"]
    assert isinstance(data, dict)
    return console_site.wait_terminal(site, str(data["execution_id"]))


def _post(page: object, url: str, *, token: bool) -> dict[str, object]:
    """A POST sent by the page's own origin (the browser adds Origin and Sec-Fetch-Site)."""
    result = page.evaluate(  # type: ignore[attr-defined]
        """async ([url, token]) => {
            const headers = {"Content-Type": "application/json"};
            if (token) headers.Authorization = "Bearer " + token;
            const r = await fetch(url, {method: "POST", headers, body: "{}"});
            return {status: r.status, body: await r.json()};
        }""",
        [url, TOKEN if token else ""],
    )
    assert isinstance(result, dict)
    return result


def _collect(errors: list[str], message: object) -> None:
    if message.type == "error":  # type: ignore[attr-defined]
        errors.append(f"{message.text} at {message.location['url']}")  # type: ignore[attr-defined]


def test_console_end_to_end(site: Site, browser: object) -> None:
    failed = _run(site, "broken")
    assert failed["status"] == "FAILED"
    small = _run(site, "counting", {"parameters": {"top": 5}})
    assert small["status"] == "COMPLETED"
    handed = _run(site, "handover")
    assert handed["deliveries"][0]["attempts"][-1]["status"] == "FAILED", handed  # type: ignore[index]
    counting = site.config_id("counting")
    schedule = site.schedule_id("counting")

    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: _collect(errors, m))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: d.accept())  # every action asks for a confirmation first

    # Without a token: the page says how to give one, and an action is refused.
    page.goto(f"{site.url}/console")
    notice = page.get_by_role("alert")
    notice.wait_for()
    assert "needs an API token" in notice.inner_text()
    assert "control.token_file" in notice.inner_text()
    refused = _post(page, f"/api/execute/{counting}", token=False)
    assert refused["status"] == 401, refused
    errors.clear()  # the browser logs the 401s of the refused calls themselves

    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Use token").click()
    page.get_by_role("heading", name="Reports").wait_for()
    assert page.get_by_role("link", name="broken").count() == 1

    # A cross-site origin is refused even with the token.
    status, answer = console_site.post_from(
        site, f"/api/execute/{counting}", origin="https://evil.example"
    )
    assert status == 403 and "cross-site" in str(answer["message"]), answer
    status, answer = console_site.post_from(
        site, f"/api/execute/{counting}", fetch_site="cross-site"
    )
    assert status == 403, answer

    # Filter the history of a report.
    page.get_by_role("link", name="counting").click()
    page.get_by_role("heading", name="History").wait_for()
    page.get_by_label("Status").select_option("FAILED")
    page.get_by_role("button", name="Filter").click()
    page.get_by_text("No run matches these filters.").wait_for()
    assert "status=FAILED" in page.url
    page.get_by_label("Status").select_option("COMPLETED")
    page.get_by_label("Trigger").select_option("manual")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**trigger=manual**")
    page.locator("table.history tbody tr").first.wait_for()
    assert page.locator("table.history tbody tr").count() == 1
    assert "COMPLETED" in page.locator("table.history tbody").inner_text()

    # Open a failed run and read its error.
    page.goto(f"{site.url}/console/reports/{site.config_id('broken')}?status=FAILED")
    page.locator("table.history tbody a").first.click()
    page.get_by_role("heading", name="Error").wait_for()
    assert "no such table: no_such_table" in page.locator("#run-error").inner_text()

    # Run a report now with parameters and watch it finish live.
    page.goto(f"{site.url}/console/reports/{counting}")
    page.get_by_label("Parameters").fill(json.dumps({"top": 400000}))
    page.get_by_role("button", name="Run now").click()
    page.wait_for_url("**/console/runs/**")
    page.evaluate("window.__notReloaded = true")
    state = page.locator("[data-live-run] [data-field=status]")
    state.wait_for()
    seen = [state.inner_text()]
    page.wait_for_function(
        "() => document.querySelector('[data-live-run][data-terminal=true] [data-field=status]')"
        "?.textContent.includes('COMPLETED')",
        timeout=90_000,
    )
    assert page.evaluate("window.__notReloaded === true"), "the page reloaded instead of updating"
    assert seen[0] in ("PENDING", "RUNNING"), seen
    assert "400,000" in page.locator("dl.facts").inner_text()
    page.screenshot(path=str(ARTIFACTS / "run-1400.png"), full_page=True)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download").click()
    assert download.value.suggested_filename.startswith("counting_")

    # Redeliver the failed delivery only, once its share exists.
    (site.directory / "late-share").mkdir()
    page.goto(f"{site.url}/console/runs/{handed['id']}")
    page.get_by_role("button", name="Redeliver failed (1)").click()
    page.locator("table.ledger tbody tr").nth(1).wait_for()
    ledger = page.locator("table.ledger tbody").inner_text()
    assert "FAILED" in ledger and "SUCCESS" in ledger, ledger
    assert page.get_by_role("button", name="Redeliver failed (1)").count() == 0
    assert list((site.directory / "late-share").iterdir())

    # Pause and resume the schedule.
    page.goto(f"{site.url}/console/reports/{counting}")
    page.get_by_label(f"Reason for pausing schedule {schedule}").fill("month-end freeze")
    page.get_by_role("button", name="Pause").click()
    page.get_by_text("month-end freeze").wait_for()
    jobs = site.api("/api/scheduler/jobs")[1]["data"]["jobs"]  # type: ignore[index]
    paused = [j["paused"] for j in jobs if j["schedule_id"] == schedule]
    assert paused and paused[0]["reason"] == "month-end freeze", jobs
    page.get_by_role("button", name="Resume").click()
    page.get_by_role("button", name="Pause").wait_for()
    jobs = site.api("/api/scheduler/jobs")[1]["data"]["jobs"]  # type: ignore[index]
    assert [j["paused"] for j in jobs if j["schedule_id"] == schedule] == [None], jobs

    page.goto(f"{site.url}/console")
    page.get_by_role("heading", name="Reports").wait_for()
    page.screenshot(path=str(ARTIFACTS / "overview-1400.png"), full_page=True)
    page.goto(f"{site.url}/console/reports/{counting}")
    page.get_by_role("heading", name="History").wait_for()
    page.screenshot(path=str(ARTIFACTS / "report-1400.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(ARTIFACTS / "report-390.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    page.goto(f"{site.url}/console")
    page.get_by_role("heading", name="Reports").wait_for()
    page.screenshot(path=str(ARTIFACTS / "overview-390.png"), full_page=True)
    page.goto(f"{site.url}/console/runs/{failed['id']}")
    page.get_by_role("heading", name="Error").wait_for()
    page.screenshot(path=str(ARTIFACTS / "failed-run-390.png"), full_page=True)

    # Keyboard: the skip link comes first and lands on the page.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to the page"
    context.close()
    assert errors == [], errors


def test_console_backfill(site: Site, browser: object) -> None:
    """A small backfill from the report page, watched to its end. Backfill is built beside the
    console (scheduler/backfill.py, control/backfills.py): the console offers it where the
    daemon serves its API."""
    counting = site.config_id("counting")
    schedule = site.schedule_id("counting")
    context = browser.new_context(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: _collect(errors, m))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: d.accept())
    context.add_init_script(
        f"sessionStorage.setItem('reporthubd.console.token', {json.dumps(TOKEN)})"
    )
    page.goto(f"{site.url}/console/reports/{counting}")
    page.get_by_role("heading", name="History").wait_for()
    start = page.get_by_role("button", name="Start backfill")
    if start.count() == 0:
        context.close()
        pytest.skip("this daemon serves no POST /api/schedules/{id}/backfill yet")
    # 09:00 Europe/Berlin on three past days: three fires.
    page.get_by_label("Backfill fires from (UTC)").fill("2026-11-02T00:00")
    page.get_by_label("Backfill fires until (UTC)").fill("2026-11-04T23:00")
    start.click()
    progress = page.locator(f"form[data-url$='/{schedule}/backfill'] .backfill-progress")
    page.wait_for_function(
        "() => document.querySelector('.backfill-progress')?.dataset.finished",
        timeout=90_000,
    )
    text = progress.inner_text()
    assert "3 of 3 fires done" in text and "0 failed" in text, text
    page.screenshot(path=str(ARTIFACTS / "backfill-1400.png"), full_page=True)
    context.close()
    assert errors == [], errors


def test_console_cancels_a_running_run(site: Site, browser: object) -> None:
    status, answer = site.api(
        f"/api/execute/{site.config_id('counting')}", {"parameters": {"top": 20_000_000}}
    )
    assert status == 202, answer
    execution_id = answer["data"]["execution_id"]  # type: ignore[index]
    context = browser.new_context(viewport={"width": 390, "height": 844})  # type: ignore[attr-defined]
    context.add_init_script(
        f"sessionStorage.setItem('reporthubd.console.token', {json.dumps(TOKEN)})"
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: _collect(errors, m))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: d.accept())
    page.goto(f"{site.url}/console/runs/{execution_id}")
    page.get_by_label("Reason").fill("wrong parameters")
    page.get_by_role("button", name="Cancel run").click()
    page.wait_for_function(
        "() => document.querySelector('[data-live-run][data-terminal=true] [data-field=status]')"
        "?.textContent.includes('CANCELLED')",
        timeout=60_000,
    )
    assert "wrong parameters" in page.locator("#run-error").inner_text()
    context.close()
    assert errors == [], errors
    finished = console_site.wait_terminal(site, str(execution_id))
    assert finished["status"] == "CANCELLED", finished
