"""The report page in headless Chromium (Debian's chromium and chromium-driver) against the real API on
a socket: the browser authenticates as a person would (the key as HTTP Basic user name), the charts
render with the data, and a screenshot is kept in tests/artifacts/analytics-report.png."""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlencode

import pytest
import uvicorn

from api.app import create_app
from config.settings import Settings
from domain.auth.schemas import Role
from domain.db import transaction, utcnow
from domain.segments import service as segments
from tests.analytics import dataset, expected
from tests.conftest import IN_CI, ROOT, free_port, make_key

pytestmark = pytest.mark.timeout(300)
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCREENSHOT = ROOT / "tests" / "artifacts" / "analytics-report.png"
CHARTS = ["trend", "journey", "funnel", "uplift", "tiers", "quality"]


def _require_browser() -> None:
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    missing = "Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver)"
    if IN_CI:
        pytest.fail(f"the report's browser test needs {missing}; .ci/run installs them")
    pytest.skip(f"needs {missing}")


def _browse(url: str, profile: str) -> dict:
    """Open the report, wait for every chart, read what the SVG shows, keep a screenshot."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
        f"--user-data-dir={profile}", "--window-size=1280,4200",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(url)
        WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.body.dataset.charts"))
        svg_text = {
            chart: [e.text for e in driver.find_elements(By.CSS_SELECTOR, f"#{chart} svg text") if e.text]
            for chart in CHARTS
        }
        seen = {
            "title": driver.title,
            "charts": int(driver.execute_script("return document.body.dataset.charts")),
            "svg_text": svg_text,
            "sankey_labels": [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#journey .node-label")],
            "funnel_bars": len(
                driver.find_elements(By.CSS_SELECTOR, "#funnel .trace path.surface, #funnel .bars path")
            ),
            "csat_card": driver.find_element(By.ID, "kpi-csat").text,
            "errors": driver.execute_script("return window.__errors || []"),
        }
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOT))
        return seen
    finally:
        driver.quit()


async def test_report_renders_the_charts_with_the_data(database_url, sessions, tmp_path):
    _require_browser()
    world = dataset.build(seed=7, now=utcnow())
    await dataset.store(sessions, world)
    async with transaction(sessions) as session:  # what the scheduled recompute does
        await segments.recompute_scores(session, dataset.PURCHASE)
    key = await make_key(sessions, role=Role.marketer)
    settings = Settings(
        dev_mode=True, data_dir=tmp_path / "data", database_url=database_url, smtp_port=free_port()
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        while not server.started:
            assert not serving.done(), "the API did not start"
            await asyncio.sleep(0.05)
        query = urlencode(
            {
                "journey_id": "onboarding",
                "from": world.start.isoformat(),
                "to": world.end.isoformat(),
                "interval": "week",
            }
        )
        url = f"http://{key}:@127.0.0.1:{port}/api/analytics/report?{query}"
        seen = await asyncio.to_thread(_browse, url, profile)
    finally:
        server.should_exit = True
        await serving
        shutil.rmtree(profile, ignore_errors=True)

    assert seen["title"] == "Journeys analytics: Onboarding"
    assert seen["charts"] == len(CHARTS)
    assert seen["errors"] == []
    in_period = expected.journey(world, "onboarding", world.start, world.end)
    # The journey graph: each node drawn with how many entered it.
    labels = set(seen["sankey_labels"])
    assert f"start · {in_period['enrolled']}" in labels
    for node_id, numbers in in_period["nodes"].items():
        assert f"{node_id} · {numbers['entered']}" in labels, (node_id, labels)
    holdout = in_period["groups"]["split"]["holdout"][0]
    assert f"holdout (left at the split) · {holdout}" in labels
    # The funnel shows the journey's numbers.
    hello = in_period["nodes"]["hello"]
    funnel_text = " ".join(seen["svg_text"]["funnel"])
    for label, value in (
        ("Entered", in_period["enrolled"]),
        ("Sent", hello["sent"]),
        ("Opened", hello["opened"]),
    ):
        assert label in funnel_text and str(value) in funnel_text, (label, value, funnel_text)
    # The tiers, the trend, the uplift and the data-quality review are drawn from the same numbers.
    drawn = [int(t.split()[0]) for t in seen["svg_text"]["tiers"] if re.fullmatch(r"\d+ customers", t)]
    assert drawn == list(expected.tiers(world).values())  # key, major, ordinary, small
    assert any("retention rate" in t for t in seen["svg_text"]["trend"])
    assert any("holdout" in t for t in seen["svg_text"]["uplift"])
    quality = expected.data_quality(world)
    assert f"{quality['score']:.0%}" in " ".join(seen["svg_text"]["quality"])
    answer = expected.kpis(world, world.start, world.end)
    assert seen["csat_card"] == f"{answer['customer_satisfaction']:.2f}"
    assert SCREENSHOT.stat().st_size > 50_000
