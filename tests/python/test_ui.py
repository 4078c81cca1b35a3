"""The built-in page (``/ui``) in a real browser: headless Chromium (Debian's ``chromium``
and ``chromium-driver``, installed by ``tools/test.sh``) driven by Selenium against a demo
server. Checks the registry search, a version's validation report and that a drift chart
renders, and saves a screenshot to ``docs/ui.png`` (shown by the README).
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import Server, free_port

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "ui.png"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A demo server whose data directory the test knows (to load a second version)."""
    root = tmp_path_factory.mktemp("ui-demo")
    port = free_port()
    server = Server(["demo", "--dir", str(root / "store"), "--addr", f"127.0.0.1:{port}"], port, root / "server.log")
    server.root = root
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (shutil.which(CHROMIUM) and shutil.which(DRIVER)):
        pytest.fail("chromium and chromium-driver are not installed (tools/test.sh installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for arg in [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1400,2200",
    ]:
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_search_validation_report_and_drift_chart(demo, browser):
    # Registry search by name: every row matches.
    browser.get(demo.url + "/ui")
    browser.find_element(By.ID, "search-name").send_keys("f0")
    browser.find_element(By.ID, "search-submit").click()
    WebDriverWait(browser, 30).until(lambda d: "name=f0" in d.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "#features tr.feature")
    assert rows, "no feature matched `f0`"
    assert all("f0" in row.find_elements(By.TAG_NAME, "td")[0].text for row in rows)
    # By owner: a narrower or equal set, each row with that owner.
    owner = rows[0].find_elements(By.TAG_NAME, "td")[3].text
    browser.get(demo.url + "/ui?owner=" + urllib.request.quote(owner))
    owned = browser.find_elements(By.CSS_SELECTOR, "#features tr.feature")
    assert owned and all(r.find_elements(By.TAG_NAME, "td")[3].text == owner for r in owned)

    # A second version of product_daily (the same data): validated against the first.
    inputs = sorted(demo.root.rglob("*product_daily*"))
    inputs = [p for p in inputs if p.suffix in (".parquet", ".csv")]
    assert inputs, f"no product_daily input under {demo.root}"
    status, record = post(demo.url + "/v1/groups/product_daily/loads", {"input": str(inputs[0])})
    assert status == 200, record
    assert record["validation"]["passed"], record["validation"]

    browser.get(demo.url + "/ui?group=product_daily")
    title = browser.find_element(By.ID, "group-title").text
    assert "product_daily" in title and "active version 2" in title, title
    report = browser.find_element(By.CSS_SELECTOR, "#version-2 td.pass").text
    assert report.startswith("passed"), report
    # The drift charts are drawn by uPlot: a canvas in each, marked rendered.
    WebDriverWait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#drift-0[data-rendered='true'] canvas")
    )
    chart = browser.find_element(By.ID, "drift-0")
    assert "vs previous" in chart.text
    assert chart.size["width"] > 100 and chart.size["height"] > 100
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000
