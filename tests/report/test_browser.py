"""The page in a real headless Chromium: no JavaScript errors, the summary, a live slider, a non-blank screenshot.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them
with apt-get) and the ``selenium`` client from the test extra. Without them the
test is skipped and says why.
"""

from __future__ import annotations

import io
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip(
        "Chromium or chromedriver not installed (Debian: apt-get install chromium chromium-driver, "
        "as .ci/run does); the browser test cannot run",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (test extra) not installed")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

# Errors thrown anywhere in the page, collected from before the first script runs.
_CATCH_ERRORS = """
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message || e)); });
window.addEventListener('unhandledrejection', function (e) { window.__errors.push(String(e.reason)); });
"""


@pytest.fixture(scope="module")
def browser():
    opts = webdriver.ChromeOptions()
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1600",
        "--force-device-scale-factor=1",
    ):
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _CATCH_ERRORS})
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(browser, fake_page):
    browser.get(fake_page.as_uri())
    return browser


def test_renders_without_javascript_errors(page):
    assert page.execute_script("return window.__errors") == []
    severe = [e for e in page.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    # The plots were drawn: every collapse figure has an SVG with curves in it.
    figs = page.find_elements(By.CSS_SELECTOR, "figure.collapse")
    assert figs
    for fig in figs:
        assert fig.find_elements(By.CSS_SELECTOR, "svg.plot polyline")


def test_summary_and_every_section_shown(page):
    rows = page.find_elements(By.CSS_SELECTOR, "table.summary > tbody > tr")
    sections = page.find_elements(By.CSS_SELECTOR, "section.experiment")
    assert len(rows) == len(sections) > 10
    assert all(s.is_displayed() and s.size["height"] > 50 for s in sections)
    verdicts = {v.text for v in page.find_elements(By.CSS_SELECTOR, "table.summary .verdict")}
    assert {"agrees", "disagrees", "inconclusive", "not measured"} <= verdicts


def test_moving_a_slider_rescales_its_x_axis(page):
    fig = page.find_element(By.CSS_SELECTOR, "figure.collapse")
    svg = fig.find_element(By.CSS_SELECTOR, "svg.plot")
    slider = fig.find_element(By.CSS_SELECTOR, "input.exponent")
    other = page.find_elements(By.CSS_SELECTOR, "figure.collapse svg.plot")[1]

    def axis(s):
        ticks = [t.text for t in s.find_elements(By.CSS_SELECTOR, "text.xtick")]
        return (
            s.get_attribute("data-xmin"),
            s.get_attribute("data-xmax"),
            s.find_element(By.CSS_SELECTOR, "text.xlabel").text,
            ticks,
        )

    before, other_before = axis(svg), axis(other)
    page.execute_script("arguments[0].scrollIntoView({block: 'center'})", slider)
    slider.send_keys(Keys.END)  # a real key press: the browser moves the thumb and fires "input"
    assert float(slider.get_attribute("value")) == pytest.approx(5.0)
    after = axis(svg)
    assert float(after[1]) > float(before[1])  # the largest rescaled time grew with the exponent
    assert after[2] != before[2] and "5.00" in after[2]
    assert after[3] != before[3]
    assert axis(other) == other_before  # only its own plot moved
    # The paper button puts it back at the paper's exponent.
    fig.find_element(By.CSS_SELECTOR, "button.to-paper").click()
    assert float(slider.get_attribute("value")) == pytest.approx(2.0)


def test_screenshot_is_not_blank(page, tmp_path):
    import numpy as np
    from PIL import Image

    page.execute_script("window.scrollTo(0, 0)")
    png = page.get_screenshot_as_png()
    (tmp_path / "page.png").write_bytes(png)
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert img.shape[1] >= 1000
    ink = float((img.min(axis=-1) < 200).mean())
    packed = img.reshape(-1, 3).astype(np.int32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.int32)
    colours = len(np.unique(packed))
    assert ink > 0.02, f"only {ink:.1%} of the screenshot is not white"
    assert colours > 50, f"only {colours} distinct colours: blank or unstyled"
