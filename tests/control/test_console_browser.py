"""The operator console end to end: Playwright driving Debian's chromium against a real daemon
with a token (tests/control/console_site.py). An operator opens the console, gives the token,
filters a report's history, reads a failed run's error, runs a report now with parameters and
watches it finish live (no reload of the page), redelivers a failed delivery, pauses and
resumes a schedule; no JavaScript error on the way. Screenshots at 1400 and 390 px wide go to
test-artifacts/console/. Without the token the page says how to give one and actions are
refused; a cross-site origin is refused even with the token.

At both widths every plot's text is drawn at 11 CSS px or more and each plot fills its box; at
390 px no table cell's visible content leaves the viewport, nothing scrolls sideways, the wide
tables show their rows as labelled lines, and chromium's accessibility tree still has them as
tables with column headers (issue 21)."""

from __future__ import annotations

import json
import shutil
import time
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


MIN_FONT_PX = 11.0
"""A plot's text, in CSS px as drawn (its font size times the scale its SVG draws it at)."""
MIN_TEXT_PX = 10.0
"""The height of a plot's text box as laid out, in CSS px."""
PLOT_TEXT = """() => [...document.querySelectorAll('main svg.plot')].flatMap((svg) => {
    const frame = svg.getBoundingClientRect();
    const box = svg.parentElement;
    const style = getComputedStyle(box);
    const inner = box.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    return [...svg.querySelectorAll('text')].map((text) => {
        const r = text.getBoundingClientRect();
        const m = text.getScreenCTM();
        return {
            text: text.textContent,
            height: r.height,
            font: parseFloat(getComputedStyle(text).fontSize) * Math.hypot(m.b, m.d),
            inside: r.left >= frame.left - 0.5 && r.right <= frame.right + 0.5
                && r.top >= frame.top - 0.5 && r.bottom <= frame.bottom + 0.5,
            fill: frame.width / inner,
        };
    });
})"""
TABLES_FIT = """() => {
    const width = document.documentElement.clientWidth;
    // What of a node shows: its boxes, cut by each ancestor up to its cell that clips
    // (a visually hidden label's text is laid out wide but shows 1 px of it).
    const shown = (node, td) => {
        let boxes;
        if (node.nodeType === Node.TEXT_NODE) {
            const range = document.createRange();
            range.selectNodeContents(node);
            boxes = [...range.getClientRects()];
        } else {
            boxes = [node.getBoundingClientRect()];
        }
        for (let el = node.parentElement; el && el !== td.parentElement; el = el.parentElement) {
            const style = getComputedStyle(el);
            if (style.overflowX === 'visible' && style.clip === 'auto') continue;
            const cut = el.getBoundingClientRect();
            boxes = boxes.map((r) => ({
                left: Math.max(r.left, cut.left), right: Math.min(r.right, cut.right),
            }));
        }
        return boxes.filter((r) => r.right > r.left);
    };
    const outside = [];
    let cells = 0;
    for (const td of document.querySelectorAll('main td')) {
        if (!td.getClientRects().length) continue;  // a column hidden on this screen
        cells += 1;
        const nodes = [td, ...td.querySelectorAll('*')];
        const walker = document.createTreeWalker(td, NodeFilter.SHOW_TEXT);
        while (walker.nextNode()) nodes.push(walker.currentNode);
        const boxes = nodes.flatMap((node) => shown(node, td));
        const left = Math.min(...boxes.map((r) => r.left));
        const right = Math.max(...boxes.map((r) => r.right));
        if (left < -0.5 || right > width + 0.5)
            outside.push({cell: td.textContent.trim().slice(0, 60), left, right});
    }
    for (const wrap of document.querySelectorAll('main .wrap'))
        if (wrap.scrollWidth > wrap.clientWidth + 1)
            outside.push({scrolls: wrap.firstElementChild.className, by: wrap.scrollWidth});
    return {cells, outside, scroll: document.documentElement.scrollWidth, width};
}"""
STACKED_CELLS = """(narrow) => [...document.querySelectorAll('main table.stack td')]
    .filter((td) => td.getClientRects().length)
    .map((td) => {
        const label = td.dataset.label;
        const before = getComputedStyle(td, '::before').content;
        const display = getComputedStyle(td).display;
        return {label, before, display};
    })
    .filter(({label, before, display}) => narrow
        ? label !== undefined && (!before.startsWith(JSON.stringify(label)) || display !== 'grid')
        : display !== 'table-cell')"""


def _check_plots(page: object, where: str, *, at_least: int) -> None:
    """Every text of the page's plots is drawn at MIN_FONT_PX or more, lies inside its plot,
    and each plot fills its figure's width."""
    texts = page.evaluate(PLOT_TEXT)  # type: ignore[attr-defined]
    assert len(texts) >= at_least, (where, texts)
    small = [t for t in texts if t["font"] < MIN_FONT_PX or t["height"] < MIN_TEXT_PX]
    assert small == [], (where, small)
    assert [t for t in texts if not t["inside"]] == [], where
    assert all(0.99 <= t["fill"] <= 1.01 for t in texts), (where, texts)


def _check_tables(page: object, where: str) -> None:
    """No table cell's content reaches out of the viewport, no table scrolls sideways, nor does
    the page; a wide table's rows are stacked with their labels on a narrow screen."""
    fit = page.evaluate(TABLES_FIT)  # type: ignore[attr-defined]
    assert fit["cells"] > 0, where
    assert fit["outside"] == [], (where, fit)
    assert fit["scroll"] <= fit["width"], (where, fit)
    narrow = fit["width"] < 640
    assert page.evaluate(STACKED_CELLS, narrow) == [], where  # type: ignore[attr-defined]


def _accessible(page: object, *roles: str) -> dict[str, list[str]]:
    """The names of the nodes of these roles in chromium's accessibility tree (an image's
    description after its name, past " | ")."""
    cdp = page.context.new_cdp_session(page)  # type: ignore[attr-defined]
    found: dict[str, list[str]] = {role: [] for role in roles}
    for node in cdp.send("Accessibility.getFullAXTree")["nodes"]:
        role = node.get("role", {}).get("value")
        if role in found:
            name = str(node.get("name", {}).get("value", ""))
            if "description" in node:
                name += " | " + str(node["description"].get("value", ""))
            found[role].append(name)
    cdp.detach()
    return found


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

    # Run a report now with parameters and watch it finish live. Its webhook waits at the
    # site's gate, so the run is still RUNNING when its page shows it, however fast it ran.
    gated = site.config_id("gated")
    site.gate.opened.clear()
    page.goto(f"{site.url}/console/reports/{gated}")
    page.get_by_label("Parameters").fill(json.dumps({"top": 400000}))
    page.get_by_role("button", name="Run now").click()
    page.wait_for_url("**/console/runs/**")
    run_id = page.url.rsplit("/", 1)[1]
    page.evaluate("window.__notReloaded = true")
    page.wait_for_function(
        "(id) => document.querySelector(`[data-live-run='${id}'][data-terminal=false]"
        " [data-field=status]`)?.textContent.includes('RUNNING')",
        arg=run_id,
    )
    page.wait_for_function(
        "(id) => document.querySelector(`[data-live-run='${id}'] [data-field=phase]`)"
        "?.textContent === 'delivering'",
        arg=run_id,
        timeout=90_000,
    )
    assert site.gate.received >= 1
    site.gate.opened.set()
    page.wait_for_function(
        "(id) => document.querySelector(`[data-live-run='${id}'][data-terminal=true]"
        " [data-field=status]`)?.textContent.includes('COMPLETED')",
        arg=run_id,
        timeout=90_000,
    )
    assert page.evaluate("window.__notReloaded === true"), "the page reloaded instead of updating"
    assert int(page.evaluate("document.getElementById('main').dataset.liveEvents || 0")) >= 1
    assert "400,000" in page.locator("dl.facts").inner_text()
    page.screenshot(path=str(ARTIFACTS / "run-1400.png"), full_page=True)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download").click()
    assert download.value.suggested_filename.startswith("gated_")

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
    # The schedule's next fire is shown before it ever fired (the scheduler's timetable).
    schedule_line = page.locator("#h-schedules + .sched").inner_text()
    assert "next 20" in schedule_line and "08:00:00 UTC" in schedule_line, schedule_line
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

    # The same pages at 1400 and 390 px: readable plots, tables inside the screen.
    pages = {
        "overview": ("/console", "Reports", 2),
        "report": (f"/console/reports/{counting}", "History", 8),
        "broken": (f"/console/reports/{site.config_id('broken')}", "History", 8),
        "handover-run": (f"/console/runs/{handed['id']}", "Deliveries", 0),
        "failed-run": (f"/console/runs/{failed['id']}", "Error", 0),
    }
    for width in (1400, 390):
        page.set_viewport_size({"width": width, "height": 1000 if width > 390 else 844})
        for name, (path, heading, texts) in pages.items():
            page.goto(f"{site.url}{path}")
            page.get_by_role("heading", name=heading, exact=True).wait_for()
            page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
            _check_plots(page, f"{name} at {width} px", at_least=texts)
            if name != "failed-run":  # its run has no delivery: no table
                _check_tables(page, f"{name} at {width} px")
            if name == "broken":
                # Stacked or not, the history is a table to a screen reader: its column
                # headers name the cells, whose names do not repeat the visible labels.
                roles = _accessible(page, "table", "columnheader", "cell")
                assert "Runs of broken, newest first" in roles["table"], roles
                assert "Error or reason" in roles["columnheader"], roles
                assert any("no such table" in c for c in roles["cell"]), roles
                assert not [c for c in roles["cell"] if c.startswith("Error or reason")], roles

    # Keyboard: the skip link comes first and lands on the page.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to the page"
    context.close()
    assert errors == [], errors


def test_console_backfill(site: Site, browser: object) -> None:
    """A small backfill from the report page, watched to its end (the console's form over
    `POST /api/schedules/{id}/backfill`, control/backfills.py)."""
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
    assert start.count() == 1, "the report page offers no 'Start backfill' button"
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

    # Re-run one of its fires from the run page: the fire's next attempt, watched live.
    listed = site.api(f"/api/executions?schedule_id={schedule}&limit=500")[1]["data"]
    fired = [
        item
        for item in listed["items"]  # type: ignore[index]
        if str(item["scheduled_for"]).startswith("2026-11-03") and item["attempt"] == 0
    ]
    assert len(fired) == 1, listed
    page.goto(f"{site.url}/console/runs/{fired[0]['id']}")
    page.get_by_role("button", name="Re-run this fire").click()
    page.wait_for_url(lambda url: "/console/runs/" in url and str(fired[0]["id"]) not in url)
    rerun_id = page.url.rsplit("/", 1)[1]
    # The old run's page stays until the new one has loaded: wait for the new run's own state.
    page.wait_for_function(
        "(id) => document.querySelector(`[data-live-run='${id}'][data-terminal=true]"
        " [data-field=status]`)?.textContent.includes('COMPLETED')",
        arg=rerun_id,
        timeout=60_000,
    )
    facts = page.locator("dl.facts").inner_text()
    assert "attempt 1" in facts and "manual" in facts, facts
    context.close()
    assert errors == [], errors


def test_dense_plots_stay_readable(browser: object) -> None:
    """The plots at their fullest (50 runs with gaps and failures, a day of fires with
    catch-ups, every delivery method), with the console's stylesheet, at 390 and 1400 px."""
    from reporthubd.control import console_plots as plots

    runs = [
        plots.Point(
            value=None if i % 17 == 5 else 30 + (i * 37) % 250, label=f"run {i}", bad=i % 9 == 0
        )
        for i in range(50)
    ]
    fires = [
        plots.Point(value=(i * 13) % 400 / 10, label=f"fire {i}", bad=i > 90) for i in range(96)
    ]
    methods = ["email", "file_share", "s3", "sftp", "slack", "teams", "google_chat", "webhook"]
    bars = [
        plots.Bar(label=m, share=i / (len(methods) - 1), note=f"{i * 100 // 7}% of {1000 + i}")
        for i, m in enumerate(methods)
    ]
    figures = [
        plots.series("Duration of the last 50 runs", "seconds", runs),
        plots.series(
            "Rows of the last 50 runs",
            "rows",
            [plots.Point(value=float(1_250_000 + i * 10_000), label=f"run {i}") for i in range(50)],
        ),
        plots.series("Fire lateness, last 24 h", "seconds late", fires),
        plots.shares("Delivery success rate per method, last 7 days", bars),
        plots.series("Fire lateness, last 24 h", "seconds late", [], empty="no fires"),
    ]
    css = (REPO / "reporthubd" / "control" / "static" / "console.css").read_text("utf-8")
    html = (
        "<!doctype html><html lang=en><head><meta name=viewport content='width=device-width'>"
        f"<style>{css}</style></head><body><main><section class=plots><h2>Plots</h2>"
        + "".join(f"<figure>{svg}<figcaption>caption</figcaption></figure>" for svg in figures)
        + "</section></main></body></html>"
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context()  # type: ignore[attr-defined]
    page = context.new_page()
    for width in (1400, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.set_content(html)
        page.screenshot(path=str(ARTIFACTS / f"plots-{width}.png"), full_page=True)
        _check_plots(page, f"dense plots at {width} px", at_least=3 * 5 + 2 * len(bars) + 1)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
    # Each plot is one image to a screen reader: its title names it, its figures describe it.
    images = _accessible(page, "image")["image"]
    assert images[0] == (
        "Duration of the last 50 runs | Duration of the last 50 runs: 47 values, latest 93 "
        "seconds, highest 279 seconds"
    ), images
    assert len(images) == len(figures), images
    assert images[3].startswith("Delivery success rate per method, last 7 days | "), images
    assert "webhook 100% of 1007" in images[3], images
    context.close()


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
    # The overview's live table on a phone, once its script has drawn the running run again.
    page.goto(f"{site.url}/console")
    page.get_by_role("heading", name="Reports").wait_for()
    page.evaluate("document.querySelector('[data-live-runs] tbody').dataset.served = 'yes'")
    page.wait_for_function(
        "(id) => { const body = document.querySelector('[data-live-runs] tbody');"
        " return !body.dataset.served && body.textContent.includes(id.slice(0, 8)); }",
        arg=execution_id,
        timeout=30_000,
    )
    page.screenshot(path=str(ARTIFACTS / "live-390.png"), full_page=True)
    _check_tables(page, "overview with a live run at 390 px")
    labels = page.evaluate(
        "[...document.querySelectorAll('[data-live-runs] tbody td')].map((td) => td.dataset.label)"
    )
    assert labels == ["Run", "Report", "Status", "Phase", "Rows", "Node"], labels
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


def _backfill_one_fire(site: Site, day: str) -> dict[str, object]:
    """Backfill the 09:00 Berlin fire of `day` through the API; its run, once it ended."""
    schedule = site.schedule_id("counting")
    status, answer = site.api(
        f"/api/schedules/{schedule}/backfill",
        {"from": f"{day}T00:00:00Z", "to": f"{day}T23:00:00Z", "by": "test"},
    )
    assert status in (200, 201, 202), answer
    backfill_id = answer["data"]["backfill_id"]  # type: ignore[index]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = site.api(f"/api/backfills/{backfill_id}")[1]["data"]
        if state["finished_at"]:  # type: ignore[index]
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"backfill {backfill_id} did not finish")
    listed = site.api(f"/api/executions?schedule_id={schedule}&limit=500")[1]["data"]
    (run,) = [
        item
        for item in listed["items"]  # type: ignore[index]
        if str(item["scheduled_for"]).startswith(day) and item["attempt"] == 0
    ]
    assert run["status"] == "COMPLETED" and run["trigger_type"] == "backfill", run
    return dict(run)


def test_rerun_of_a_fire_is_its_next_attempt(site: Site) -> None:
    """POST /api/execution/{id}/rerun: a fire's re-run takes the fire's next attempt (the
    scheduler's claim key), is refused while an attempt of the fire runs, and uses the fire's
    own parameters unless told otherwise; a manual run is run again with its parameters."""
    original = _backfill_one_fire(site, "2026-10-05")
    fire = original["scheduled_for"]

    status, answer = site.api(
        f"/api/execution/{original['id']}/rerun",
        {"parameters": {"top": 20_000_000}, "deliver": False},
    )
    assert status == 202, answer
    slow = answer["data"]
    assert isinstance(slow, dict)
    assert slow["fire"] is True and slow["attempt"] == 1 and slow["scheduled_for"] == fire, slow

    # While attempt 1 runs, neither a re-run of attempt 0 nor of attempt 1 starts anything.
    for target in (original["id"], slow["execution_id"]):
        status, answer = site.api(f"/api/execution/{target}/rerun", {})
        assert status == 409, answer
        assert str(slow["execution_id"]) in str(answer["error"]), answer
    status, answer = site.api(f"/api/execution/{slow['execution_id']}/cancel", {"reason": "test"})
    assert status == 200, answer
    try:
        ended = console_site.wait_terminal(site, str(slow["execution_id"]))
    except AssertionError:
        print(answer, site.api(f"/api/execution/{slow['execution_id']}"))
        print(site.daemon.output()[-5000:])
        raise
    assert ended["status"] == "CANCELLED", ended

    # Now attempt 2, with the fire's own parameters (the report's top = 10).
    status, answer = site.api(f"/api/execution/{original['id']}/rerun", {"deliver": False})
    assert status == 202, answer
    again = console_site.wait_terminal(site, str(answer["data"]["execution_id"]))  # type: ignore[index]
    assert again["status"] == "COMPLETED" and again["row_count"] == 10, again
    assert again["attempt"] == 2 and again["schedule_id"] == original["schedule_id"], again
    assert again["scheduled_for"] == fire and again["trigger_type"] == "manual", again
    attempts = sorted(
        (item["attempt"], item["status"])
        for item in site.api(f"/api/executions?schedule_id={original['schedule_id']}&limit=500")[1][
            "data"
        ]["items"]  # type: ignore[index]
        if item["scheduled_for"] == fire
    )
    assert attempts == [(0, "COMPLETED"), (1, "CANCELLED"), (2, "COMPLETED")], attempts

    # A manual run (no fire) is run again with its parameters.
    manual = _run(site, "counting", {"parameters": {"top": 7}, "deliver": False})
    status, answer = site.api(f"/api/execution/{manual['id']}/rerun", {"deliver": False})
    assert status == 202, answer
    assert answer["data"]["fire"] is False and answer["data"]["attempt"] is None  # type: ignore[index]
    rerun = console_site.wait_terminal(site, str(answer["data"]["execution_id"]))  # type: ignore[index]
    assert rerun["row_count"] == 7 and rerun["schedule_id"] is None, rerun

    status, answer = site.api("/api/execution/00000000-0000-0000-0000-000000000000/rerun", {})
    assert status == 404, answer
    status, answer = site.api(f"/api/execution/{manual['id']}/rerun", {"deliver": "yes"})
    assert status == 400 and "deliver" in str(answer["error"]), answer
