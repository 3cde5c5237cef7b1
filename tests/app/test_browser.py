"""app.py end to end in headless Chromium (Selenium): ``python app.py --port PORT`` runs as a subprocess; the tests
pick an example, upload a clip, type labels, press the buttons and read what the page shows, on both tabs.

Run with ``--run-browser`` (a CI step of its own: it needs gradio and selenium, ``pip install -e ".[app]"``, and
Chromium with its driver, ``apt-get install chromium chromium-driver``); ``--app-screenshot docs/app.png`` also saves a
picture of the page."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from trajtok_hf.data import SyntheticVideoConfig, generate_clip, write_mp4

ROOT = Path(__file__).resolve().parents[2]
SERVER_START_S = 180  # the app imports torch and gradio and embeds its gallery before it serves
RESULT_S = 60
TWO_OBJECTS = "clip4.mp4"  # an example of the app: "a small red star leaves to the right while a small green ..."
WRONG_LABEL = "a large pink ring appears"

pytestmark = pytest.mark.timeout(300)


def _find(*names: str) -> str | None:
    return next((path for path in map(shutil.which, names) if path), None)


@pytest.fixture(scope="module", autouse=True)
def requirements(request):
    """Skip unless asked for (--run-browser) and everything is installed; returns the browser and driver paths."""
    if not request.config.getoption("--run-browser", default=False):
        pytest.skip("run with --run-browser (its own CI step)")
    for module in ("gradio", "selenium"):
        try:
            __import__(module)
        except ImportError:
            pytest.skip(f"{module} is not installed: pip install -e '.[app]'")
    browser = _find("chromium", "chromium-browser", "google-chrome")
    driver = _find("chromedriver")
    if browser is None or driver is None:
        pytest.skip("Chromium or chromedriver is missing: apt-get install chromium chromium-driver")
    return browser, driver


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(requirements, tmp_path_factory):
    """The URL of ``python app.py`` serving on a free port."""
    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"app.py exited with {process.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"app.py did not serve {url} in {SERVER_START_S} s:\n{log.read_text(errors='replace')}")
            time.sleep(1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    tail = log.read_text(errors="replace")
    assert "Traceback" not in tail, f"the server logged an error:\n{tail[-4000:]}"


@pytest.fixture(scope="module")
def page(requirements, server):
    """A headless Chromium (Selenium) on the app's page."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = requirements
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        driver.get(server)
        yield driver
    finally:
        driver.quit()


def _element(page, css: str, timeout: float = RESULT_S):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(page, timeout).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))


def _wait_for_text(page, css: str, text: str, timeout: float = RESULT_S) -> str:
    """The text of ``css`` once it contains ``text`` (fails with what it shows after ``timeout``)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(page, timeout).until(lambda driver: text in _element(driver, css).text)
    except TimeoutException:
        pytest.fail(f"{css} never showed {text!r}; it shows {_element(page, css).text!r}")
    return _element(page, css).text


def _type(page, css: str, text: str) -> None:
    box = _element(page, f"{css} textarea, {css} input")
    box.clear()
    box.send_keys(text)


def _click(page, css: str) -> None:
    page.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();", _element(page, css))


def _tab(page, title: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def button(driver):
        return next((b for b in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]") if title in b.text), None)

    WebDriverWait(page, RESULT_S).until(button).click()


def _screenshot(page, path: str, width: int = 1280) -> None:
    """The whole page as a PNG at ``path``: the viewport is stretched to the page's height (Chrome DevTools)."""
    for _ in range(2):  # the layout may change once with the new viewport
        height = page.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]["height"]
        metrics = {"width": width, "height": int(height) + 1, "deviceScaleFactor": 1, "mobile": False}
        page.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        time.sleep(1)  # let the images and the video settle
    try:
        picture = Image.open(io.BytesIO(page.get_screenshot_as_png())).convert("RGB")
    finally:
        page.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # 256 colours: a quarter of the bytes, and the page (flat colours, small clips) looks the same.
    picture.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(path, optimize=True)


def test_an_example_clip_is_tokenized_and_classified(page, request):
    from selenium.webdriver.common.by import By

    _tab(page, "Tokenize & classify")
    (example,) = [b for b in page.find_elements(By.CSS_SELECTOR, "#examples button") if TWO_OBJECTS in b.text]
    caption = example.text.split(": ", 1)[1]
    assert caption.startswith("a small red star")
    example.click()
    labels = _element(page, "#labels textarea, #labels input")
    page_wait = time.monotonic() + RESULT_S
    while not labels.get_attribute("value") and time.monotonic() < page_wait:
        time.sleep(0.2)
    typed = labels.get_attribute("value")
    assert typed.count(",") == 2, typed  # the clip's caption among two others
    _click(page, "#run")
    summary = _wait_for_text(page, "#summary", "Top label")
    true_caption = next(label.strip() for label in typed.split(",") if label.strip().startswith("a small red star"))
    assert f"Top label: {true_caption}" in summary
    assert "Tokens per chunk — chunk 1:" in summary
    assert true_caption in _wait_for_text(page, "#scores", true_caption)
    assert _element(page, "#trajectories img").get_attribute("src")
    assert _element(page, "#overlay video").get_attribute("src")
    screenshot = request.config.getoption("--app-screenshot", default=None)
    if screenshot:
        _screenshot(page, screenshot)


def test_an_uploaded_clip_and_typed_labels(page, tmp_path):
    clip = generate_clip(SyntheticVideoConfig(num_frames=8, height=64, width=64), seed=7, index=9)
    assert "," not in clip["caption"]  # one label
    path = tmp_path / "my clip.mp4"
    write_mp4(path, clip["video"])
    _tab(page, "Tokenize & classify")
    _element(page, "#video button[aria-label='Clear'], #video input[type=file]")
    clear = page.find_elements("css selector", "#video button[aria-label='Clear']")
    if clear:  # the example's video is still there
        clear[0].click()
    _element(page, "#video input[type=file]").send_keys(os.fspath(path))
    _element(page, "#video video", timeout=RESULT_S)  # uploaded and shown
    _type(page, "#labels", f"{WRONG_LABEL}, {clip['caption']}")
    _click(page, "#run")
    summary = _wait_for_text(page, "#summary", f"Top label: {clip['caption']}")
    assert "⚠️" not in summary


def test_bad_input_shows_a_message(page):
    _tab(page, "Tokenize & classify")
    _type(page, "#labels", " , ")
    _click(page, "#run")
    summary = _wait_for_text(page, "#summary", "No labels")
    assert "Tokens per chunk" in summary and "Traceback" not in summary
    _click(page, "#video button[aria-label='Clear']")
    _type(page, "#labels", WRONG_LABEL)
    _click(page, "#run")
    summary = _wait_for_text(page, "#summary", "No video: pick an example or upload a video file.")
    assert "Tokens per chunk" not in summary


def test_text_to_clip_retrieval(page):
    from selenium.webdriver.common.by import By

    _tab(page, "Text → clip retrieval")
    caption = "a small red star leaves to the right while a small green circle enters from the bottom"
    _type(page, "#query", caption)
    _click(page, "#search")
    _wait_for_text(page, "#ranking", TWO_OBJECTS)
    rows = [row.text for row in page.find_elements(By.CSS_SELECTOR, "#ranking tbody tr")]
    assert len(rows) >= 7 and rows[0].startswith(f"1 {TWO_OBJECTS}"), rows
    assert rows[0].endswith(caption)
    assert len(page.find_elements(By.CSS_SELECTOR, "#gallery img")) >= 7
